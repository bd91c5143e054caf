"""The project stands alone: its evidence is inside the repository, and every page is reachable."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Everything a reader of the project reads: code, tests, docs, notebooks and their builder.
FOLDERS = ("symmem", "tests", "docs", "notebooks", "benchmarks")
SUFFIXES = {".py", ".md", ".ipynb", ".yml", ".toml", ".sh"}
# A path that leaves the checkout, or a file that lived outside it.
OUTSIDE = re.compile(r"\.\./|(?<![\w.])shared/|CUDA_FACTS|notes_checkpoint")
# The benchmark reads the reference notebook's text at run time: an input, not a citation.
RUNTIME_INPUTS = {("benchmarks/bench.py", "../shared/seed/")}


def _files() -> list[Path]:
    found = [ROOT / name for name in ("README.md", "mkdocs.yml", "pyproject.toml", "checks.sh")]
    for folder in FOLDERS:
        found += [p for p in (ROOT / folder).rglob("*") if p.suffix in SUFFIXES and p.is_file()]
    return sorted(found)


def test_no_file_cites_a_path_outside_the_repository():
    cited = []
    for path in _files():
        relative = path.relative_to(ROOT).as_posix()
        if path == Path(__file__).resolve():
            continue  # its patterns and examples
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            allowed = any(relative == name and text in line for name, text in RUNTIME_INPUTS)
            if OUTSIDE.search(line) and not allowed:
                cited.append(f"{relative}:{number}: {line.strip()}")
    assert cited == []


def test_the_check_finds_what_it_looks_for():
    for line in ("see shared/x.md", "CUDA_FACTS", "a ../b", "notes_checkpoint.md"):
        assert OUTSIDE.search(line), line
    assert not OUTSIDE.search("docs/cuda.md, docs/checkpointing.md, ./checks.sh")


def test_every_docs_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert [p for p in pages if f": {p}" not in nav] == []
