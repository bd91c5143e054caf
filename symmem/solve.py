"""Inverse sizing: the largest batch, sequence length or depth whose memory fits a budget.

The answer is exact: memory at the answer fits the budget and memory at the next allowed value
does not, both evaluated to the byte. Memory is not assumed linear in the solved symbol (the math
attention path is quadratic in S, the memory-efficient kernel pads S to a multiple of 32, a
math-path reshape changes at B = 1). Where the memory is a polynomial of degree 1 or 2 in the
symbol, the closed form (a floor of an expression in the other symbols and the budget ``M``) is
returned too, and renders in LaTeX like every other expression.

>>> from symmem import Config, build_report
>>> config = Config(S=1024, D=768, NH=12, V=50257, L=12, amp=True)
>>> solution = largest(build_report("cuda"), config, "B", "80GiB")
>>> solution.value, solution.bytes_at_value <= solution.budget_bytes < solution.bytes_at_next
(87, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any

import sympy

from symmem.config import Config
from symmem.errors import BudgetError, ConfigError
from symmem.evaluate import exact_value
from symmem.inverse import BUDGET, Inverse, closed_value, inverse
from symmem.parallel import Layout, RankReport
from symmem.report import TOTALS, Report, ReportKey, build_report
from symmem.symbols import FIELDS, LATEX_NAMES, SYMBOLS
from symmem.units import format_bytes, parse_bytes

__all__ = [
    "BUDGET",
    "RANK_SYMBOLS",
    "SOLVABLE",
    "RankSolution",
    "Solution",
    "fewest",
    "largest",
    "largest_per_rank",
    "quantity_expr",
]

#: Symbols the solver can solve for.
SOLVABLE = ("B", "S", "L")

_MAX_VALUE = 2**62


@dataclass(frozen=True)
class Solution:
    """The largest allowed value of a symbol whose memory fits a budget.

    Attributes:
        symbol: ``B``, ``S`` or ``L``.
        value: The answer.
        budget_bytes: The budget.
        bytes_at_value: Memory (of ``quantity``) at the answer: at most the budget.
        next_value: The next allowed value (``value + multiple_of``).
        bytes_at_next: Memory at ``next_value``: above the budget unless ``limited_by`` is
            ``upper bound``.
        closed_form: The answer as an expression in the other symbols and ``M``: for a
            maximum over the step, the ``Min`` over its pieces of each one's largest value;
            ``None`` where the symbol sits in a step (a padded length, the allocator's
            rounding), a piece is not a polynomial of degree at most 2 in it, or per rank.
        closed_form_value: The closed form at this config and budget.
        quantity: What must fit: a key of TOTALS or a ``+``-joined sum of them.
        multiple_of: Allowed values are multiples of this.
        limited_by: ``budget`` or ``upper bound``.
        fixed_bytes: The part of the quantity that does not depend on the symbol.
        config: The config with the symbol set to the answer.
        closed_form_text: ``str(closed_form)`` (built with the report, not per call).
        closed_form_latex: ``closed_form`` in LaTeX.
    """

    symbol: str
    value: int
    budget_bytes: int
    bytes_at_value: int
    next_value: int
    bytes_at_next: int
    closed_form: sympy.Expr | None
    closed_form_value: int | None
    quantity: str
    multiple_of: int
    limited_by: str
    fixed_bytes: int
    config: Config
    closed_form_text: str | None = None
    closed_form_latex: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "value": self.value,
            "budget_bytes": self.budget_bytes,
            "bytes_at_value": self.bytes_at_value,
            "next_value": self.next_value,
            "bytes_at_next": self.bytes_at_next,
            "closed_form": self.closed_form_text,
            "closed_form_latex": self.latex(),
            "closed_form_value": self.closed_form_value,
            "quantity": self.quantity,
            "multiple_of": self.multiple_of,
            "limited_by": self.limited_by,
            "fixed_bytes": self.fixed_bytes,
            "config": self.config.as_dict(),
        }

    def latex(self) -> str | None:
        """``symbol = closed form`` in LaTeX, or ``None``."""
        if self.closed_form_latex is None:
            return None
        return f"{LATEX_NAMES.get(SYMBOLS[self.symbol], self.symbol)} = {self.closed_form_latex}"

    def _repr_latex_(self) -> str:
        form = self.latex()
        return f"$\\displaystyle {form}$" if form else f"${self.symbol} = {self.value}$"

    def __str__(self) -> str:
        return (
            f"largest {self.symbol} = {self.value}: {self.quantity} {self.bytes_at_value:,} B "
            f"({format_bytes(self.bytes_at_value)}) of {self.budget_bytes:,} B; "
            f"{self.symbol} = {self.next_value} would need {self.bytes_at_next:,} B"
        )


def quantity_expr(report: Report, quantity: str) -> sympy.Expr:
    """The expression of ``quantity``: a key of TOTALS or several joined by ``+``."""
    keys = [k.strip() for k in quantity.split("+")]
    unknown = [k for k in keys if k not in TOTALS]
    if unknown or not keys:
        raise ConfigError(
            f"unknown quantity {quantity!r}: use one of {', '.join(TOTALS)} or a sum like "
            "'activations+loss'"
        )
    return sympy.Add(*(report.total(k) for k in keys))


def largest(
    report: Report,
    config: Config,
    symbol: str,
    budget: str | int,
    *,
    multiple_of: int = 1,
    upper: int | None = None,
    quantity: str = "max_memory_allocated",
) -> Solution:
    """The largest multiple of ``multiple_of`` (at most ``upper``, and at most what the
    architecture allows: GPT-2's S at most SMAX) for ``symbol`` that fits.

    No symbolic work per call: the quantity's evaluator and closed forms were built once
    (:mod:`symmem.inverse`) and are read from the disk cache."""
    _check_request(config, symbol, multiple_of, upper)
    upper = bounded_upper(config, symbol, upper)
    budget_bytes = parse_bytes(budget)
    report.kernel_for(config)
    quantity = _normal_quantity(quantity)
    switches = tuple(config.switches().items())
    found = _inverse_for(report.key, quantity, symbol, switches)
    names = report.model.size_names
    position = names.index(symbol)
    given = config.sizes()
    sizes = [int(given[n] or 0) for n in names]
    evaluate = found.memory_function

    def memory(value: int) -> int:
        sizes[position] = value
        result: int = evaluate(*sizes)[0]
        return result

    k = multiple_of
    fixed = memory(0)
    if budget_bytes < fixed:
        raise BudgetError(
            f"nothing fits: the part of {quantity} that does not depend on {symbol} is already "
            f"{fixed:,} bytes ({format_bytes(fixed)}), more than the budget of {budget_bytes:,} "
            f"bytes ({format_bytes(budget_bytes)})"
        )
    if memory(k) > budget_bytes:
        raise BudgetError(
            f"nothing fits: {symbol}={k} already needs {memory(k):,} bytes "
            f"({format_bytes(memory(k))}) of {quantity}, more than the budget of "
            f"{budget_bytes:,} bytes ({format_bytes(budget_bytes)})"
        )
    sizes[position] = k
    closed, branch = closed_value(found, sizes, budget_bytes)
    closed_k = None if closed is None else k * (closed // k)
    limit = None if upper is None else upper // k
    near = _estimate(memory, budget_bytes, k) if closed_k is None else None
    m = _search(memory, budget_bytes, k, limit, closed_k, near)
    if m is None:
        raise BudgetError(
            f"{quantity} does not grow with {symbol}: every {symbol} fits; give an upper bound"
        )
    at_bound = limit is not None and m == limit and memory((m + 1) * k) <= budget_bytes
    limited_by = "upper bound" if at_bound else "budget"
    value = m * k
    form, text, latex = _closed_form(found, branch, k) if closed is not None else (None,) * 3
    return Solution(
        symbol=symbol,
        value=value,
        budget_bytes=budget_bytes,
        bytes_at_value=memory(value),
        next_value=value + k,
        bytes_at_next=memory(value + k),
        closed_form=form,
        closed_form_value=closed_k,
        quantity=quantity,
        multiple_of=k,
        limited_by=limited_by,
        fixed_bytes=fixed,
        config=config.with_(**{symbol: value}),
        closed_form_text=text,
        closed_form_latex=latex,
    )


def _normal_quantity(quantity: str) -> str:
    """``quantity`` with its keys checked, written without spaces."""
    keys = [k.strip() for k in quantity.split("+")]
    unknown = [k for k in keys if k not in TOTALS]
    if unknown or not keys:
        raise ConfigError(
            f"unknown quantity {quantity!r}: use one of {', '.join(TOTALS)} or a sum like "
            "'activations+loss'"
        )
    return "+".join(keys)


@lru_cache(maxsize=256)
def _inverse_for(
    key: ReportKey, quantity: str, symbol: str, switches: tuple[tuple[sympy.Symbol, int], ...]
) -> Inverse:
    """What solving ``quantity`` for ``symbol`` needs under these switch values (cached)."""
    platform, attention, optimizer, gpu, checkpoint, model, loop, accum, amp, ddp = key
    where = platform if gpu is None else f"{platform}-{gpu}"
    combo = "".join(str(v) for _, v in switches)
    run = f"{loop}-k{accum}-{amp}-ddp{ddp}"
    name = (
        f"solve-{model}-{where}-{attention}-{optimizer}-{checkpoint}-{run}-"
        f"{quantity.replace('+', '_')}-{symbol}-{combo}"
    )

    def expr() -> sympy.Expr:
        return quantity_expr(build_report(*key), quantity)

    report = build_report(*key)
    return inverse(name, expr, report.model.sizes, symbol, switches)


def _closed_form(
    found: Inverse, branch: int, k: int
) -> tuple[sympy.Expr | None, str | None, str | None]:
    """The closed form of a branch for multiples of ``k``, with its text and LaTeX."""
    chosen = found.branches[branch]
    if chosen.form is None or chosen.text is None or chosen.latex is None:
        return None, None, None
    if k == 1:
        return chosen.form, chosen.text, chosen.latex
    form = sympy.Mul(k, sympy.floor(chosen.form / k, evaluate=False), evaluate=False)
    text = f"{k}*floor({chosen.text}/{k})"
    latex = rf"{k} \left\lfloor{{\frac{{{chosen.latex}}}{{{k}}}}}\right\rfloor"
    return form, text, latex


def _check_request(config: Config, symbol: str, multiple_of: int, upper: int | None) -> None:
    """A ConfigError naming what is wrong with a request to solve for ``symbol``."""
    if symbol not in SOLVABLE:
        raise ConfigError(f"cannot solve for {symbol!r}: choose one of {', '.join(SOLVABLE)}")
    if config.sizes()[symbol] is not None:
        raise ConfigError(f"{symbol} is the symbol solved for: leave it out of the config")
    if isinstance(multiple_of, bool) or not isinstance(multiple_of, int) or multiple_of < 1:
        raise ConfigError(f"multiple_of must be a positive whole number, got {multiple_of!r}")
    if upper is not None and (not isinstance(upper, int) or upper < multiple_of):
        raise ConfigError(f"the upper bound must be a whole number >= {multiple_of}, got {upper!r}")
    missing = [n for n in config.missing if n != symbol]
    if missing:
        raise ConfigError("missing sizes: " + ", ".join(missing))


def bounded_upper(config: Config, symbol: str, upper: int | None) -> int | None:
    """``upper``, lowered to the size the architecture bounds ``symbol`` by in ``config``
    (:attr:`symmem.model.spec.Model.bounds`: GPT-2's S by its SMAX positions)."""
    for small, large in config.architecture.bounds:
        bound = getattr(config, FIELDS[large])
        if FIELDS[small] == symbol and bound is not None:
            upper = bound if upper is None else min(upper, bound)
    return upper


def _search(
    memory: Callable[[int], int],
    budget: int,
    k: int,
    limit: int | None,
    guess: int | None,
    near: int | None = None,
) -> int | None:
    """Largest m >= 1 (at most ``limit``) with memory(m*k) <= budget; None if unbounded.

    ``guess`` is a value that is checked first (a closed form's); ``near`` an estimate the
    search gallops from (doubling its steps away from it, then bisecting)."""

    def fits(m: int) -> bool:
        return memory(m * k) <= budget

    def largest_at(m: int) -> bool:
        return m >= 1 and fits(m) and ((limit is not None and m >= limit) or not fits(m + 1))

    if guess is not None:  # the closed form is exact on its branch: check it and done
        m = guess // k if limit is None else min(guess // k, limit)
        if largest_at(m):
            return m
    if near is not None and near // k > 1:  # an estimate: gallop from it, then bisect
        m = near // k if limit is None else min(near // k, limit)
        if fits(m):
            low, step = m, 1
            while True:
                probe = low + step
                if limit is not None and probe >= limit:
                    if fits(limit):
                        return limit
                    high = limit
                    break
                if probe * k > _MAX_VALUE:
                    return None
                if not fits(probe):
                    high = probe
                    break
                low, step = probe, step * 2
        else:
            high, step = m, 1
            while True:
                probe = high - step
                if probe <= 1:
                    low = 1  # the caller checked that the smallest value fits
                    break
                if fits(probe):
                    low = probe
                    break
                high, step = probe, step * 2
        return _bisect(fits, low, high)
    low, high = 1, 2
    while fits(high):
        if limit is not None and high >= limit:
            return limit
        if high * k > _MAX_VALUE:
            return None
        low, high = high, high * 2
    if limit is not None:
        high = min(high, limit + 1)
    return _bisect(fits, low, high)


def _bisect(fits: Callable[[int], bool], low: int, high: int) -> int:
    """The largest m in [low, high) that fits, given that ``low`` fits and ``high`` does not."""
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _estimate(memory: Callable[[int], int], budget: int, k: int) -> int | None:
    """Where the memory meets the budget, by two secant steps from ``k`` and ``16 k``: close
    for memory nearly linear or quadratic in the size; a start for the search, never the
    answer."""
    x0, y0 = k, memory(k)
    x1 = 16 * k
    y1 = memory(x1)
    for _ in range(2):
        if y1 <= y0:
            return None
        x2 = x1 + (budget - y1) * (x1 - x0) // (y1 - y0)
        if x2 < k or x2 > _MAX_VALUE:
            return None
        x0, y0, x1, y1 = x1, y1, x2, memory(x2)
    return x1


# -- several GPUs -----------------------------------------------------------------------------

#: Symbols of a layout the solver can find the fewest of.
RANK_SYMBOLS = {"N": "dp", "t": "tp", "p": "pp"}


@dataclass(frozen=True)
class RankSolution:
    """The fewest ranks of one kind whose per-rank memory fits a budget.

    Attributes:
        symbol: ``N`` (data-parallel ranks, with ZeRO), ``t`` (tensor-parallel) or ``p``
            (pipeline stages).
        value: The answer.
        budget_bytes: The budget.
        bytes_at_value: Memory per rank (of ``quantity``) at the answer.
        previous_value: The largest smaller value the layout allows, or ``None`` at 1.
        bytes_at_previous: Memory per rank there: above the budget.
        quantity: A key of :data:`symmem.parallel.RANK_TOTALS`.
        layout: The layout with the symbol set to the answer.
    """

    symbol: str
    value: int
    budget_bytes: int
    bytes_at_value: int
    previous_value: int | None
    bytes_at_previous: int | None
    quantity: str
    layout: Layout

    def as_dict(self) -> dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        return plain | {"layout": self.layout.as_dict()}

    def __str__(self) -> str:
        text = (
            f"fewest {self.symbol} = {self.value}: {self.quantity} per rank "
            f"{self.bytes_at_value:,} B ({format_bytes(self.bytes_at_value)}) of "
            f"{self.budget_bytes:,} B"
        )
        if self.previous_value is not None and self.bytes_at_previous is not None:
            text += (
                f"; {self.symbol} = {self.previous_value} would need "
                f"{self.bytes_at_previous:,} B per rank"
            )
        return text


def fewest(
    ranks: RankReport,
    config: Config,
    symbol: str,
    budget: str | int,
    *,
    quantity: str = "total",
    upper: int = 4096,
) -> RankSolution:
    """The fewest ``symbol`` ranks (``N``, ``t`` or ``p``) whose per-rank ``quantity`` fits.

    Values the layout cannot take (t must divide the heads and the sizes it splits, p the
    blocks) are skipped. Memory per rank never grows with more ranks, so the first value that
    fits is the answer.
    """
    if symbol not in RANK_SYMBOLS:
        raise ConfigError(f"cannot solve for {symbol!r}: choose one of {', '.join(RANK_SYMBOLS)}")
    if quantity not in ranks.totals:
        raise ConfigError(
            f"unknown quantity {quantity!r} per rank: use one of {', '.join(ranks.totals)}"
        )
    budget_bytes = parse_bytes(budget)
    name = RANK_SYMBOLS[symbol]
    if name == "dp" and ranks.layout.zero == 0:
        raise ConfigError("data parallelism without ZeRO splits nothing: give --zero 1, 2 or 3")
    previous: tuple[int, int] | None = None
    for value in range(1, upper + 1):
        if name == "tp" and (config.NH or 0) % value:
            continue
        if name == "pp" and (config.L or 0) % value:
            continue
        try:
            nbytes = ranks.at(config, **{name: value}).totals[quantity]
        except ConfigError:  # a share that is not a whole number of bytes: not a layout
            continue
        if nbytes <= budget_bytes:
            changes: dict[str, Any] = {name: value}
            if name == "tp" and value == 1:  # sequence parallelism over one rank splits nothing
                changes["sp"] = False
            return RankSolution(
                symbol,
                value,
                budget_bytes,
                nbytes,
                previous[0] if previous else None,
                previous[1] if previous else None,
                quantity,
                replace(ranks.layout, **changes),
            )
        previous = (value, nbytes)
    raise BudgetError(
        f"no {symbol} up to {upper} fits {quantity} per rank in {budget_bytes:,} bytes "
        f"({format_bytes(budget_bytes)})"
    )


def largest_per_rank(
    ranks: RankReport,
    config: Config,
    symbol: str,
    budget: str | int,
    *,
    multiple_of: int = 1,
    upper: int | None = None,
    quantity: str = "total",
) -> Solution:
    """:func:`largest` for one rank of a layout: the largest B, S or L whose per-rank
    ``quantity`` (a key of :data:`symmem.parallel.RANK_TOTALS`) fits. Found by exact search
    (no closed form is given)."""
    _check_request(config, symbol, multiple_of, upper)
    if quantity not in ranks.totals:
        raise ConfigError(
            f"unknown quantity {quantity!r} per rank: use one of {', '.join(ranks.totals)}"
        )
    budget_bytes = parse_bytes(budget)
    k = multiple_of

    def memory(value: int) -> int:
        return ranks.at(config.with_(**{symbol: value})).totals[quantity]

    if memory(k) > budget_bytes:
        raise BudgetError(
            f"nothing fits: {symbol}={k} already needs {memory(k):,} bytes "
            f"({format_bytes(memory(k))}) of {quantity} per rank, more than the budget of "
            f"{budget_bytes:,} bytes ({format_bytes(budget_bytes)})"
        )
    limit = None if upper is None else upper // k
    m = _search(memory, budget_bytes, k, limit, None)
    if m is None:
        raise BudgetError(
            f"{quantity} does not grow with {symbol}: every {symbol} fits; give an upper bound"
        )
    at_bound = limit is not None and m == limit and memory((m + 1) * k) <= budget_bytes
    value = m * k
    return Solution(
        symbol=symbol,
        value=value,
        budget_bytes=budget_bytes,
        bytes_at_value=memory(value),
        next_value=value + k,
        bytes_at_next=memory(value + k),
        closed_form=None,
        closed_form_value=None,
        quantity=quantity,
        multiple_of=k,
        limited_by="upper bound" if at_bound else "budget",
        fixed_bytes=_fixed_per_rank(ranks, config, symbol, quantity),
        config=config.with_(**{symbol: value}),
    )


def _fixed_per_rank(ranks: RankReport, config: Config, symbol: str, quantity: str) -> int:
    """The part of the per-rank quantity that does not depend on ``symbol``."""
    values: dict[sympy.Symbol, Any] = {
        s: v for s, v in config.values().items() if s != SYMBOLS[symbol]
    }
    values |= {s: sympy.sympify(v) for s, v in ranks.layout.values().items()}
    values[SYMBOLS[symbol]] = sympy.Integer(0)
    try:
        return math.ceil(exact_value(ranks.total(quantity), values))
    except TypeError:  # a float coefficient
        return int(sympy.ceiling(ranks.total(quantity).xreplace(values)))
