"""An estimate as a table for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

from symmem.allocator import ALLOCATORS, check_allocator
from symmem.parallel import RankEstimate
from symmem.report import TOTALS, Estimate
from symmem.units import format_bytes

__all__ = ["estimate_table", "rank_table"]


def estimate_table(estimate: Estimate, *, allocator: str = "default") -> str:
    """Every nonzero term with its module, formula and bytes, then the totals.

    ``allocator`` is the CUDA caching allocator's setting (:data:`symmem.allocator.ALLOCATORS`).
    """
    check_allocator(allocator)
    config = estimate.config
    sizes = " ".join(f"{k}={v}" for k, v in config.sizes().items())
    switches = " ".join(
        f"{k}={'on' if getattr(config, k) else 'off'}" for k in config.architecture.switch_names
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
    lines += _columns(rows, text_columns=5, wrap=60)
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


def rank_table(estimate: RankEstimate) -> str:
    """One rank of a layout: every term's share, how it splits, its formula and bytes."""
    ranks = estimate.ranks
    layout = ranks.layout
    config = estimate.config
    sizes = " ".join(f"{k}={v}" for k, v in config.sizes().items())
    lines = [
        f"symmem estimate, per rank: {sizes}  "
        + " ".join(
            f"{k}={'on' if getattr(config, k) else 'off'}" for k in config.architecture.switch_names
        ),
        f"layout: ZeRO {layout.zero}, dp={layout.dp}, tp={layout.tp}"
        f"{' with sequence parallelism' if layout.sp else ''}, pp={layout.pp} (first stage; "
        "derived from each method's documented semantics, not measured)",
        f"profile: {ranks.profile}"
        + (
            " (Korthikanti et al. 2022 per-layer activations, ZeRO's mixed-precision model "
            "states; embeddings, logits and loss not counted)"
            if ranks.profile == "paper"
            else ""
        )
        + f", checkpoint {ranks.checkpoint}",
        "",
    ]
    rows = [("term", "module", "kind", "split", "formula (per rank)", "bytes", "")]
    for rank, nbytes in zip(ranks.terms, estimate.term_bytes, strict=True):
        if nbytes:
            rows.append(
                (
                    rank.term.name,
                    rank.term.module,
                    rank.term.kind,
                    rank.split,
                    str(rank.formula),
                    f"{nbytes:,}",
                    format_bytes(nbytes),
                )
            )
    rows.append(("",) * 7)
    for key, value in estimate.totals.items():
        formula = str(ranks.totals[key])
        rows.append((f"total: {key}", "", "", "", formula, f"{value:,}", format_bytes(value)))
    lines += _columns(rows, text_columns=5, wrap=60)
    return "\n".join(lines)


def _columns(rows: Sequence[tuple[str, ...]], *, text_columns: int, wrap: int) -> list[str]:
    """Rows as aligned columns: text left, numbers right; the last text column's width is
    capped at ``wrap`` (longer cells run past it rather than being cut)."""
    count = len(rows[0])
    widths = [max(len(r[i]) for r in rows) for i in range(count)]
    widths[text_columns - 1] = min(widths[text_columns - 1], wrap)
    return [
        "  ".join(
            c.ljust(w) if i < text_columns else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
