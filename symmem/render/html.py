"""An estimate as an HTML table, for Jupyter: every term, its formula and its bytes.

Bytes are exact, with the human reading (binary units) beside them. Formulas are plain text
(``B*S*D*(4 - 2*AMP)``) so that the table reads the same wherever the HTML is shown; the LaTeX
lives in :mod:`symmem.render.latex`.

>>> from symmem import Config, build_report
>>> import re
>>> lines = estimate_html(build_report("cuda").at(Config.notebook())).splitlines()
>>> re.findall("<td[^>]*>(.*?)</td>", lines[4])
['idx', 'GPT.forward', 'inputs', '<code>8*B*S</code>', '196,608', '192.00 KiB']
"""

from __future__ import annotations

from html import escape

from symmem.report import Estimate
from symmem.units import format_bytes

__all__ = ["estimate_html"]

_STYLE = "text-align: right; font-variant-numeric: tabular-nums"


def estimate_html(estimate: Estimate) -> str:
    """A ``<table>`` of the nonzero terms of ``estimate``, then its totals in the footer."""
    config, report = estimate.config, estimate.report
    sizes = ", ".join(f"{k}={v:,}" for k, v in config.sizes().items())
    switches = ", ".join(
        f"{name}={'on' if getattr(config, name) else 'off'}"
        for name in config.architecture.switch_names
    )
    kernel = estimate.kernel
    requested = "" if report.attention == kernel else f" (requested: {report.attention})"
    caption = (
        f"symmem estimate: {sizes}; {switches}; {report.platform.where}, attention "
        f"{kernel}{requested}; {estimate.param_count:,} parameters"
    )
    head = ("term", "module", "kind", "formula (whole model)", "bytes", "")
    rows = []
    for term, nbytes in estimate.terms():
        where = "" if term.location == "device" else f" [{term.location}]"
        rows.append(_row((term.name + where, term.module, term.kind, term.formula_text), nbytes))
    foot = [
        _row(
            (
                f"total: {key}",
                "",
                "",
                estimate.formula_text(key),
            ),
            value,
        )
        for key, value in estimate.totals.items()
    ]
    return "\n".join(
        [
            '<table class="symmem-estimate">',
            f"<caption>{escape(caption)}</caption>",
            "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead>",
            "<tbody>",
            *rows,
            "</tbody>",
            "<tfoot>",
            *foot,
            "</tfoot>",
            "</table>",
        ]
    )


def _row(cells: tuple[str, str, str, str], nbytes: int) -> str:
    name, module, kind, formula = (escape(c) for c in cells)
    return (
        f"<tr><td>{name}</td><td>{module}</td><td>{kind}</td><td><code>{formula}</code></td>"
        f'<td style="{_STYLE}">{nbytes:,}</td>'
        f'<td style="{_STYLE}">{escape(format_bytes(nbytes))}</td></tr>'
    )
