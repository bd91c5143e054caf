"""The one error family of symmem.

Every problem symmem reports to a user is a :class:`SymmemError`; the command line turns it into a
one-line message and exit status 2.
"""

from __future__ import annotations

__all__ = [
    "BudgetError",
    "ConfigError",
    "KernelError",
    "MeasurementError",
    "OutputError",
    "SymmemError",
]


class SymmemError(Exception):
    """Base class of every error symmem raises on purpose."""


class ConfigError(SymmemError, ValueError):
    """A size or switch is missing, of the wrong type or out of range (D not divisible by NH)."""


class KernelError(SymmemError, ValueError):
    """A platform, attention kernel or option is unknown, or cannot run with the given switches."""


class BudgetError(SymmemError, ValueError):
    """A memory budget cannot be parsed, or nothing fits in it."""


class MeasurementError(SymmemError, RuntimeError):
    """A measurement against PyTorch cannot be made (torch missing, config too large, ...)."""


class OutputError(SymmemError, OSError):
    """A file cannot be written where asked, or a tool that writes it (pdflatex) is missing or
    fails."""


def unknown(kind: str, name: object, known: list[str]) -> ConfigError:
    """The error for a name that is not one of ``known``: the closest, then every one."""
    import difflib

    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return ConfigError(f"unknown {kind} {name!r} ({hint}known: {', '.join(known)})")
