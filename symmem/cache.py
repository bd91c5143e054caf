"""A disk cache for built reports, so a new process does not trace the model again.

Entries live in ``$SYMMEM_CACHE_DIR`` (default ``~/.cache/symmem``), named by what they hold and by
a fingerprint of symmem's own source: editing any module makes a fresh entry. Set
``SYMMEM_NO_CACHE=1`` to build everything in memory. Nothing is read or written at import time.

An entry is data, not code: JSON text (expressions as a table of nodes, :mod:`symmem.codec`;
generated source as text) after a header line with the SHA-256 of that text. Reading one runs
nothing from the cache directory; an entry that cannot be read for any reason (a bad hash, a
truncated copy, a format of another version) is built again and replaced. Entries are written
to a temporary file and renamed into place, so concurrent processes never see half of one.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from types import CodeType
from typing import Any, TypeVar

from symmem.codec import decode, encode

__all__ = ["cache_dir", "cached", "compiled", "fingerprint", "read_entry", "write_entry"]

T = TypeVar("T")

#: The first bytes of every entry, with the format's version.
MAGIC = b"symmem-cache 2 "
#: A first build that takes longer than this says on stderr what it builds.
ANNOUNCE_AFTER_S = 1.0


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


def entry_path(name: str) -> Path:
    """The file of the entry ``name`` for this source."""
    return cache_dir() / f"{name}-{fingerprint()}.json"


def read_entry(path: Path) -> Any:
    """The JSON data of an entry whose hash matches, or ``None`` (missing, corrupt, other)."""
    try:
        raw = path.read_bytes()
        header, _, body = raw.partition(b"\n")
        if not header.startswith(MAGIC):
            return None
        if hashlib.sha256(body).hexdigest().encode() != header[len(MAGIC) :]:
            return None
        return json.loads(body)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None


def write_entry(path: Path, data: Any) -> None:
    """Write ``data`` (JSON-ready) atomically; a cache that cannot be written is no error."""
    body = json.dumps(data, separators=(",", ":")).encode()
    header = MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
            tmp.write(header + body)
        os.replace(tmp.name, path)
    except OSError:  # a read-only home is no reason to fail
        return
    stem = path.name[: -len(f"-{fingerprint()}.json")]
    stale = re.compile(re.escape(stem) + r"-[0-9a-f]{16}\.(json|pickle)")
    for other in path.parent.iterdir():  # the same entry for older sources (and formats)
        if other != path and stale.fullmatch(other.name):
            other.unlink(missing_ok=True)


def cached(name: str, build: Callable[[], T], classes: Sequence[type] = ()) -> T:
    """``build()``, or the value a previous process stored under ``name`` for this source.

    The value may hold SymPy expressions, ints, strings, tuples, lists, dicts and instances
    of the dataclasses in ``classes``.
    """
    if os.environ.get("SYMMEM_NO_CACHE") == "1":
        return build()
    path = entry_path(name)
    data = read_entry(path)
    if data is not None:
        try:
            value: T = decode(data, classes)
            return value
        except Exception:  # any entry that cannot be read is built again
            pass
    start = time.perf_counter()
    announced = _announce(name)
    try:
        value = build()
    finally:  # a build that raises must not leave its announcement to print later
        announced.cancel()
    if time.perf_counter() - start > ANNOUNCE_AFTER_S:
        print(f"symmem: built {name} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    try:
        encoded = encode(value, classes)
    except TypeError:  # a value the format cannot hold: kept in memory only
        return value
    write_entry(path, encoded)
    return value


def _announce(name: str) -> Any:
    """A timer that says on stderr what is being built once that takes over a second."""
    import threading

    timer = threading.Timer(
        ANNOUNCE_AFTER_S,
        lambda: print(
            f"symmem: building {name} (first use with this cache; later calls read it from "
            f"{cache_dir()})",
            file=sys.stderr,
            flush=True,
        ),
    )
    timer.daemon = True
    timer.start()
    return timer


def compiled(source: str, filename: str) -> CodeType:
    """``compile(source, filename, "exec")``, its bytecode kept on disk between processes: a
    report's evaluator is hundreds of kilobytes of source, which takes longer to compile than
    the rest of a call. The entry is named by the SHA-256 of the Python version and the source
    (which came from a hash-checked entry or was just generated) and carries the SHA-256 of
    its bytes; one that does not match is compiled again and replaced."""
    if os.environ.get("SYMMEM_NO_CACHE") == "1":
        return compile(source, filename, "exec")
    digest = hashlib.sha256(f"{sys.version}\0{filename}\0{source}".encode()).hexdigest()[:32]
    path = cache_dir() / "code" / f"{digest}.marshal"
    try:
        header, _, body = path.read_bytes().partition(b"\n")
        if header == MAGIC + hashlib.sha256(body).hexdigest().encode():
            code = marshal.loads(body)
            if isinstance(code, CodeType) and code.co_filename == filename:
                return code
    except (OSError, ValueError, EOFError, TypeError):
        pass
    code = compile(source, filename, "exec")
    body = marshal.dumps(code)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
            tmp.write(MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
        os.replace(tmp.name, path)
    except OSError:
        pass
    return code
