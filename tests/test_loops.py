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
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["loop"] == "nanogpt"
    with pytest.raises(SystemExit) as info:
        main([*argv, "--loop", "jax"])
    assert info.value.code == 2
