"""Putting expressions in the forms people write in papers.

Terms are built as sums over switch values (see :mod:`symmem.report`); these helpers turn them
back into products such as ``B*S*D*(4 - 2*AMP)`` and totals into polynomials in the sizes whose
coefficients show the switches.
"""

from __future__ import annotations

from collections import defaultdict

import sympy

from symmem.symbols import SWITCHES

__all__ = ["paper_form", "tidy_term"]


def tidy_term(expr: sympy.Expr) -> sympy.Expr:
    """One term's bytes as a product: switch factors, size monomial, then a short polynomial.

    A factor ``X`` or ``(1 - X)`` is pulled out for each switch X whose other value makes the
    term vanish; what remains is written as ``monomial * (a + b*AMP + ...)``.

    >>> from symmem.symbols import B, S, AMP, BIAS
    >>> tidy_term(sympy.expand(BIAS*(4*B*S - 2*AMP*B*S)))
    B*BIAS*S*(4 - 2*AMP)
    """
    if isinstance(expr, sympy.Piecewise):
        return sympy.Piecewise(*((tidy_term(e), c) for e, c in expr.args))
    expr = sympy.expand(expr)
    if expr == 0:
        return sympy.Integer(0)
    factors: list[sympy.Expr] = []
    for x in SWITCHES:
        if expr.subs(x, 0) == 0:
            factors.append(x)
            expr = sympy.expand(sympy.cancel(expr / x))
            expr = sympy.expand(expr.subs(x, 1))
        elif expr.subs(x, 1) == 0:
            factors.append(1 - x)
            expr = sympy.expand(sympy.cancel(expr / (1 - x)))
            expr = sympy.expand(expr.subs(x, 0))
    return sympy.Mul(*factors) * _monomial_times_rest(expr)


def _monomial_times_rest(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` as (common size monomial) * (the rest), with no numeric factor pulled out."""
    terms = sympy.Add.make_args(expr)
    common = None
    for term in terms:
        sizes, _ = term.as_independent(*SWITCHES, as_Add=False)
        _, monomial = sizes.as_coeff_Mul()
        common = monomial if common is None else sympy.gcd(common, monomial)
    if common is None or common == 1:
        return expr
    rest = sympy.expand(sum((t / common for t in terms), sympy.Integer(0)))
    return common * rest


def paper_form(expr: sympy.Expr) -> sympy.Expr:
    """A total as a polynomial in the sizes, each coefficient a factored polynomial in switches.

    >>> from symmem.symbols import B, S, D, AMP
    >>> paper_form(4*B*S*D + B*S*D*(4 - 2*AMP) + 8*B*S)
    B*D*S*(8 - 2*AMP) + 8*B*S
    """
    if isinstance(expr, sympy.Piecewise):
        return sympy.Piecewise(*((paper_form(e), c) for e, c in expr.args))
    expr = sympy.expand(expr)
    groups: dict[sympy.Expr, sympy.Expr] = defaultdict(lambda: sympy.Integer(0))
    for term in sympy.Add.make_args(expr):
        sizes, switches = term.as_independent(*SWITCHES, as_Add=False)
        coeff, monomial = sizes.as_coeff_Mul()
        groups[monomial] += coeff * switches
    return sympy.Add(*(_factor_switches(c) * m for m, c in groups.items()))


def _factor_switches(coeff: sympy.Expr) -> sympy.Expr:
    """A polynomial in the switches, with a switch pulled out when it divides every term."""
    coeff = sympy.expand(coeff)
    if not coeff.free_symbols:
        return coeff
    return tidy_term(coeff)
