"""Memory against batch size or sequence length, stacked by category, with the budget marked.

Needs matplotlib (``pip install 'symmem[plot]'``), imported only when a plot is drawn. Every
point is an exact evaluation of the formulas; the largest value that fits comes from
:func:`symmem.solve.largest`, so the marker is the exact answer, not a reading of the curve.

>>> import matplotlib
>>> matplotlib.use("Agg")
>>> from symmem import Config, build_report
>>> config = Config(S=1024, D=768, NH=12, V=50257, L=12, amp=True)
>>> ax = batch_plot(build_report("cuda"), config, budget="80GiB")
>>> ax.get_title()
'total memory against B: cuda, attention efficient; largest B = 110 fits 80.00 GiB'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sympy

from symmem.config import Config
from symmem.errors import BudgetError, ConfigError, SymmemError
from symmem.report import CATEGORIES, TOTALS, Report
from symmem.solve import Solution, largest
from symmem.symbols import SYMBOLS
from symmem.units import format_bytes, parse_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["PLOTTABLE", "batch_plot", "memory_plot", "sequence_plot"]

#: Symbols memory can be plotted against.
PLOTTABLE = ("B", "S", "L")
_POINTS = 96


def memory_plot(
    report: Report,
    config: Config,
    symbol: str,
    *,
    budget: str | int | None = None,
    values: Sequence[int] | None = None,
    multiple_of: int = 1,
    quantity: str = "total",
    binary: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Memory of ``quantity`` against ``symbol``, one band per category it adds up.

    With a ``budget``, a horizontal line marks it and a marker the largest allowed value of the
    symbol that fits (the largest multiple of ``multiple_of``); ``values`` default to the allowed
    values from ``multiple_of`` to a quarter past that answer. Without a budget, give ``values``.
    Every size but ``symbol`` must be in ``config``; a value given for ``symbol`` is ignored.
    """
    if symbol not in PLOTTABLE:
        raise ConfigError(f"cannot plot against {symbol!r}: choose one of {', '.join(PLOTTABLE)}")
    config = config.with_(**{symbol: None})
    missing = [name for name in config.missing if name != symbol]
    if missing:
        raise ConfigError("missing sizes: " + ", ".join(missing))
    bands = _bands(report, quantity)
    solution, why = _solution(report, config, symbol, budget, multiple_of, quantity)
    if values is None:
        if budget is None:
            raise ConfigError("give the values to plot, or a budget to choose them from")
        if solution is None and not why.startswith("nothing fits"):
            raise BudgetError(f"{why}; give the values to plot")
        top = (solution.value * 5) // 4 + multiple_of if solution else 64 * multiple_of
        step = max(multiple_of, (top // _POINTS) // multiple_of * multiple_of)
        values = range(multiple_of, top + 1, step)
    xs = sorted({int(v) for v in values})
    if not xs or xs[0] < 1:
        raise ConfigError(f"values of {symbol} must be positive whole numbers")
    report.kernel_for(config.with_(**{symbol: xs[0]}))
    x = SYMBOLS[symbol]
    fixed = {s: v for s, v in config.values().items() if s != x}
    unit = 2**30 if binary else 10**9
    series = [
        [_exact(expr.xreplace(fixed), x, value) / unit for value in xs] for expr in bands.values()
    ]

    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    ax.stackplot(xs, *series, labels=list(bands), alpha=0.85)
    kernel = report.kernel_for(config.with_(**{symbol: xs[-1]}))
    title = f"{quantity} memory against {symbol}: {report.platform.name}, attention {kernel}"
    if budget is not None:
        budget_bytes = parse_bytes(budget)
        reading = format_bytes(budget_bytes, binary=binary)
        ax.axhline(
            budget_bytes / unit,
            color="black",
            linestyle="--",
            label=f"budget {reading}",
            gid="budget",
        )
        if solution is None:
            title += f"; {why.split(':')[0]} in {reading}"
        else:
            at = solution.bytes_at_value / unit
            ax.axvline(solution.value, color="crimson", linestyle=":", linewidth=1)
            ax.plot(
                [solution.value],
                [at],
                marker="o",
                color="crimson",
                linestyle="none",
                label=f"largest {symbol} = {solution.value}",
                gid="largest",
            )
            title += f"; largest {symbol} = {solution.value} fits {reading}"
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel(symbol)
    ax.set_ylabel("memory (GiB)" if binary else "memory (GB)")
    ax.set_xlim(xs[0], xs[-1])
    ax.legend(loc="upper left", fontsize="small")
    return ax


def batch_plot(
    report: Report,
    config: Config,
    *,
    budget: str | int | None = None,
    values: Sequence[int] | None = None,
    multiple_of: int = 1,
    quantity: str = "total",
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
    quantity: str = "total",
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


def _bands(report: Report, quantity: str) -> dict[str, sympy.Expr]:
    """The totals stacked for ``quantity``: its keys, with ``total`` split into categories."""
    keys = [k.strip() for k in quantity.split("+")]
    unknown = [k for k in keys if k not in TOTALS]
    if unknown or not all(keys):
        raise ConfigError(
            f"unknown quantity {quantity!r}: use one of {', '.join(TOTALS)} or a sum like "
            "'activations+loss'"
        )
    names = [c for k in keys for c in (CATEGORIES if k == "total" else (k,))]
    return {name: report.total(name) for name in dict.fromkeys(names)}


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


def _exact(expr: sympy.Expr, x: sympy.Symbol, value: int) -> int:
    result = expr.xreplace({x: sympy.Integer(value)})
    if not isinstance(result, sympy.Integer):
        raise ConfigError(f"cannot evaluate {expr} at {x}={value}")
    return int(result)


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise SymmemError("plots need matplotlib: pip install 'symmem[plot]'") from None
    return plt
