"""Plots: stacked categories, the budget line and the largest value that fits, exactly."""

from __future__ import annotations

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from symmem import CATEGORIES, Config, build_report  # noqa: E402
from symmem.errors import BudgetError, ConfigError  # noqa: E402
from symmem.plot import batch_plot, memory_plot, sequence_plot  # noqa: E402
from symmem.solve import largest  # noqa: E402

GPT2 = Config(S=1024, D=768, NH=12, V=50257, L=12, amp=True)
GIB = 2**30


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _by_gid(ax, gid):
    return [line for line in ax.get_lines() if line.get_gid() == gid]


def test_batch_plot_marks_budget_and_largest():
    report = build_report("cuda")
    ax = batch_plot(report, GPT2, budget="80GiB")
    solution = largest(report, GPT2, "B", "80GiB", quantity="total")  # what the plot shows
    (budget,) = _by_gid(ax, "budget")
    assert list(budget.get_ydata()) == [80, 80]
    (marker,) = _by_gid(ax, "largest")
    assert list(marker.get_xdata()) == [solution.value] == [110]
    assert list(marker.get_ydata()) == [solution.bytes_at_value / GIB]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        *CATEGORIES,
        "budget 80.00 GiB",
        "largest B = 110",
    ]
    # One band per category; the x axis runs from 1 to a quarter past the answer.
    assert len(ax.collections) == len(CATEGORIES)
    assert ax.get_xlim() == (1, 138)
    assert ax.get_ylabel() == "memory (GiB)"


def test_bands_add_up_to_the_total():
    report = build_report("cpu", "math")
    config = Config(B=4, D=64, NH=4, V=101, L=2, dropout=True)
    values = [16, 32, 48, 64]
    ax = memory_plot(report, config, "S", values=values, binary=False)
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
