"""The reference notebook's printed numbers: reproduced where right, corrected where wrong.

``NOTEBOOK`` holds what the notebook printed, transcribed; when a copy of the notebook's text is
found beside the checkout (``SEED``), a test checks the transcription. docs/errata.md explains
every correction.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from symmem import Config, build_report

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "memory_notebook.txt"

# Printed by the notebook: call -> {printed label: value}.
NOTEBOOK = {
    "calc_params(512, 384, 8192, 1, True)": {"result": 4920960},
    "calc_saved_block_activations(B=48,S=512,D=384,NH=4, amp=False, dropout=True, bias=False)": {
        "LN1": 37945344,
        "LN2": 37945344,
        "attention-c_attn": 37748736,
        "scaled dot product attention": 113639440,
        "attention-c_proj": 37748736,
        "attention-droput": 9437184,
        "c_fc": 37748736,
        "gelu": 150994944,
        "c_proj": 150994944,
        "mlp dropout": 9437184,
        "result": 623640592,
    },
    "calc_saved_gpt_activations(B=48,S=1024,D=512,NH=4,V=8192, n_layers=8, amp=False, dropout=True, bias=False)": {
        "embeddings": 401408,
        "gpt-droput": 25165824,
        "block_sum": 13300138112,
        "ln_f": 101056512,
        "lm_head": 100663296,
        "result": 13527425152,
    },
    "calc_all(B=24,S=1024,D=384,NH=4,V=8192, n_layers=4, amp=True, dropout=True, bias=False)": {
        "attention-c_attn": 19759104,
        "scaled dot product attention": 57016336,
        "attention-c_proj": 19169280,
        "c_fc": 19660800,
        "c_proj": 76283904,
        "gpt activations": 1521360960,
        "inputs": 393216,
        "lm_head_output": 402653184,
        "Number of Params": 10620288,
        "params_mem": 42481152,
        "gradients": 42481152,
        "optimizer": 84962304,
        "result": 2094331968,
    },
}


def _module_sum(terms: dict[tuple[str, str], int], module: str, layers: int) -> int:
    """Bytes of one instance of the saved terms made in ``module`` (device and host alike)."""
    return sum(b for (n, m), b in terms.items() if m == module and n != "logits") // layers


@pytest.mark.skipif(not SEED.exists(), reason="the seed notebook is not beside this checkout")
def test_transcription_of_printed_numbers():
    text = SEED.read_text()
    printed = {int(n) for n in re.findall(r"^(?:[\w -]+ )?(\d+)$", text, flags=re.M)}
    for values in NOTEBOOK.values():
        assert set(values.values()) <= printed


def test_param_count():
    """calc_params(S=512, D=384, V=8192, L=1, bias) excludes wpe (includeEmbeddings=False)."""
    config = Config(B=1, S=512, D=384, NH=4, V=8192, L=1, bias=True)
    estimate = build_report("cuda").at(config)
    assert (
        estimate.param_count - 512 * 384
        == NOTEBOOK["calc_params(512, 384, 8192, 1, True)"]["result"]
    )


def test_block_fp32_dropout_is_right_once_host_tensors_are_split_off():
    printed = NOTEBOOK[
        "calc_saved_block_activations(B=48,S=512,D=384,NH=4, amp=False, dropout=True, bias=False)"
    ]
    config = Config(B=48, S=512, D=384, NH=4, V=8192, L=1, dropout=True)
    estimate = build_report("cuda", "efficient").at(config)
    terms = {(t.name, t.module): b for t, b in estimate.terms()}
    blk = "transformer.h.*"
    assert _module_sum(terms, f"{blk}.ln_1", 1) == printed["LN1"]
    assert _module_sum(terms, f"{blk}.ln_2", 1) == printed["LN2"]
    assert _module_sum(terms, f"{blk}.attn.c_attn", 1) == printed["attention-c_attn"]
    # The notebook's "c_proj" line is the SDPA output: one storage, saved by SDPA first.
    assert (
        terms[("ScaledDotProductEfficientAttentionBackward0-output", f"{blk}.attn")]
        == printed["attention-c_proj"]
    )
    sdpa = _module_sum(terms, f"{blk}.attn", 1) - printed["attention-c_proj"]
    assert sdpa == printed["scaled dot product attention"]  # S = 512: no logsumexp padding
    assert _module_sum(terms, f"{blk}.attn.resid_dropout", 1) == printed["attention-droput"]
    assert _module_sum(terms, f"{blk}.mlp.c_fc", 1) == printed["c_fc"]
    assert _module_sum(terms, f"{blk}.mlp.gelu", 1) == printed["gelu"]
    assert _module_sum(terms, f"{blk}.mlp.c_proj", 1) == printed["c_proj"]
    assert _module_sum(terms, f"{blk}.mlp.dropout", 1) == printed["mlp dropout"]
    # The philox seed and offset (16 B) are host tensors: right bytes, wrong memory.
    assert estimate.totals["block"] + estimate.totals["host"] == printed["result"]
    assert estimate.totals["host"] == 16


def test_model_fp32_dropout_counts_idx_twice():
    printed = NOTEBOOK[
        "calc_saved_gpt_activations(B=48,S=1024,D=512,NH=4,V=8192, n_layers=8, amp=False, dropout=True, bias=False)"
    ]
    config = Config(B=48, S=1024, D=512, NH=4, V=8192, L=8, dropout=True)
    estimate = build_report("cuda", "efficient").at(config)
    terms = {(t.name, t.module): b for t, b in estimate.terms()}
    idx = terms[("idx", "GPT.forward")]
    assert terms[("EmbeddingBackward0-indices", "transformer.wpe")] + idx == printed["embeddings"]
    assert terms[("NativeDropoutBackward0-result1", "transformer.drop")] == printed["gpt-droput"]
    assert (estimate.totals["block"] + 16) * 8 == printed["block_sum"]
    assert _module_sum(terms, "transformer.ln_f", 1) == printed["ln_f"]
    assert _module_sum(terms, "lm_head", 1) == printed["lm_head"]
    # Right once idx (an input, saved by wte) and the host tensors are added back.
    assert estimate.totals["activations"] + idx + estimate.totals["host"] == printed["result"]


def test_calc_all_right_and_wrong_lines():
    printed = NOTEBOOK[
        "calc_all(B=24,S=1024,D=384,NH=4,V=8192, n_layers=4, amp=True, dropout=True, bias=False)"
    ]
    config = Config.notebook()
    estimate = build_report("cuda", "efficient").at(config)
    terms = {(t.name, t.module): b for t, b in estimate.terms()}
    blk = "transformer.h.*"
    assert _module_sum(terms, f"{blk}.attn.c_attn", 4) == printed["attention-c_attn"]
    output = terms[("ScaledDotProductEfficientAttentionBackward0-output", f"{blk}.attn")] // 4
    assert _module_sum(terms, f"{blk}.attn", 4) - output == printed["scaled dot product attention"]
    assert _module_sum(terms, f"{blk}.attn.c_proj", 4) + output == printed["attention-c_proj"]
    assert estimate.totals["inputs"] == printed["inputs"]
    assert estimate.totals["logits"] == printed["lm_head_output"]
    assert estimate.param_count == printed["Number of Params"]
    assert estimate.totals["params"] == printed["params_mem"]
    assert estimate.totals["grads"] == printed["gradients"]
    # Wrong: the MLP weight copies are 4*D*D half values, not S*D.
    D, S = 384, 1024
    assert _module_sum(terms, f"{blk}.mlp.c_fc", 4) == printed["c_fc"] - 2 * S * D + 2 * 4 * D * D
    assert (
        _module_sum(terms, f"{blk}.mlp.c_proj", 4) == printed["c_proj"] - 2 * S * D + 2 * 4 * D * D
    )
    # Wrong: AdamW also keeps one 4-byte step per parameter tensor (6 per block, wte, wpe, ln_f).
    assert estimate.totals["optimizer"] == printed["optimizer"] + 4 * (6 * 4 + 3)
