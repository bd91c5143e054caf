"""Plots: memory against batch size or sequence length, and a prediction against a measurement.

Needs matplotlib (``pip install 'symmem[plot]'``), imported only when a plot is drawn.

:func:`memory_plot` (and :func:`batch_plot`, :func:`sequence_plot`) stacks the categories, which
add up to ``total``, and draws the step's ``peak`` (the live tensors at the step's fullest
moment) and ``max_memory_allocated`` (that moment as the caching allocator counts it) as lines.
Every point is an exact evaluation of the formulas. With a budget, the marked value is what
:func:`symmem.solve.largest` returns for the same ``quantity``, the number ``symmem solve``
prints, not a reading of the curves; by default, as for ``solve``, the quantity is
``max_memory_allocated``.

>>> import matplotlib
>>> matplotlib.use("Agg")
>>> from symmem import Config, build_report
>>> config = Config(S=1024, D=768, NH=12, V=50257, L=12, amp=True)
>>> ax = batch_plot(build_report("cuda"), config, budget="80GiB")
>>> print(ax.get_title())
memory against B: cuda, attention efficient
largest B = 87: max_memory_allocated fits in 80.00 GiB

:func:`validation_plot` draws a :class:`symmem.validate.compare.Comparison`: predicted against
measured bytes, one point per term, and each phase of the training step side by side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symmem.config import Config
from symmem.errors import BudgetError, ConfigError, OutputError, SymmemError
from symmem.files import writable
from symmem.kinds import MAXIMA
from symmem.report import CATEGORIES, TOTALS, Report
from symmem.solve import Solution, bounded_upper, largest
from symmem.sweep import sweep
from symmem.units import format_bytes, parse_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from symmem.validate.compare import Comparison

__all__ = [
    "PLOTTABLE",
    "batch_plot",
    "figure_file",
    "memory_plot",
    "save_figure",
    "sequence_plot",
    "validation_plot",
]

#: Symbols memory can be plotted against.
PLOTTABLE = ("B", "S", "L")
#: The default quantity that must fit, as for ``symmem solve``.
QUANTITY = "max_memory_allocated"
_POINTS = 96
_INSTALL = "pip install 'symmem[plot]'"


def memory_plot(
    report: Report,
    config: Config,
    symbol: str,
    *,
    budget: str | int | None = None,
    values: Sequence[int] | None = None,
    multiple_of: int = 1,
    quantity: str = QUANTITY,
    binary: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Memory against ``symbol``: the categories stacked, the step's peak and
    ``max_memory_allocated`` as lines.

    The bands are the categories (for a ``quantity`` that is a sum of other totals, such as
    ``activations+loss``, its terms). With a ``budget``, a horizontal line marks it and a
    marker the largest allowed value of the symbol whose ``quantity`` fits (the largest
    multiple of ``multiple_of``, from :func:`symmem.solve.largest`); ``values`` default to the
    allowed values from ``multiple_of`` to a quarter past that answer. Without a budget, give
    ``values``. Every size but ``symbol`` must be in ``config``; a value given for ``symbol`` is
    ignored.
    """
    if symbol not in PLOTTABLE:
        raise ConfigError(f"cannot plot against {symbol!r}: choose one of {', '.join(PLOTTABLE)}")
    config = config.with_(**{symbol: None})
    missing = [name for name in config.missing if name != symbol]
    if missing:
        raise ConfigError("missing sizes: " + ", ".join(missing))
    bands = _bands(quantity)
    solution, why = _solution(report, config, symbol, budget, multiple_of, quantity)
    if values is None:
        if budget is None:
            raise ConfigError("give the values to plot, or a budget to choose them from")
        if solution is None and not why.startswith("nothing fits"):
            raise BudgetError(f"{why}; give the values to plot")
        top = (solution.value * 5) // 4 + multiple_of if solution else 64 * multiple_of
        top = min(top, bounded_upper(config, symbol, None) or top)  # GPT-2's S up to SMAX
        step = max(multiple_of, (top // _POINTS) // multiple_of * multiple_of)
        values = range(multiple_of, top + 1, step)
    xs = sorted({int(v) for v in values})
    if not xs or xs[0] < 1:
        raise ConfigError(f"values of {symbol} must be positive whole numbers")
    totals = _totals(report, config, symbol, xs)
    unit = 2**30 if binary else 10**9

    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4.6), layout="constrained")
    series = [[nbytes / unit for nbytes in totals[band]] for band in bands]
    ax.stackplot(xs, *series, labels=list(bands), alpha=0.8)
    caching = report.platform.caching_allocator
    ax.plot(
        xs,
        [nbytes / unit for nbytes in totals["peak"]],
        color="black",
        linewidth=1.5,
        label="peak (live tensors)" if caching else "peak = max_memory_allocated",
        gid="peak",
    )
    if caching:
        ax.plot(
            xs,
            [nbytes / unit for nbytes in totals["max_memory_allocated"]],
            color="dimgray",
            linestyle="-.",
            linewidth=1.5,
            label="max_memory_allocated",
            gid="max_memory_allocated",
        )
    kernel = report.kernel_for(config.with_(**{symbol: xs[-1]}))
    title = f"memory against {symbol}: {report.platform.name}, attention {kernel}"
    if budget is not None:
        budget_bytes = parse_bytes(budget)
        reading = format_bytes(budget_bytes, binary=binary)
        ax.axhline(
            budget_bytes / unit,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"budget {reading}",
            gid="budget",
        )
        if solution is None:
            title += f"\n{why.split(':')[0]} in {reading}"
        else:
            ax.axvline(solution.value, color="crimson", linestyle=":", linewidth=1)
            ax.plot(
                [solution.value],
                [solution.bytes_at_value / unit],
                marker="o",
                color="crimson",
                linestyle="none",
                label=f"largest {symbol} = {solution.value} ({quantity})",
                gid="largest",
            )
            title += f"\nlargest {symbol} = {solution.value}: {quantity} fits in {reading}"
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel(symbol)
    ax.set_ylabel("memory (GiB)" if binary else "memory (GB)")
    ax.set_xlim(xs[0], xs[-1])
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return ax


def batch_plot(
    report: Report,
    config: Config,
    *,
    budget: str | int | None = None,
    values: Sequence[int] | None = None,
    multiple_of: int = 1,
    quantity: str = QUANTITY,
    binary: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """:func:`memory_plot` against the batch size B."""
    return memory_plot(
        report,
        config,
        "B",
        budget=budget,
        values=values,
        multiple_of=multiple_of,
        quantity=quantity,
        binary=binary,
        ax=ax,
    )


def sequence_plot(
    report: Report,
    config: Config,
    *,
    budget: str | int | None = None,
    values: Sequence[int] | None = None,
    multiple_of: int = 1,
    quantity: str = QUANTITY,
    binary: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """:func:`memory_plot` against the sequence length S."""
    return memory_plot(
        report,
        config,
        "S",
        budget=budget,
        values=values,
        multiple_of=multiple_of,
        quantity=quantity,
        binary=binary,
        ax=ax,
    )


def _bands(quantity: str) -> list[str]:
    """The totals stacked for ``quantity``: its keys, with ``total`` and the step's maxima
    shown as the categories."""
    keys = [k.strip() for k in quantity.split("+")]
    unknown = [k for k in keys if k not in TOTALS]
    if unknown or not all(keys):
        raise ConfigError(
            f"unknown quantity {quantity!r}: use one of {', '.join(TOTALS)} or a sum like "
            "'activations+loss'"
        )
    names = [c for k in keys for c in (CATEGORIES if k in ("total", *MAXIMA) else (k,))]
    return list(dict.fromkeys(names))


def _totals(report: Report, config: Config, symbol: str, xs: Sequence[int]) -> dict[str, list[int]]:
    """Every total at each value of ``symbol``, exact."""
    model = report.model
    axes: dict[str, Any] = {name: getattr(config, name) for name in model.size_names}
    axes |= {name: getattr(config, name) for name in model.switch_names}
    axes[symbol] = list(xs)
    out = sweep(report, **axes)
    return {key: [int(v) for v in array] for key, array in out.items()}


def _solution(
    report: Report,
    config: Config,
    symbol: str,
    budget: str | int | None,
    multiple_of: int,
    quantity: str,
) -> tuple[Solution | None, str]:
    """The largest value that fits, or None and why not."""
    if budget is None:
        return None, "no budget"
    try:
        return largest(
            report, config, symbol, budget, multiple_of=multiple_of, quantity=quantity
        ), ""
    except BudgetError as error:
        if parse_bytes(budget) and str(error).startswith(("nothing fits", quantity)):
            return None, str(error)
        raise


# -- a prediction against a measurement ----------------------------------------------------------


def validation_plot(
    comparison: Comparison, *, title: str = "", figure: Figure | None = None
) -> Figure:
    """Predicted against measured bytes: each term and total (left, both axes logarithmic: on
    the diagonal they are equal), and the start, peak and end of each phase of the training
    step where the step was measured (right). A row that differs is a red cross.

    ``figure`` is drawn on when given (a ``matplotlib.figure.Figure`` needs no display);
    otherwise pyplot makes one.
    """
    if figure is None:
        figure = _pyplot().figure(figsize=(11, 4.6), layout="constrained")
    phases = comparison.phase_rows()
    left, right = figure.subplots(1, 2, width_ratios=(1, 1.3) if phases else (1, 0.01))
    _terms_panel(left, comparison)
    if phases:
        _phases_panel(right, phases)
    else:
        right.set_axis_off()
    count = len(comparison.differences())
    equal = f"{count} row{'s differ' if count > 1 else ' differs'}" if count else "every row equal"
    figure.suptitle(f"{title}: {equal}" if title else equal, fontsize="medium")
    return figure


def _terms_panel(ax: Axes, comparison: Comparison) -> None:
    both = [r for r in comparison.rows if r.predicted and r.measured and r.name != "param_count"]
    both = [r for r in both if not r.name.startswith("step: ")]
    groups = (
        ("term", "o", [r for r in both if not r.name.startswith("total: ") and r.ok]),
        ("total", "s", [r for r in both if r.name.startswith("total: ") and r.ok]),
        ("differs", "x", [r for r in both if not r.ok]),
    )
    for label, marker, rows in groups:
        if rows:
            ax.scatter(
                [r.measured or 0 for r in rows],
                [r.predicted or 0 for r in rows],
                marker=marker,
                s=28,
                color="crimson" if label == "differs" else None,
                facecolors="none" if label != "differs" else None,
                edgecolors=None if label == "differs" else ("C0" if label == "term" else "C2"),
                label=f"{label} ({len(rows)})",
                gid=label,
            )
    values = [v for r in both for v in (r.predicted, r.measured) if v]
    if values:
        low, high = min(values) / 2, max(values) * 2
        ax.plot([low, high], [low, high], color="gray", linewidth=0.8, gid="equal")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured (bytes)")
    ax.set_ylabel("predicted (bytes)")
    one_sided = [r for r in comparison.terms if (r.predicted is None) != (r.measured is None)]
    note = f"; {len(one_sided)} on one side only" if one_sided else ""
    ax.set_title(f"each term and total{note}", fontsize="medium")
    ax.legend(loc="upper left", fontsize="small")


def _phases_panel(ax: Axes, phases: dict[str, dict[str, Any]]) -> None:
    names = list(phases)
    top = max((r.predicted or 0, r.measured or 0) for p in phases.values() for r in p.values())
    unit, unit_name = next(
        ((size, name) for name, size in (("GiB", 2**30), ("MiB", 2**20)) if max(top) >= size),
        (2**10, "KiB"),
    )
    width = 0.13
    for i, point in enumerate(("start", "peak", "end")):
        offset = (i - 1) * 2.2 * width
        rows = [phases[name][point] for name in names]
        xs = [k + offset for k in range(len(names))]
        ax.bar(
            [x - width / 2 for x in xs],
            [(r.predicted or 0) / unit for r in rows],
            width,
            color=f"C{i}",
            label=f"{point}, predicted",
            gid=f"{point}-predicted",
        )
        ax.bar(
            [x + width / 2 for x in xs],
            [(r.measured or 0) / unit for r in rows],
            width,
            color=f"C{i}",
            alpha=0.45,
            hatch="//",
            label=f"{point}, measured",
            gid=f"{point}-measured",
        )
        wrong = [(x, r) for x, r in zip(xs, rows, strict=True) if not r.ok]
        if wrong:
            ax.plot(
                [x for x, _ in wrong],
                [max(r.predicted or 0, r.measured or 0) / unit for _, r in wrong],
                marker="x",
                color="crimson",
                linestyle="none",
                gid=f"{point}-differs",
            )
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, max(top) / unit * 1.3)  # room for the legend above the bars
    ax.set_ylabel(f"live memory ({unit_name})")
    ax.set_title("each phase of a training step", fontsize="medium")
    ax.legend(loc="upper right", fontsize="x-small", ncols=3)


def figure_file(path: str | os.PathLike[str]) -> tuple[Figure, Path]:
    """A figure for :func:`validation_plot` and the file it goes to, both checked before the work
    that fills them: matplotlib is installed, ``path`` can be written and names a format
    matplotlib writes (``.png``, ``.pdf``, ``.svg``, ...). The figure needs no display."""
    target = writable(path)
    try:
        from matplotlib.backend_bases import FigureCanvasBase
        from matplotlib.figure import Figure
    except ImportError:
        raise SymmemError(f"plots need matplotlib: {_INSTALL}") from None
    formats = FigureCanvasBase.get_supported_filetypes()
    if target.suffix.lstrip(".").lower() not in formats:
        raise OutputError(
            f"cannot write a plot to {path}: name a file ending in one of "
            + ", ".join(f".{name}" for name in sorted(formats))
        )
    return Figure(figsize=(11, 4.6), layout="constrained"), target


def save_figure(figure: Figure, target: Path) -> None:
    """Write ``figure`` to ``target`` (its format from the suffix)."""
    try:
        figure.savefig(target)
    except (OSError, ValueError) as error:
        raise OutputError(f"cannot write {target}: {error}") from None


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise SymmemError(f"plots need matplotlib: {_INSTALL}") from None
    return plt
