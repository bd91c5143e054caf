"""The cuda profile against the facts measured on an H200 (docs/cuda.md).

Expected values are the formulas that page records, evaluated here; the one whole-model figure is
the page's measured byte count.
"""

from __future__ import annotations

import math

import pytest

from symmem import Config, KernelError, build_report

BLK = "transformer.h.*"


def _terms(config: Config, attention: str) -> dict[tuple[str, str], int]:
    return {(t.name, t.module): b for t, b in build_report("cuda", attention).at(config).terms()}


def test_notebook_config_everything_saved_equals_h200_measurement():
    # docs/cuda.md, "Where the peak of a step lands": calc_all config, dropout 0.1, efficient
    # kernel, bf16: 2,732,662,852 B saved.
    estimate = build_report("cuda", "efficient").at(Config.notebook())
    saved = sum(estimate.totals[k] for k in ("activations", "loss", "inputs", "host"))
    assert saved == 2_732_662_852


@pytest.mark.parametrize("amp", [False, True])
def test_cross_entropy_saves_six_bytes_per_logit_under_amp(amp):
    B, S, V = 3, 40, 101
    estimate = build_report("cuda", "efficient").at(Config(B=B, S=S, D=16, NH=2, V=V, L=1, amp=amp))
    assert estimate.totals["loss"] == (6 if amp else 4) * B * S * V + 4  # + total_weight
    assert estimate.totals["logits"] == (2 if amp else 4) * B * S * V


@pytest.mark.parametrize("S", [40, 129, 1024])
def test_efficient_logsumexp_is_padded_and_rng_is_on_the_host(S):
    B, NH, L = 2, 3, 2
    terms = _terms(Config(B=B, S=S, D=48, NH=NH, V=10, L=L), "efficient")
    node = "ScaledDotProductEfficientAttentionBackward0"
    assert terms[(f"{node}-log_sumexp", f"{BLK}.attn")] == L * 4 * B * NH * math.ceil(S / 32) * 32
    estimate = build_report("cuda", "efficient").at(Config(B=B, S=S, D=48, NH=NH, V=10, L=L))
    assert estimate.totals["host"] == L * (8 + 8)


def test_flash_and_cudnn_need_amp():
    config = Config(B=1, S=8, D=16, NH=2, V=10, L=1)
    for kernel in ("flash", "cudnn"):
        with pytest.raises(KernelError, match=f"{kernel} attention needs 16-bit inputs"):
            build_report("cuda", kernel).at(config)


@pytest.mark.parametrize(
    ("kernel", "rng"),
    [
        ("flash", {"rng_state": 16, "unused": 8}),
        ("cudnn", {"philox_seed": 8, "philox_offset": 8}),
    ],
)
def test_half_only_kernels(kernel, rng):
    B, S, D, NH, L = 2, 129, 48, 3, 1
    config = Config(B=B, S=S, D=D, NH=NH, V=10, L=L, amp=True, dropout=True)
    report = build_report("cuda", kernel)
    node = {
        "flash": "ScaledDotProductFlashAttentionBackward0",
        "cudnn": "ScaledDotProductCudnnAttentionBackward0",
    }[kernel]
    terms = {(t.name, t.module): (b, t.location) for t, b in report.at(config).terms()}
    assert terms[(f"{node}-logsumexp", f"{BLK}.attn")] == (4 * B * NH * S, "device")
    for field, nbytes in rng.items():
        assert terms[(f"{node}-{field}", f"{BLK}.attn")] == (nbytes, "device")
    assert terms[(f"{node}-key/query/value", f"{BLK}.attn")] == (3 * 2 * B * S * D, "device")
    assert terms[(f"{node}-output", f"{BLK}.attn")] == (2 * B * S * D, "device")
    assert report.at(config).totals["host"] == 0


@pytest.mark.parametrize(
    ("amp", "dropout", "B", "NH"),
    [
        (False, False, 2, 3),
        (False, True, 2, 3),
        (True, True, 2, 3),
        (False, True, 1, 3),
        (False, False, 2, 1),
        (True, False, 1, 1),
    ],
)
def test_math_path(amp, dropout, B, NH):
    S, D = 40, 48
    terms = _terms(Config(B=B, S=S, D=D, NH=NH, V=10, L=1, amp=amp, dropout=dropout), "math")
    attn = f"{BLK}.attn"
    a = 2 if amp else 4
    # q*s and (k*s)^T: fp32 even under autocast.
    assert terms[("BmmBackward0-self", attn)] == 4 * B * S * D
    assert terms[("BmmBackward0-mat2", attn)] == 4 * B * S * D
    # v: a view of the whole fp32 qkv when B = 1 or NH = 1, else a 4-byte copy.
    whole_qkv = not amp and (B == 1 or NH == 1)
    assert terms[("BmmBackward0#2-mat2", attn)] == (12 if whole_qkv else 4) * B * S * D
    assert terms[("SafeSoftmaxBackward0-result", attn)] == 4 * B * NH * S * S
    if dropout:
        assert terms[("NativeDropoutBackward0-result1", attn)] == B * NH * S * S  # bool mask
        assert terms[("BmmBackward0#2-self", attn)] == 4 * B * NH * S * S
    else:
        assert ("BmmBackward0#2-self", attn) not in terms  # the softmax result itself
    # c_proj saves a fresh a*B*S*D (the output is copied by .contiguous()).
    assert terms[("MmBackward0-self", f"{attn}.c_proj")] == a * B * S * D


@pytest.mark.parametrize("amp", [False, True])
def test_linear_layernorm_gelu_dropout_embedding(amp):
    B, S, D, V = 2, 40, 48, 10
    terms = _terms(Config(B=B, S=S, D=D, NH=3, V=V, L=1, amp=amp, dropout=True), "efficient")
    a = 2 if amp else 4
    assert terms[("NativeLayerNormBackward0-input", f"{BLK}.ln_1")] == 4 * B * S * D
    assert terms[("NativeLayerNormBackward0-result1", f"{BLK}.ln_1")] == 4 * B * S
    assert terms[("MmBackward0-self", f"{BLK}.mlp.c_fc")] == a * B * S * D
    assert terms.get(("MmBackward0-mat2", f"{BLK}.mlp.c_fc"), 0) == (2 * 4 * D * D if amp else 0)
    assert terms[("GeluBackward0-self", f"{BLK}.mlp.gelu")] == 4 * a * B * S * D
    for module in ("transformer.drop", f"{BLK}.attn.resid_dropout", f"{BLK}.mlp.dropout"):
        assert terms[("NativeDropoutBackward0-result1", module)] == B * S * D
    assert terms[("idx", "GPT.forward")] == 8 * B * S
    assert terms[("EmbeddingBackward0-indices", "transformer.wpe")] == 8 * S


def test_fused_adamw_keeps_step_on_the_gpu():
    estimate = build_report("cuda").at(Config(B=1, S=8, D=16, NH=2, V=10, L=2))
    steps = [(t, b) for t, b in estimate.terms() if t.name == "AdamW-step"]
    assert all(t.location == "device" for t, _ in steps)
    assert sum(b for _, b in steps) == 4 * (6 * 2 + 3)  # 6 tensors a block, wte, wpe, ln_f


@pytest.mark.parametrize(
    ("optimizer", "location"), [("fused", "device"), ("foreach", "host"), ("forloop", "host")]
)
def test_adamw_step_placement(optimizer, location):
    # docs/cuda.md, "Everything else": step is a host tensor unless fused=True (or capturable=True).
    report = build_report("cuda", "efficient", optimizer)
    estimate = report.at(Config(B=1, S=8, D=16, NH=2, V=10, L=2))
    steps = [t for t, _ in estimate.terms() if t.name == "AdamW-step"]
    assert {t.location for t in steps} == {location}
    host = estimate.totals["host"] - 2 * 16  # the efficient kernel's philox seed and offset
    assert host == (4 * (6 * 2 + 3) if location == "host" else 0)


def test_unknown_optimizer():
    with pytest.raises(KernelError, match="unknown optimizer 'sgd'"):
        build_report("cuda", "efficient", "sgd")
