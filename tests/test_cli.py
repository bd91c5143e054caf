from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from symmem import Config, build_report
from symmem.cli import main
from tests.conftest import needs_torch

SMALL = ["--B", "2", "--S", "17", "--D", "24", "--NH", "3", "--V", "50", "--L", "2"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_default_estimate_is_the_notebook_config(capsys):
    status, out, _ = run(capsys, "estimate", "--json")
    assert status == 0
    data = json.loads(out)
    assert set(data) >= {"config", "platform", "attention", "param_count", "terms", "totals"}
    assert data["config"] == Config.notebook().as_dict()
    assert (data["platform"], data["attention"]) == ("cuda", "efficient")
    expected = build_report("cuda").at(Config.notebook())
    assert data["totals"] == dict(expected.totals)
    assert set(data["totals"]) >= {
        "block",
        "activations",
        "loss",
        "inputs",
        "logits",
        "params",
        "grads",
        "optimizer",
        "total",
    }
    term = data["terms"][0]
    assert set(term) >= {"name", "module", "kind", "per_layer", "formula", "bytes"}
    # Terms add up to the totals; per-layer terms are whole-model bytes.
    for kind in ("activations", "loss", "inputs", "logits", "params", "grads", "optimizer"):
        assert (
            sum(
                t["bytes"] for t in data["terms"] if t["kind"] == kind and t["location"] == "device"
            )
            == data["totals"][kind]
        )
    total = sum(
        data["totals"][k]
        for k in ("activations", "loss", "inputs", "logits", "params", "grads", "optimizer")
    )
    assert data["totals"]["total"] == total


def test_size_flags_turn_switches_off_unless_asked(capsys):
    status, out, _ = run(capsys, "estimate", *SMALL, "--json")
    assert status == 0
    assert json.loads(out)["config"] | {} == {
        "model": "nanogpt",
        **dict(zip(["B", "S", "D", "NH", "V", "L"], [2, 17, 24, 3, 50, 2], strict=True)),
        "amp": False,
        "dropout": False,
        "bias": False,
    }
    status, out, _ = run(capsys, "estimate", *SMALL, "--amp", "--bias", "--json")
    assert json.loads(out)["config"]["amp"] is True


def test_text_table_lists_terms_and_totals(capsys):
    status, out, _ = run(capsys, "estimate", *SMALL, "--platform", "cpu", "--dropout")
    assert status == 0
    assert "NativeLayerNormBackward0-input" in out and "total: peak" in out
    assert "live memory through a training step" in out
    assert "attention math (from 'default')" in out
    assert "total: activations" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--B", "0"], "B must be positive, got 0"),
        (["--L", "-2"], "L must be positive, got -2"),
        (["--D", "10", "--NH", "3"], "D=10 is not divisible by NH=3"),
        (
            ["--platform", "cpu", "--attention", "efficient"],
            "attention kernel 'efficient' is not available on cpu (allowed: default, flash, math)",
        ),
        (["--attention", "flash", "--no-amp"], "flash attention needs 16-bit inputs"),
        (["--platform", "cpu", "--attention", "flash"], "flash attention cannot apply dropout"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(capsys, argv, message):
    status, out, err = run(capsys, "estimate", *argv)
    assert status == 2
    assert message in err and "Traceback" not in err and out == ""


@pytest.mark.parametrize("argv", [["--B", "2.5"], ["--platform", "tpu"], ["--attention", "fast"]])
def test_argparse_rejections_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        main(["estimate", *argv])
    assert info.value.code == 2


def test_validate_without_torch_says_how_to_install(capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    status, _, err = run(capsys, "validate", *SMALL)
    assert status == 2
    assert "pip install 'symmem[torch]'" in err


@needs_torch
def test_validate_small_config_matches(capsys):
    status, out, _ = run(capsys, "validate", *SMALL, "--amp", "--dropout", "--bias", "--json")
    assert status == 0
    data = json.loads(out)
    assert data["match"] is True and data["differences"] == []
    assert data["measured"]["totals"] == data["predicted"]["totals"]
    assert data["measured"]["param_count"] == data["predicted"]["param_count"]


@needs_torch
def test_validate_text_marks_nothing_when_all_match(capsys):
    status, out, _ = run(capsys, "validate", *SMALL, "--attention", "math")
    assert status == 0
    assert "MATCH" in out and "<-- differs" not in out


@needs_torch
def test_validate_refuses_a_config_too_large_to_run(capsys):
    status, _, err = run(capsys, "validate", "--platform", "cpu", "--max-bytes", "1000000")
    assert status == 2
    assert "needs about" in err and "--max-bytes" in err


@pytest.mark.parametrize("module", ["symmem", "symmem.cli"])
def test_console_script_runs_as_a_module(module):
    result = subprocess.run(
        [sys.executable, "-m", module, "estimate", *SMALL],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "total: total" in result.stdout
    # Bad input: one line on stderr, exit status 2, as from the script.
    result = subprocess.run(
        [sys.executable, "-m", module, "estimate", "--B", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "symmem: error: B must be positive, got 0\n"


def test_solve_json(capsys):
    status, out, _ = run(
        capsys,
        "solve",
        "--for",
        "B",
        "--budget",
        "80GiB",
        "--D",
        "1600",
        "--NH",
        "25",
        "--L",
        "48",
        "--V",
        "50257",
        "--S",
        "1024",
        "--amp",
        "--json",
    )
    assert status == 0
    data = json.loads(out)
    assert set(data) >= {
        "symbol",
        "value",
        "budget_bytes",
        "bytes_at_value",
        "bytes_at_next",
        "closed_form",
    }
    assert data["symbol"] == "B" and data["budget_bytes"] == 80 * 2**30
    assert data["bytes_at_value"] <= data["budget_bytes"] < data["bytes_at_next"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--for", "B", "--budget", "1MB"], "nothing fits"),
        (["--for", "B", "--budget=-5GB"], "cannot read a byte count"),
        (["--for", "B", "--budget", "1GB", "--B", "3"], "--B is the symbol solved for"),
        (["--for", "S", "--budget", "1GB", "--quantity", "nope"], "unknown quantity"),
    ],
)
def test_solve_bad_input_exits_2(capsys, argv, message):
    status, _, err = run(capsys, "solve", *argv)
    assert status == 2 and message in err


@needs_torch
def test_validate_warns_about_another_torch_version(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "__version__", "2.99.0+cpu")
    status, _, err = run(capsys, "validate", *SMALL)
    assert status == 0
    assert "torch 2.99.0+cpu is installed; symmem's cpu rules were measured on torch 2.13.0" in err


@needs_torch
def test_validate_exits_1_and_marks_a_difference(capsys, monkeypatch):
    from dataclasses import replace

    import symmem.validate.measure as measure_module

    real = measure_module.measure

    def off_by_one(*args, **kwargs):
        measurement = real(*args, **kwargs)
        first, *rest = measurement.terms
        return replace(measurement, terms=(replace(first, nbytes=first.nbytes + 1), *rest))

    monkeypatch.setattr(measure_module, "measure", off_by_one)
    status, out, _ = run(capsys, "validate", *SMALL)
    assert status == 1
    assert "<-- differs" in out and "DIFFERS in 1 rows" in out


# -- GPU presets (--gpu) ------------------------------------------------------------------------


def test_gpu_default_estimate_equals_the_kernel_it_picks(capsys):
    # h200 (sm90) under AMP without dropout: cuDNN first (check_prefer_cudnn_attention).
    flags = ("--amp", "--no-dropout", "--json")
    status, out, _ = run(capsys, "estimate", "--gpu", "h200", *flags)
    assert status == 0
    data = json.loads(out)
    assert (data["platform"], data["gpu"], data["attention"]) == ("cuda", "h200", "cudnn")
    assert data["attention_requested"] == "default"
    assert data["kernel_reason"].startswith("h200 is sm90, where PyTorch tries cudnn, flash")
    status, out, _ = run(capsys, "estimate", "--attention", "cudnn", *flags)
    explicit = json.loads(out)
    assert explicit["gpu"] is None and explicit["kernel_reason"] == "cudnn was asked for"
    assert data["totals"] == explicit["totals"]
    # Formulas differ (the cudnn report fixes AMP = 1); bytes do not.
    assert [(t["name"], t["module"], t["bytes"]) for t in data["terms"]] == [
        (t["name"], t["module"], t["bytes"]) for t in explicit["terms"]
    ]


def test_gpu_text_names_the_kernel_and_why(capsys):
    status, out, _ = run(capsys, "estimate", "--gpu", "a100-80gb")
    assert status == 0
    assert "platform cuda (a100-80gb, sm80), attention flash (from 'default')" in out
    assert "kernel: a100-80gb is sm80, where PyTorch tries flash, efficient, math, cudnn" in out


def test_solve_budget_from_a_gpu(capsys):
    sizes = ("--S", "1024", "--D", "768", "--NH", "12", "--V", "50257", "--L", "12", "--amp")
    status, out, _ = run(capsys, "solve", "--for", "B", "--gpu", "h100-80gb", *sizes, "--json")
    assert status == 0
    data = json.loads(out)
    assert data["budget_bytes"] == 85_045_477_376 - 2**30
    assert data["gpu"] == "h100-80gb" and data["attention"] == "cudnn"
    assert data["bytes_at_value"] <= data["budget_bytes"] < data["bytes_at_next"]
    status, out, _ = run(capsys, "solve", "--for", "B", "--gpu", "h100-80gb", *sizes)
    assert out.startswith(
        "budget: h100-80gb: 85,045,477,376 B (79.20 GiB) less 1,073,741,824 B (1.00 GiB) "
        "for the CUDA context\n"
    )
    # An explicit budget wins over the GPU's.
    argv = ("solve", "--for", "B", "--gpu", "h100-80gb", "--budget", "40GiB", *sizes, "--json")
    status, out, _ = run(capsys, *argv)
    assert json.loads(out)["budget_bytes"] == 40 * 2**30


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["estimate", "--gpu", "h300"],
            "symmem: error: unknown GPU 'h300' (allowed: a100-40gb, a100-80gb, h100-80gb, h200, "
            "l4, rtx-4090, rtx-3090, t4)",
        ),
        (
            ["estimate", "--gpu", "t4", "--attention", "flash"],
            "symmem: error: flash attention runs on sm80 to sm121 only "
            "(check_flash_attention_hardware_support), and t4 is sm75 "
            "(allowed on t4 in float16 autocast: default, efficient, math)",
        ),
        (
            ["estimate", "--gpu", "h200", "--attention", "cudnn", "--no-amp"],
            "symmem: error: cudnn attention needs 16-bit inputs: turn on AMP "
            "(allowed on h200 in fp32: default, efficient, math)",
        ),
        (
            ["estimate", "--platform", "cpu", "--gpu", "h200"],
            "symmem: error: --gpu h200 is a CUDA GPU: it cannot go with --platform cpu "
            "(leave --platform out, or give cuda)",
        ),
        (
            ["solve", "--for", "B"],
            "symmem: error: give a --budget, or a --gpu whose memory is the budget",
        ),
        (
            ["latex", "--gpu", "rtx-3090", "--attention", "flash", "--no-amp"],
            "symmem: error: flash attention needs 16-bit inputs: turn on AMP "
            "(allowed on rtx-3090 in fp32: default, efficient, math)",
        ),
    ],
)
def test_gpu_bad_input_exits_2(capsys, argv, message):
    status, _, err = run(capsys, *argv)
    # A report built for the first time says so on stderr (symmem.cache); the error is the rest.
    lines = [line for line in err.splitlines() if not line.startswith("symmem: buil")]
    assert (status, lines) == (2, [message])


@needs_torch
def test_validate_with_a_gpu_needs_the_cuda_device(capsys):
    status, _, err = run(capsys, "validate", *SMALL, "--gpu", "h200")
    assert status == 2 and "--platform cuda rules cannot be checked on --device cpu" in err


@needs_torch
@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing/plot.png", "cannot write {tmp}/missing/plot.png: no folder {tmp}/missing"),
        ("", "cannot write {tmp}: it is a folder"),
        ("plot.txt", "cannot write a plot to {tmp}/plot.txt: name a file ending in one of .avif"),
    ],
)
def test_validate_plot_bad_path_exits_2_before_measuring(
    capsys, monkeypatch, tmp_path, where, message
):
    import symmem.validate.measure as measure_module

    monkeypatch.setattr(measure_module, "measure", lambda *a, **k: pytest.fail("measured"))
    target = str(tmp_path / where) if where else str(tmp_path)
    status, out, err = run(capsys, "validate", *SMALL, "--plot", target)
    assert (status, out) == (2, "")
    assert err.startswith("symmem: error: " + message.format(tmp=tmp_path))
    assert err.count("\n") == 1


@needs_torch
def test_validate_plot_without_matplotlib_says_how_to_install(capsys, monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backend_bases"):
        monkeypatch.setitem(sys.modules, name, None)
    status, out, err = run(capsys, "validate", *SMALL, "--plot", str(tmp_path / "plot.png"))
    assert (status, out) == (2, "")
    assert err == "symmem: error: plots need matplotlib: pip install 'symmem[plot]'\n"
