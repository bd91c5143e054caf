"""Byte counts for people: binary (GiB) and decimal (GB) units, never mixed up."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from symmem.errors import BudgetError

__all__ = ["UNITS", "format_bytes", "parse_bytes"]

#: Byte units by lower-case name: decimal (kB, MB, GB, TB) and binary (KiB, MiB, GiB, TiB).
UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_BUDGET = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")

_BINARY = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
_DECIMAL = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))


def format_bytes(nbytes: int, *, binary: bool = True) -> str:
    """A short human reading of an exact byte count.

    >>> format_bytes(3 * 2**30)
    '3.00 GiB'
    >>> format_bytes(3 * 2**30, binary=False)
    '3.22 GB'
    >>> format_bytes(16)
    '16 B'
    """
    for unit, size in _BINARY if binary else _DECIMAL:
        if abs(nbytes) >= size:
            return f"{nbytes / size:.2f} {unit}"
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
optional unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)
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
                "(B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            )
        try:
            value = Decimal(match.group(1).replace("_", "")) * UNITS.get(unit, 1)
        except InvalidOperation:
            raise BudgetError(f"cannot read a byte count from {text!r}") from None
    if int(value) <= 0:
        raise BudgetError(f"a byte count must be at least one byte, got {text!r}")
    return int(value)
