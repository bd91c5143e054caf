"""The caching allocator's view: 512-byte blocks, cuBLAS workspaces, ``max_memory_allocated``."""

from __future__ import annotations

import json

import pytest
import sympy

from symmem import Config, build_report
from symmem.allocator import block_bytes, check_allocator, cublas_workspace, workspace_bytes
from symmem.cli import main
from symmem.errors import ConfigError
from symmem.gpus import get_gpu
from symmem.symbols import B, S

MiB = 2**20

# docs/cuda.md, "Where the peak of a step lands": the reference notebook's calc_all config,
# bf16, dropout 0, the default kernel (cuDNN on the H200), default allocator.
CALC_ALL = Config.notebook().with_(dropout=False)
CALC_ALL_MAX_MEMORY_ALLOCATED = 4_053_260_288
# The default allocator's excess over expandable segments seen at that scale (same source).
DEFAULT_ALLOCATOR_EXCESS = (1.3 * MiB, 7.3 * MiB)


@pytest.mark.parametrize(
    ("nbytes", "block"), [(0, 0), (1, 512), (4, 512), (512, 512), (513, 1024), (1025, 1536)]
)
def test_blocks_are_whole_multiples_of_512(nbytes: int, block: int) -> None:
    assert block_bytes(sympy.Integer(nbytes)) == block


def test_symbolic_blocks_evaluate_like_the_allocator() -> None:
    expr = block_bytes(2 * B * S)
    for b, s in [(1, 1), (1, 256), (3, 100), (7, 129)]:
        n = 2 * b * s
        assert expr.subs({B: b, S: s}) == -(-n // 512) * 512


def test_workspaces_follow_the_architecture() -> None:
    # Source: parseChosenWorkspaceSize, 32 MiB from compute capability 9.0, :4096:2:16:8 before.
    assert cublas_workspace(get_gpu("h200")) == 32 * MiB
    assert cublas_workspace(None) == 32 * MiB  # the cuda profile is the measured H200
    assert cublas_workspace(get_gpu("a100-80gb")) == 2 * 4096 * 1024 + 8 * 16 * 1024
    # Measured on the H200: 64 MiB, 65 MiB once a biased Linear ran cuBLASLt.
    assert workspace_bytes(get_gpu("h200"), cublaslt=False) == 64 * MiB
    assert workspace_bytes(get_gpu("h200"), cublaslt=True) == 65 * MiB


def test_calc_all_sits_below_the_default_allocators_figure_by_its_excess() -> None:
    estimate = build_report("cuda", gpu="h200").at(CALC_ALL)
    assert estimate.kernel == "cudnn"
    predicted = estimate.totals["max_memory_allocated"]
    low, high = DEFAULT_ALLOCATOR_EXCESS
    assert predicted + low <= CALC_ALL_MAX_MEMORY_ALLOCATED <= predicted + high


@pytest.mark.parametrize("bias", [False, True])
def test_allocator_peak_is_the_rounded_peak_plus_workspaces(bias: bool) -> None:
    report = build_report("cuda", gpu="h200")
    config = Config(B=3, S=100, D=64, NH=4, V=101, L=2, amp=True, dropout=True, bias=bias)
    estimate = report.at(config)
    workspaces = 64 * MiB + (MiB if bias else 0)
    # Rounding only adds; no tensor is counted twice or dropped.
    assert estimate.totals["max_memory_allocated"] >= estimate.totals["peak"] + workspaces
    # Every allocation rounds up by less than one block: bounded by the allocations alive.
    run = report.step_at(config)
    values = config.values()
    candidates = [int(c.xreplace(values)) for p in run.allocated for c, _ in p.candidates]
    assert max(candidates) == estimate.totals["max_memory_allocated"]


def test_cpu_has_no_caching_allocator() -> None:
    report = build_report("cpu")
    estimate = report.at(Config(B=2, S=16, D=32, NH=4, V=64, L=2))
    assert estimate.totals["max_memory_allocated"] == estimate.totals["peak"]
    assert report.steps[0].allocated == ()


def test_estimate_json_states_the_allocator(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--gpu", "h200", "--json", "--allocator", "expandable"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["allocator"]["name"] == "expandable"
    assert data["allocator"]["max_memory_allocated"].startswith("exact")
    assert data["totals"]["max_memory_allocated"] > data["totals"]["peak"]
    assert "ceiling" in data["formulas"]["max_memory_allocated"]
    assert main(["estimate", "--platform", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["allocator"] is None


def test_unknown_allocator_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["estimate", "--allocator", "cudaMallocAsync"])
    assert exit_info.value.code == 2
    assert "expandable" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="allowed: expandable, default"):
        check_allocator("native")


def test_solve_fits_the_allocators_figure_by_default() -> None:
    from symmem.solve import largest

    report = build_report("cuda", gpu="h100-80gb")
    config = Config(S=1024, D=768, NH=12, V=50257, L=12, amp=True)
    solution = largest(report, config, "B", "20GiB")
    assert solution.quantity == "max_memory_allocated"
    at = report.at(solution.config).totals
    assert solution.bytes_at_value == at["max_memory_allocated"] > at["peak"]
    peak_only = largest(report, config, "B", "20GiB", quantity="peak")
    assert peak_only.value >= solution.value
