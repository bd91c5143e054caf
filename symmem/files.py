"""Files the user names (``--pdf FILE``, ``--plot FILE``): checked before any work is done, so a
path that cannot be written is a one-line error, not a lost result.

>>> writable("/no/such/folder/memory.pdf")
Traceback (most recent call last):
...
symmem.errors.OutputError: cannot write /no/such/folder/memory.pdf: no folder /no/such/folder
"""

from __future__ import annotations

import os
from pathlib import Path

from symmem.errors import OutputError

__all__ = ["writable"]


def writable(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`~pathlib.Path` if a file can be written there, else an
    :class:`~symmem.errors.OutputError` saying why not."""
    target = Path(path).expanduser()
    if not str(path).strip():
        raise OutputError("cannot write a file without a name")
    if target.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    folder = target.parent
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "no folder"
        raise OutputError(f"cannot write {path}: {what} {folder}")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise OutputError(f"cannot write {path}: permission denied")
    return target
