"""Llama, Qwen2 and Mistral (transformers 5.23.0) against PyTorch 2.13 on CPU, to the byte.

Each case builds the real transformers class from the config, runs ``model(input_ids,
labels=labels)``, backward and an AdamW step, and compares every term and every total but the
training step's peak (the plain training loop's timeline is another branch's, :mod:`symmem.step`).
Sizes are odd on purpose: S and D not powers of two, F not a multiple of D, V not a multiple of 8.
"""

from __future__ import annotations

import itertools

import pytest

from symmem import Config, build_report
from symmem.errors import ConfigError
from tests.conftest import needs_torch

#: The rows of the training step's timeline, checked elsewhere once the plain loop is modelled.
STEP_ROWS = ("total: peak", "total: max_memory_allocated")

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


def _check(config: Config, attention: str) -> None:
    from symmem.validate.compare import compare
    from symmem.validate.measure import measure

    estimate = build_report("cpu", attention, model=config.model).at(config)
    measurement = measure(config, device="cpu", attention=attention)
    rows = compare(estimate, measurement)
    wrong = [r for r in rows.differences() if r.name not in STEP_ROWS and "step:" not in r.name]
    assert not wrong, wrong
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
    _check(config, attention)


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("amp", [False, True])
def test_one_layer_at_llama_3_2_1b_width(amp):
    """Llama 3.2 1B's widths (D 2048, 32 heads, 8 key/value heads, F 8192), one layer, so that
    a kernel choice that depends on size would show."""
    config = Config(
        model="llama", B=1, S=35, D=2048, NH=32, NKV=8, F=8192, V=1001, L=1, amp=amp, tied=True
    )
    _check(config, "default")


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
