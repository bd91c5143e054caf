"""Write the notebooks of this folder from their cells below, and execute them in place.

    python notebooks/build.py            # every notebook
    python notebooks/build.py tour       # one

The notebooks are committed with their outputs, so that readers see results without running
them; ``tests/test_notebooks.py`` executes each again and checks that the committed outputs are
the ones it gets. Edit the cells here, not in the .ipynb files, then run this script.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

Cell = tuple[str, str]  # ("md" | "py", source)


def md(text: str) -> Cell:
    return ("md", text.strip("\n"))


def py(text: str) -> Cell:
    return ("py", text.strip("\n"))


TOUR: list[Cell] = [
    md("""
# A tour of symmem

Every tensor PyTorch keeps while training nanoGPT is a **term**: a SymPy expression in the sizes
`B` (batch), `S` (sequence), `D` (hidden), `NH` (heads), `V` (vocabulary), `L` (blocks), with the
switches `AMP`, `DROPOUT` and `BIAS`, each zero or one. This notebook goes from terms to totals,
to LaTeX, to exact bytes at a config.
"""),
    py("""
from IPython.display import HTML, Latex, Math

from symmem import Config, build_report
from symmem.render import latex
from symmem.render.html import estimate_html

report = build_report("cuda", "efficient")  # the rules of PyTorch on CUDA, switches symbolic
len(report.terms)
"""),
    md("""
## Terms

A term knows the autograd node that saves it, the module that made it, its category and its
bytes. A per-layer term is one block's; `term.formula` counts all `L` blocks.
"""),
    py("""
for term in report.terms[3:10]:
    print(f"{term.name:40} {term.module:30} {term.layer_formula}")
"""),
    py("""
gelu = next(t for t in report.terms if t.module.endswith("mlp.gelu"))
Math(latex.formula(gelu))
"""),
    md("""
## Totals

The totals are sums of terms, written as papers write them: a polynomial in the sizes whose
coefficients show the switches. `(64 - 28 AMP + 2 DROPOUT)` reads "64 bytes per `B S D` in fp32,
28 fewer under mixed precision, 2 more with dropout".
"""),
    py("""
print(report.total("block"))
"""),
    py("""
Math(latex.total(report, "block"))
"""),
    md("""
All of them at once: a `Report` shows this in Jupyter (its `_repr_latex_`); here it is asked for
explicitly.
"""),
    py("""
Latex(latex.report_repr_latex(report))
"""),
    md("""
## LaTeX

The same formulas with the names of the Megatron-LM papers (`b, s, h, a, v, L`), or any others:
names change in the printer, never by editing strings.
"""),
    py("""
print(latex.total(report, "block", symbols="paper"))
print(latex.total(report, "block", symbols={"NH": "n_h"}))
print(latex.total(report, "block", symbols="paper", switches=Config(amp=True, dropout=False)))
"""),
    md("""
## Evaluate

A config with every size gives exact bytes. An `Estimate` shows itself as this table in Jupyter
(its `_repr_html_`).
"""),
    py("""
config = Config(B=8, S=256, D=384, NH=6, V=8192, L=4, amp=True, dropout=True)
estimate = report.at(config)
estimate.totals["total"], estimate.param_count
"""),
    py("""
HTML(estimate_html(estimate))
"""),
]

PAPER: list[Cell] = [
    md("""
# Formulas for a paper: GPT-2 small

GPT-2 small: `D = 768`, `NH = 12`, `L = 12`, `V = 50257`, `S = 1024`, biases on. Training with
bf16 autocast and dropout, batch 8, on CUDA with the memory-efficient attention kernel. Every
piece below is LaTeX to paste into a paper (amsmath and booktabs); `symmem latex` prints the same.
"""),
    py("""
from IPython.display import Math

from symmem import Config, build_report
from symmem.render import latex

report = build_report("cuda")
gpt2 = Config(B=8, S=1024, D=768, NH=12, V=50257, L=12, amp=True, dropout=True, bias=True)
"""),
    md("""
## One block, in the papers' names

Korthikanti et al. count the activations of one block for fp16 training with their attention
(`symmem.paper` holds their count, term by term):
"""),
    py("""
from symmem.paper import paper_activations

Math(latex.formula(paper_activations(), symbols="paper"))
"""),
    md("""
symmem's block for this kernel, switches symbolic, then at this config:
"""),
    py("""
Math(latex.total(report, "block", symbols="paper"))
"""),
    py("""
Math(latex.total(report, "block", symbols="paper", switches=gpt2))
"""),
    md("""
## The breakdown

One line per module, the sum in paper form at the end (`alignat*`; `by="term"` gives one line
per saved tensor):
"""),
    py("""
print(latex.breakdown(report, "block", by="module", symbols="paper", switches=gpt2))
"""),
    md("""
## The table

Term, module, formula and bytes at the config (booktabs). `environment="longtable"` breaks a
long one across pages.
"""),
    py("""
print(latex.table(report, gpt2, "block", symbols="paper", switches=gpt2))
"""),
    md("""
## A whole document

`latex.document` (or `symmem latex`) writes a standalone article: the symbols, every total, the
peak of a training step at the config (`latex.peak`: each piece of the maximum with its phase
and node, and what `max_memory_allocated` adds), the block term by term and the table of every
term. It compiles with `pdflatex` in two passes, as its first lines say;
`symmem latex --pdf FILE` runs them.
"""),
    py("""
document = latex.document(report, gpt2, symbols="paper")
print(document[:document.index(r"\\subsection*{Totals}")])
"""),
]

SIZING: list[Cell] = [
    md("""
# Sizing: the largest batch and sequence for several GPUs

`symmem.solve.largest` finds the largest B (or S, or L) whose memory fits a budget, exactly:
memory at the answer fits, memory at the next value does not. What must fit is, as for
`symmem solve`, `max_memory_allocated`: the fullest moment of a training step as PyTorch's
caching allocator counts it (the live tensors, each allocation rounded up to whole blocks, plus
the cuBLAS workspaces). The model is GPT-2 small with biases, trained with bf16 autocast and
AdamW on CUDA. Each GPU's preset gives the attention kernel PyTorch picks there and the budget:
the memory CUDA reports less a GiB for the CUDA context, which lives outside the allocator
(`symmem.gpus.gpu_budget`).
"""),
    py("""
import matplotlib.pyplot as plt

from symmem import Config, build_report
from symmem.gpus import get_gpu, gpu_budget
from symmem.plot import batch_plot, sequence_plot
from symmem.solve import largest
from symmem.units import format_bytes

model = dict(D=768, NH=12, V=50257, L=12, amp=True, dropout=False, bias=True)
gpus = ("rtx-4090", "a100-40gb", "h100-80gb", "h200")
reports = {name: build_report("cuda", gpu=name) for name in gpus}
budgets = {name: gpu_budget(get_gpu(name)) for name in gpus}
"""),
    md("""
## Largest batch and largest sequence on each GPU
"""),
    py("""
print("largest B at S=1024; largest S at B=8, a multiple of 64")
print(f"{'GPU':10} {'budget':>10} {'kernel':>7} {'largest B':>10} {'largest S':>10}")
for name in gpus:
    report, budget = reports[name], budgets[name]
    b = largest(report, Config(S=1024, **model), "B", budget)
    s = largest(report, Config(B=8, **model), "S", budget, multiple_of=64)
    kernel = report.kernel_for(b.config)
    print(f"{name:10} {format_bytes(budget):>10} {kernel:>7} {b.value:>10} {s.value:>10}")
"""),
    md("""
`max_memory_allocated` rounds every allocation up to whole blocks of the caching allocator, so
it steps in B and has no closed form: `closed_form` is `None`, and the answer comes from an
exact search (two secant steps, then galloping and bisection), checked as every answer is: B
fits, B + 1 does not. On the H100, B = 85:
"""),
    py("""
h100, budget = reports["h100-80gb"], budgets["h100-80gb"]
peak = largest(h100, Config(S=1024, **model), "B", budget)
print(peak)
print("closed form:", peak.closed_form)
"""),
    md("""
The sum of the categories (`quantity="total"`) is linear in B for this kernel, so it has a
closed form, a floor of an expression in the other sizes and the budget `M`. It answers another
question: it counts the gradients and the saved activations together, which are never alive at
once, and misses the vocabulary-sized tensors of the loss backward, which are. Here it allows
B = 107, which would not fit:
"""),
    py("""
total = largest(h100, Config(S=1024, **model), "B", budget, quantity="total")
print(total)
allocated = h100.at(total.config).totals["max_memory_allocated"]
print(f"max_memory_allocated at B = {total.value}: {allocated:,} B, more than {budget:,} B")
total
"""),
    md("""
## Memory against the batch size

On the H100 at S = 1024. The bands are the categories, stacked: their top is `total`. The solid
line is the live tensors' peak and the dash-dotted one `max_memory_allocated`, above the bands
from the start: at its fullest moment, in the loss backward, a step holds more than the sum of
what autograd saves. The dashed line is the budget, and the dot the answer `largest` gives for
`max_memory_allocated`, B = 85, the number above.
"""),
    py("""
batch_plot(h100, Config(S=1024, **model), budget=budget)
plt.show()
"""),
    md("""
## Memory against the sequence length

At B = 8 on the `rtx-4090`, whose budget is 22.64 GiB: the dot is S = 2944, as in the table. The
parameters grow with S too (the position embedding has S rows).
"""),
    py("""
sequence_plot(reports["rtx-4090"], Config(B=8, **model), budget=budgets["rtx-4090"], multiple_of=64)
plt.show()
"""),
    md("""
## Published models through Hugging Face transformers

The same question for models people train with transformers, each built from the op rules of
its own class (`symmem.model`) with its published sizes (`symmem.presets`): GPT-2 small as
`GPT2LMHeadModel`, `qwen2.5-0.5b` and `llama-3.2-1b`; bf16 autocast, S = 1024, the plain training
loop (`zero_grad`, forward, backward, `AdamW(model.parameters())` with PyTorch's default
implementation), on three GPUs: the largest B whose `max_memory_allocated` fits the budget,
the same number `largest` returns. "none" means that not even B = 1 fits: the fp32
parameters, gradients and AdamW state of `llama-3.2-1b` alone take 16 bytes per parameter.
"""),
    py("""
from symmem.presets import preset


def largest_batch(report, config, budget):
    # The largest B whose max_memory_allocated fits, counting up (memory grows with B).
    b = 0
    while report.at(config.with_(B=b + 1)).totals["max_memory_allocated"] <= budget:
        b += 1
    return b or "none"


published = {"gpt2": "gpt2", "qwen2.5-0.5b": "qwen2", "llama-3.2-1b": "llama"}
three = ("rtx-4090", "a100-40gb", "h100-80gb")
print(f"{'model':14} {'parameters':>14} " + " ".join(f"{g:>10}" for g in three))
for name, arch in published.items():
    config = preset(name).config(arch, B=1, S=1024, amp=True)
    reports3 = {gpu: build_report("cuda", gpu=gpu, model=arch) for gpu in three}
    cells = [largest_batch(reports3[g], config, gpu_budget(get_gpu(g))) for g in three]
    count = reports3[three[0]].at(config).param_count
    print(f"{name:14} {count:>14,} " + " ".join(f"{c:>10}" for c in cells))
"""),
]

VALIDATION: list[Cell] = [
    md("""
# Validation against PyTorch

symmem's CPU rules are measured: one real training step of nanoGPT in PyTorch (2.13.0, CPU), every
tensor autograd saves found by its storage, plus parameters, gradients and AdamW state, compared
term by term with the estimate. Here for small configs, so it runs in seconds on a laptop; the
same runs in the test suite over a larger grid. Needs `pip install 'symmem[torch]'`.
"""),
    py("""
import torch

from symmem import Config, build_report
from symmem.validate import assert_matches, compare
from symmem.validate.measure import measure

torch.__version__
"""),
    py("""
config = Config(B=2, S=64, D=64, NH=4, V=128, L=2, amp=False, dropout=True, bias=True)
estimate = build_report("cpu").at(config)
comparison = compare(estimate, measure(config))
print(comparison.table())
"""),
    md("""
The same comparison as a picture (`symmem.plot.validation_plot`; `symmem validate --plot FILE`
writes it to a file). Left, each term and total at its measured and predicted bytes: on the
diagonal where they are equal, a red cross where they differ. Right, the start, peak and end of
each phase of the training step, predicted and measured side by side.
"""),
    py("""
import matplotlib.pyplot as plt

from symmem.plot import validation_plot

validation_plot(comparison, title=f"cpu, attention {estimate.kernel}, torch {torch.__version__}")
plt.show()
"""),
    md("""
`compare` pairs terms by name and module; `assert_matches` raises with the table when anything
differs, for use in your own tests. Each switch combination, with the kernel PyTorch picks:
"""),
    py("""
for amp in (False, True):
    for dropout in (False, True):
        for bias in (False, True):
            config = Config(B=2, S=32, D=32, NH=2, V=64, L=1, amp=amp, dropout=dropout, bias=bias)
            estimate = build_report("cpu").at(config)
            assert_matches(estimate, measure(config))
            print(f"amp={amp:d} dropout={dropout:d} bias={bias:d}: {estimate.kernel:5} "
                  f"{estimate.totals['total']:>9,} bytes, every term equal")
"""),
    md("""
The math attention path saves the attention matrix, quadratic in S, and switches a reshape at
B = 1; both are in the formulas and both are measured:
"""),
    py("""
report = build_report("cpu", "math")
for B in (1, 2):
    config = Config(B=B, S=48, D=32, NH=2, V=64, L=1, dropout=True)
    assert_matches(report.at(config), measure(config, attention="math"))
    print(f"B={B}: {report.at(config).totals['activations']:,} bytes of activations, equal")
"""),
]

NOTEBOOKS = {
    "tour": TOUR,
    "paper_formulas": PAPER,
    "sizing": SIZING,
    "validation": VALIDATION,
}


def notebook(cells: list[Cell]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for index, (kind, source) in enumerate(cells):
        new = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        cell = new(source)
        cell["id"] = f"cell-{index}"  # stable ids: a rebuild changes only what changed
        nb.cells.append(cell)
    return nb


def execute(nb: nbformat.NotebookNode, *, cwd: Path = HERE) -> nbformat.NotebookNode:
    """Run every cell with the python3 kernel of this interpreter; raises on an error."""
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=1800,  # a cell that builds reports on a cold cache takes minutes
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in map(_without_build_notes, cell.outputs) if o is not None]
    return nb


def _without_build_notes(output: Any) -> Any:
    """An output without the lines symmem's disk cache writes to stderr while it builds a
    report for the first time (they depend on the cache, not on the notebook); ``None`` if
    nothing else is left."""
    if output.output_type != "stream" or output.name != "stderr":
        return output
    lines = output.text.splitlines(keepends=True)
    kept = "".join(line for line in lines if not line.startswith("symmem: buil"))
    if not kept:
        return None
    output.text = kept
    return output


def main(names: list[str]) -> int:
    for name in names or list(NOTEBOOKS):
        nb = execute(notebook(NOTEBOOKS[name]))
        nb.metadata.pop("widgets", None)
        path = HERE / f"{name}.ipynb"
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
