"""Cache entries as data: SymPy expressions, dataclasses and containers to JSON text and back.

Nothing read back runs code: expressions are rebuilt from a table of the SymPy classes symmem
uses (anything else is refused when the entry is written), dataclasses from the classes the
caller names. Each distinct subexpression is stored once (a node table), so a report's many
repeated terms cost little.

>>> from symmem.symbols import B, S
>>> expr = sympy.Max(B * sympy.ceiling(S / 32), 3 * B)
>>> decode(encode(expr, ()), ()) == expr
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import sympy
from sympy.core.relational import (
    Equality,
    GreaterThan,
    LessThan,
    StrictGreaterThan,
    StrictLessThan,
    Unequality,
)
from sympy.functions.elementary.piecewise import ExprCondPair

__all__ = ["DecodeError", "decode", "encode"]

#: The SymPy classes an entry may hold, by name.
_CLASSES: Mapping[str, type] = MappingProxyType(
    {
        cls.__name__: cls
        for cls in (
            sympy.Add,
            sympy.Mul,
            sympy.Pow,
            sympy.Max,
            sympy.Min,
            sympy.ceiling,
            sympy.floor,
            sympy.Mod,
            sympy.Abs,
            sympy.Piecewise,
            ExprCondPair,
            Equality,
            Unequality,
            LessThan,
            StrictLessThan,
            GreaterThan,
            StrictGreaterThan,
            sympy.And,
            sympy.Or,
            sympy.Not,
        )
    }
)
_CONSTANTS: Mapping[str, sympy.Basic] = MappingProxyType(
    {
        "true": sympy.true,
        "false": sympy.false,
        "oo": sympy.oo,
        "-oo": -sympy.oo,
    }
)
_ASSOCIATIVE = (sympy.Add, sympy.Mul)
_CONSTANT_NAMES = {value: key for key, value in _CONSTANTS.items()}


class DecodeError(ValueError):
    """An entry that is not what :func:`encode` writes."""


def encode(value: object, classes: Sequence[type]) -> dict[str, Any]:
    """``value`` as JSON-ready data; dataclasses must be among ``classes``."""
    nodes: list[list[Any]] = []
    index: dict[sympy.Basic, int] = {}
    allowed = {cls.__name__: cls for cls in classes}

    def node(expr: sympy.Basic) -> int:
        found = index.get(expr)
        if found is not None:
            return found
        if expr in _CONSTANT_NAMES:
            entry: list[Any] = ["c", _CONSTANT_NAMES[expr]]
        elif isinstance(expr, sympy.Integer):
            entry = ["i", str(int(expr))]
        elif isinstance(expr, sympy.Rational):
            entry = ["q", str(expr.p), str(expr.q)]
        elif type(expr) is sympy.Symbol:
            assumptions = dict(getattr(expr, "_assumptions_orig", {}))
            entry = ["s", expr.name, assumptions]
        elif _CLASSES.get(type(expr).__name__) is type(expr):
            entry = ["f", type(expr).__name__, [node(a) for a in expr.args]]  # type: ignore[attr-defined]
        else:
            raise TypeError(f"cannot store {type(expr).__name__} {expr}")
        index[expr] = len(nodes)
        nodes.append(entry)
        return index[expr]

    def walk(item: object) -> object:
        if item is None or isinstance(item, (bool, str)):
            return item
        if isinstance(item, int):
            return {"n": str(item)}
        if isinstance(item, sympy.Basic):
            return {"e": node(item)}
        if isinstance(item, tuple):
            return {"t": [walk(i) for i in item]}
        if isinstance(item, list):
            return {"l": [walk(i) for i in item]}
        if isinstance(item, (dict, MappingProxyType)):
            return {"d": [[walk(k), walk(v)] for k, v in item.items()]}
        if dataclasses.is_dataclass(item) and allowed.get(type(item).__name__) is type(item):
            # Every attribute, so properties cached on the object travel with it.
            return {"o": type(item).__name__, "a": {k: walk(v) for k, v in vars(item).items()}}
        raise TypeError(f"cannot store {type(item).__name__}")

    root = walk(value)
    return {"nodes": nodes, "root": root}


def decode(data: Any, classes: Sequence[type]) -> Any:
    """What :func:`encode` was given. Raises :class:`DecodeError` for anything else."""
    allowed = {cls.__name__: cls for cls in classes}
    try:
        with sympy.evaluate(False):
            exprs = _nodes(data["nodes"])
        return _value(data["root"], exprs, allowed)
    except DecodeError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        raise DecodeError(f"not a symmem cache entry: {error!r}") from None


def _nodes(table: list[list[Any]]) -> list[sympy.Basic]:
    exprs: list[sympy.Basic] = []
    for entry in table:
        kind = entry[0]
        if kind == "i":
            exprs.append(sympy.Integer(int(entry[1])))
        elif kind == "q":
            exprs.append(sympy.Rational(int(entry[1]), int(entry[2])))
        elif kind == "s":
            assumptions = {str(k): bool(v) for k, v in dict(entry[2]).items()}
            exprs.append(sympy.Symbol(str(entry[1]), **assumptions))
        elif kind == "c":
            exprs.append(_CONSTANTS[entry[1]])
        elif kind == "f":
            cls = _CLASSES[entry[1]]
            args = [exprs[i] for i in entry[2]]
            if cls in _ASSOCIATIVE:  # stored canonical: no need to flatten or sort again
                op: Any = cls
                exprs.append(op._from_args(args, all(a.is_commutative for a in args)))
            elif cls in (sympy.Max, sympy.Min):
                exprs.append(_lattice(cls, args))
            else:
                exprs.append(cls(*args))
        else:
            raise DecodeError(f"unknown node kind {kind!r}")
    return exprs


def _lattice(cls: type, args: list[sympy.Basic]) -> sympy.Basic:
    """A ``Max`` or ``Min`` rebuilt from its stored arguments as they are: their constructor
    sorts the arguments even when it does not evaluate, which for a peak's long polynomials is
    most of a report's load time; stored ones are sorted already."""
    obj: sympy.Basic = sympy.Expr.__new__(cls, *args)
    obj._argset = frozenset(args)
    return obj


def _value(item: Any, exprs: list[sympy.Basic], allowed: dict[str, type]) -> Any:
    if item is None or isinstance(item, (bool, str)):
        return item
    if not isinstance(item, dict) or len(item) not in (1, 2):
        raise DecodeError(f"unexpected {type(item).__name__} in a cache entry")
    if "n" in item:
        return int(item["n"])
    if "e" in item:
        return exprs[item["e"]]
    if "t" in item:
        return tuple(_value(i, exprs, allowed) for i in item["t"])
    if "l" in item:
        return [_value(i, exprs, allowed) for i in item["l"]]
    if "d" in item:
        return {_value(k, exprs, allowed): _value(v, exprs, allowed) for k, v in item["d"]}
    if "o" in item:
        cls = allowed[item["o"]]
        obj: Any = object.__new__(cls)
        attributes = {str(k): _value(v, exprs, allowed) for k, v in item["a"].items()}
        names = {f.name for f in dataclasses.fields(cls)}
        if not names <= set(attributes):
            missing = ", ".join(sorted(names - set(attributes)))
            raise DecodeError(f"{cls.__name__} without {missing}")
        vars(obj).update(attributes)
        return obj
    raise DecodeError(f"unknown value {sorted(item)!r}")
