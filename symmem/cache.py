"""A disk cache for built reports, so a new process does not trace the model again.

Entries live in ``$SYMMEM_CACHE_DIR`` (default ``~/.cache/symmem``), named by what they hold and by
a fingerprint of symmem's own source: editing any module makes a fresh entry. Set
``SYMMEM_NO_CACHE=1`` to build everything in memory. Nothing is read or written at import time.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import CodeType
from typing import TypeVar

import sympy

__all__ = ["cache_dir", "cached", "compiled", "fingerprint"]

T = TypeVar("T")


def cache_dir() -> Path:
    """Where cache entries live."""
    return Path(os.environ.get("SYMMEM_CACHE_DIR") or Path.home() / ".cache" / "symmem")


@cache
def fingerprint() -> str:
    """A hash of every Python source file of the package."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _lattice(cls: type, args: tuple[sympy.Expr, ...]) -> sympy.Expr:
    """A ``Max`` or ``Min`` rebuilt from its stored arguments as they are.

    Their constructor sorts the arguments even when it does not evaluate, which for the peak's
    long polynomials costs most of a report's load time; stored ones are sorted already."""
    obj: sympy.Expr = sympy.Expr.__new__(cls, *args)
    obj._argset = frozenset(args)
    return obj


def _reduce_lattice(expr: sympy.Expr) -> tuple[Callable[..., sympy.Expr], tuple[object, ...]]:
    return _lattice, (type(expr), expr.args)


_DISPATCH = {sympy.Max: _reduce_lattice, sympy.Min: _reduce_lattice}


def cached(name: str, build: Callable[[], T]) -> T:
    """``build()``, or the value a previous process stored under ``name`` for this source."""
    if os.environ.get("SYMMEM_NO_CACHE") == "1":
        return build()
    path = cache_dir() / f"{name}-{fingerprint()}.pickle"
    try:
        # Stored expressions were built evaluated, so their arguments are already canonical:
        # rebuilding them without evaluating again gives the same trees, tens of times faster.
        with open(path, "rb") as handle, sympy.evaluate(False):
            value: T = pickle.load(handle)
        return value
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        pass
    value = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as temporary:
            pickler = pickle.Pickler(temporary, protocol=pickle.HIGHEST_PROTOCOL)
            pickler.dispatch_table = _DISPATCH
            pickler.dump(value)
        os.replace(temporary.name, path)
        for stale in path.parent.glob(f"{name}-*.pickle"):  # entries of older sources
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError:  # a read-only home is no reason to fail
        pass
    return value


def compiled(source: str, filename: str) -> CodeType:
    """``compile(source, filename, "exec")``, kept on disk between processes (marshal's format
    belongs to one Python version, which names the entry): a report's evaluator is hundreds of
    kilobytes of source."""
    if os.environ.get("SYMMEM_NO_CACHE") == "1":
        return compile(source, filename, "exec")
    digest = hashlib.sha256(f"{sys.version}\0{filename}\0{source}".encode()).hexdigest()[:24]
    path = cache_dir() / "code" / f"{digest}.marshal"
    try:
        code = marshal.loads(path.read_bytes())
        if isinstance(code, CodeType):
            return code
    except (OSError, ValueError, EOFError, TypeError):
        pass
    code = compile(source, filename, "exec")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as temporary:
            temporary.write(marshal.dumps(code))
        os.replace(temporary.name, path)
    except OSError:
        pass
    return code
