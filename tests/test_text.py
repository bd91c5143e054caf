"""The text table fits the terminal: formulas wrapped, never cut; ``--wide`` for one line each."""

from __future__ import annotations

import re

import pytest

from symmem import Config, build_report
from symmem.cli import main
from symmem.parallel import Layout, per_rank
from symmem.render.text import MIN_FORMULA_WIDTH, estimate_table, rank_table
from symmem.units import format_bytes

GPT2 = Config(B=8, S=1024, D=768, NH=12, V=50257, L=12, amp=True, dropout=True, bias=True)


# The bytes and their reading at the end of a row's first line.
NUMBERS = re.compile(r"\s+[0-9,]+\s+[0-9.e+]+ [KMGTPEZY]?i?B$")


def _squeezed(text: str) -> str:
    """``text`` without its byte columns and without white space: what is left of a wrapped
    formula is the formula."""
    return "".join("".join(NUMBERS.sub("", line).split()) for line in text.splitlines())


@pytest.fixture(scope="module")
def estimate():
    return build_report("cuda").at(GPT2)


@pytest.mark.parametrize("width", [60, 80, 100, 150, 190, 240])
def test_every_line_fits_and_every_formula_is_whole(estimate, width):
    text = estimate_table(estimate, width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    squeezed = _squeezed(text)
    for term, nbytes in estimate.terms():
        assert _squeezed(str(term.formula)) in squeezed, term.name
        assert f"{nbytes:,}" in text
    for key, value in estimate.totals.items():
        if key not in ("peak", "max_memory_allocated"):
            assert _squeezed(str(estimate.report.totals[key])) in squeezed, key
        assert f"{value:,}" in text


def test_without_a_width_each_row_is_one_line(estimate):
    text = estimate_table(estimate)
    lines = text.splitlines()
    total = str(estimate.report.totals["total"])
    assert len(total) > 200  # the reason for the rest of this file
    (row,) = [line for line in lines if line.startswith("total: total ")]
    value = estimate.totals["total"]
    assert total in row and row.endswith(f"{value:,}    {format_bytes(value)}")
    for term, _ in estimate.terms():
        assert any(term.name in line and str(term.formula) in line for line in lines)


def test_the_layout_follows_the_width(estimate):
    wide = estimate_table(estimate).splitlines()
    natural = max(len(line) for line in wide)
    assert estimate_table(estimate, width=natural).splitlines() == wide
    # A little narrower: the formula column wraps in its place (module on the term's line).
    fitted = estimate_table(estimate, width=natural - 40).splitlines()
    (idx,) = [line for line in fitted if line.startswith("idx ")]
    assert "GPT.forward" in idx and "8*B*S" in idx
    assert len(fitted) > len(wide)
    # Too narrow for a formula column: name and bytes, then module, kind and formula below.
    stacked = estimate_table(estimate, width=80).splitlines()
    at = stacked.index(next(line for line in stacked if line.startswith("idx ")))
    assert stacked[at].endswith("65,536   64.00 KiB") and len(stacked[at]) == 80
    assert stacked[at + 1] == "  GPT.forward, inputs: 8*B*S"
    philox = next(i for i, line in enumerate(stacked) if line.endswith("-philox_seed"))
    assert stacked[philox + 2] == "  transformer.h.*.attn, activations, host: 8*L"


def test_a_long_formula_wraps_at_its_spaces(estimate):
    text = estimate_table(estimate, width=80)
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("total: total ")))
    formula = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        formula.append(line)
    assert len(formula) >= 3
    assert formula[0].startswith("  B*D*L*S*") and all(f.startswith("    ") for f in formula[1:])
    assert " ".join(f.strip() for f in formula) == str(estimate.report.totals["total"])


def test_the_formula_column_has_a_minimum(estimate):
    natural = max(len(line) for line in estimate_table(estimate).splitlines())
    longest_formula = max(len(str(t.formula)) for t, _ in estimate.terms())
    others = natural - max(
        longest_formula, max(len(str(estimate.report.totals[k])) for k in ("total",))
    )
    just_enough = estimate_table(estimate, width=others + MIN_FORMULA_WIDTH).splitlines()
    assert any(line.startswith("idx ") and "GPT.forward" in line for line in just_enough)
    stacked = estimate_table(estimate, width=others + MIN_FORMULA_WIDTH - 1).splitlines()
    assert "  GPT.forward, inputs: 8*B*S" in stacked


def test_rank_table_fits_too():
    ranks = per_rank(build_report("cuda"), Layout(zero=1, dp=8, tp=2))
    at = ranks.at(GPT2)
    text = rank_table(at, width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    for rank, nbytes in zip(ranks.terms, at.term_bytes, strict=True):
        if nbytes:
            assert _squeezed(str(rank.formula)) in _squeezed(text)
    assert rank_table(at).splitlines()[0].startswith(text.splitlines()[0])


def test_cli_fits_the_terminal_unless_wide(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "72")
    argv = ["estimate", "--B", "8", "--S", "1024", "--D", "768", "--NH", "12", "--V", "50257"]
    assert main([*argv, "--L", "12", "--amp"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 72
    assert main([*argv, "--L", "12", "--amp", "--wide"]) == 0
    wide = capsys.readouterr().out
    assert max(len(line) for line in wide.splitlines()) > 200
    estimate = build_report("cuda").at(GPT2.with_(dropout=False, bias=False))
    for text in (wide, out):
        for term, _ in estimate.terms():
            assert _squeezed(str(term.formula)) in _squeezed(text), term.name
