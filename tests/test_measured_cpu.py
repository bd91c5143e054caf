"""Every CPU term and total equals what PyTorch 2.13 saves and allocates, to the byte."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symmem import Config, KernelError, build_report
from tests.conftest import needs_torch

pytestmark = needs_torch

# Shapes chosen for their edges: S not a multiple of 32, odd head size (15, 5), V not a multiple
# of 8, B = 1 and NH = 1 (where a math-path reshape becomes a view of the whole c_attn output),
# and L from 1 to 3.
SHAPES = [
    dict(B=2, S=40, D=64, NH=4, V=101, L=1),
    dict(B=1, S=37, D=60, NH=4, V=97, L=2),
    dict(B=3, S=33, D=48, NH=1, V=64, L=3),
    dict(B=2, S=17, D=30, NH=6, V=50, L=2),
]
SWITCHES = list(itertools.product((False, True), repeat=3))


def _cases():
    for shape, (amp, dropout, bias), attention in itertools.product(
        SHAPES, SWITCHES, ("default", "flash", "math")
    ):
        if attention == "flash" and dropout:
            continue  # the CPU flash kernel has no dropout; tested as an error below
        yield pytest.param(
            Config(**shape, amp=amp, dropout=dropout, bias=bias),
            attention,
            id=f"{'-'.join(f'{k}{v}' for k, v in shape.items())}-amp{int(amp)}"
            f"-drop{int(dropout)}-bias{int(bias)}-{attention}",
        )


def _check(config: Config, attention: str) -> None:
    from symmem.validate import assert_matches
    from symmem.validate.measure import measure

    estimate = build_report("cpu", attention).at(config)
    measurement = measure(config, device="cpu", attention=attention)
    if config.B * config.S == 1 or config.D == config.NH:
        # One token per batch, or heads of size 1: PyTorch's backward then makes one more copy
        # of a gradient than symmem models (docs/validation.md). Everything else must match.
        from symmem.validate.compare import compare

        rows = compare(estimate, measurement).differences()
        assert {r.name for r in rows} <= {"step: backward peak", "total: peak"}, rows
        assert all(r.measured is not None and r.measured > r.predicted for r in rows)
    else:
        assert_matches(estimate, measurement)
    # The graph walk and saved_tensors_hooks agree on every saved byte.
    saved = sum(measurement.totals[k] for k in ("activations", "loss", "inputs"))
    assert measurement.hook_bytes == saved
    assert measurement.extra["kernel"] == estimate.kernel
    # Every block saves the same bytes.
    for term in measurement.terms:
        if term.per_block:
            assert len(term.per_block) == config.L and len(set(term.per_block)) == 1


@pytest.mark.parametrize(("config", "attention"), list(_cases()))
def test_cpu_terms_equal_measurement(config, attention):
    _check(config, attention)


@needs_torch
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    B=st.integers(1, 3),
    S=st.integers(1, 70),
    head=st.integers(1, 20),
    NH=st.integers(1, 4),
    V=st.integers(2, 130),
    L=st.integers(1, 3),
    amp=st.booleans(),
    dropout=st.booleans(),
    bias=st.booleans(),
    attention=st.sampled_from(["default", "flash", "math"]),
)
def test_random_small_configs_match(B, S, head, NH, V, L, amp, dropout, bias, attention):
    config = Config(B=B, S=S, D=head * NH, NH=NH, V=V, L=L, amp=amp, dropout=dropout, bias=bias)
    if attention == "flash" and dropout:
        with pytest.raises(KernelError, match="flash attention cannot apply dropout"):
            build_report("cpu", attention).at(config)
        return
    _check(config, attention)


@pytest.mark.slow
@pytest.mark.parametrize("amp", [False, True])
def test_gpt2_small_shape_matches(amp):
    """GPT-2 small's width and heads (D=768, NH=12, V=50257) at a short length, 2 blocks."""
    _check(
        Config(B=1, S=64, D=768, NH=12, V=50257, L=2, amp=amp, dropout=True, bias=True), "default"
    )


def test_pytorch_also_refuses_flash_with_dropout_on_cpu():
    from symmem.validate.measure import measure

    config = Config(B=1, S=8, D=16, NH=2, V=10, L=1, dropout=True)
    with pytest.raises(KernelError):
        build_report("cpu", "flash").at(config)
    with pytest.raises(RuntimeError):
        measure(config, device="cpu", attention="flash")


def test_check_script_quick_grid_on_cpu(tmp_path):
    from symmem.validate.cuda_check import main

    assert main(["--device", "cpu", "--grid", "quick", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    # shapes x switch combinations x ((default, flash, math) kernels + 3 AdamW implementations)
    assert len(lines) == 2 * 8 * (3 + 3)
    assert "| match |" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("optimizer", ["forloop", "foreach", "fused"])
def test_each_adamw_implementation_matches(optimizer):
    from symmem.validate import assert_matches
    from symmem.validate.measure import measure

    config = Config(B=2, S=17, D=24, NH=3, V=50, L=2, amp=True, bias=True)
    estimate = build_report("cpu", "default", optimizer).at(config)
    assert_matches(estimate, measure(config, device="cpu", optimizer=optimizer))
