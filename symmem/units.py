"""Byte counts for people: binary (GiB) and decimal (GB) units, never mixed up."""

from __future__ import annotations

__all__ = ["format_bytes"]

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
