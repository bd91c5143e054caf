"""``symmem validate``: estimate, measure, compare, print."""

from __future__ import annotations

import json
import sys
import warnings

from symmem.config import Config
from symmem.errors import MeasurementError, SymmemError
from symmem.render.json import estimate_dict
from symmem.report import Estimate, build_report
from symmem.units import format_bytes
from symmem.validate.compare import compare

__all__ = ["MEASURED_ON", "check_size", "run_validation"]

#: The torch version each platform's rules were measured on.
MEASURED_ON = {"cpu": "2.13.0", "cuda": "2.11.0"}


def _free_bytes(device: str) -> int:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise MeasurementError("--device cuda: this torch build sees no CUDA device")
        free, _ = torch.cuda.mem_get_info()
        return int(free)
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise MeasurementError("cannot read the free memory from /proc/meminfo; pass --max-bytes")


def check_size(estimate: Estimate, device: str, max_bytes: int | None) -> None:
    """Refuse a config whose estimate does not fit in ``max_bytes`` (default: half the free
    memory, leaving room for the temporaries of the loss and the backward pass)."""
    limit = max_bytes if max_bytes is not None else _free_bytes(device) // 2
    needed = estimate.totals["total"] + estimate.totals["host"]
    if needed > limit:
        raise MeasurementError(
            f"this config needs about {needed:,} bytes ({format_bytes(needed)}) by symmem's "
            f"estimate, more than the {limit:,} bytes ({format_bytes(limit)}) allowed; "
            "choose smaller sizes or pass --max-bytes"
        )


def check_torch_version(platform: str) -> str | None:
    """A warning when torch is not the version the platform's rules were measured on."""
    import torch

    expected = MEASURED_ON[platform]
    if torch.__version__.split("+")[0] != expected:
        return (
            f"torch {torch.__version__} is installed; symmem's {platform} rules were measured "
            f"on torch {expected}"
        )
    return None


def run_validation(
    config: Config,
    *,
    device: str,
    platform: str | None,
    attention: str,
    as_json: bool,
    max_bytes: int | None,
    optimizer: str = "default",
    timeline: bool = False,
    checkpoint: str = "none",
    plot: str | None = None,
    loop: str | None = None,
) -> int:
    """Print prediction and measurement side by side; 0 on a full match, 1 otherwise.

    ``checkpoint`` is the activation checkpointing of both the model and the measured nanoGPT;
    ``plot`` a file to draw the comparison in (:func:`symmem.plot.validation_plot`), checked
    before anything runs; ``loop`` the training loop measured (``None``: the architecture's).
    """
    platform = platform or device
    if platform != device:
        raise SymmemError(
            f"--platform {platform} rules cannot be checked on --device {device}: use the same"
        )
    report = build_report(
        platform, attention, optimizer, checkpoint=checkpoint, model=config.model, loop=loop
    )
    estimate = report.at(config)
    check_size(estimate, device, max_bytes)
    if plot is not None:
        from symmem.plot import figure_file, save_figure, validation_plot

        figure, target = figure_file(plot)
    warning = check_torch_version(platform)
    if warning:
        print(f"symmem: warning: {warning}", file=sys.stderr)
    from symmem.validate.measure import measure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        measurement = measure(
            config,
            device=device,
            attention=attention,
            optimizer=report.optimizer,
            checkpoint=checkpoint,
            loop=report.loop.name,
        )
    comparison = compare(estimate, measurement)
    if plot is not None:
        what = f"{platform}, attention {estimate.kernel}, torch {measurement.torch_version}"
        save_figure(validation_plot(comparison, title=what, figure=figure), target)
    if as_json:
        measured = measurement.as_dict()
        print(
            json.dumps(
                {
                    **comparison.as_dict(),
                    "predicted": estimate_dict(estimate),
                    "measured": measured,
                    **({"plot": str(target)} if plot is not None else {}),
                },
                indent=2,
            )
        )
    else:
        print(
            f"symmem validate: {platform}, attention {estimate.kernel}, torch "
            f"{measurement.torch_version}"
        )
        print(comparison.table())
        print(
            "MATCH: every term and total equal"
            if comparison.match
            else f"DIFFERS in {len(comparison.differences())} rows"
        )
        if plot is not None:
            print(f"plot: {target}")
        if timeline and measurement.timeline is not None:
            phase, at = estimate.peak_at
            print(f"\npredicted peak: {phase}, after {at}")
            print("measured, phase by phase:")
            for p in measurement.timeline.phases:
                print(
                    f"  {p.name:<10} start {p.start:>14,}  end {p.end:>14,}"
                    f"  peak {p.peak:>14,} ({format_bytes(p.peak)}) at {p.at}"
                )
    return 0 if comparison.match else 1
