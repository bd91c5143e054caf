"""A LaTeX document compiled to PDF as a reader would: pdflatex, as many passes as it asks for.

A long table sets its column widths on the second pass, and pdflatex says so in its log
("Rerun LaTeX"); :func:`compile_pdf` runs it again until the log no longer asks (at most
:data:`PASSES` times), in a temporary folder, and copies the PDF where it was asked for.
``latexmk -pdf`` does the same from the command line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from symmem.errors import OutputError
from symmem.files import writable

__all__ = ["PASSES", "Compiled", "compile_pdf", "pdflatex"]

#: The most pdflatex passes :func:`compile_pdf` runs.
PASSES = 3
#: How to get pdflatex, for the error that says it is missing.
INSTALL = (
    "install a TeX distribution (Debian or Ubuntu: apt-get install texlive-latex-base "
    "texlive-latex-recommended; macOS: MacTeX; Windows: MiKTeX), or write the .tex and compile "
    "it elsewhere"
)
# longtable: "Table widths have changed. Rerun LaTeX."; LaTeX: "Rerun to get cross-references".
_RERUN = re.compile(r"Rerun (?:LaTeX|to get)")
_SECONDS = 600


@dataclass(frozen=True)
class Compiled:
    """A compiled document.

    Attributes:
        path: Where the PDF was written.
        passes: How many times pdflatex ran.
        pages: Pages of the PDF.
        log: pdflatex's log of the last pass.
    """

    path: Path
    passes: int
    pages: int
    log: str


def pdflatex() -> str:
    """The pdflatex on PATH, or an :class:`~symmem.errors.OutputError` saying how to get one."""
    found = shutil.which("pdflatex")
    if found is None:
        raise OutputError(f"--pdf needs pdflatex, which is not on PATH: {INSTALL}")
    return found


def compile_pdf(tex: str, path: str | os.PathLike[str]) -> Compiled:
    """Compile the document ``tex`` with pdflatex and write the PDF to ``path``.

    ``path`` is checked, and pdflatex found, before anything runs. A failed pass is an
    :class:`~symmem.errors.OutputError` quoting pdflatex's first error.
    """
    target = writable(path)
    program = pdflatex()
    with tempfile.TemporaryDirectory(prefix="symmem-latex-") as name:
        folder = Path(name)
        (folder / "document.tex").write_text(tex, encoding="utf-8")
        passes, log = 1, _run(program, folder)
        while _RERUN.search(log) and passes < PASSES:
            passes, log = passes + 1, _run(program, folder)
        try:
            shutil.copyfile(folder / "document.pdf", target)
        except OSError as error:
            raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    pages = re.search(r"Output written on document\.pdf \((\d+) pages?", log)
    return Compiled(target, passes, int(pages.group(1)) if pages else 0, log)


def _run(program: str, folder: Path) -> str:
    """One pdflatex pass over ``folder/document.tex``; its log."""
    command = [program, "-interaction=nonstopmode", "-halt-on-error", "document.tex"]
    try:
        result = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise OutputError(f"pdflatex did not finish in {_SECONDS} seconds") from None
    log_file = folder / "document.log"
    log = log_file.read_text(encoding="utf-8", errors="replace") if log_file.exists() else ""
    if result.returncode != 0 or not (folder / "document.pdf").exists():
        raise OutputError(f"pdflatex failed: {_first_error(log or result.stdout)}")
    return log


def _first_error(log: str) -> str:
    """pdflatex's first error line (``! ...``), or the end of its output."""
    for line in log.splitlines():
        if line.startswith("!"):
            return line.lstrip("! ").strip()
    tail = [line for line in log.splitlines() if line.strip()]
    return tail[-1].strip() if tail else "no output"
