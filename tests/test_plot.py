"""Plots: stacked categories, the budget line and the largest value that fits, exactly."""

from __future__ import annotations

import json

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from symmem import CATEGORIES, Config, build_report  # noqa: E402
from symmem.cli import main  # noqa: E402
from symmem.errors import BudgetError, ConfigError  # noqa: E402
from symmem.plot import (  # noqa: E402
    batch_plot,
    memory_plot,
    sequence_plot,
    validation_plot,
)
from symmem.solve import largest  # noqa: E402
from symmem.step import PHASES  # noqa: E402
from symmem.validate.compare import Comparison, Row, compare  # noqa: E402
from tests.conftest import needs_torch  # noqa: E402

GPT2 = Config(S=1024, D=768, NH=12, V=50257, L=12, amp=True)
GIB = 2**30


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _by_gid(ax, gid):
    return [line for line in ax.get_lines() if line.get_gid() == gid]


def test_batch_plot_marks_what_solve_returns():
    report = build_report("cuda")
    ax = batch_plot(report, GPT2, budget="80GiB")
    solution = largest(report, GPT2, "B", "80GiB")  # solve's default quantity, as the plot's
    assert solution.quantity == "max_memory_allocated"
    (budget,) = _by_gid(ax, "budget")
    assert list(budget.get_ydata()) == [80, 80]
    (marker,) = _by_gid(ax, "largest")
    assert list(marker.get_xdata()) == [solution.value] == [87]
    assert list(marker.get_ydata()) == [solution.bytes_at_value / GIB]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        *CATEGORIES,
        "peak (live tensors)",
        "max_memory_allocated",
        "budget 80.00 GiB",
        "largest B = 87 (max_memory_allocated)",
    ]
    assert ax.get_title() == (
        "memory against B: cuda, attention efficient\n"
        "largest B = 87: max_memory_allocated fits in 80.00 GiB"
    )
    # One band per category; the x axis runs from 1 to a quarter past the answer.
    assert len(ax.collections) == len(CATEGORIES)
    assert ax.get_xlim() == (1, 109)
    assert ax.get_ylabel() == "memory (GiB)"
    # The lines are the step's maxima, exactly, at every B drawn; the marker sits on its own.
    for gid in ("peak", "max_memory_allocated"):
        (line,) = _by_gid(ax, gid)
        xs = [int(x) for x in line.get_xdata()]
        assert list(line.get_ydata()) == [report.at(GPT2.with_(B=b)).totals[gid] / GIB for b in xs]
    (line,) = _by_gid(ax, "max_memory_allocated")
    assert solution.bytes_at_value / GIB in list(line.get_ydata())


def test_the_marker_is_the_number_solve_prints(capsys):
    report = build_report("cuda")
    sizes = ["--S", "1024", "--D", "768", "--NH", "12", "--V", "50257", "--L", "12", "--amp"]
    for quantity, expected in (("max_memory_allocated", 87), ("peak", 87), ("total", 110)):
        assert (
            main(["solve", "--for", "B", "--budget", "80GiB", *sizes, "--quantity", quantity]) == 0
        )
        printed = capsys.readouterr().out.splitlines()[0]
        assert printed.startswith(f"largest B = {expected}: {quantity} ")
        ax = batch_plot(report, GPT2, budget="80GiB", quantity=quantity)
        (marker,) = _by_gid(ax, "largest")
        assert list(marker.get_xdata()) == [expected]
        assert f"largest B = {expected}: {quantity} fits in 80.00 GiB" in ax.get_title()
        plt.close("all")


def test_the_sum_of_the_categories_is_marked_on_top_of_the_bands():
    report = build_report("cuda")
    ax = batch_plot(report, GPT2, budget="80GiB", quantity="total")
    (marker,) = _by_gid(ax, "largest")
    value = int(marker.get_xdata()[0])
    top = ax.collections[-1].get_paths()[0].vertices
    heights = {x: y for x, y in top if x == value and y > 0}
    assert heights == {value: pytest.approx(marker.get_ydata()[0], rel=1e-12)}


def test_without_a_caching_allocator_one_line_is_both_maxima():
    report = build_report("cpu")
    ax = batch_plot(report, GPT2, budget="80GiB")
    (peak,) = _by_gid(ax, "peak")
    assert peak.get_label() == "peak = max_memory_allocated"
    assert not _by_gid(ax, "max_memory_allocated")
    (marker,) = _by_gid(ax, "largest")
    assert list(marker.get_xdata()) == [largest(report, GPT2, "B", "80GiB").value]


def test_bands_add_up_to_the_total():
    report = build_report("cpu", "math")
    config = Config(B=4, D=64, NH=4, V=101, L=2, dropout=True)
    values = [16, 32, 48, 64]
    ax = memory_plot(report, config, "S", values=values, binary=False, quantity="total")
    top = ax.collections[-1].get_paths()[0].vertices
    stacked = []
    for s in values:
        totals = report.at(config.with_(S=s)).totals
        height = 0.0
        for category in CATEGORIES:  # stacked in this order, one float addition each
            height += totals[category] / 10**9
        stacked.append(height)
    # The top edge of the last band, at each x, is the stacked total (the polygon's upper side).
    upper = {x: y for x, y in top if x in values and y > 0}
    assert sorted(upper) == values
    assert [upper[s] for s in values] == stacked
    assert ax.get_ylabel() == "memory (GB)"
    assert not _by_gid(ax, "budget")
    (peak,) = _by_gid(ax, "peak")  # cpu: the peak is max_memory_allocated
    assert list(peak.get_ydata()) == [
        report.at(config.with_(S=s)).totals["peak"] / 10**9 for s in values
    ]


def test_sequence_plot_with_multiple_and_quantity():
    report = build_report("cuda")
    config = Config(B=8, D=768, NH=12, V=50257, L=12, amp=True)
    ax = sequence_plot(report, config, budget="24GiB", multiple_of=64, quantity="activations+loss")
    solution = largest(report, config, "S", "24GiB", multiple_of=64, quantity="activations+loss")
    (marker,) = _by_gid(ax, "largest")
    assert list(marker.get_xdata()) == [solution.value]
    assert solution.value % 64 == 0
    assert len(ax.collections) == 2
    assert all(x % 64 == 0 for x in ax.collections[0].get_paths()[0].vertices[:, 0])


def test_nothing_fits_still_draws_the_budget():
    ax = batch_plot(build_report("cuda"), GPT2, budget="1GiB")
    assert _by_gid(ax, "budget") and not _by_gid(ax, "largest")
    assert "nothing fits in 1.00 GiB" in ax.get_title()


def test_bad_input():
    report = build_report("cuda")
    with pytest.raises(ConfigError, match="cannot plot against 'D'"):
        memory_plot(report, GPT2, "D", budget="80GiB")
    with pytest.raises(ConfigError, match="missing sizes: V"):
        batch_plot(report, GPT2.with_(V=None), budget="80GiB")
    with pytest.raises(ConfigError, match="give the values to plot, or a budget"):
        batch_plot(report, GPT2)
    with pytest.raises(ConfigError, match="unknown quantity 'weights'"):
        batch_plot(report, GPT2, budget="80GiB", quantity="weights")
    with pytest.raises(BudgetError, match="does not grow with B"):
        batch_plot(report, GPT2, budget="80GiB", quantity="params")
    with pytest.raises(ConfigError, match="values of B must be positive"):
        batch_plot(report, GPT2, values=[0, 1])


# -- a prediction against a measurement ---------------------------------------------------------


def _comparison(off_by: int = 0) -> Comparison:
    terms = (
        Row("idx", "GPT.forward", 4096, 4096),
        Row("GeluBackward0-self", "transformer.h.*.mlp.gelu", 2**20, 2**20 + off_by),
        Row("only-predicted", "lm_head", 512, None),
    )
    totals = (
        Row("total: activations", "", 3 * 2**20, 3 * 2**20),
        Row("param_count", "", 1000, 1000),
        *(
            Row(f"step: {phase} {point}", "", value, value + (off_by if point == "peak" else 0))
            for phase, base in (("forward", 2**21), ("backward", 2**22))
            for point, value in (("start", base), ("peak", 2 * base), ("end", base + 1))
        ),
    )
    return Comparison(terms, totals)


def _points(ax, gid):
    (collection,) = [c for c in ax.collections if c.get_gid() == gid]
    return [tuple(int(v) for v in point) for point in collection.get_offsets()]


def test_validation_plot_puts_each_row_where_its_bytes_are():
    figure = validation_plot(_comparison(), title="cpu")
    # The row on one side only differs; it has no point.
    assert figure._suptitle.get_text() == "cpu: 1 row differs"
    terms, phases = figure.axes
    # (measured, predicted): on the diagonal when equal; a row on one side only is not drawn.
    assert _points(terms, "term") == [(4096, 4096), (2**20, 2**20)]
    assert _points(terms, "total") == [(3 * 2**20, 3 * 2**20)]
    assert terms.get_title() == "each term and total; 1 on one side only"
    assert [t.get_text() for t in phases.get_xticklabels()] == ["forward", "backward"]
    bars: dict[str, list[float]] = {}
    for patch in phases.patches:
        bars.setdefault(patch.get_gid(), []).append(patch.get_height())
    assert bars["peak-predicted"] == bars["peak-measured"] == [4.0, 8.0]  # MiB
    assert bars["end-predicted"] == [(2**21 + 1) / 2**20, (2**22 + 1) / 2**20]
    assert phases.get_ylabel() == "live memory (MiB)"


def test_validation_plot_marks_what_differs():
    figure = validation_plot(_comparison(off_by=8))
    assert figure._suptitle.get_text() == "4 rows differ"
    terms, phases = figure.axes
    assert _points(terms, "differs") == [(2**20 + 8, 2**20)]
    (crosses,) = [line for line in phases.get_lines() if line.get_gid() == "peak-differs"]
    assert len(crosses.get_xdata()) == 2


def test_validation_plot_without_a_measured_step():
    comparison = _comparison()
    plain = Comparison(comparison.terms, comparison.totals[:2])
    figure = validation_plot(plain)
    assert not figure.axes[1].axison and plain.phase_rows() == {}


@needs_torch
def test_validation_plot_of_a_real_measurement_lies_on_the_diagonal():
    from symmem.validate.measure import measure

    config = Config(B=2, S=24, D=32, NH=2, V=64, L=2, dropout=True, bias=True)
    comparison = compare(build_report("cpu").at(config), measure(config))
    figure = validation_plot(comparison)
    terms, phases = figure.axes
    points = _points(terms, "term") + _points(terms, "total")
    assert points and all(x == y for x, y in points)
    assert not [c for c in terms.collections if c.get_gid() == "differs"]
    assert [t.get_text() for t in phases.get_xticklabels()] == list(PHASES)


@needs_torch
def test_validate_plot_writes_the_file(tmp_path, capsys):
    target = tmp_path / "validation.png"
    flags = ["--B", "2", "--S", "16", "--D", "16", "--NH", "2", "--V", "32", "--L", "1"]
    assert main(["validate", *flags, "--platform", "cpu", "--plot", str(target)]) == 0
    assert capsys.readouterr().out.endswith(f"MATCH: every term and total equal\nplot: {target}\n")
    assert target.read_bytes().startswith(b"\x89PNG")
    svg = tmp_path / "validation.svg"
    assert main(["validate", *flags, "--plot", str(svg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plot"] == str(svg)
    assert svg.read_text().startswith("<?xml")
