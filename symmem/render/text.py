"""An estimate as a table for the terminal."""

from __future__ import annotations

from symmem.allocator import ALLOCATORS, check_allocator
from symmem.report import TOTALS, Estimate
from symmem.units import format_bytes

__all__ = ["estimate_table"]


def estimate_table(estimate: Estimate, *, allocator: str = "default") -> str:
    """Every nonzero term with its module, formula and bytes, then the totals.

    ``allocator`` is the CUDA caching allocator's setting (:data:`symmem.allocator.ALLOCATORS`).
    """
    check_allocator(allocator)
    config = estimate.config
    sizes = " ".join(f"{k}={v}" for k, v in config.sizes().items())
    switches = " ".join(
        f"{k}={'on' if config.as_dict()[k] else 'off'}" for k in ("amp", "dropout", "bias")
    )
    report = estimate.report
    lines = [
        f"symmem estimate: {sizes}  {switches}",
        f"platform {report.platform.where}, attention {estimate.kernel}"
        + (f" (from {report.attention!r})" if report.attention != estimate.kernel else "")
        + f", {report.optimizer} AdamW",
        f"kernel: {report.kernel_reason(config)}",
        f"parameters: {estimate.param_count:,}",
        "",
    ]
    rows = [("term", "module", "kind", "in", "formula (whole model)", "bytes", "")]
    for term, nbytes in estimate.terms():
        rows.append(
            (
                term.name,
                term.module,
                term.kind,
                term.location,
                str(term.formula),
                f"{nbytes:,}",
                format_bytes(nbytes),
            )
        )
    rows.append(("",) * 7)
    phase, at = estimate.peak_at
    notes = {
        "peak": f"at {phase}: {at}",
        "max_memory_allocated": (
            f"{allocator} allocator: {ALLOCATORS[allocator]}"
            if report.platform.caching_allocator
            else "the peak (no caching allocator on this platform)"
        ),
    }
    for key in TOTALS:
        value = estimate.totals[key]
        formula = notes.get(key) or str(report.totals[key])
        rows.append((f"total: {key}", "", "", "", formula, f"{value:,}", format_bytes(value)))
    # Long formulas run past their column rather than being cut: every character is exact.
    widths = [max(len(r[i]) for r in rows) for i in range(4)] + [
        min(max(len(r[4]) for r in rows), 60),
        max(len(r[5]) for r in rows),
        max(len(r[6]) for r in rows),
    ]
    for row in rows:
        cells = [
            c.ljust(w) if i < 5 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines += ["", "live memory through a training step (device):"]
    steps: list[tuple[str, str, str, str]] = [("phase", "start", "peak", "end")] + [
        (name, format_bytes(start), format_bytes(peak), format_bytes(end))
        for name, start, end, peak in estimate.timeline
    ]
    step_widths = [max(len(r[i]) for r in steps) for i in range(4)]
    for step in steps:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(step, step_widths, strict=True))
            )
        )
    return "\n".join(lines)
