"""The HTML table an estimate shows in Jupyter: every nonzero term and every total, exact."""

from __future__ import annotations

from html.parser import HTMLParser

from symmem import Config, build_report
from symmem.render.html import estimate_html
from symmem.units import format_bytes


class _Cells(HTMLParser):
    """The text of every cell, row by row, and the caption."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.caption = ""
        self._where: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
            self._where = "cell"
        elif tag == "caption":
            self._where = "caption"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th", "caption"):
            self._where = None

    def handle_data(self, data: str) -> None:
        if self._where == "cell":
            self.rows[-1][-1] += data
        elif self._where == "caption":
            self.caption += data


def test_estimate_html_lists_every_term_and_total():
    estimate = build_report("cpu").at(Config(B=3, S=40, D=64, NH=4, V=101, L=2, bias=True))
    parser = _Cells()
    parser.feed(estimate_html(estimate))
    header, *rows = parser.rows
    assert header == ["term", "module", "kind", "formula (whole model)", "bytes", ""]
    terms = list(estimate.terms())
    assert len(rows) == len(terms) + len(estimate.totals)
    for row, (term, nbytes) in zip(rows[: len(terms)], terms, strict=True):
        assert row == [
            term.name,
            term.module,
            term.kind,
            str(term.formula),
            f"{nbytes:,}",
            format_bytes(nbytes),
        ]
    for row, (key, value) in zip(rows[len(terms) :], estimate.totals.items(), strict=True):
        assert row == [
            f"total: {key}",
            "",
            "",
            str(estimate.formula(key)),
            f"{value:,}",
            format_bytes(value),
        ]
    assert parser.caption == (
        "symmem estimate: B=3, S=40, D=64, NH=4, V=101, L=2; amp=off, dropout=off, bias=on; "
        f"cpu, attention flash (requested: default); {estimate.param_count:,} parameters"
    )


def test_estimate_html_marks_host_terms():
    estimate = build_report("cuda").at(Config.notebook())
    html = estimate_html(estimate)
    assert "<td>ScaledDotProductEfficientAttentionBackward0-philox_seed [host]</td>" in html
    assert "<code>B*S*V*(2*AMP + 4) + 4</code>" in html
    assert html.startswith('<table class="symmem-estimate">') and html.endswith("</table>")
