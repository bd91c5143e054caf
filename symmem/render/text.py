"""An estimate as a table for the terminal."""

from __future__ import annotations

from symmem.report import TOTALS, Estimate
from symmem.units import format_bytes

__all__ = ["estimate_table"]


def estimate_table(estimate: Estimate) -> str:
    """Every nonzero term with its module, formula and bytes, then the totals."""
    config = estimate.config
    sizes = " ".join(f"{k}={v}" for k, v in config.sizes().items())
    switches = " ".join(
        f"{k}={'on' if config.as_dict()[k] else 'off'}" for k in ("amp", "dropout", "bias")
    )
    report = estimate.report
    lines = [
        f"symmem estimate: {sizes}  {switches}",
        f"platform {report.platform.name}, attention {estimate.kernel}"
        + (f" (from {report.attention!r})" if report.attention != estimate.kernel else ""),
        f"parameters: {estimate.param_count:,}",
        "",
    ]
    rows = [("term", "module", "kind", "formula (whole model)", "bytes", "")]
    for term, nbytes in estimate.terms():
        where = "" if term.location == "device" else f" [{term.location}]"
        rows.append(
            (
                term.name + where,
                term.module,
                term.kind,
                str(term.formula),
                f"{nbytes:,}",
                format_bytes(nbytes),
            )
        )
    rows.append(("", "", "", "", "", ""))
    for key in TOTALS:
        value = estimate.totals[key]
        rows.append(
            (f"total: {key}", "", "", str(report.totals[key]), f"{value:,}", format_bytes(value))
        )
    widths = [
        min(max(len(r[i]) for r in rows), cap) for i, cap in enumerate((60, 34, 11, 70, 18, 12))
    ]
    for row in rows:
        cells = [
            c.ljust(w) if i < 4 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
