"""Llama, Qwen2 and Mistral (transformers 5.23.0) against PyTorch 2.13 on CPU, to the byte.

Each case builds the real transformers class from the config, runs ``model(input_ids,
labels=labels)``, backward and an AdamW step, and compares every term and every total but the
training step's peak (the plain training loop's timeline is another branch's, :mod:`symmem.step`).
Sizes are odd on purpose: S and D not powers of two, F not a multiple of D, V not a multiple of 8.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symmem import Config, build_report
from symmem.errors import ConfigError
from tests.conftest import needs_torch

#: The rows of the training step's timeline, checked elsewhere once the plain loop is modelled.

#: (NH, NKV): multi-head, grouped-query, multi-query.
HEADS = {"mha": (6, 6), "gqa": (6, 2), "mqa": (6, 1)}
SHAPES = [
    dict(B=2, S=13, D=36, F=50, V=97, L=2),
    dict(B=3, S=9, D=60, F=70, V=61, L=1),
    dict(B=1, S=11, D=24, F=40, V=33, L=2),  # B = 1: the shifted labels are a view
]


def _config(arch: str, shape: dict[str, int], heads: str, **switches: bool) -> Config:
    nh, nkv = HEADS[heads]
    return Config(model=arch, **shape, NH=nh, NKV=nkv, **switches)


def _grid():
    """Every architecture x AMP x tied, the head ratios and shapes taking turns."""
    turns = itertools.cycle(itertools.product(HEADS, range(len(SHAPES))))
    for arch, amp, tied in itertools.product(("llama", "qwen2", "mistral"), (0, 1), (0, 1)):
        heads, shape = next(turns)
        yield pytest.param(
            _config(arch, SHAPES[shape], heads, amp=bool(amp), tied=bool(tied)),
            "default",
            id=f"{arch}-amp{amp}-tied{tied}-{heads}-shape{shape}",
        )
    for amp, heads in itertools.product((0, 1), ("gqa", "mha")):
        yield pytest.param(
            _config("llama", SHAPES[amp], heads, amp=bool(amp), tied=False, bias=True),
            "default",
            id=f"llama-bias-amp{amp}-{heads}",
        )
    for amp, heads in itertools.product((0, 1), ("gqa", "mha")):  # repeat_interleave in math
        yield pytest.param(
            _config("llama", SHAPES[0], heads, amp=bool(amp), tied=True),
            "math",
            id=f"llama-math-amp{amp}-{heads}",
        )


def _step_rows_equal(config: Config) -> bool:
    """Whether the step's phases and peaks are measured equal. One case is known not to be
    (docs/llama.md, not explained yet): one layer with Llama's biases under AMP, where the
    optimizer step's peak is measured higher."""
    return not (config.L == 1 and config.bias and config.amp)


def _check(config: Config, attention: str, *, step_rows: bool = True) -> None:
    from symmem.validate.compare import compare
    from symmem.validate.measure import measure

    report = build_report("cpu", attention, model=config.model)
    estimate = report.at(config)
    measurement = measure(config, device="cpu", attention=attention, loop=report.loop.name)
    rows = compare(estimate, measurement)
    # Every term, every total and every phase of the step (the rotary buffers resident, the
    # shared cos and sin freed once after the last layer's backward).
    peak_rows = ("total: peak", "total: max_memory_allocated")
    differences = [
        r
        for r in rows.differences()
        if step_rows or not (r.name.startswith("step:") or r.name in peak_rows)
    ]
    assert not differences, differences
    assert len(rows.terms) > 30
    # Every byte autograd saves went through saved_tensors_hooks too (no wrapped numbers here).
    assert measurement.hook_bytes == measurement.totals["saved"] == estimate.totals["saved"]
    assert measurement.extra["kernel"] == estimate.kernel
    for term in measurement.terms:
        if term.per_block:
            assert len(term.per_block) == config.L and len(set(term.per_block)) == 1


@needs_torch
@pytest.mark.parametrize(("config", "attention"), list(_grid()))
def test_llama_family_equals_measurement(config, attention):
    _check(config, attention, step_rows=_step_rows_equal(config))


@needs_torch
@pytest.mark.slow
@settings(
    max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    arch=st.sampled_from(["llama", "qwen2", "mistral"]),
    B=st.integers(1, 3),
    S=st.integers(2, 40),
    half=st.integers(1, 6),
    NKV=st.integers(1, 3),
    group=st.integers(1, 3),
    F=st.integers(1, 90),
    V=st.integers(2, 130),
    L=st.integers(1, 3),
    amp=st.booleans(),
    tied=st.booleans(),
)
def test_random_small_configs_match(arch, B, S, half, NKV, group, F, V, L, amp, tied):
    """Configurations nobody tuned to: any even head size, any key/value grouping, any MLP
    width, on the default kernel. Every term and every total but the step's peaks: at tiny
    sizes the optimizer step's peak can differ by a few bytes (found here: B=1, S=2, D=4, NH=2,
    NKV=1, F=1, V=3, L=1, fp32, untied, 16 bytes measured higher; docs/llama.md)."""
    NH = NKV * group
    sizes = dict(B=B, S=S, D=2 * half * NH, NH=NH, NKV=NKV, F=F, V=V, L=L)
    _check(Config(model=arch, **sizes, amp=amp, tied=tied), "default", step_rows=False)


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("amp", [False, True])
def test_one_layer_at_llama_3_2_1b_width(amp):
    """Llama 3.2 1B's widths (D 2048, 32 heads, 8 key/value heads, F 8192), one layer, so that
    a kernel choice that depends on size would show."""
    config = Config(
        model="llama", B=1, S=35, D=2048, NH=32, NKV=8, F=8192, V=1001, L=1, amp=amp, tied=True
    )
    # Under AMP everything is equal. In fp32 at this width the measured backward peaks one
    # (B, S, D) fp32 tensor (286,720 bytes) below the simulated one, which no smaller config
    # shows (not explained yet, docs/llama.md): there the step's phases and peaks are left
    # out, and every term and every other total must be equal.
    _check(config, "default", step_rows=amp)


def test_cos_and_sin_are_one_storage_for_every_layer():
    report = build_report("cpu", model="llama")
    rotary = [t for t in report.terms if t.module == "model.rotary_emb"]
    assert [t.name for t in rotary] == ["RotaryEmbedding-cos", "RotaryEmbedding-sin"]
    assert not any(t.per_layer for t in rotary)
    config = Config(model="llama", B=2, S=13, D=36, NH=6, NKV=2, F=50, V=97, L=5)
    estimate = report.at(config)
    by_name = dict(zip((t.name for t in report.terms), estimate.term_bytes, strict=False))
    assert by_name["RotaryEmbedding-cos"] == 4 * 13 * 6  # (1, S, head_dim) fp32, once


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(model="llama", D=36, NH=6, NKV=4), "NH=6 is not divisible by NKV=4"),
        (dict(model="llama", D=30, NH=6), "odd head size"),
        (dict(model="mistral", S=4096), "sliding window"),
        (dict(model="qwen2", bias=True), "--bias does not apply to qwen2"),
        (dict(model="mistral", bias=True), "--bias does not apply to mistral"),
        (dict(model="llama", dropout=True), "--dropout does not apply to llama"),
        (dict(model="llama", SMAX=10), "--SMAX does not apply to llama"),
    ],
)
def test_bad_sizes_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        Config(**fields)


def test_mistral_below_its_window_is_accepted():
    assert Config(model="mistral", S=4095).S == 4095


LLAMA_1B = dict(D=2048, NH=32, NKV=8, F=8192, V=128256, L=16)


@needs_torch
def test_validate_cli_for_llama(capsys):
    import json

    from symmem.cli import main

    argv = ["validate", "--arch", "llama", "--platform", "cpu", "--device", "cpu", "--json"]
    sizes = ["--B", "2", "--S", "13", "--D", "36", "--NH", "6", "--NKV", "2", "--F", "50"]
    main([*argv, *sizes, "--V", "97", "--L", "2", "--amp", "--no-tied"])
    data = json.loads(capsys.readouterr().out)
    assert data["predicted"]["config"]["model"] == "llama"
    assert data["match"] and not data["differences"], data["differences"]


def test_preset_equals_the_sizes_given_by_hand(capsys):
    import json

    from symmem.cli import main
    from symmem.presets import preset

    common = ["estimate", "--arch", "llama", "--B", "2", "--S", "512", "--amp", "--json"]
    assert main([*common, "--model", "llama-3.2-1b"]) == 0
    from_preset = json.loads(capsys.readouterr().out)
    by_hand = [f"--{k}={v}" for k, v in LLAMA_1B.items()]
    assert main([*common, *by_hand, "--tied"]) == 0
    assert json.loads(capsys.readouterr().out) == from_preset
    config = Config(model="llama", B=2, S=512, **LLAMA_1B, amp=True, tied=True)
    assert preset("llama-3.2-1b").config(B=2, S=512, amp=True) == config


@pytest.mark.parametrize(
    ("published", "arch", "name"),
    [
        # The published config.json files' sizes (other keys do not change memory).
        (dict(model_type="llama", hidden_size=2048, num_attention_heads=32,
              num_key_value_heads=8, intermediate_size=8192, vocab_size=128256,
              num_hidden_layers=16, tie_word_embeddings=True, head_dim=64), "llama",
         "llama-3.2-1b"),
        (dict(model_type="qwen2", hidden_size=896, num_attention_heads=14,
              num_key_value_heads=2, intermediate_size=4864, vocab_size=151936,
              num_hidden_layers=24, tie_word_embeddings=True), "qwen2", "qwen2.5-0.5b"),
        (dict(model_type="mistral", hidden_size=4096, num_attention_heads=32,
              num_key_value_heads=8, intermediate_size=14336, vocab_size=32000,
              num_hidden_layers=32, tie_word_embeddings=False, sliding_window=4096),
         "mistral", "mistral-7b-v0.1"),
    ],
)  # fmt: skip
def test_config_json_equals_the_preset(tmp_path, published, arch, name):
    import json

    from symmem.presets import from_hf_config, preset

    path = tmp_path / "config.json"
    path.write_text(json.dumps(published))
    config = from_hf_config(path, B=4, S=1024, amp=True)
    assert config == preset(name).config(arch, B=4, S=1024, amp=True)
    report = build_report("cpu", model=arch)
    assert report.at(config).totals == report.at(preset(name).config(B=4, S=1024, amp=True)).totals


def test_parameters_as_transformers_counts_them():
    # LlamaForCausalLM of Llama 3.2 1B's config has 1,235,814,400 parameters (tied); Qwen2.5
    # 0.5B's 494,032,768 (tied, with q/k/v biases); Mistral 7B v0.1's 7,241,732,096.
    report = build_report("cpu", model="llama")
    assert report.at(Config(model="llama", B=1, S=8, **LLAMA_1B)).param_count == 1_235_814_400
    qwen = Config(model="qwen2", B=1, S=8, D=896, NH=14, NKV=2, F=4864, V=151936, L=24)
    assert build_report("cpu", model="qwen2").at(qwen).param_count == 494_032_768
    mistral = dict(D=4096, NH=32, NKV=8, F=14336, V=32000, L=32)
    config = Config(model="mistral", B=1, S=8, **mistral, tied=False)
    assert build_report("cpu", model="mistral").at(config).param_count == 7_241_732_096


def test_solve_matches_a_linear_scan():
    from symmem.solve import largest

    report = build_report("cpu", model="qwen2")
    config = Config(model="qwen2", S=1024, D=896, NH=14, NKV=2, F=4864, V=151936, L=24)
    solution = largest(report, config, "B", "60GiB", quantity="total")
    fits = [b for b in range(1, 100) if report.at(config.with_(B=b)).totals["total"] <= 60 * 2**30]
    assert solution.value == max(fits)


def test_sweep_equals_evaluating_each_config():
    from symmem.sweep import sweep

    report = build_report("cpu", model="llama")
    sizes = dict(D=36, NH=6, F=50, V=97, L=2)
    out = sweep(report, B=[1, 3], S=[13, 40], NKV=[1, 3], **sizes, amp=[False, True], tied=True)
    for i, (b, s, nkv, amp) in enumerate([(1, 13, 1, False), (3, 40, 3, True)]):
        config = Config(model="llama", B=b, S=s, NKV=nkv, **sizes, amp=amp, tied=True)
        totals = report.at(config).totals
        assert {k: int(out[k][i]) for k in totals} == dict(totals)


def test_latex_document_for_llama(capsys):
    from symmem.cli import main

    argv = ["latex", "--arch", "llama", "--model", "llama-3.2-1b", "--what", "document"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert r"n_{\mathrm{kv}}" in text and r"\mathrm{TIED}" in text and "F" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--NKV", "4"], "NH=6 is not divisible by NKV=4"),
        (["--SMAX", "16"], "--SMAX does not apply to llama"),
        (["--dropout"], "--dropout does not apply to llama"),
        (["--NH", "5"], "D=36 is not divisible by NH=5"),
        (["--checkpoint", "full"], "activation checkpointing is not modelled for llama"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    from symmem.cli import main

    sizes = dict(B=2, S=13, D=36, NH=6, NKV=2, F=50, V=97, L=2)
    base = ["estimate", "--arch", "llama", *(f"--{k}={v}" for k, v in sizes.items())]
    assert main([*base, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_cuda_profile_grouped_query_attention_runs_the_math_path():
    # sdp_utils.cpp: the memory-efficient kernel admits no grouped-query heads; with NKV = NH it
    # runs, with NKV < NH the math path does (k and v repeated to NH heads, fp32 under AMP).
    report = build_report("cuda", model="llama")
    names = [t.name for t in report.terms]
    sizes = dict(B=2, S=13, D=36, NH=6, F=50, V=97, L=2, amp=True)
    mha, gqa = (report.at(Config(model="llama", NKV=n, **sizes)) for n in (6, 2))
    bytes_of = [dict(zip(names, e.term_bytes, strict=True)) for e in (mha, gqa)]  # L layers
    efficient = "ScaledDotProductEfficientAttentionBackward0-query"
    assert bytes_of[0][efficient] == 2 * 2 * 13 * 36 * 2 and bytes_of[1][efficient] == 0
    assert bytes_of[0]["BmmBackward0#2-mat2"] == 0
    assert bytes_of[1]["BmmBackward0#2-mat2"] == 4 * 2 * 13 * 36 * 2  # v at NH heads, fp32
