"""Byte counts for people: binary (GiB) and decimal (GB) units, never mixed up, up to yotta."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from symmem.errors import BudgetError

__all__ = ["UNITS", "format_bytes", "parse_bytes"]

_PREFIXES = "kMGTPEZY"  # kilo to yotta: powers 1 to 8 of 1000 (and of 1024 with an i)

#: Byte units as printed, smallest first: decimal (kB ... YB) and binary (KiB ... YiB).
_BINARY = tuple((f"{p.upper()}iB", 2 ** (10 * (i + 1))) for i, p in enumerate(_PREFIXES))
_DECIMAL = tuple((f"{p}B", 10 ** (3 * (i + 1))) for i, p in enumerate(_PREFIXES))

#: Byte units by lower-case name: ``b``, decimal (``kb`` to ``yb``) and binary (``kib`` to
#: ``yib``).
UNITS = {"b": 1} | {name.lower(): size for name, size in (*_DECIMAL, *_BINARY)}
_BUDGET = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
_NAMES = ", ".join(["B", *(n for n, _ in _DECIMAL), *(n for n, _ in _BINARY)])


def format_bytes(nbytes: int, *, binary: bool = True) -> str:
    """A short human reading of an exact byte count.

    >>> format_bytes(3 * 2**30)
    '3.00 GiB'
    >>> format_bytes(3 * 2**30, binary=False)
    '3.22 GB'
    >>> format_bytes(16)
    '16 B'

    Past TiB come PiB, EiB, ZiB and YiB; beyond a thousand YiB the count is in powers of ten:

    >>> format_bytes(3 * 2**60), format_bytes(5 * 10**18, binary=False)
    ('3.00 EiB', '5.00 EB')
    >>> format_bytes(3 * 2**90)
    '3.07e+03 YiB'
    """
    units = _BINARY if binary else _DECIMAL
    for unit, size in reversed(units):
        if abs(nbytes) >= size:
            value = nbytes / size
            if abs(value) >= 1000 and unit == units[-1][0]:
                return f"{value:.2e} {unit}"
            return f"{value:.2f} {unit}"
    return f"{nbytes} B"


def parse_bytes(text: str | int) -> int:
    """Bytes from a number with an optional unit; GB is 10**9 bytes, GiB is 2**30.

    A fractional byte count is rounded down (a budget of 1.5 bytes holds 1).

    >>> parse_bytes("80GB"), parse_bytes("80 GiB"), parse_bytes("1.5e10"), parse_bytes(512)
    (80000000000, 85899345920, 15000000000, 512)
    >>> parse_bytes("80 gigs")
    Traceback (most recent call last):
    ...
    symmem.errors.BudgetError: cannot read a byte count from '80 gigs': expected a number with an \
optional unit (B, kB, MB, GB, TB, PB, EB, ZB, YB, KiB, MiB, GiB, TiB, PiB, EiB, ZiB, YiB)
    """
    if isinstance(text, bool):
        raise BudgetError(f"a byte count must be a number, got {text!r}")
    if isinstance(text, int):
        value = Decimal(text)
    else:
        match = _BUDGET.match(text)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in UNITS | {"": 1}:
            raise BudgetError(
                f"cannot read a byte count from {text!r}: expected a number with an optional unit "
                f"({_NAMES})"
            )
        try:
            value = Decimal(match.group(1).replace("_", "")) * UNITS.get(unit, 1)
        except InvalidOperation:
            raise BudgetError(f"cannot read a byte count from {text!r}") from None
    if int(value) <= 0:
        raise BudgetError(f"a byte count must be at least one byte, got {text!r}")
    return int(value)
