"""One run that checks a platform's profile against PyTorch over a grid, kernel by kernel.

Made for a GPU (one run, well under 10 minutes on one device)::

    python -m symmem.validate.cuda_check --device cuda --out results/

and runnable on the CPU with ``--device cpu`` (the tests do, on a small grid). For every shape,
switch combination and attention kernel it estimates, measures one training step, compares term
by term, and records the result with ``torch.cuda.max_memory_allocated`` for the step. It writes
``results.jsonl`` (one line per case) and ``summary.md`` under ``--out``. With ``--timeline``,
set ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` to compare ``max_memory_allocated``
with symmem's exact prediction (the default allocator counts a little more).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform as host_platform
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from symmem.config import Config
from symmem.errors import KernelError
from symmem.platforms import get_platform
from symmem.report import build_report
from symmem.validate.compare import compare

__all__ = ["GRIDS", "main", "run_grid"]

#: Shapes per grid: odd lengths and head sizes, B = 1 and NH = 1, and the notebook's config.
GRIDS: dict[str, tuple[dict[str, int], ...]] = {
    "quick": (
        {"B": 2, "S": 40, "D": 64, "NH": 4, "V": 101, "L": 2},
        {"B": 1, "S": 33, "D": 48, "NH": 1, "V": 97, "L": 1},
    ),
    "full": (
        {"B": 2, "S": 40, "D": 64, "NH": 4, "V": 101, "L": 2},
        {"B": 1, "S": 129, "D": 96, "NH": 1, "V": 97, "L": 1},
        {"B": 3, "S": 1024, "D": 128, "NH": 2, "V": 1000, "L": 1},
        {"B": 24, "S": 1024, "D": 384, "NH": 4, "V": 8192, "L": 4},
    ),
}


def _cases(device: str, grid: str) -> Iterator[tuple[Config, str, str]]:
    """Every kernel with the default AdamW, and every AdamW with the default kernel."""
    platform = get_platform(device)
    choices = [(kernel, "default") for kernel in ("default", *platform.kernels)]
    choices += [("default", optimizer) for optimizer in platform.optimizers]
    for shape, (amp, dropout, bias), (kernel, optimizer) in itertools.product(
        GRIDS[grid], itertools.product((False, True), repeat=3), choices
    ):
        sizes: dict[str, Any] = dict(shape)
        yield Config(**sizes, amp=amp, dropout=dropout, bias=bias), kernel, optimizer


def run_grid(
    device: str, grid: str, out: Path, *, gpu: str | None = None, timeline: bool = False
) -> dict[str, Any]:
    """Run every case, write ``results.jsonl`` and ``summary.md``; return the summary counts.

    ``gpu`` names the preset whose rules predict ``default`` (:mod:`symmem.gpus`). With
    ``timeline`` each matching case also runs nanoGPT's training loop and records live memory
    phase by phase and ``max_memory_allocated`` over that step (data for the peak model).
    """
    import torch

    from symmem.validate.measure import measure
    from symmem.validate.timeline import measure_timeline

    out.mkdir(parents=True, exist_ok=True)
    results = []
    for config, kernel, optimizer in _cases(device, grid):
        case: dict[str, Any] = {
            "config": config.as_dict(),
            "attention": kernel,
            "optimizer": optimizer,
        }
        try:
            estimate = build_report(device, kernel, optimizer, gpu=gpu).at(config)
        except KernelError as error:
            case |= {"status": "refused", "reason": str(error)}
            results.append(case)
            continue
        started = time.perf_counter()
        try:
            measurement = measure(
                config, device=device, attention=kernel, optimizer=estimate.report.optimizer
            )
        except RuntimeError as error:  # a kernel torch cannot run here
            case |= {"status": "torch-error", "reason": str(error).splitlines()[0]}
            results.append(case)
            continue
        finally:
            if device == "cuda":
                torch.cuda.empty_cache()
        comparison = compare(estimate, measurement)
        case |= {
            "status": "match" if comparison.match else "differs",
            "kernel_predicted": estimate.kernel,
            "kernel_measured": measurement.extra["kernel"],
            "differences": comparison.as_dict()["differences"],
            "predicted_totals": dict(estimate.totals),
            "measured_totals": measurement.totals,
            "max_memory_allocated": measurement.peak_allocated,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if timeline and comparison.match:
            steps = measure_timeline(
                config, device=device, attention=kernel, optimizer=estimate.report.optimizer
            )
            case["timeline"] = [
                {"phase": p.name, "start": p.start, "end": p.end, "peak": p.peak, "at": p.at}
                for p in steps.phases
            ]
            case["timeline_max_memory_allocated"] = steps.max_memory_allocated
            case["predicted_max_memory_allocated"] = estimate.totals["max_memory_allocated"]
            if device == "cuda":
                torch.cuda.empty_cache()
        results.append(case)
    with open(out / "results.jsonl", "w", encoding="utf-8") as handle:
        for case in results:
            handle.write(json.dumps(case) + "\n")
    counts = {
        s: sum(r["status"] == s for r in results)
        for s in ("match", "differs", "refused", "torch-error")
    }
    header = {
        "device": torch.cuda.get_device_name()
        if device == "cuda"
        else f"CPU ({host_platform.machine()})",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": time.strftime("%Y-%m-%d"),
        # exact max_memory_allocated needs expandable_segments:True (symmem.allocator)
        "PYTORCH_CUDA_ALLOC_CONF": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
        **counts,
    }
    _write_summary(out / "summary.md", header, results)
    return header


def _write_summary(path: Path, header: dict[str, Any], results: Sequence[dict[str, Any]]) -> None:
    lines = [f"# {key}: {value}" for key, value in header.items()]
    lines += [
        "",
        "| config | attention | AdamW | status | kernel | max_memory_allocated | differences |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in results:
        c = case["config"]
        shape = " ".join(f"{k}={v}" for k, v in c.items())
        diffs = "; ".join(
            f"{d['name']} ({d['module']}): {d['predicted']} vs {d['measured']}"
            for d in case.get("differences", [])
        )
        kernel = f"{case.get('kernel_predicted', '')}/{case.get('kernel_measured', '')}"
        lines.append(
            f"| {shape} | {case['attention']} | {case['optimizer']} | {case['status']} | "
            f"{kernel} | {case.get('max_memory_allocated')} | {diffs or case.get('reason', '')} |"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--grid", choices=tuple(GRIDS), default="full")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gpu", default=None, help="GPU preset whose rules predict 'default'")
    parser.add_argument("--timeline", action="store_true", help="also record live memory by phase")
    args = parser.parse_args(argv)
    header = run_grid(args.device, args.grid, args.out, gpu=args.gpu, timeline=args.timeline)
    print(json.dumps(header))
    return 0 if header["differs"] == 0 and header["torch-error"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
