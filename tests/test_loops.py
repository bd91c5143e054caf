"""Training loops (symmem.loops): the plain step and nanoGPT's, measured on CPU and against the
three plain steps measured on an H200 (docs/cuda.md, "Three steps, phase by phase")."""

from __future__ import annotations

import json

import pytest

from symmem import Config, build_report
from symmem.errors import ConfigError
from symmem.loops import LOOPS, get_loop
from tests.conftest import needs_torch

# Odd sizes, every switch, one and several blocks, heads of one.
CONFIGS = [
    Config(B=2, S=40, D=64, NH=4, V=101, L=1),
    Config(B=1, S=37, D=60, NH=4, V=97, L=2, amp=True, dropout=True, bias=True),
    Config(B=3, S=33, D=48, NH=1, V=64, L=3, dropout=True),
    Config(B=2, S=17, D=30, NH=5, V=50, L=2, amp=True),
]


def test_loops_by_name():
    assert list(LOOPS) == ["nanogpt", "plain"]
    assert get_loop(LOOPS["plain"]) is LOOPS["plain"]
    with pytest.raises(ConfigError, match=r"unknown loop 'plane' \(did you mean plain"):
        get_loop("plane")


@pytest.mark.slow
def test_default_loop_is_the_architectures():
    report = build_report("cpu")
    assert report.loop.name == report.model.loop == "nanogpt"
    assert build_report("cpu", loop="nanogpt") is report
    plain = build_report("cpu", loop="plain")
    assert plain.loop is LOOPS["plain"]
    assert tuple(plain.phases) == ("zero_grad", "forward", "backward", "step")
    # PyTorch's own AdamW default: the for-loop for CPU tensors, foreach for CUDA ones.
    assert plain.optimizer == "forloop"
    assert build_report("cuda", loop="plain").optimizer == "foreach"
    assert build_report("cuda").optimizer == "fused"  # nanoGPT asks for fused


def _phases(estimate):
    return [(name, start, peak, end) for name, start, end, peak in estimate.timeline]


@needs_torch
@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("optimizer", ["forloop", "foreach", "fused"])
def test_plain_loop_equals_measurement_on_cpu(config, optimizer):
    from symmem.validate.timeline import measure_timeline

    estimate = build_report("cpu", "default", optimizer, loop="plain").at(config)
    timeline = measure_timeline(config, optimizer=optimizer, loop="plain")
    measured = [(p.name, p.start, p.peak, p.end) for p in timeline.phases]
    assert _phases(estimate) == measured
    totals = estimate.totals
    # Between steps: parameters, AdamW state, gradients and the batch; no logits.
    between = totals["params"] + totals["optimizer"] + totals["grads"] + totals["inputs"]
    assert measured[0][1] == between
    assert estimate.totals["peak"] == timeline.peak


@needs_torch
def test_plain_loop_peak_is_below_nanogpts_here():
    # The same config: nanoGPT's loop holds the previous logits and the next batch as well.
    config = CONFIGS[0]
    plain = build_report("cpu", loop="plain").at(config).totals["peak"]
    nanogpt = build_report("cpu").at(config).totals["peak"]
    assert plain < nanogpt


# docs/cuda.md, "Three steps, phase by phase": measured on an H200 with expandable segments.
# (config, kernel, AdamW, step start, after zero_grad, after loss, after backward, max, where,
# max_memory_allocated, cuBLAS workspaces in that process).
H200_PLAIN_STEPS = [
    (
        Config(B=3, S=40, D=96, NH=3, V=333, L=2),
        "efficient",
        "foreach",
        (4_121_472, 3_091_584, 4_987_720, 4_281_316, 5_311_204),
        ("step", "_foreach_sqrt"),
        72_424_960,
        64,
    ),
    (
        Config(B=2, S=129, D=96, NH=4, V=777, L=1, amp=True),  # fp16: the same bytes as bf16
        "flash",
        "foreach",
        (3_169_824, 2_378_400, 5_404_136, 3_570_760, 6_206_004),
        ("backward", "NllLossBackward0 (GPT.forward)"),
        74_376_704,
        65,
    ),
    (
        Config(B=3, S=40, D=96, NH=3, V=333, L=2, amp=True),
        "cudnn",
        "fused",
        (4_121_532, 3_091_644, 4_824_228, 4_201_456, 4_984_072),
        ("backward", "NllLossBackward0 (GPT.forward)"),
        73_157_632,
        65,
    ),
]


@pytest.mark.parametrize(
    ("config", "kernel", "optimizer", "marks", "where", "allocated", "mib"), H200_PLAIN_STEPS
)
def test_plain_loop_reproduces_the_h200_steps(
    config, kernel, optimizer, marks, where, allocated, mib
):
    report = build_report("cuda", kernel, optimizer, "h200", loop="plain")
    estimate = report.at(config)
    phases = {name: (start, peak, end) for name, start, end, peak in estimate.timeline}
    start, after_zero_grad, after_loss, after_backward, peak = marks
    assert phases["zero_grad"] == (start, start, after_zero_grad)
    assert phases["forward"][0] == after_zero_grad
    assert phases["forward"][2] == after_loss
    assert phases["backward"][2] == after_backward
    assert phases["step"][2] == after_backward  # the locals die after the step returns
    assert estimate.totals["peak"] == peak
    assert estimate.peak_at == where
    # symmem holds 64 MiB of workspaces without biases; the long-lived process had 65.
    assert report.step_at(config).workspaces == 64 * 2**20
    assert estimate.totals["max_memory_allocated"] + (mib - 64) * 2**20 == allocated


def test_plain_loop_reproduces_the_notebook_configs_h200_peak():
    # docs/cuda.md, "Where the peak of a step lands": the live-tensor peak 3,983,131,212 B.
    report = build_report("cuda", gpu="h200", loop="plain")
    estimate = report.at(Config.notebook().with_(dropout=False))
    assert estimate.totals["peak"] == 3_983_131_212
    assert estimate.peak_at == ("backward", "NllLossBackward0 (GPT.forward)")


def test_cli_loop(capsys):
    from symmem.cli import main

    argv = ["estimate", "--platform", "cpu", "--B", "2", "--S", "17", "--D", "30", "--NH", "5"]
    argv += ["--V", "50", "--L", "2", "--json"]
    assert main([*argv, "--loop", "plain"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert [p["phase"] for p in plain["step"]["phases"]] == list(LOOPS["plain"].phases)
    assert plain["loop"] == "plain"
    assert (plain["grad_accum"], plain["amp_dtype"], plain["ddp"]) == (1, "bf16", 1)
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["loop"] == "nanogpt"
    with pytest.raises(SystemExit) as info:
        main([*argv, "--loop", "jax"])
    assert info.value.code == 2


@needs_torch
@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize(("grad_accum", "optimizer"), [(2, "forloop"), (3, "foreach")])
def test_gradient_accumulation_equals_measurement_on_cpu(config, grad_accum, optimizer):
    from symmem.validate.timeline import measure_timeline

    report = build_report("cpu", "default", optimizer, grad_accum=grad_accum)
    estimate = report.at(config)
    timeline = measure_timeline(config, optimizer=optimizer, grad_accum=grad_accum)
    measured = [(p.name, p.start, p.peak, p.end) for p in timeline.phases]
    assert _phases(estimate) == measured
    assert estimate.totals["peak"] == timeline.peak
    # A later micro-step starts with the first one's gradients alive.
    phases = {name: (start, end) for name, start, end, _ in estimate.timeline}
    assert phases["forward k"][0] == phases["forward"][0] + estimate.totals["grads"]
    assert phases["backward k"][1] == phases["backward"][1]  # added in place, then let go


@pytest.mark.slow
def test_gradient_accumulation_phases_and_k():
    one = build_report("cpu", grad_accum=1)
    assert one is build_report("cpu")  # K = 1 is today's step
    two = build_report("cpu", grad_accum=2)
    forty = build_report("cpu", grad_accum=40)
    assert forty.grad_accum == 40
    assert tuple(forty.phases) == LOOPS["nanogpt"].phases_for(40)
    config = CONFIGS[1]
    # Micro-steps 2 to K are alike: K only names how many there are.
    assert forty.at(config).totals == two.at(config).totals
    assert two.at(config).totals["peak"] > one.at(config).totals["peak"]


@pytest.mark.parametrize(
    ("grad_accum", "loop", "message"),
    [
        (0, "nanogpt", "whole number >= 1, not 0"),
        (-2, "nanogpt", "whole number >= 1, not -2"),
        (2.0, "nanogpt", "whole number >= 1, not 2.0"),
        (2, "plain", "does not apply to the plain loop"),
    ],
)
def test_bad_gradient_accumulation(grad_accum, loop, message):
    with pytest.raises(ConfigError, match=message):
        build_report("cpu", loop=loop, grad_accum=grad_accum)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--grad-accum", "0"], "--grad-accum must be a whole number >= 1, not 0"),
        (["--grad-accum", "2", "--loop", "plain"], "does not apply to the plain loop"),
    ],
)
def test_cli_bad_gradient_accumulation(capsys, flags, message):
    from symmem.cli import main

    assert main(["estimate", "--platform", "cpu", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@needs_torch
@pytest.mark.parametrize("loop", ["nanogpt", "plain"])
def test_wrapped_number_at_the_forloop_step_peak(loop):
    # Few tokens, wide layers: the peak falls in the for-loop AdamW step, where
    # ``exp_avg_sq.sqrt() / bias_correction2_sqrt`` wraps the float as an 8-byte float64 tensor
    # alive while div allocates; the CPU keeps it on the device.
    from symmem.validate.timeline import measure_timeline

    config = Config(B=1, S=5, D=132, NH=3, V=41, L=2)
    estimate = build_report("cpu", "default", "forloop", loop=loop).at(config)
    timeline = measure_timeline(config, optimizer="forloop", loop=loop)
    assert estimate.peak_at == ("step", "div (transformer.h.*.mlp.c_proj.weight)")
    assert timeline.peak_phase == "step" and timeline.phase("step").at == "div"
    assert estimate.totals["peak"] == timeline.peak
    # Beside a GPU the wrapped number is in host memory: the same step on CUDA has no 8 B.
    from symmem.platforms import get_platform

    assert get_platform("cuda").wrapped == "host" and get_platform("cpu").wrapped == "device"


FP16_CONFIGS = [
    Config(B=1, S=37, D=60, NH=4, V=97, L=2, amp=True, dropout=True, bias=True),
    Config(B=2, S=17, D=30, NH=5, V=50, L=2, amp=True),
    Config(B=3, S=33, D=48, NH=1, V=64, L=3, dropout=True),  # no AMP: no GradScaler
]


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("config", FP16_CONFIGS, ids=str)
@pytest.mark.parametrize(("grad_accum", "optimizer"), [(1, "forloop"), (2, "fused")])
def test_fp16_with_grad_scaler_equals_measurement_on_cpu(config, grad_accum, optimizer):
    from symmem.validate.timeline import measure_timeline

    report = build_report("cpu", "default", optimizer, grad_accum=grad_accum, amp_dtype="fp16")
    estimate = report.at(config)
    timeline = measure_timeline(
        config, optimizer=optimizer, grad_accum=grad_accum, amp_dtype="fp16"
    )
    measured = [(p.name, p.start, p.peak, p.end) for p in timeline.phases]
    assert _phases(estimate) == measured
    assert "unscale" in report.phases and "update" in report.phases
    bf16 = build_report("cpu", "default", optimizer, grad_accum=grad_accum).at(config)
    if config.amp:  # _scale and _growth_tracker, and the scaled loss through backward
        assert estimate.totals["peak"] > bf16.totals["peak"]
    else:
        assert estimate.totals == bf16.totals


@needs_torch
@pytest.mark.slow
def test_plain_loop_runs_fp16_without_a_scaler():
    from symmem.validate.timeline import measure_timeline

    config = FP16_CONFIGS[1]
    report = build_report("cpu", loop="plain", amp_dtype="fp16")
    assert tuple(report.phases) == LOOPS["plain"].phases
    timeline = measure_timeline(config, optimizer=report.optimizer, loop="plain", amp_dtype="fp16")
    assert _phases(report.at(config)) == [(p.name, p.start, p.peak, p.end) for p in timeline.phases]
    assert report.at(config).totals == build_report("cpu", loop="plain").at(config).totals


def test_bad_amp_dtype():
    with pytest.raises(ConfigError, match="--amp-dtype must be one of bf16, fp16, not 'fp8'"):
        build_report("cpu", amp_dtype="fp8")


@needs_torch
def test_a_ddp_run_that_does_not_end_where_it_started_is_measured_again(monkeypatch):
    """A free on gloo's thread, which the profiler cannot record, leaves bytes that seem alive:
    such a run is measured again, and five of them in a row are an error."""
    import sys

    import torch.multiprocessing.spawn  # noqa: F401  (the module; its package names the function)

    from symmem.validate.timeline import measure_ddp_timeline

    # Rows as rank 0 writes them: name, start, end, peak, at, scratch.
    good = [["forward", 100, 120, 150, "mm", 0], ["zero_grad", 120, 100, 120, "start", 0]]
    bad = [["forward", 100, 120, 150, "mm", 0], ["zero_grad", 120, 104, 120, "start", 0]]
    runs = [bad, bad, good]

    def fake_spawn(function, args, nprocs):
        with open(args[-1], "w", encoding="utf-8") as file:
            json.dump(runs.pop(0) if runs else bad, file)

    monkeypatch.setattr(sys.modules["torch.multiprocessing.spawn"], "spawn", fake_spawn)
    config = Config(B=2, S=17, D=30, NH=5, V=50, L=2)
    timeline = measure_ddp_timeline(config)
    assert [p.end for p in timeline.phases] == [120, 100] and runs == []
    with pytest.raises(RuntimeError, match="did not end with the bytes it started with in 5 runs"):
        measure_ddp_timeline(config)


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [
        Config(B=2, S=17, D=30, NH=5, V=50, L=2),  # one bucket
        Config(B=1, S=9, D=136, NH=4, V=301, L=3, bias=True),  # 2.7 MiB: several buckets
    ],
    ids=str,
)
def test_ddp_buckets_equal_measurement_with_gloo(config):
    from symmem.validate.timeline import measure_ddp_timeline

    timeline = measure_ddp_timeline(config, world=2)
    estimate = build_report("cpu", ddp=2).at(config)
    assert _phases(estimate) == [(p.name, p.start, p.peak, p.end) for p in timeline.phases]
    alone = build_report("cpu").at(config)
    assert estimate.totals["peak"] - alone.totals["peak"] == 4 * estimate.param_count


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ddp", "2", "--zero", "1", "--dp", "2"], "--ddp 2 cannot go with --zero 1"),
        (["--ddp", "0"], "--ddp must be a whole number >= 1, not 0"),
    ],
)
def test_cli_bad_ddp(capsys, flags, message):
    from symmem.cli import main

    assert main(["estimate", "--platform", "cpu", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
