"""Which pieces of a maximum over the step cannot be the largest where a model's regime holds.

A config's ``peak`` is ``Max(p_1, ..., p_k)`` over the points of a training step, and
``max_memory_allocated`` the same over 512-byte roundings. No piece is below another at every
size (the step keeps only those), but most are below another wherever the sizes keep the
proportions of the configs people train: a vocabulary at least as wide as the model, at least as
many tokens in a batch as the model is wide, and so on (:attr:`symmem.model.Model.regimes`).
This module proves, when an evaluator is generated, which pieces such a regime lets it skip;
the evaluator checks the regime at run time and evaluates every piece where it fails. The
regime decides the speed, never a value.

The proof is a sufficient test. Each regime relation is a bound on a ratio of monomials,
``x^u >= c`` (``V >= D`` is ``V/D >= 1``, ``D >= 32`` is ``D >= 32``), and every size is at
least 1. ``p_i <= p_j`` holds where ``p_j - p_i``, with each rounding replaced by the bound that
makes the difference smaller (``y <= ceiling(y) <= y + 1``), is a polynomial whose negative terms
are each paid for by positive ones: a positive term ``P x^p`` pays ``P * beta`` towards a
negative term at ``x^n``, where ``beta`` is the least value of ``x^(p - n)`` that the regime's
relations (each used up to twice) and the sizes' lower bound of 1 prove. Before the proof, a
pair is compared at a few sizes inside the regime: a piece larger at one of them cannot be
below the other everywhere there.

>>> from symmem.symbols import B, D, S, V
>>> prove = Regime((V >= D, B * S >= D), (B, S, D, V))
>>> prove.below(2 * B * S * D + D * V, 4 * B * S * D)   # D·V <= 2·B·S·D needs V <= 2·B·S
False
>>> prove.below(2 * B * S * D + D**2, 3 * B * S * D)    # D² <= B·S·D where B·S >= D
True
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import sympy

__all__ = ["Regime", "differing", "kept"]

#: A polynomial in the sizes: exponent vector -> coefficient.
_Poly = dict[tuple[int, ...], Fraction]
#: A sum as ``{product: coefficient}``.
_Terms = dict[sympy.Basic, Fraction]


class _UnboundedError(Exception):
    """An expression the test cannot bound by a polynomial (a nested maximum, a condition
    whose branches can be negative)."""


class Regime:
    """The relations a regime holds, over the sizes ``sizes``, as a prover of ``<=``."""

    def __init__(self, relations: Sequence[sympy.Rel], sizes: Sequence[sympy.Symbol]) -> None:
        self.relations = tuple(relations)
        self.sizes = tuple(sizes)
        self._index = {s: i for i, s in enumerate(self.sizes)}
        self._beta: dict[tuple[int, ...], Fraction] = {}
        self._bounds: dict[tuple[sympy.Basic, bool], _Poly] = {}
        self.atoms = tuple(self._atom(r) for r in relations)

    def _atom(self, relation: sympy.Rel) -> tuple[tuple[int, ...], Fraction]:
        """``lhs >= rhs`` (monomials) as ``x^u >= c``."""
        if not isinstance(relation, (sympy.GreaterThan, sympy.StrictGreaterThan)):
            raise ValueError(f"a regime relation must read lhs >= rhs, got {relation}")
        (u, a), (w, b) = (self._monomial(side) for side in relation.args)
        return tuple(x - y for x, y in zip(u, w, strict=True)), b / a

    def _monomial(self, expr: sympy.Expr) -> tuple[tuple[int, ...], Fraction]:
        poly = self._bound(sympy.sympify(expr), True)
        if len(poly) != 1 or next(iter(poly.values())) <= 0:
            raise ValueError(f"a regime relation compares positive monomials, got {expr}")
        ((powers, coefficient),) = poly.items()
        return powers, coefficient

    # -- bounds ---------------------------------------------------------------------------------
    def _bound(self, expr: sympy.Basic, low: bool) -> _Poly:
        """A polynomial below (``low``) or above ``expr`` for every size >= 1."""
        key = (expr, low)
        found = self._bounds.get(key)
        if found is None:
            found = self._bounds[key] = self._compute(expr, low)
        return found

    def _compute(self, expr: sympy.Basic, low: bool) -> _Poly:
        one = (0,) * len(self.sizes)
        if isinstance(expr, sympy.Symbol):
            if expr not in self._index:
                raise _UnboundedError(expr)
            powers = [0] * len(self.sizes)
            powers[self._index[expr]] = 1
            return {tuple(powers): Fraction(1)}
        if isinstance(expr, sympy.Rational):
            return {one: Fraction(int(expr.p), int(expr.q))}
        if isinstance(expr, sympy.Add):
            return _sum(self._scaled(term, low) for term in expr.args)
        if isinstance(expr, sympy.Mul):
            if expr.as_coeff_Mul()[0] != 1:
                return self._scaled(expr, low)
            product = {one: Fraction(1)}
            for factor in expr.args:
                product = _product(product, self._factor(factor, low))
            return product
        if isinstance(expr, sympy.Pow) and isinstance(expr.exp, sympy.Integer) and expr.exp > 0:
            base = self._factor(expr.base, low)
            product = {one: Fraction(1)}
            for _ in range(int(expr.exp)):
                product = _product(product, base)
            return product
        if isinstance(expr, sympy.ceiling):
            inner = dict(self._bound(expr.args[0], low))
            if not low:
                inner[one] = inner.get(one, Fraction(0)) + 1
            return inner
        if isinstance(expr, sympy.Piecewise):
            # Every branch non-negative: 0 below, the sum of the branches above.
            branches = [self._factor(value, low) for value, _ in expr.args]
            return {} if low else _sum(branches)
        raise _UnboundedError(expr)

    def _scaled(self, term: sympy.Expr, low: bool) -> _Poly:
        coefficient, rest = term.as_coeff_Mul()
        c = Fraction(int(coefficient.p), int(coefficient.q))
        return {k: c * v for k, v in self._bound(rest, low if c > 0 else not low).items()}

    def _factor(self, expr: sympy.Basic, low: bool) -> _Poly:
        """A bound of a factor of a product: it must be non-negative for the product of the
        factors' bounds to bound the product."""
        poly = self._bound(expr, True)
        if any(c < 0 for c in poly.values()):
            raise _UnboundedError(expr)
        return poly if low else self._bound(expr, False)

    # -- the test -------------------------------------------------------------------------------
    def _least(self, powers: tuple[int, ...]) -> Fraction:
        """The least value the regime proves for ``x^powers`` (0 where it proves none)."""
        found = self._beta.get(powers)
        if found is None:
            found = Fraction(0)
            for uses in itertools.product(range(3), repeat=len(self.atoms)):
                left, value = list(powers), Fraction(1)
                for times, (u, c) in zip(uses, self.atoms, strict=True):
                    if times:
                        left = [x - times * y for x, y in zip(left, u, strict=True)]
                        value *= c**times
                if value > found and min(left, default=0) >= 0:
                    found = value
            self._beta[powers] = found
        return found

    def nonnegative(self, poly: _Poly) -> bool:
        """Whether every negative term of ``poly`` is paid for by its positive terms."""
        left = {k: c for k, c in poly.items() if c > 0}
        debts = sorted(((k, -c) for k, c in poly.items() if c < 0), key=lambda kc: -kc[1])
        for powers, debt in debts:
            rates = sorted(
                (
                    (self._least(tuple(p - n for p, n in zip(mine, powers, strict=True))), mine)
                    for mine in left
                ),
                reverse=True,
            )
            for rate, mine in rates:
                if rate <= 0 or debt <= 0:
                    break
                spent = min(left[mine], debt / rate)
                left[mine] -= spent
                debt -= spent * rate
            if debt > 0:
                return False
        return True

    def below(self, small: sympy.Expr, large: sympy.Expr) -> bool:
        """Whether ``small <= large`` wherever the regime holds (a sufficient test)."""
        return self._below(_terms(small), _terms(large))

    def _below(
        self, small: dict[Any, Fraction], large: dict[Any, Fraction], rests: Any = None
    ) -> bool:
        """:meth:`below` of two sums as terms, keyed by their products or, with ``rests``, by
        an index into it."""
        difference = dict(large)
        for rest, c in small.items():
            difference[rest] = difference.get(rest, Fraction(0)) - c
        try:
            poly = _sum(
                {
                    k: c * v
                    for k, v in self._bound(rest if rests is None else rests[rest], c > 0).items()
                }
                for rest, c in difference.items()
                if c != 0
            )
        except _UnboundedError:
            return False
        return self.nonnegative(poly)

    def points(self, count: int = 8) -> list[dict[sympy.Symbol, int]]:
        """Up to ``count`` sizes inside the regime, drawn the same way on every call (each size
        log-uniform up to 2**16)."""
        draw = random.Random(0)
        found: list[dict[sympy.Symbol, int]] = []
        for _ in range(200 * count):
            values = [int(2 ** draw.uniform(0, 16)) for _ in self.sizes]
            if all(_power(values, u) >= c for u, c in self.atoms):
                found.append(dict(zip(self.sizes, values, strict=True)))
                if len(found) == count:
                    break
        return found


def kept(pieces: Sequence[sympy.Expr], regime: Regime) -> list[int]:
    """The indices of the pieces that no kept piece is proved to bound where the regime holds
    (the first of equal ones kept): their maximum is the maximum of all the pieces there.

    A piece can only bound another that is no larger at any size inside the regime, so each
    pair is first compared at a few such sizes, in exact arithmetic, and only the pairs that
    pass are given to the proof."""
    from symmem.evaluate import exact_value  # the evaluators use this module

    index: dict[sympy.Basic, int] = {}
    terms = []
    for piece in pieces:
        own: dict[int, Fraction] = {}
        for rest, c in _terms(piece).items():
            own[index.setdefault(rest, len(index))] = c
        terms.append(own)
    rests = list(index)
    points = regime.points()
    at = [[exact_value(rest, point) for rest in rests] for point in points]
    # In whole numbers: every coefficient times their common denominator.
    scale = math.lcm(*(Fraction(c).denominator for own in terms for c in own.values()))
    values = [
        tuple(sum(int(c * scale) * row[r] for r, c in own.items()) for row in at) for own in terms
    ]
    # Tried first: the largest pieces (the likeliest to bound the rest) and those that differ
    # least (their difference is the easiest to prove of one sign). A piece that none of these
    # candidates is proved to bound is kept (a sufficient test either way).
    by_size = sorted(range(len(pieces)), key=lambda j: sum(values[j]), reverse=True)
    dropped: set[int] = set()
    for i in range(len(pieces)):
        candidates = [
            j
            for j in by_size
            if j != i
            and j not in dropped
            and all(a >= b for a, b in zip(values[j], values[i], strict=True))
        ]
        near = sorted(candidates, key=lambda j: differing(terms[i], terms[j]))
        tried = dict.fromkeys(candidates[:_TRIES] + near[:_TRIES])
        if any(regime._below(terms[i], terms[j], rests) for j in tried):
            dropped.add(i)
    return [i for i in range(len(pieces)) if i not in dropped]


#: How many of the largest candidates, and of the nearest, :func:`kept` tries for a piece.
_TRIES = 4


def differing(a: dict[Any, Any], b: dict[Any, Any]) -> int:
    """How many terms differ between two sums."""
    return sum(1 for r, c in a.items() if b.get(r) != c) + sum(1 for r in b if r not in a)


def _power(values: Sequence[int], powers: tuple[int, ...]) -> Fraction:
    """The product of ``values`` to ``powers`` (some negative), exactly."""
    out = Fraction(1)
    for value, power in zip(values, powers, strict=True):
        out *= Fraction(value) ** power
    return out


def _terms(expr: sympy.Expr) -> _Terms:
    """``expr`` as ``{product: coefficient}``."""
    out: _Terms = {}
    for term in sympy.Add.make_args(expr):
        coefficient, rest = term.as_coeff_Mul()
        if not isinstance(coefficient, sympy.Rational):
            rest, coefficient = term, sympy.Integer(1)
        c = _number(coefficient)
        out[rest] = out.get(rest, 0) + c
    return {rest: c for rest, c in out.items() if c != 0}


def _number(value: sympy.Rational) -> Fraction:
    """A SymPy rational as a Python number: an ``int`` where whole (much faster to compare and
    add than a ``Fraction``, with which it mixes freely)."""
    p, q = int(value.p), int(value.q)
    return p if q == 1 else Fraction(p, q)  # type: ignore[return-value]


def _sum(polys: Iterable[_Poly]) -> _Poly:
    out: _Poly = {}
    for poly in polys:
        for k, v in poly.items():
            out[k] = out.get(k, Fraction(0)) + v
    return {k: v for k, v in out.items() if v != 0}


def _product(a: _Poly, b: _Poly) -> _Poly:
    out: _Poly = {}
    for x, p in a.items():
        for y, q in b.items():
            k = tuple(i + j for i, j in zip(x, y, strict=True))
            out[k] = out.get(k, Fraction(0)) + p * q
    return out
