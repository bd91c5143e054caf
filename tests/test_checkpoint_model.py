"""symmem's activation checkpointing (``build_report(..., checkpoint=...)``) against PyTorch.

For every config below, the model's estimate equals the measurement of the checkpointed nanoGPT
(``measure(..., checkpoint=...)``) term by term, in every total, and in every phase's start, peak
and end of the training step (``compare``'s ``step:`` rows): the frame's kept inputs and RNG
state, the recomputation in backward and when its tensors die (``docs/checkpointing.md``).
"""

from __future__ import annotations

import itertools
import warnings

import pytest

from symmem import Config, ConfigError, build_report
from symmem.model import get_model
from symmem.report import _build_report
from tests.conftest import needs_torch

MODES = ("full", "selective")
SWITCHES = list(itertools.product((False, True), repeat=3))

# The derivation shape; B = 1 with three blocks; S^2 dominating the math path (B = 1); one head
# and an odd S.
SHAPES = [
    dict(B=2, S=16, D=32, NH=4, V=64, L=2),
    dict(B=1, S=24, D=48, NH=3, V=50, L=3),
]
SLOW_SHAPES = [
    dict(B=1, S=128, D=16, NH=4, V=10, L=2),
    dict(B=3, S=33, D=48, NH=1, V=64, L=3),
]


def _cases(shapes, marks=()):
    for shape, (amp, dropout, bias), attention in itertools.product(
        shapes, SWITCHES, ("default", "math")
    ):
        yield pytest.param(
            Config(**shape, amp=amp, dropout=dropout, bias=bias),
            attention,
            id=f"{'-'.join(f'{k}{v}' for k, v in shape.items())}-amp{int(amp)}"
            f"-drop{int(dropout)}-bias{int(bias)}-{attention}",
            marks=marks,
        )


def _check(config: Config, attention: str, mode: str, optimizer: str = "default") -> None:
    from symmem.validate.compare import compare
    from symmem.validate.measure import measure

    estimate = build_report("cpu", attention, optimizer, checkpoint=mode).at(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        measurement = measure(config, attention=attention, optimizer=optimizer, checkpoint=mode)
    comparison = compare(estimate, measurement)
    assert comparison.match, f"{mode}:\n{comparison.table()}"
    assert measurement.extra["kernel"] == estimate.kernel
    assert any(r.name.startswith("step:") for r in comparison.rows)


@needs_torch
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("config", "attention"), list(_cases(SHAPES)))
def test_checkpointed_model_equals_measurement(config, attention, mode):
    _check(config, attention, mode)


@needs_torch
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("config", "attention"), list(_cases(SLOW_SHAPES, pytest.mark.slow)))
def test_checkpointed_model_equals_measurement_more_shapes(config, attention, mode):
    _check(config, attention, mode)


@needs_torch
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("optimizer", ["forloop", "foreach", "fused"])
def test_checkpointed_model_with_each_adamw(optimizer, mode):
    config = Config(B=2, S=12, D=24, NH=2, V=40, L=3, amp=True, bias=True)
    _check(config, "default", mode, optimizer)


def test_checkpoint_is_part_of_the_report():
    none, full = build_report("cpu"), build_report("cpu", checkpoint="full")
    assert (none.checkpoint, full.checkpoint) == ("none", "full")
    names = {t.name for t in full.terms if t.module == "transformer.h.*"}
    assert {"CheckpointFrame-saved_args", "CheckpointFrame-fwd_cpu_state"} <= names
    assert not any(t.name.startswith("CheckpointFrame") for t in none.terms)
    # The frame keeps the block's input instead of what the block's nodes save.
    config = Config(B=2, S=16, D=32, NH=4, V=64, L=2)
    assert full.at(config).totals["block"] < none.at(config).totals["block"]


def test_cache_entries_are_per_checkpoint_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMMEM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SYMMEM_NO_CACHE", raising=False)
    _build_report.__wrapped__("cpu", "default", "forloop", None, "full", get_model("nanogpt"))
    [entry] = (p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir())
    assert entry == "report-nanogpt-cpu-default-forloop-full"


def test_rng_states_are_host_memory_beside_a_gpu():
    from symmem.ops.checkpoint import CPU_RNG_STATE, CUDA_RNG_STATE

    report = build_report("cuda", checkpoint="selective")
    frame = {t.name: t for t in report.terms if t.name.startswith("CheckpointFrame")}
    assert frame["CheckpointFrame-saved_args"].location == "device"
    assert frame["CheckpointFrame-fwd_cpu_state"].location == "host"
    assert frame["CheckpointFrame-fwd_device_states"].location == "host"
    config = Config.notebook()
    assert report.at(config).totals["host"] == config.L * (CPU_RNG_STATE + CUDA_RNG_STATE)


def test_the_solver_rebuilds_a_checkpointed_report_from_its_key():
    report = build_report("cpu", "math", checkpoint="selective")
    rebuilt = build_report(*report.key)
    assert rebuilt.checkpoint == "selective" and rebuilt.terms == report.terms


@pytest.mark.parametrize("mode", ["all", "", "Full", None])
def test_unknown_checkpoint_mode_is_a_config_error(mode):
    with pytest.raises(ConfigError, match="checkpoint must be one of none, full, selective"):
        build_report("cpu", checkpoint=mode)
