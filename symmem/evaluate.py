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

import contextlib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import sympy

from symmem import dominance
from symmem.cache import cached, compiled
from symmem.config import Config
from symmem.dominance import Regime
from symmem.errors import ConfigError
from symmem.kinds import CATEGORIES
from symmem.symbols import FIELDS

if TYPE_CHECKING:
    from symmem.model import Model
    from symmem.report import Report

__all__ = [
    "CompiledReport",
    "Maxima",
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
    regimes: Sequence[Regime] = (),
    given: Sequence[int] = (),
    returns: Sequence[int] | None = None,
) -> str:
    """The Python source of :func:`compile_many`'s function (it can be stored and loaded).

    With ``whole=False`` an output may be a fraction (a ``Fraction``), not only an int. With a
    ``guard`` (a condition on ``a0, a1, ...``) the function returns ``None`` where it fails.
    Within a regime (:mod:`symmem.dominance`) each maximum skips the pieces the regime proves
    are never the largest there. The scalar function checks the ``regimes``, the narrowest
    (last) first, and evaluates every piece where none holds; a vector function takes one
    regime at most and assumes it (its maxima may be too small where it fails, so the caller
    evaluates those configs again with a broader regime or none).

    A vector function can also take outputs computed elsewhere and return only some: the
    outputs ``given`` (without a maximum) are further arguments after ``args``, named ``r{i}``,
    those of them the returned values need only; with ``returns`` (indices) the function
    returns those outputs and computes only what they need."""
    if (given or returns is not None) and not vector:
        raise ValueError("only a vector function takes outputs as arguments or returns some")
    exprs = [sympy.sympify(e) for e in exprs]
    # An output that is a number is no term of another (``x + 0`` would cost an addition).
    numbers = {output(i): e for i, e in enumerate(exprs) if e.is_Number}
    exprs = [e.xreplace(numbers) for e in exprs]
    names: dict[sympy.Basic, str] = {symbol: f"a{i}" for i, symbol in enumerate(args)}
    names |= {output(i): f"r{i}" for i in range(len(exprs))}
    # Common subexpressions are shared between the polynomial outputs; a Max (a peak: many
    # candidates, each used once) is written out as it is, which is much faster to generate.
    base = [
        i
        for i, e in enumerate(exprs)
        if not any(str(s).startswith("_out") for s in e.free_symbols)
        and not e.has(sympy.Max)
        and i not in given
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
    # The outputs without a maximum first: a piece of a maximum may be computed from one of
    # them (a point of the step holds most of what the totals sum).
    wrap = "_int" if fractions and not vector and whole else ""
    whole_exprs: list[sympy.Basic] = []
    for expr in exprs:
        whole_exprs.append(expr.xreplace({output(j): e for j, e in enumerate(whole_exprs)}))
    early = [i for i, e in enumerate(whole_exprs) if not e.has(sympy.Max)]
    seeds = {}
    results = {i: f"r{i}" for i in range(len(exprs))}
    if any(i not in early for i in given):
        raise ValueError("an output given as an argument cannot hold a maximum")
    for i in early:
        if i in given:
            names[output(i)] = results[i]
            seeds[results[i]] = _terms(whole_exprs[i])
            continue
        code = _code(bodies.get(i, exprs[i]), names, vector, shifts)
        if code.isidentifier() and not wrap:  # a value computed already: no copy
            results[i] = code
        else:
            lines.append(f"r{i} = {wrap}({code})")
        names[output(i)] = results[i]
        if not wrap:
            seeds[results[i]] = _terms(whole_exprs[i])
    # Each maximum over a step's points, innermost first; within a regime, its kept pieces.
    rest = [e for i, e in enumerate(exprs) if i not in bodies and not _uses_outputs(e)]
    maxima = sorted(dict.fromkeys(m for e in rest for m in e.atoms(sympy.Max)), key=sympy.count_ops)
    if vector and len(regimes) > 1:
        raise ValueError("a vector function assumes one regime at most")
    levels = [(regime, _pruned(maxima, regime)) for regime in regimes]
    levels = [(regime, pruned) for regime, pruned in levels if pruned]
    # In a Max the candidates repeat the same divisions (a rounded size, a padded length):
    # each distinct ceiling or floor is computed once, inner ones first; those that only the
    # pieces outside the narrowest regime use, only where it fails.
    fast = [e.xreplace(levels[-1][1]) for e in rest] if levels else rest
    if vector:  # each product of sizes once, from a smaller one where one is computed
        lines += _products(fast, names, "u")
    lines += _hoist(fast, names, vector, shifts, "q")
    trees: dict[sympy.Basic, _Tree] = {}
    if vector or not levels:
        for number, found in enumerate(maxima):
            kept = levels[0][1].get(found, found) if levels else found
            lines += _max_lines(kept, names, vector, shifts, f"m{number}", seeds, trees)
            names[found] = f"m{number}"
    else:
        # The narrowest regime first, each broader one next, every piece where none holds.
        branches = [*reversed(levels), (None, {})]
        for depth, (regime, pruned) in enumerate(branches):
            if regime is None:
                lines.append("else:")
            else:
                keyword = "elif" if depth else "if"
                lines.append(f"{keyword} {_code(sympy.And(*regime.relations), names)}:")
            inside = dict(names)
            branch = [] if depth == 0 else _hoist(rest, inside, vector, shifts, f"p{depth}_")
            for number, found in enumerate(maxima):
                kept = pruned.get(found, found)
                branch += _max_lines(kept, inside, vector, shifts, f"m{number}", seeds, trees)
                inside[found] = f"m{number}"
            lines += ["    " + line for line in branch]
        for number, found in enumerate(maxima):
            names[found] = f"m{number}"
    for i, expr in enumerate(exprs):
        if i not in early:
            code = _code(bodies.get(i, expr), names, vector, shifts)
            if code.isidentifier() and not wrap:
                results[i] = names[output(i)] = code
            else:
                lines.append(f"r{i} = {wrap}({code})")
    returned = range(len(exprs)) if returns is None else returns
    if keys is None:
        result = "(" + "".join(f"{results[i]}, " for i in returned) + ")"
    else:
        result = "{" + ", ".join(f"{keys[i]!r}: {results[i]}" for i in returned) + "}"
    if vector:  # no branches: only what the returned values need
        lines = _live(lines, result)
    used = set(re.findall(r"\w+", result + " ".join(lines)))
    parameters = [f"a{i}" for i in range(len(args))]
    parameters += [results[i] for i in given if results[i] in used]
    return (
        f"def _f({', '.join(parameters)}):\n"
        + "".join(f"    {line}\n" for line in lines)
        + f"    return {result}\n"
    )


def _products(
    exprs: Sequence[sympy.Basic], names: dict[sympy.Basic, str], prefix: str
) -> list[str]:
    """Lines that compute each product of sizes in ``exprs`` not named yet (``B*S*D`` in
    ``ceiling(B*S*D/512)``, ``D**2``), fewest factors first, each from the largest named
    product that divides it, into ``{prefix}0, {prefix}1, ...`` (added to ``names``)."""
    sizes = {s for s in names if isinstance(s, sympy.Symbol)}

    def powers(expr: sympy.Basic) -> dict[sympy.Basic, int] | None:
        """``expr`` as {size: exponent} if it is a product of sizes' positive powers."""
        found: dict[sympy.Basic, int] = {}
        for factor in sympy.Mul.make_args(expr):
            base, exponent = factor.as_base_exp()
            if base not in sizes or not (isinstance(exponent, sympy.Integer) and exponent > 0):
                return None
            found[base] = found.get(base, 0) + int(exponent)
        return found

    products: dict[sympy.Basic, dict[sympy.Basic, int]] = {}
    for expr in exprs:
        for node in sympy.preorder_traversal(expr):
            if isinstance(node, (sympy.Mul, sympy.Pow)):
                pure = sympy.Mul(*(f for f in sympy.Mul.make_args(node) if powers(f)))
                found = powers(pure)
                if found is not None and sum(found.values()) >= 2:
                    products[pure] = found
    named = {e: p for e in names if (p := powers(e)) is not None and sum(p.values()) >= 2}
    lines: list[str] = []
    ordered = sorted(products.items(), key=lambda item: (sum(item[1].values()), str(item[0])))
    for product, found in ordered:
        if product in names:
            continue
        divisors = [
            (sum(p.values()), e)
            for e, p in named.items()
            if all(found.get(s, 0) >= k for s, k in p.items())
        ]
        if divisors:
            _, divisor = max(divisors, key=lambda d: (d[0], str(d[1])))
            rest = sympy.Mul(*(s ** (k - named[divisor].get(s, 0)) for s, k in found.items()))
            code = f"({names[divisor]} * {_code(rest, names)})"
        else:
            code = " * ".join(names[s] for s, k in found.items() for _ in range(k))
            code = f"({code})"
        name = f"{prefix}{len(lines)}"
        lines.append(f"{name} = {code}")
        names[product] = name
        named[product] = found
    return lines


def _live(lines: list[str], result: str) -> list[str]:
    """The assignments among ``lines`` (``name = code``, no branches) that ``result`` needs."""
    needed = set(re.findall(r"\w+", result))
    kept = []
    for line in reversed(lines):
        target, _, code = line.partition(" = ")
        if not target.isidentifier():
            raise ValueError(f"not a plain assignment: {line!r}")
        if target in needed:
            kept.append(line)
            needed |= set(re.findall(r"\w+", code))
    return kept[::-1]


def _pruned(maxima: Sequence[sympy.Max], regime: Regime) -> dict[sympy.Basic, sympy.Basic]:
    """Each maximum that ``regime`` lets skip pieces, with only the pieces it keeps."""
    pruned: dict[sympy.Basic, sympy.Basic] = {}
    for found in maxima:
        kept = [found.args[i] for i in dominance.kept(found.args, regime)]
        if len(kept) < len(found.args):
            pruned[found] = sympy.Max(*kept, evaluate=False) if len(kept) > 1 else kept[0]
    return pruned


def _uses_outputs(expr: sympy.Basic) -> bool:
    """Whether ``expr`` refers to earlier outputs (:func:`output` placeholders)."""
    return any(str(s).startswith("_out") for s in expr.free_symbols)


def _hoist(
    exprs: Sequence[sympy.Basic],
    names: dict[sympy.Basic, str],
    vector: bool,
    shifts: bool,
    prefix: str,
) -> list[str]:
    """Lines that compute each distinct ceiling or floor of ``exprs`` not named yet, inner
    ones first, into ``{prefix}0, {prefix}1, ...`` (added to ``names``)."""
    lines: list[str] = []
    atoms = {a for e in exprs for a in e.atoms(sympy.ceiling, sympy.floor)}
    for atom in sorted(atoms, key=lambda a: (sympy.count_ops(a), sympy.default_sort_key(a))):
        if atom not in names:
            name = f"{prefix}{len(lines)}"
            lines.append(f"{name} = {_code(atom, names, vector, shifts)}")
            names[atom] = name
    return lines


def _is_power(expr: sympy.Basic) -> bool:
    """Whether ``expr`` is a symbol or a symbol's positive integer power."""
    base, exponent = expr.as_base_exp()
    return isinstance(base, sympy.Symbol) and isinstance(exponent, sympy.Integer) and exponent > 0


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
    found: sympy.Basic,
    names: dict[sympy.Basic, str],
    vector: bool,
    shifts: bool,
    name: str,
    seeds: Mapping[str, dict[sympy.Basic, sympy.Number]] | None = None,
    trees: dict[sympy.Basic, _Tree] | None = None,
) -> list[str]:
    """Lines that compute ``found`` into ``name``, a maximum over the live bytes at the points
    of a training step, along its :func:`_tree` (kept in ``trees`` for the next branch that
    computes the same maximum)."""
    tree = None if trees is None else trees.get(found)
    if tree is None:
        tree = _tree(found, seeds or {})
        if trees is not None:
            trees[found] = tree
    factor, order, parent, diffs = tree.factor, tree.order, tree.parent, tree.diffs
    lines = []
    # A product used by more than one difference is computed once.
    uses: dict[sympy.Basic, int] = {}
    for diff in diffs.values():
        for rest in diff:
            if rest != 1:
                uses[rest] = uses.get(rest, 0) + 1
    for k, rest in enumerate(r for r, n in uses.items() if n > 1 and not vector and r not in names):
        lines.append(f"{name}_u{k} = {_code(rest, names, vector, shifts)}")
        names[rest] = f"{name}_u{k}"
    for i in order:
        p = parent[i]
        if isinstance(p, str):  # a seed, in the pieces' unit
            base = p if factor == 1 else f"({p} // {factor})"
        else:
            base = f"{name}_{p}" if p >= 0 else ""
        lines.append(f"{name}_{i} = ({_combination(diffs[i], names, vector, shifts, base)})")
    values = [f"{name}_{i}" for i in range(len(order))]
    scale = "" if factor == 1 else f"{factor} * "
    if len(values) == 1:
        lines.append(f"{name} = {scale}{values[0]}")
    elif vector:
        out = values[0]
        for value in values[1:]:
            out = f"_maximum({out}, {value})"
        lines.append(f"{name} = {scale}{out}")
    else:
        lines.append(f"{name} = {scale}max({', '.join(values)})")
    names[found] = name
    return lines


@dataclass(frozen=True)
class _Tree:
    """How a maximum's pieces are computed: each from its ``parent`` (a piece's index, a seed's
    name, or -1 for none) plus its ``diffs``, in ``order``, in units of ``factor``."""

    factor: int
    order: list[int]
    parent: list[int | str]
    diffs: dict[int, dict[sympy.Basic, sympy.Number]]


def _tree(found: sympy.Basic, seeds: Mapping[str, dict[sympy.Basic, sympy.Number]]) -> _Tree:
    """The pieces of ``found`` along a difference tree. Neighbouring points of a step differ by
    a few tensors, so each piece is computed from the one it differs least from (a minimum
    spanning tree over the number of differing terms, Prim's algorithm from the empty sum and
    from the values already computed, the ``seeds`` by name), and only the first from scratch:
    the same exact sums, in a fraction of the operations."""
    pieces = [_terms(p) for p in (found.args if isinstance(found, sympy.Max) else (found,))]
    # Sizes rounded to the allocator's blocks: every coefficient a multiple of 512. The
    # maximum of the sums divided by their common factor, times it, is the same number.
    coefficients = [c for piece in pieces for c in piece.values()]
    factor = 1
    if coefficients and all(isinstance(c, sympy.Integer) for c in coefficients):
        factor = math.gcd(*(int(c) for c in coefficients))
        pieces = [{r: c / factor for r, c in piece.items()} for piece in pieces]
    # A seed serves where its sum divided by the same factor is whole.
    starts = {
        seed: {r: c / factor for r, c in terms.items()}
        for seed, terms in seeds.items()
        if all(isinstance(c / factor, sympy.Integer) for c in terms.values())
    }
    # The tree compares plain numbers keyed by small integers (SymPy's are slow to compare).
    ids: dict[sympy.Basic, int] = {}

    def plain(terms: dict[sympy.Basic, sympy.Number]) -> dict[int, int | Fraction]:
        return {
            ids.setdefault(r, len(ids)): int(c.p) if c.q == 1 else Fraction(int(c.p), int(c.q))
            for r, c in terms.items()
        }

    keyed = [plain(p) for p in pieces]
    keyed_starts = {seed: plain(terms) for seed, terms in starts.items()}
    parent: list[int | str] = [-1] * len(pieces)
    cost = [len(p) for p in pieces]
    for j, piece in enumerate(keyed):
        for seed, terms in keyed_starts.items():
            d = dominance.differing(piece, terms)
            if d < cost[j]:
                cost[j], parent[j] = d, seed
    left = set(range(len(pieces)))
    order = []
    while left:
        i = min(left, key=lambda j: (cost[j], j))
        left.remove(i)
        order.append(i)
        for j in left:
            d = dominance.differing(keyed[j], keyed[i])
            if d < cost[j]:
                cost[j], parent[j] = d, i
    empty: dict[sympy.Basic, sympy.Number] = {}

    def of(p: int | str) -> dict[sympy.Basic, sympy.Number]:
        return starts[p] if isinstance(p, str) else pieces[p] if p >= 0 else empty

    diffs = {i: _difference(pieces[i], of(parent[i])) for i in order}
    return _Tree(factor, order, parent, diffs)


def _combination(
    terms: dict[sympy.Basic, sympy.Number],
    names: dict[sympy.Basic, str],
    vector: bool,
    shifts: bool,
    base: str,
) -> str:
    """``base`` plus the sum of ``terms`` as source, in few operations: the terms with the same
    coefficient summed before one multiplication, a factor shared by several of them taken out
    (``3*a*x + 3*a*y - z`` is ``3 * (a * (x + y)) - z``). Positive terms come first, so that a
    sum without ``base`` starts with one."""
    groups: dict[sympy.Number, list[sympy.Basic]] = {}
    constant = sympy.Integer(0)
    for rest, coefficient in terms.items():
        if rest == 1:
            constant += coefficient
        else:
            groups.setdefault(coefficient, []).append(rest)
    if constant:
        groups.setdefault(constant, []).append(sympy.Integer(1))
    code = base
    for coefficient in sorted(groups, key=lambda c: (bool(c.is_negative), abs(c))):
        rests = groups[coefficient]
        size = -coefficient if coefficient.is_negative else coefficient
        if rests == [sympy.Integer(1)]:
            term = _code(size, names)
        else:
            term = _sum_code(rests, names, vector, shifts)
            if size != 1:
                term = f"{_code(size, names)} * {term}"
        sign = "-" if coefficient.is_negative else "+"
        code = f"{code} {sign} {term}" if code else (term if sign == "+" else f"-{term}")
    return code or "0"


def _sum_code(
    rests: list[sympy.Basic], names: dict[sympy.Basic, str], vector: bool, shifts: bool
) -> str:
    """The sum of products ``rests`` with the factor most of them share taken out, again
    within each part."""
    if len(rests) == 1:
        return _code(rests[0], names, vector, shifts)

    def factors(rest: sympy.Basic) -> list[sympy.Basic]:
        if rest == 1:
            return []
        return [rest] if rest in names else list(sympy.Mul.make_args(rest))

    counts: dict[sympy.Basic, int] = {}
    for rest in rests:
        for factor in set(factors(rest)):
            counts[factor] = counts.get(factor, 0) + 1
    shared = max(counts, key=lambda f: (counts[f], sympy.default_sort_key(f)), default=None)
    if shared is None or counts[shared] < 2:
        return "(" + " + ".join(_code(r, names, vector, shifts) for r in rests) + ")"
    inner, outer = [], []
    for rest in rests:
        found = factors(rest)
        if shared in found:
            found.remove(shared)
            inner.append(sympy.Mul(*found))
        else:
            outer.append(rest)
    code = f"{_code(shared, names, vector, shifts)} * {_sum_code(inner, names, vector, shifts)}"
    if outer:
        code = f"{code} + {_sum_code(outer, names, vector, shifts)}"
    return f"({code})"


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


@dataclass(frozen=True)
class Maxima:
    """A NumPy function of the sizes and then the sums ``inputs`` (by name) that returns the
    maxima over the step (:meth:`CompiledReport.vector_for`)."""

    function: Callable[..., tuple[Any, ...]]
    inputs: tuple[str, ...]


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
        # The same functions by the switch values as a caller passed them (checked once).
        self._given: dict[tuple[Any, ...], Callable[..., dict[str, int] | None]] = {}
        self._totals: Callable[..., dict[str, int]] | None = None
        self._vectors: dict[tuple[Any, ...], Maxima] = {}
        self._sums: Callable[..., tuple[Any, ...]] | None = None
        self._bound: Callable[..., tuple[int]] | None = None
        self._outside: dict[int, Callable[..., Any]] = {}
        model = self.model
        self.regimes = tuple(Regime(relations, model.sizes) for relations in model.regimes)
        #: The totals that hold a maximum over the step (the only ones a regime changes).
        self.maxima = tuple(
            k for k, e in zip(self.keys, self.exprs, strict=True) if e.has(sympy.Max)
        )
        #: The others: sums of terms, the same code for every switch combination and regime.
        self.sums = tuple(k for k in self.keys if k not in self.maxima)
        self._sum_outputs = [i for i, k in enumerate(self.keys) if k in self.sums]
        self._max_outputs = [i for i, k in enumerate(self.keys) if k in self.maxima]

    def __call__(self, config: Config) -> dict[str, int]:
        """Every total at a complete config."""
        config.require_complete()
        self.report.kernel_for(config)
        values = config.arguments()
        result: dict[str, int] = self._scalar(*values)
        return result

    @property
    def totals(self) -> Callable[..., dict[str, int]]:
        """``totals(*sizes, **switches)``: every total for the model's sizes given as integers,
        in its order (``B, S, D, NH, V, L`` for nanoGPT), and its switches by name (off unless
        given): the fast path, checked like a Config. The function is generated for the model's
        switch names (a call looks its evaluator up by their values) and falls back to the full
        check, with its error, wherever the evaluator's own check fails.

        >>> from symmem import build_report
        >>> build_report("cpu").compiled.totals(2, 40, 64, 4, 101, 1)["activations"]
        372160
        """
        function = self._totals
        if function is None:
            names = self.model.switch_names
            values = "".join(f"{n}, " for n in names)
            source = (
                f"def totals(*sizes, {''.join(f'{n}=False, ' for n in names)}**other):\n"
                f"    if not other:\n"
                f"        try:\n"
                # None where the guard finds the sizes out of bounds; a TypeError for a wrong
                # count of sizes or an unhashable switch value: the slow path names each.
                f"            result = given[({values})](*sizes)\n"
                f"        except (KeyError, TypeError):\n"
                f"            result = None\n"
                f"        if result is not None and (unlimited or valid(sizes)):\n"
                f"            return result\n"
                f"    return slow(sizes, ({values}), other)\n"
            )
            namespace: dict[str, Any] = {
                "given": self._given,
                "unlimited": not self.model.limits,
                "valid": self.model.valid,
                "slow": self._slow,
            }
            exec(compiled(source, "<symmem.totals>"), namespace)  # source written above
            function = self._totals = namespace["totals"]
        return function

    def _slow(
        self, sizes: tuple[Any, ...], values: tuple[Any, ...], other: dict[str, Any]
    ) -> dict[str, int]:
        """:attr:`totals` where its evaluator does not answer: check, raise or specialise."""
        model = self.model
        unknown = sorted(set(other) - (set(FIELDS.values()) - set(model.size_names)))
        if unknown:
            raise ConfigError(
                f"{model.name}'s totals take its sizes in order and no switch "
                f"{', '.join(unknown)} (its switches: {', '.join(model.switch_names)})"
            )
        # A switch or size another architecture has: the config's check says why not here.
        switches = dict(zip(model.switch_names, values, strict=True)) | other
        self._check(sizes, switches)
        function = self._specialise(tuple(bool(v) for v in values))
        with contextlib.suppress(TypeError):  # an unhashable value the check accepted
            self._given[values] = function
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

    def _name(self, kind: str) -> str:
        """The cache entry name of one of this report's generated functions."""
        report = self.report
        gpu = report.platform.gpu
        where = report.platform.name if gpu is None else f"{report.platform.name}-{gpu.name}"
        return (
            f"{kind}-{self.model.name}-{where}-{report.attention}-{report.optimizer}-"
            f"{report.checkpoint}"
        )

    def _specialise(self, key: tuple[bool, ...]) -> Callable[..., dict[str, int] | None]:
        """The totals with the switches set: fewer operations per call (and, within the
        model's regimes, fewer pieces per maximum). Its source is generated once and cached."""
        if key not in self._by_switches:
            values = dict(zip(self.model.switches, map(int, key), strict=True))
            combo = "".join(str(int(v)) for v in key)

            def build() -> str:
                exprs = [e.xreplace(values) for e in self._fast]
                return generate(
                    exprs,
                    self.model.sizes,
                    keys=self.keys,
                    guard=_guard(self.model),
                    regimes=self.regimes,
                )

            self._by_switches[key] = load(cached(f"{self._name('scalar')}-{combo}", build))
        return self._by_switches[key]

    def bound(self, maxima: Sequence[int]) -> int:
        """An upper bound of every total, the parameter count and each side of the regimes'
        relations when each argument (sizes then switches) lies in ``[0, maxima[i]]``; its code
        is generated once and cached."""
        if self._bound is None:
            sides = [side for regime in self.regimes for r in regime.relations for side in r.args]

            def build() -> str:
                bounds = [bound_expr(e) for e in (*self.exprs, *sides)]
                top = sympy.Max(*bounds, evaluate=False) if len(bounds) > 1 else bounds[0]
                return generate([top], self.args)

            self._bound = load(cached(self._name("bound"), build))
        result: int = self._bound(*maxima)[0]
        return result

    def vector_sums(self) -> Callable[..., tuple[Any, ...]]:
        """The NumPy function of the sizes and switches (0/1 arrays) that returns the totals
        without a maximum (:attr:`sums`, in order): one function for every switch combination,
        so a sweep evaluates them without grouping its configs. Its source is generated once
        and kept in the disk cache."""
        if self._sums is None:
            wanted = self._sum_outputs

            def build() -> str:
                # The maxima are left out (zero): their outputs are not returned.
                zero = sympy.Integer(0)
                exprs = [e if i in wanted else zero for i, e in enumerate(self._fast)]
                return generate(exprs, self.args, vector=True, returns=wanted)

            self._sums = load(cached(self._name("sums"), build), vector=True)
        return self._sums

    def vector_for(self, key: tuple[bool, ...], level: int | None = None) -> Maxima:
        """The NumPy function that returns the maxima over the step (:attr:`maxima`, in order)
        with the switches set to ``key``, from the sizes and the sums it builds on
        (:attr:`Maxima.inputs`, values of :meth:`vector_sums`). With a ``level`` (an index into
        the model's regimes), each maximum holds only the pieces that can be the largest within
        that regime: right only where :meth:`outside` is false. Its source is generated once
        and kept in the disk cache."""
        found = self._vectors.get((*key, level))
        if found is None:
            values = dict(zip(self.model.switches, map(int, key), strict=True))
            combo = "".join(str(int(v)) for v in key)
            kind = "vector" if level is None else f"vector{level}"
            sizes = self.model.sizes
            regimes = () if level is None else (self.regimes[level],)

            def build() -> str:
                exprs = [e.xreplace(values) for e in self._fast]
                return generate(
                    exprs,
                    sizes,
                    vector=True,
                    regimes=regimes,
                    given=self._sum_outputs,
                    returns=self._max_outputs,
                )

            function = load(cached(f"{self._name(kind)}-{combo}", build), vector=True)
            # The arguments after the sizes are the sums it needs, named r<index>.
            code = function.__code__
            names = code.co_varnames[len(sizes) : code.co_argcount]
            inputs = tuple(self.keys[int(name[1:])] for name in names)
            found = self._vectors[(*key, level)] = Maxima(function, inputs)
        return found

    def outside(self, level: int, *sizes: Any) -> Any:
        """Where the sizes (NumPy arrays, in the model's order) leave the model's regime
        ``level``: a boolean array."""
        function = self._outside.get(level)
        if function is None:
            names = {symbol: f"a{i}" for i, symbol in enumerate(self.model.sizes)}
            relations = self.regimes[level].relations
            condition = _code(sympy.Not(sympy.And(*relations)), names, vector=True)
            arguments = ", ".join(names.values())
            source = f"def _f({arguments}):\n    return {condition}\n"
            function = self._outside[level] = load(source, vector=True)
        return function(*sizes)

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
        return "(" + _combination(_terms(expr), names, vector, shifts, "") + ")"
    if isinstance(expr, sympy.Mul):
        factors = list(expr.args)
        if len(factors) > 2:  # a named product among the factors: ``3 * B * S`` as ``3 * t0``
            others = [f for f in factors if f.is_number or not _is_power(f)]
            product = sympy.Mul(*(f for f in factors if f not in others))
            if product in names:
                factors = [*others, product]
        return "(" + " * ".join(_code(a, names, vector, shifts) for a in factors) + ")"
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
