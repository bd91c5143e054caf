"""What :func:`symmem.solve.largest` needs, built once per report, quantity, solved size and
switch combination, and kept in the disk cache: solving then does no symbolic work.

A maximum over the step is ``Max(p_1, ..., p_k)``, and ``Max <= M`` holds exactly when every
``p_i <= M``. Each ``p_i`` grows with the solved size, so the largest size that fits is the
smallest of the pieces' own largest values. Where a piece is a polynomial of degree 1 or 2 in
the solved size, its largest value is a closed form (the floor of a ratio, or of a quadratic's
root) of its coefficients, which are polynomials in the other sizes: :class:`Inverse` keeps
them as generated code, and the closed form as an expression with its text and LaTeX. Where the
size sits in a ceiling (a padded length, the allocator's rounding) there is no closed form, and
the answer is searched for over the quantity's own generated evaluator.

A ``Piecewise`` (a size case such as ``B = 1``) takes, at a config, the first branch whose
condition holds; each (in)equality in the solved size counts as false there (the branch is the
one for large values of it). The answer is always checked against the exact evaluator.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

import sympy

from symmem.cache import cached
from symmem.evaluate import generate, load
from symmem.simplify import paper_form
from symmem.symbols import LATEX_NAMES, SYMBOLS

__all__ = ["BUDGET", "Branch", "Inverse", "inverse", "piece_largest"]

#: The budget in closed forms.
BUDGET = sympy.Symbol("M", positive=True)

#: At most this many combinations of Piecewise branches get closed forms.
_MAX_BRANCH_COMBINATIONS = 16


@dataclass(frozen=True)
class Branch:
    """The pieces of the quantity under one choice of its Piecewise branches.

    Attributes:
        pieces: Each piece's coefficients, as indices into the coefficient function's outputs
            (constant first, then the solved size's first and second power).
        form: The closed form (``Min`` over the pieces of each one's largest value), or
            ``None`` where a piece is not a polynomial of degree at most 2 in the solved size.
        text: ``str(form)``.
        latex: ``form`` in LaTeX.
    """

    pieces: tuple[tuple[int, ...], ...]
    form: sympy.Expr | None
    text: str | None
    latex: str | None


@dataclass(frozen=True)
class Inverse:
    """The quantity's evaluator and closed forms for one solved size and switch combination.

    Attributes:
        symbol: The solved size's name.
        memory: Source of a function of the model's sizes (in order) returning the quantity.
        coefficients: Source of a function of the sizes returning the index of the branch
            combination that holds, then every branch's coefficients.
        branches: One per combination of Piecewise branches (the first for an expression
            without any).
    """

    symbol: str
    memory: str
    coefficients: str
    branches: tuple[Branch, ...]

    @property
    def memory_function(self) -> Callable[..., tuple[int]]:
        return _loaded(self.memory)

    @property
    def coefficient_function(self) -> Callable[..., tuple[Any, ...]]:
        return _loaded(self.coefficients)


@lru_cache(maxsize=256)
def _loaded(source: str) -> Callable[..., Any]:
    return load(source)


def inverse(
    name: str,
    expr: Callable[[], sympy.Expr],
    sizes: Sequence[sympy.Symbol],
    symbol: str,
    switches: tuple[tuple[sympy.Symbol, int], ...],
) -> Inverse:
    """The :class:`Inverse` of the quantity ``expr()`` (called only when it is built), from
    the disk cache entry ``name`` when there is one."""
    return cached(name, lambda: _build(expr(), tuple(sizes), symbol, switches), (Inverse, Branch))


def _build(
    quantity: sympy.Expr,
    sizes: tuple[sympy.Symbol, ...],
    symbol: str,
    switches: tuple[tuple[sympy.Symbol, int], ...],
) -> Inverse:
    x = SYMBOLS[symbol]
    expr = quantity.xreplace(dict(switches))
    memory = generate([expr], sizes)
    piecewises = sorted(expr.atoms(sympy.Piecewise), key=str)
    choices = list(itertools.product(*(range(len(p.args)) for p in piecewises)))
    outputs: list[sympy.Expr] = [_which(piecewises, x)]
    branches = []
    for chosen in choices[:_MAX_BRANCH_COMBINATIONS]:
        values = {p: p.args[i][0] for p, i in zip(piecewises, chosen, strict=True)}
        branch = expr.xreplace(values) if values else expr
        branches.append(_branch(branch, x, outputs))
    coefficients = generate(outputs, sizes, whole=False)
    return Inverse(symbol, memory, coefficients, tuple(branches))


def _which(piecewises: Sequence[sympy.Piecewise], x: sympy.Symbol) -> sympy.Expr:
    """The index of the combination of branches that holds (branches of the first Piecewise
    vary slowest), or -1 past the combinations that have closed forms."""
    index: sympy.Expr = sympy.Integer(0)
    for piecewise in piecewises:
        arms = [(sympy.Integer(i), _large(c, x)) for i, (_, c) in enumerate(piecewise.args[:-1])]
        chosen = sympy.Piecewise(*arms, (sympy.Integer(len(piecewise.args) - 1), True))
        index = index * len(piecewise.args) + chosen
    limit = _MAX_BRANCH_COMBINATIONS
    return sympy.Piecewise((index, index < limit), (-1, True)) if piecewises else index


def _large(condition: sympy.Basic, x: sympy.Symbol) -> sympy.Basic:
    """``condition`` for large values of ``x``: each (in)equality in ``x`` counts as false."""
    relations = condition.atoms(sympy.core.relational.Relational)
    return condition.xreplace({r: sympy.false for r in relations if r.has(x)})


def _branch(expr: sympy.Expr, x: sympy.Symbol, outputs: list[sympy.Expr]) -> Branch:
    """The pieces of one branch: their coefficients appended to ``outputs``."""
    pieces_exprs = expr.args if isinstance(expr, sympy.Max) else (expr,)
    polys = []
    for piece in pieces_exprs:
        steps = [f for f in piece.atoms(sympy.ceiling, sympy.floor) if f.has(x)]
        if steps or any(p.has(x) for p in piece.atoms(sympy.Piecewise, sympy.Max, sympy.Min)):
            return Branch((), None, None, None)
        poly = sympy.Poly(sympy.expand(piece), x)
        if poly.degree() > 2:
            return Branch((), None, None, None)
        polys.append(poly)
    pieces = []
    roots = []
    for poly in polys:
        coeffs = list(reversed(poly.all_coeffs()))  # constant first
        while len(coeffs) > 1 and coeffs[-1] == 0:
            coeffs.pop()
        first = len(outputs)
        outputs.extend(coeffs)
        pieces.append(tuple(range(first, first + len(coeffs))))
        if len(coeffs) > 1:
            roots.append(_root([paper_form(c) for c in coeffs]))
    if not roots:
        return Branch(tuple(pieces), None, None, None)
    unique = list(dict.fromkeys(roots))
    floors = [sympy.floor(r, evaluate=False) for r in unique]
    form = floors[0] if len(floors) == 1 else sympy.Min(*floors, evaluate=False)
    names = dict(LATEX_NAMES)
    latex = sympy.latex(form, symbol_names=names)
    return Branch(tuple(pieces), form, str(form), latex)


def _root(coeffs: Sequence[sympy.Expr]) -> sympy.Expr:
    """The largest real ``x`` with ``c0 + c1 x (+ c2 x^2) = M``."""
    left = (
        sympy.Add(BUDGET, sympy.Mul(-1, coeffs[0], evaluate=False), evaluate=False)
        if coeffs[0] != 0
        else BUDGET
    )
    if len(coeffs) == 2:
        return left / coeffs[1]
    _, b, a = coeffs
    # The root written as 2 (M - c0) / (b + sqrt(b^2 + 4 a (M - c0))): the same number as
    # (sqrt(...) - b) / (2 a) where a != 0, and (M - c0) / b where the S^2 coefficient
    # vanishes at a config (L = 1 on some pieces), where the textbook form is 0/0.
    return 2 * left / (b + sympy.sqrt(b**2 + 4 * a * left))


def piece_largest(coeffs: Sequence[int | Fraction], budget: int) -> int | None:
    """The largest integer ``x >= 0`` with ``c0 + c1 x (+ c2 x^2) <= budget`` for a piece that
    grows with ``x``: ``-1`` where none does, ``None`` where every ``x`` does (the piece does
    not grow) or the piece is not increasing (no closed form applies)."""
    c0 = Fraction(coeffs[0])
    if len(coeffs) == 1:
        return None if c0 <= budget else -1
    c1 = Fraction(coeffs[1])
    if len(coeffs) == 2:
        if c1 <= 0:
            return piece_largest(coeffs[:1], budget) if c1 == 0 else None
        return max(math.floor((budget - c0) / c1), -1)
    c2 = Fraction(coeffs[2])
    if c2 == 0:
        return piece_largest(coeffs[:2], budget)
    if c2 < 0:
        return None

    # Whole numbers: a x^2 + b x + c <= 0 with a >= 1, so the root's floor from the integer
    # square root is off by at most one.
    scale = math.lcm(c0.denominator, c1.denominator, c2.denominator)
    a, b = int(c2 * scale), int(c1 * scale)
    c = int((c0 - budget) * scale)

    def fits(v: int) -> bool:
        return a * v * v + b * v + c <= 0

    discriminant = b * b - 4 * a * c
    if discriminant < 0:
        return -1
    x = (math.isqrt(discriminant) - b) // (2 * a)
    while fits(x + 1):
        x += 1
    while x >= 0 and not fits(x):
        x -= 1
    return max(x, -1)


def closed_value(found: Inverse, sizes: Sequence[int], budget: int) -> tuple[int | None, int]:
    """The closed form's value at ``sizes`` (the solved one's value is ignored) and budget,
    with the index of the branch it comes from; ``None`` where there is none."""
    outputs = found.coefficient_function(*sizes)
    index = int(outputs[0])
    if index < 0 or found.branches[index].form is None:
        return None, index
    best: int | None = None
    for piece in found.branches[index].pieces:
        value = piece_largest([outputs[i] for i in piece], budget)
        if value is not None:
            best = value if best is None else min(best, value)
    return best, index
