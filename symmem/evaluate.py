"""Exact integer evaluation of symmem's expressions, compiled once to plain Python.

SymPy's ``xreplace`` is exact but slow. :func:`compile_exact` turns an expression built from
integers, symbols, sums, products, integer powers, ``ceiling``/``floor`` of ratios and
``Piecewise`` with (in)equalities into Python source that uses only integer arithmetic, so a
config evaluates in microseconds and stays exact at any size (float64 would round past 2**53).

>>> from symmem.symbols import B, S
>>> f = compile_exact(B * sympy.ceiling(S / 32) * 128 + 7, (B, S))
>>> f(3, 33)
775
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import sympy

__all__ = ["compile_exact"]


def compile_exact(expr: sympy.Expr, args: Sequence[sympy.Symbol]) -> Callable[..., int]:
    """A function of ``args`` (ints) that returns ``expr`` exactly, as an int.

    Raises ``TypeError`` for a construct it cannot evaluate exactly.
    """
    names = {symbol: f"a{i}" for i, symbol in enumerate(args)}
    body = _code(sympy.sympify(expr), names)
    source = f"def _f({', '.join(names.values())}):\n    return _int({body})\n"
    namespace: dict[str, Any] = {"_Fraction": Fraction, "_int": _as_int}
    exec(compile(source, "<symmem.evaluate>", "exec"), namespace)  # source built above
    function: Callable[..., int] = namespace["_f"]
    function.__doc__ = f"{expr} at ({', '.join(map(str, args))})"
    return function


def _as_int(value: int | Fraction | bool) -> int:
    if isinstance(value, Fraction):
        if value.denominator != 1:
            raise ValueError(f"expected a whole number of bytes, got {value}")
        return value.numerator
    return int(value)


def _code(expr: sympy.Basic, names: dict[sympy.Symbol, str]) -> str:
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
        return "(" + " + ".join(_code(a, names) for a in expr.args) + ")"
    if isinstance(expr, sympy.Mul):
        return "(" + " * ".join(_code(a, names) for a in expr.args) + ")"
    if isinstance(expr, sympy.Pow):
        exponent = expr.args[1]
        if isinstance(exponent, sympy.Integer) and exponent >= 0:
            return f"({_code(expr.args[0], names)} ** {int(exponent)})"
        if isinstance(exponent, sympy.Integer):
            return f"(_Fraction(1) / ({_code(expr.args[0], names)} ** {-int(exponent)}))"
        raise TypeError(f"cannot evaluate {expr} exactly")
    if isinstance(expr, (sympy.ceiling, sympy.floor)):
        numerator, denominator = sympy.fraction(sympy.together(expr.args[0]))
        num, den = _code(numerator, names), _code(denominator, names)
        if isinstance(expr, sympy.floor):
            return f"({num} // {den})"
        return f"(-((-{num}) // {den}))"
    if isinstance(expr, sympy.Piecewise):
        out = "None"
        for value, condition in reversed(expr.args):
            if condition is sympy.true:
                out = _code(value, names)
            else:
                out = f"({_code(value, names)} if {_code(condition, names)} else {out})"
        return out
    relations = {
        sympy.Eq: "==",
        sympy.Ne: "!=",
        sympy.Le: "<=",
        sympy.Lt: "<",
        sympy.Ge: ">=",
        sympy.Gt: ">",
    }
    for kind, op in relations.items():
        if isinstance(expr, kind):
            return f"({_code(expr.args[0], names)} {op} {_code(expr.args[1], names)})"
    if isinstance(expr, sympy.Or):
        return "(" + " or ".join(_code(a, names) for a in expr.args) + ")"
    if isinstance(expr, sympy.And):
        return "(" + " and ".join(_code(a, names) for a in expr.args) + ")"
    if isinstance(expr, sympy.Not):
        return f"(not {_code(expr.args[0], names)})"
    raise TypeError(f"cannot evaluate {type(expr).__name__} {expr} exactly")
