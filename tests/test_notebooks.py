"""The notebooks run, what is committed in them is what they print today, and their prose says
what their outputs show.

The cells live in ``notebooks/build.py``, which writes and executes the notebooks; here each is
executed again from its committed file and its outputs compared with the committed ones (text
exactly; images by their presence), so a reader of the committed notebook sees current results.
Every number the prose (the markdown cells) quotes must be among the numbers the outputs print.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "notebooks"
_spec = importlib.util.spec_from_file_location("notebooks_build", FOLDER / "build.py")
assert _spec is not None and _spec.loader is not None
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

REBUILD = "run `python notebooks/build.py` and commit the notebooks"


def _outputs(nb: Any) -> list[list[tuple[str, Any]]]:
    """Each code cell's outputs: streams joined, text kept, images only named."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs: list[tuple[str, Any]] = []
        for output in cell.outputs:
            kind = output.output_type
            if kind == "stream":
                key = f"stream:{output.name}"
                if outputs and outputs[-1][0] == key:
                    outputs[-1] = (key, outputs[-1][1] + output.text)
                else:
                    outputs.append((key, output.text))
            elif kind in ("execute_result", "display_data"):
                data = {
                    mime: value if mime.startswith("text/") else "<binary>"
                    for mime, value in output.data.items()
                }
                outputs.append((kind, data))
            else:
                outputs.append((kind, f"{output.get('ename')}: {output.get('evalue')}"))
        cells.append(outputs)
    return cells


def test_every_notebook_is_built_here():
    assert sorted(p.stem for p in FOLDER.glob("*.ipynb")) == sorted(build.NOTEBOOKS)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(build.NOTEBOOKS))
def test_notebook_runs_and_its_outputs_are_committed(name):
    committed = nbformat.read(FOLDER / f"{name}.ipynb", as_version=4)
    sources = [(c.cell_type, c.source) for c in committed.cells]
    expected = [("markdown" if k == "md" else "code", s) for k, s in build.NOTEBOOKS[name]]
    assert sources == expected, f"{name}.ipynb differs from notebooks/build.py: {REBUILD}"
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), REBUILD

    fresh = build.execute(copy.deepcopy(committed))
    assert _outputs(fresh) == _outputs(committed), f"{name}.ipynb outputs are stale: {REBUILD}"


@pytest.mark.slow
def test_the_kernel_is_this_interpreter():
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))
    build.execute(nb)
    assert nb.cells[0].outputs[0].text.strip() == sys.prefix


# A number as prose quotes it: digits, thousands commas, a decimal part (or a version's parts),
# perhaps a byte unit after it (24GiB); not part of a name (GPT-2, bf16, sm90, H100) or of a
# longer number (1.5e10).
NUMBER = re.compile(r"(?<![\w.,\-])(\d+(?:,\d{3})*(?:\.\d+)*)(?:[kKMGTPEZY]?i?B)?(?![\w]|[.,]\d)")


def numbers(text: str) -> set[str]:
    """The numbers in ``text``, thousands commas dropped."""
    return {match.group(1).replace(",", "") for match in NUMBER.finditer(text)}


def test_the_numbers_a_reader_reads():
    text = "GPT-2 in bf16 on an H100 (sm90): B = 85, S = 2,944 at 22.64 GiB, 24GiB, 1.5e10, 7."
    assert numbers(text) == {"85", "2944", "22.64", "24", "7"}
    assert numbers("torch 2.13.0+cpu, rtx-4090") == {"2.13.0"}


def _shown(nb: Any) -> set[str]:
    """The numbers a notebook's outputs print (streams, and text, LaTeX or HTML results)."""
    found: set[str] = set()
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                found |= numbers(output.text)
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/"):
                    found |= numbers(value)
    return found


@pytest.mark.parametrize("name", list(build.NOTEBOOKS))
def test_every_number_the_prose_quotes_is_in_the_outputs(name):
    nb = nbformat.read(FOLDER / f"{name}.ipynb", as_version=4)
    prose = {n for cell in nb.cells if cell.cell_type == "markdown" for n in numbers(cell.source)}
    assert sorted(prose - _shown(nb), key=float) == [], f"{name}.ipynb: prose quotes these"
