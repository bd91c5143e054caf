"""Exact integer evaluation of symmem's expressions, compiled once to plain Python.

SymPy's ``xreplace`` is exact but slow. :func:`compile_exact` turns an expression built from
integers, symbols, sums, products, integer powers, ``ceiling``/``floor`` of ratios, ``Max`` and
``Piecewise`` with (in)equalities into Python source that uses only integer arithmetic, so a
config evaluates in microseconds and stays exact at any size (float64 would round past 2**53).

>>> from symmem.symbols import B, S
>>> f = compile_exact(B * sympy.ceiling(S / 32) * 128 + 7, (B, S))
>>> f(3, 33)
775
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import sympy

from symmem.cache import cached, compiled
from symmem.config import Config
from symmem.errors import ConfigError
from symmem.kinds import CATEGORIES

if TYPE_CHECKING:
    from symmem.model import Model
    from symmem.report import Report

__all__ = [
    "CompiledReport",
    "compile_exact",
    "compile_many",
    "exact_value",
    "generate",
    "load",
    "output",
    "upper_bound",
]


def exact_value(expr: sympy.Basic, values: Mapping[sympy.Symbol, int]) -> int | Fraction | bool:
    """``expr`` at ``values`` by walking its tree in integer (and Fraction) arithmetic: what
    ``int(expr.xreplace(values))`` gives, without SymPy rebuilding and re-canonicalising every
    sum and product on the way (tens of times slower), for a value needed once.

    >>> from symmem.symbols import B, S
    >>> exact_value(B * sympy.ceiling(S / 32) * 128 + 7, {B: 3, S: 33})
    775
    """
    memo: dict[sympy.Basic, Any] = {}

    def walk(e: sympy.Basic) -> Any:
        found = memo.get(e)
        if found is not None:
            return found
        if isinstance(e, sympy.Symbol):
            if e not in values:
                raise TypeError(f"no value for symbol {e}")
            result: Any = int(values[e])
        elif isinstance(e, sympy.Integer):
            result = int(e)
        elif isinstance(e, sympy.Rational):
            result = Fraction(int(e.p), int(e.q))
        elif e is sympy.true or e is sympy.false:
            result = bool(e)
        elif isinstance(e, sympy.Add):
            result = sum(walk(a) for a in e.args)
        elif isinstance(e, sympy.Mul):
            result = 1
            for a in e.args:
                result *= walk(a)
        elif isinstance(e, sympy.Pow) and isinstance(e.args[1], sympy.Integer):
            result = Fraction(walk(e.args[0])) ** int(e.args[1])
        elif isinstance(e, sympy.ceiling):
            result = math.ceil(walk(e.args[0]))
        elif isinstance(e, sympy.floor):
            result = math.floor(walk(e.args[0]))
        elif isinstance(e, (sympy.Max, sympy.Min)):
            pick = max if isinstance(e, sympy.Max) else min
            result = pick(walk(a) for a in e.args)
        elif isinstance(e, sympy.Piecewise):
            result = next(walk(v) for v, c in e.args if walk(c))
        elif type(e) in _RELATIONS:
            result = _RELATIONS[type(e)][1](walk(e.args[0]), walk(e.args[1]))
        elif isinstance(e, sympy.And):
            result = all(walk(a) for a in e.args)
        elif isinstance(e, sympy.Or):
            result = any(walk(a) for a in e.args)
        elif isinstance(e, sympy.Not):
            result = not walk(e.args[0])
        else:
            raise TypeError(f"cannot evaluate {type(e).__name__} {e} exactly")
        if isinstance(result, Fraction) and result.denominator == 1:
            result = result.numerator
        memo[e] = result
        return result

    value: int | Fraction | bool = walk(sympy.sympify(expr))
    return value


#: Each (in)equality with its Python operator, as source and as a function.
_RELATIONS: dict[type, tuple[str, Callable[[Any, Any], bool]]] = {
    sympy.Eq: ("==", operator.eq),
    sympy.Ne: ("!=", operator.ne),
    sympy.Le: ("<=", operator.le),
    sympy.Lt: ("<", operator.lt),
    sympy.Ge: (">=", operator.ge),
    sympy.Gt: (">", operator.gt),
}


def compile_exact(expr: sympy.Expr, args: Sequence[sympy.Symbol]) -> Callable[..., int]:
    """A function of ``args`` (ints) that returns ``expr`` exactly, as an int.

    Raises ``TypeError`` for a construct it cannot evaluate exactly.
    """
    many = compile_many([expr], args)

    def function(*values: int) -> int:
        result: int = many(*values)[0]
        return result

    function.__doc__ = f"{expr} at ({', '.join(map(str, args))})"
    return function


def output(i: int) -> sympy.Symbol:
    """A placeholder for the i-th output of :func:`compile_many`, usable in later outputs."""
    return sympy.Symbol(f"_out{i}")


def compile_many(
    exprs: Sequence[sympy.Expr],
    args: Sequence[sympy.Symbol],
    *,
    vector: bool = False,
    keys: Sequence[str] | None = None,
) -> Callable[..., Any]:
    """One function of ``args`` returning every expression, sharing common subexpressions.

    An expression may use earlier outputs through :func:`output` placeholders (a total as the sum
    of its categories costs a few additions). The function returns a tuple, or a dict when
    ``keys`` are given. With ``vector=True`` the arguments may be NumPy arrays (int64 or object
    dtype) and ``Piecewise`` becomes ``numpy.where``; the expressions must then have integer
    coefficients.
    """
    return load(generate(exprs, args, vector=vector, keys=keys), vector=vector)


def generate(
    exprs: Sequence[sympy.Expr],
    args: Sequence[sympy.Symbol],
    *,
    vector: bool = False,
    keys: Sequence[str] | None = None,
    whole: bool = True,
    guard: str | None = None,
) -> str:
    """The Python source of :func:`compile_many`'s function (it can be stored and loaded).

    With ``whole=False`` an output may be a fraction (a ``Fraction``), not only an int. With a
    ``guard`` (a condition on ``a0, a1, ...``) the function returns ``None`` where it fails."""
    exprs = [sympy.sympify(e) for e in exprs]
    names: dict[sympy.Basic, str] = {symbol: f"a{i}" for i, symbol in enumerate(args)}
    names |= {output(i): f"r{i}" for i in range(len(exprs))}
    # Common subexpressions are shared between the polynomial outputs; a Max (a peak: many
    # candidates, each used once) is written out as it is, which is much faster to generate.
    base = [
        i
        for i, e in enumerate(exprs)
        if not any(str(s).startswith("_out") for s in e.free_symbols) and not e.has(sympy.Max)
    ]
    temporaries, reduced = sympy.cse([exprs[i] for i in base], optimizations=None)
    bodies = dict(zip(base, reduced, strict=True))
    fractions = any(_fraction(e) for e in [*bodies.values(), *(v for _, v in temporaries), *exprs])
    shifts = vector and not fractions
    lines = [] if guard is None else [f"if not ({guard}):", "    return None"]
    full: dict[sympy.Basic, sympy.Basic] = {}
    for i, (symbol, value) in enumerate(temporaries):
        lines.append(f"t{i} = {_code(value, names, vector, shifts)}")
        names[symbol] = f"t{i}"
        # The same value met again in a rounded size or a maximum's term reuses it.
        full[symbol] = value.xreplace(full)
        names.setdefault(full[symbol], f"t{i}")
    # In a Max the candidates repeat the same divisions (a rounded size, a padded length):
    # each distinct ceiling or floor is computed once, inner ones first.
    hoisted = 0
    for i, expr in enumerate(exprs):
        if i in bodies or any(str(s).startswith("_out") for s in expr.free_symbols):
            continue
        for atom in sorted(expr.atoms(sympy.ceiling, sympy.floor), key=sympy.count_ops):
            if atom not in names:
                lines.append(f"q{hoisted} = {_code(atom, names, vector, shifts)}")
                names[atom] = f"q{hoisted}"
                hoisted += 1
    # Each maximum over a step's points, innermost first, along its difference tree.
    maxima = [m for i, e in enumerate(exprs) if i not in bodies for m in e.atoms(sympy.Max)]
    for number, found in enumerate(sorted(dict.fromkeys(maxima), key=sympy.count_ops)):
        lines += _max_lines(found, names, vector, shifts, f"m{number}")
    wrap = "_int" if fractions and not vector and whole else ""
    for i, expr in enumerate(exprs):
        lines.append(f"r{i} = {wrap}({_code(bodies.get(i, expr), names, vector, shifts)})")
    if keys is None:
        result = "(" + "".join(f"r{i}, " for i in range(len(exprs))) + ")"
    else:
        result = "{" + ", ".join(f"{k!r}: r{i}" for i, k in enumerate(keys)) + "}"
    return (
        f"def _f({', '.join(f'a{i}' for i in range(len(args)))}):\n"
        + "".join(f"    {line}\n" for line in lines)
        + f"    return {result}\n"
    )


def _fraction(expr: sympy.Basic) -> bool:
    """Whether the code of ``expr`` can compute a ``Fraction``: a rational number or a negative
    power (D·NKV/NH: whole, as a Fraction) outside a ceiling or floor, whose code divides
    integers."""
    if isinstance(expr, (sympy.ceiling, sympy.floor)):
        return False
    if isinstance(expr, sympy.Rational):
        return not isinstance(expr, sympy.Integer)
    if isinstance(expr, sympy.Pow) and expr.exp.is_negative:
        return True
    return any(_fraction(a) for a in expr.args)


def _guard(model: Model) -> str:
    """The condition, on the evaluator's arguments ``a0, a1, ...`` (the model's sizes), that
    they are whole numbers (``int`` itself), positive, divide and stay within bounds where the
    model says so: the fast path's check (its limits are checked beside it)."""
    index = {s: i for i, s in enumerate(model.sizes)}
    parts = [f"type(a{i}) is int" for i in index.values()]
    parts += [f"a{i} > 0" for i in index.values()]
    parts += [f"a{index[b]} % a{index[a]} == 0" for a, b in model.divides]
    parts += [f"a{index[a]} <= a{index[b]}" for a, b in model.bounds]
    return " and ".join(parts)


def _max_lines(
    found: sympy.Max, names: dict[sympy.Basic, str], vector: bool, shifts: bool, name: str
) -> list[str]:
    """Lines that compute ``found`` into ``name``, a maximum over the live bytes at the points
    of a training step. Neighbouring points differ by a few tensors, so each piece is computed
    from the one it differs least from (a minimum spanning tree over the number of differing
    terms, Prim's algorithm from the empty sum), and only the first from scratch: the same
    exact sums, in a fraction of the operations."""
    pieces = [_terms(p) for p in found.args]
    # Sizes rounded to the allocator's blocks: every coefficient a multiple of 512. The
    # maximum of the sums divided by their common factor, times it, is the same number.
    coefficients = [c for piece in pieces for c in piece.values()]
    factor = 1
    if coefficients and all(isinstance(c, sympy.Integer) for c in coefficients):
        factor = math.gcd(*(int(c) for c in coefficients))
        pieces = [{r: c / factor for r, c in piece.items()} for piece in pieces]
    empty: dict[sympy.Basic, sympy.Number] = {}
    parent = [-1] * len(pieces)
    cost = [len(p) for p in pieces]
    left = set(range(len(pieces)))
    order = []
    while left:
        i = min(left, key=lambda j: (cost[j], j))
        left.remove(i)
        order.append(i)
        for j in left:
            d = len(_difference(pieces[j], pieces[i]))
            if d < cost[j]:
                cost[j], parent[j] = d, i
    # A product used by more than one difference is computed once.
    diffs = {
        i: _difference(pieces[i], pieces[parent[i]] if parent[i] >= 0 else empty) for i in order
    }
    uses: dict[sympy.Basic, int] = {}
    for diff in diffs.values():
        for rest in diff:
            if rest != 1:
                uses[rest] = uses.get(rest, 0) + 1
    lines = []
    for k, rest in enumerate(r for r, n in uses.items() if n > 1 and r not in names):
        lines.append(f"{name}_u{k} = {_code(rest, names, vector, shifts)}")
        names[rest] = f"{name}_u{k}"
    for i in order:
        code = f"{name}_{parent[i]}" if parent[i] >= 0 else ""
        # Positive terms first, so that a piece computed from scratch starts with one.
        for rest, coefficient in sorted(
            diffs[i].items(), key=lambda item: bool(item[1].is_negative)
        ):
            sign, size = ("-", -coefficient) if coefficient.is_negative else ("+", coefficient)
            term = _code(size, names) if rest == 1 else _code(rest, names, vector, shifts)
            if rest != 1 and size != 1:
                term = f"{_code(size, names)} * {term}"
            code = f"{code} {sign} {term}" if code else (term if sign == "+" else f"-{term}")
        lines.append(f"{name}_{i} = ({code or '0'})")
    values = [f"{name}_{i}" for i in range(len(pieces))]
    scale = "" if factor == 1 else f"{factor} * "
    if vector:
        out = values[0]
        for value in values[1:]:
            out = f"_maximum({out}, {value})"
        lines.append(f"{name} = {scale}{out}")
    else:
        lines.append(f"{name} = {scale}max({', '.join(values)})")
    names[found] = name
    return lines


def _terms(expr: sympy.Expr) -> dict[sympy.Basic, sympy.Number]:
    """``expr`` as ``{product: coefficient}`` over its terms (the number alone keyed by 1)."""
    terms: dict[sympy.Basic, sympy.Number] = {}
    for term in sympy.Add.make_args(expr):
        coefficient, rest = term.as_coeff_Mul()
        terms[rest] = terms.get(rest, sympy.Integer(0)) + coefficient
    return {rest: c for rest, c in terms.items() if c != 0}


def _difference(
    a: dict[sympy.Basic, sympy.Number], b: dict[sympy.Basic, sympy.Number]
) -> dict[sympy.Basic, sympy.Number]:
    """``a - b`` as terms."""
    out = {rest: c - b.get(rest, 0) for rest, c in a.items()}
    out |= {rest: -c for rest, c in b.items() if rest not in a}
    return {rest: c for rest, c in out.items() if c != 0}


def load(source: str, *, vector: bool = False) -> Callable[..., Any]:
    """The function that :func:`generate` wrote."""
    namespace: dict[str, Any] = {"_Fraction": Fraction, "_int": _as_int}
    if vector:
        import numpy

        namespace |= {
            "_where": numpy.where,
            "_or": numpy.logical_or,
            "_and": numpy.logical_and,
            "_not": numpy.logical_not,
            "_maximum": numpy.maximum,
        }
    exec(compiled(source, "<symmem.evaluate>"), namespace)  # source built by generate
    function: Callable[..., Any] = namespace["_f"]
    return function


def upper_bound(expr: sympy.Basic, maxima: dict[sympy.Symbol, int]) -> int:
    """An upper bound of ``|expr|`` when each symbol lies in ``[0, maxima[symbol]]``."""
    if isinstance(expr, sympy.Symbol):
        return maxima[expr]
    if isinstance(expr, sympy.Rational):
        return int(abs(expr)) + 1
    if isinstance(expr, sympy.Add):
        return sum(upper_bound(a, maxima) for a in expr.args)
    if isinstance(expr, sympy.Mul):
        product = 1
        for a in expr.args:
            product *= upper_bound(a, maxima)
        return product
    if isinstance(expr, sympy.Pow) and isinstance(expr.args[1], sympy.Integer):
        power: int = upper_bound(expr.args[0], maxima) ** max(int(expr.args[1]), 0)
        return power
    if isinstance(expr, (sympy.ceiling, sympy.floor)):
        return upper_bound(expr.args[0], maxima) + 1
    if isinstance(expr, sympy.Piecewise):
        return max(upper_bound(value, maxima) for value, _ in expr.args)
    if isinstance(expr, sympy.Max):
        return max(upper_bound(a, maxima) for a in expr.args)
    raise TypeError(f"no bound for {type(expr).__name__} {expr}")


def bound_expr(expr: sympy.Basic) -> sympy.Expr:
    """An expression in the same symbols whose value, at the largest value of each symbol, is
    :func:`upper_bound` of ``expr`` (so it can be compiled once and evaluated per sweep)."""
    if isinstance(expr, sympy.Symbol):
        return expr
    if isinstance(expr, sympy.Rational):
        return sympy.Integer(int(abs(expr)) + 1)
    if isinstance(expr, sympy.Add):
        return sympy.Add(*(bound_expr(a) for a in expr.args))
    if isinstance(expr, sympy.Mul):
        return sympy.Mul(*(bound_expr(a) for a in expr.args))
    if isinstance(expr, sympy.Pow) and isinstance(expr.args[1], sympy.Integer):
        return bound_expr(expr.args[0]) ** max(int(expr.args[1]), 0)
    if isinstance(expr, (sympy.ceiling, sympy.floor)):
        return bound_expr(expr.args[0]) + 1
    if isinstance(expr, sympy.Piecewise):
        return sympy.Max(*(bound_expr(value) for value, _ in expr.args), evaluate=False)
    if isinstance(expr, sympy.Max):
        return sympy.Max(*(bound_expr(a) for a in expr.args), evaluate=False)
    raise TypeError(f"no bound for {type(expr).__name__} {expr}")


class CompiledReport:
    """Every total of a report (and the parameter count) as one integer function.

    Built once from the symbolic totals; a call is plain integer arithmetic, exact at any size.

    >>> from symmem import Config, build_report
    >>> report = build_report("cuda")
    >>> report.compiled(Config.notebook())["total"] == report.at(Config.notebook()).totals["total"]
    True
    """

    def __init__(self, report: Report) -> None:
        self.report = report
        self.model = report.model
        self.keys = (*report.totals, "param_count")
        self.exprs = (*report.totals.values(), report.param_count)
        # The same values, cheaper: the total as the sum of its categories, the parameter count
        # from the parameter bytes (fp32: 4 bytes each).
        index = {k: i for i, k in enumerate(self.keys)}
        self._fast = tuple(
            sympy.Add(*(output(index[c]) for c in CATEGORIES))
            if key == "total"
            else sympy.floor(output(index["params"]) / 4)
            if key == "param_count"
            else expr
            for key, expr in zip(self.keys, self.exprs, strict=True)
        )
        self.args = self.model.arguments
        self._scalar = compile_many(self._fast, self.args, keys=self.keys)
        self._vector: Callable[..., tuple[Any, ...]] | None = None
        self._by_switches: dict[tuple[bool, ...], Callable[..., dict[str, int] | None]] = {}
        # The same functions by the switches as a caller spelled them (checked once).
        self._count = len(self.model.sizes)
        self._given: dict[tuple[tuple[str, Any], ...], Callable[..., dict[str, int] | None]] = {}
        self._vectors: dict[tuple[bool, ...], Callable[..., tuple[Any, ...]]] = {}
        self._bound: Callable[..., tuple[int]] | None = None

    def __call__(self, config: Config) -> dict[str, int]:
        """Every total at a complete config."""
        config.require_complete()
        self.report.kernel_for(config)
        values = config.arguments()
        result: dict[str, int] = self._scalar(*values)
        return result

    def totals(self, *sizes: int, **switches: bool) -> dict[str, int]:
        """Every total for the model's sizes given as integers, in its order (``B, S, D, NH, V,
        L`` for nanoGPT), and its switches by name (off unless given): the fast path, checked
        like a Config.

        >>> from symmem import build_report
        >>> build_report("cpu").compiled.totals(2, 40, 64, 4, 101, 1)["activations"]
        372160
        """
        try:
            function = self._given.get(tuple(switches.items()))
        except TypeError:  # an unhashable switch value: the check below names it
            function = None
        if function is not None and len(sizes) == self._count:
            result = function(*sizes)  # None where the guard finds the sizes out of bounds
            if result is not None and (not self.model.limits or self.model.valid(sizes)):
                return result
        self._check(sizes, switches)
        model = self.model
        key = tuple(bool(switches.get(name, False)) for name in model.switch_names)
        function = self._given[tuple(switches.items())] = self._specialise(key)
        result = function(*map(operator.index, sizes))
        if result is None:
            raise AssertionError(f"sizes {sizes} pass the config's checks but not the guard")
        return result

    def _check(self, sizes: tuple[int, ...], switches: dict[str, bool]) -> None:
        """Raise the error a Config would raise for these values, or the kernel's."""
        names = self.model.size_names
        if len(sizes) != len(names):
            raise ConfigError(
                f"{self.model.name} takes {len(names)} sizes ({', '.join(names)}), got {len(sizes)}"
            )
        given: dict[str, Any] = dict(zip(names, sizes, strict=True)) | switches
        config = Config(model=self.model.name, **given)
        self.report.kernel_for(config)

    def _specialise(self, key: tuple[bool, ...]) -> Callable[..., dict[str, int] | None]:
        """The totals with the switches set: fewer operations per call."""
        if key not in self._by_switches:
            values = dict(zip(self.model.switches, map(int, key), strict=True))
            exprs = [e.xreplace(values) for e in self._fast]
            source = generate(exprs, self.model.sizes, keys=self.keys, guard=_guard(self.model))
            self._by_switches[key] = load(source)
        return self._by_switches[key]

    def bound(self, maxima: Sequence[int]) -> int:
        """An upper bound of every total and the parameter count when each argument (sizes
        then switches) lies in ``[0, maxima[i]]``; its code is generated once and cached."""
        if self._bound is None:
            report = self.report
            gpu = report.platform.gpu
            where = report.platform.name if gpu is None else f"{report.platform.name}-{gpu.name}"
            name = (
                f"bound-{self.model.name}-{where}-{report.attention}-{report.optimizer}-"
                f"{report.checkpoint}"
            )

            def build() -> str:
                bounds = [bound_expr(e) for e in self.exprs]
                top = sympy.Max(*bounds, evaluate=False) if len(bounds) > 1 else bounds[0]
                return generate([top], self.args)

            self._bound = load(cached(name, build))
        result: int = self._bound(*maxima)[0]
        return result

    def vector_for(self, key: tuple[bool, ...]) -> Callable[..., tuple[Any, ...]]:
        """The NumPy function of the sizes alone with the switches set to ``key``: each
        maximum over the step is then one switch combination's pieces, not all of them. Its
        source is generated once and kept in the disk cache."""
        function = self._vectors.get(key)
        if function is None:
            values = dict(zip(self.model.switches, map(int, key), strict=True))
            report = self.report
            gpu = report.platform.gpu
            where = report.platform.name if gpu is None else f"{report.platform.name}-{gpu.name}"
            combo = "".join(str(int(v)) for v in key)
            name = (
                f"vector-{self.model.name}-{where}-{report.attention}-{report.optimizer}-"
                f"{report.checkpoint}-{combo}"
            )
            sizes = self.model.sizes

            def build() -> str:
                exprs = [e.xreplace(values) for e in self._fast]
                return generate(exprs, sizes, vector=True)

            function = self._vectors[key] = load(cached(name, build), vector=True)
        return function

    def vector(self) -> Callable[..., tuple[Any, ...]]:
        """The NumPy version of the same function (compiled on first use)."""
        if self._vector is None:
            self._vector = compile_many(self._fast, self.args, vector=True)
        return self._vector


def _as_int(value: int | Fraction | bool) -> int:
    if isinstance(value, Fraction):
        if value.denominator != 1:
            raise ValueError(f"expected a whole number of bytes, got {value}")
        return value.numerator
    return int(value)


def _code(
    expr: sympy.Basic,
    names: dict[sympy.Basic, str],
    vector: bool = False,
    shifts: bool = False,
) -> str:
    """``expr`` as Python source over ``names``; with ``shifts`` (integer arrays, no fraction
    anywhere) a ceiling or floor by a power of two is a shift."""
    if expr in names:  # an argument, a temporary or a hoisted division
        return names[expr]
    if isinstance(expr, sympy.Symbol):
        if expr not in names:
            raise TypeError(f"no value for symbol {expr}")
        return names[expr]
    if isinstance(expr, sympy.Integer):
        return f"({int(expr)})"
    if isinstance(expr, sympy.Rational):
        return f"_Fraction({expr.p}, {expr.q})"
    if expr is sympy.true:
        return "True"
    if expr is sympy.false:
        return "False"
    if isinstance(expr, sympy.Add):
        return "(" + " + ".join(_code(a, names, vector, shifts) for a in expr.args) + ")"
    if isinstance(expr, sympy.Mul):
        return "(" + " * ".join(_code(a, names, vector, shifts) for a in expr.args) + ")"
    if isinstance(expr, sympy.Pow):
        exponent = expr.args[1]
        if isinstance(exponent, sympy.Integer) and exponent >= 0:
            return f"({_code(expr.args[0], names, vector, shifts)} ** {int(exponent)})"
        if isinstance(exponent, sympy.Integer):
            base = _code(expr.args[0], names, vector, shifts)
            return f"(_Fraction(1) / ({base} ** {-int(exponent)}))"
        raise TypeError(f"cannot evaluate {expr} exactly")
    if isinstance(expr, (sympy.ceiling, sympy.floor)):
        numerator, denominator = sympy.fraction(sympy.together(expr.args[0]))
        num, den = (
            _code(numerator, names, vector, shifts),
            _code(denominator, names, vector, shifts),
        )
        if isinstance(denominator, sympy.Integer) and denominator > 0:
            k = int(denominator)
            up = "" if isinstance(expr, sympy.floor) else f" + {k - 1}"
            if shifts and k & (k - 1) == 0:
                # A power of two: on integer arrays a shift, which floors as // does, is
                # several times faster than a division.
                return f"(({num}{up}) >> {k.bit_length() - 1})"
            return f"(({num}{up}) // {k})"
        if isinstance(expr, sympy.floor):
            return f"({num} // {den})"
        return f"(-((-{num}) // {den}))"
    if isinstance(expr, sympy.Max):
        parts = [_code(a, names, vector, shifts) for a in expr.args]
        if not vector:
            return "max(" + ", ".join(parts) + ")"
        out = parts[0]
        for part in parts[1:]:
            out = f"_maximum({out}, {part})"
        return out
    if isinstance(expr, sympy.Piecewise):
        out = "None"
        for value, condition in reversed(expr.args):
            v, c = _code(value, names, vector, shifts), _code(condition, names, vector, shifts)
            if condition is sympy.true:
                out = v
            elif vector:
                out = f"_where({c}, {v}, {out})"
            else:
                out = f"({v} if {c} else {out})"
        return out
    if type(expr) in _RELATIONS:
        op = _RELATIONS[type(expr)][0]
        left = _code(expr.args[0], names, vector, shifts)
        return f"({left} {op} {_code(expr.args[1], names, vector, shifts)})"
    if isinstance(expr, (sympy.Or, sympy.And)):
        parts = [_code(a, names, vector, shifts) for a in expr.args]
        if vector:
            combine = "_or" if isinstance(expr, sympy.Or) else "_and"
            out = parts[0]
            for part in parts[1:]:
                out = f"{combine}({out}, {part})"
            return out
        joiner = " or " if isinstance(expr, sympy.Or) else " and "
        return "(" + joiner.join(parts) + ")"
    if isinstance(expr, sympy.Not):
        inner = _code(expr.args[0], names, vector, shifts)
        return f"_not({inner})" if vector else f"(not {inner})"
    raise TypeError(f"cannot evaluate {type(expr).__name__} {expr} exactly")
