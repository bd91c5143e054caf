"""An estimate as a table for the terminal, fitted to its width.

Every character of a formula is printed: where the table is wider than the terminal, formulas
are wrapped (at the spaces around their ``+`` and ``-``), never cut. Three layouts, the first
that fits ``width``: one line per row; the formula column wrapped in its place; and, narrower
still, each row stacked (its name and bytes on one line, its module, kind and formula below).
``width=None`` prints one line per row however long (``symmem estimate --wide``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from symmem.allocator import ALLOCATORS, check_allocator
from symmem.parallel import RankEstimate
from symmem.report import TOTALS, Estimate
from symmem.units import format_bytes

__all__ = ["estimate_table", "rank_table"]


def estimate_table(
    estimate: Estimate, *, allocator: str = "default", width: int | None = None
) -> str:
    """Every nonzero term with its module, formula and bytes, then the totals.

    ``allocator`` is the CUDA caching allocator's setting (:data:`symmem.allocator.ALLOCATORS`);
    ``width`` the characters a line may take (``None``: no limit).
    """
    check_allocator(allocator)
    config = estimate.config
    sizes = " ".join(f"{k}={v}" for k, v in config.sizes().items())
    switches = " ".join(
        f"{k}={'on' if getattr(config, k) else 'off'}" for k in config.architecture.switch_names
    )
    report = estimate.report
    lines = _wrapped(
        [
            f"symmem estimate: {sizes}  {switches}",
            f"platform {report.platform.where}, attention {estimate.kernel}"
            + (f" (from {report.attention!r})" if report.attention != estimate.kernel else "")
            + f", {report.optimizer} AdamW, {report.loop.name} loop"
            + (f" of {report.grad_accum} micro-steps" if report.grad_accum > 1 else "")
            + (", fp16 autocast" if report.amp_dtype == "fp16" and config.amp else "")
            + (f", DDP over {report.ddp}" if report.ddp > 1 else ""),
            f"kernel: {report.kernel_reason(config)}",
            f"parameters: {estimate.param_count:,}",
        ],
        width,
    )
    lines.append("")
    rows = [("term", "module", "kind", "in", "formula (whole model)", "bytes", "")]
    # Stacked (narrow terminals), "in" is said for host tensors only.
    for term, nbytes in estimate.terms():
        rows.append(
            (
                term.name,
                term.module,
                term.kind,
                term.location,
                term.formula_text,
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
    lines += _layout(rows, text_columns=5, width=width, unstated=("device",))
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


def rank_table(estimate: RankEstimate, *, width: int | None = None) -> str:
    """One rank of a layout: every term's share, how it splits, its formula and bytes, in lines
    of at most ``width`` characters where they fit (``None``: no limit)."""
    ranks = estimate.ranks
    layout = ranks.layout
    config = estimate.config
    sizes = " ".join(f"{k}={v}" for k, v in config.sizes().items())
    lines = _wrapped(
        [
            f"symmem estimate, per rank: {sizes}  "
            + " ".join(
                f"{k}={'on' if getattr(config, k) else 'off'}"
                for k in config.architecture.switch_names
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
        ],
        width,
    )
    lines.append("")
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
    lines += _layout(rows, text_columns=5, width=width)
    return "\n".join(lines)


#: The narrowest formula column worth wrapping in place; below it, rows are stacked.
MIN_FORMULA_WIDTH = 30
_GAP = "  "
_INDENT = "  "


def _layout(
    rows: Sequence[tuple[str, ...]],
    *,
    text_columns: int,
    width: int | None,
    unstated: Sequence[str] = (),
) -> list[str]:
    """Rows (the header first) in the first layout that fits ``width``: one line per row, the
    formula column (the last text column) wrapped, or each row stacked (where cells equal to
    one of ``unstated``, the usual value of their column, are left out).

    Text columns are left-aligned, the others (bytes) right-aligned. An empty row is a gap.
    """
    count = len(rows[0])
    widths = [max(len(r[i]) for r in rows) for i in range(count)]
    formula = text_columns - 1
    if width is None or sum(widths) + len(_GAP) * (count - 1) <= width:
        return [_line(row, widths, text_columns) for row in rows]
    room = width - (sum(widths) - widths[formula]) - len(_GAP) * (count - 1)
    if room >= MIN_FORMULA_WIDTH:
        widths[formula] = room
        lines = []
        for row in rows:
            first, *rest = _wrap(row[formula], room) or [""]
            lines.append(_line((*row[:formula], first, *row[formula + 1 :]), widths, text_columns))
            blank = ("",) * count
            lines += [_line((*blank[:formula], part), widths, text_columns) for part in rest]
        return lines
    return _stacked(rows, text_columns=text_columns, width=width, unstated=unstated)


def _stacked(
    rows: Sequence[tuple[str, ...]], *, text_columns: int, width: int, unstated: Sequence[str]
) -> list[str]:
    """Each row as a name and its numbers on one line, then, indented, its other text cells
    (but those in ``unstated``) joined by commas and its formula after a colon, wrapped at
    ``width``."""
    numbers = [row[text_columns:] for row in rows]
    number_widths = [max(len(r[i]) for r in numbers) for i in range(len(numbers[0]))]
    right_width = sum(number_widths) + len(_GAP) * (len(number_widths) - 1)
    lines = []
    for row, values in zip(rows, numbers, strict=True):
        if not any(row):
            lines.append("")
            continue
        right = _GAP.join(v.rjust(w) for v, w in zip(values, number_widths, strict=True))
        name = row[0]
        if len(name) + len(_GAP) + right_width <= width:
            lines.append((name.ljust(width - right_width) + right).rstrip())
        else:  # a name too long to share its line
            lines += [*_wrap(name, width), right.rjust(width).rstrip()]
        details = ", ".join(c for c in row[1 : text_columns - 1] if c and c not in unstated)
        formula = row[text_columns - 1]
        text = f"{details}: {formula}" if details and formula else details or formula
        if text:
            lines += _wrap(text, width, indent=_INDENT)
    return lines


def _line(row: Sequence[str], widths: Sequence[int], text_columns: int) -> str:
    return _GAP.join(
        c.ljust(w) if i < text_columns else c.rjust(w)
        for i, (c, w) in enumerate(zip(row, widths, strict=False))
    ).rstrip()


def _wrap(text: str, width: int, *, indent: str = "") -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken at spaces only (a longer word
    runs past); the first line indented by ``indent``, the others by two more spaces."""
    return textwrap.wrap(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _wrapped(lines: Sequence[str], width: int | None) -> list[str]:
    """Header lines, each wrapped at ``width`` (left alone without one)."""
    if width is None:
        return list(lines)
    return [part for line in lines for part in _wrap(line, width) or [""]]
