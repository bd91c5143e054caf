"""symmem's speed against the baselines, as ratios measured in the same run.

Run from the repository root (the reference notebook is read from ../shared/seed/ at run time):

    .venv/bin/python benchmarks/bench.py

Each figure is printed as ``name: value``; ratios are baseline time / symmem time (above 1 means
symmem is faster), except ``estimate_vs_import_sympy``, which is symmem's time / import time.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import functools
import io
import logging
import re
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from symmem import Config, build_report
from symmem.solve import largest
from symmem.sweep import sweep

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT.parent / "shared" / "seed" / "memory_notebook.txt"
SWEEP_SIZE = 1_000_000


def load_notebook(path: Path) -> dict[str, Any]:
    """The notebook's function definitions, executed with ``print`` silenced.

    As written, ``calc_saved_gpt_activations`` calls ``calc_block`` and ``calc_all`` calls
    ``calc_gpt``, names the notebook never defines (docs/errata.md); they are bound to the
    functions the notebook does define so that its code runs at all.
    """
    namespace: dict[str, Any] = {"print": lambda *args, **kwargs: None}
    for cell in re.split(r"^In \[\d+\]:\n", path.read_text(), flags=re.MULTILINE):
        if cell.startswith("def "):
            exec(cell, namespace)
    namespace["calc_block"] = namespace["calc_saved_block_activations"]
    namespace["calc_gpt"] = namespace["calc_saved_gpt_activations"]
    return namespace


def per_call(function: Callable[[], object], *, seconds: float = 0.3) -> float:
    """Median seconds per call over a few timed batches."""
    number = max(1, int(timeit.Timer(function).autorange()[0]))
    runs = []
    deadline = time.perf_counter() + seconds
    while len(runs) < 5 or time.perf_counter() < deadline:
        runs.append(timeit.timeit(function, number=number) / number)
        if len(runs) >= 50:
            break
    return statistics.median(runs)


def random_configs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    heads = rng.integers(1, 33, n)
    return {
        "B": rng.integers(1, 65, n),
        "S": rng.integers(32, 4097, n),
        "D": heads * rng.integers(16, 129, n),
        "NH": heads,
        "V": rng.integers(1000, 100_000, n),
        "L": rng.integers(1, 97, n),
        "amp": rng.integers(0, 2, n),
        "dropout": rng.integers(0, 2, n),
        "bias": rng.integers(0, 2, n),
    }


def wall(command: list[str], repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK)
    args = parser.parse_args()
    report = build_report("cuda", "efficient")
    config = Config.notebook()
    figures: dict[str, float | str] = {}

    # One config, every category.
    notebook = load_notebook(args.notebook)
    calc_all = notebook["calc_all"]
    cfg = (config.B, config.S, config.D, config.NH, config.V)
    totals = report.compiled.totals
    sizes = (config.B, config.S, config.D, config.NH, config.V, config.L)
    switches = {"amp": True, "dropout": True, "bias": False}
    totals(*sizes, **switches)
    t_notebook = per_call(lambda: calc_all(*cfg, n_layers=4, amp=True, dropout=True, bias=False))
    t_symmem = per_call(lambda: totals(*sizes, **switches))
    figures["single_config_notebook_us"] = t_notebook * 1e6
    figures["single_config_symmem_us"] = t_symmem * 1e6
    figures["single_config_ratio"] = t_notebook / t_symmem

    # A million configs: the sweep against a Python loop over the notebook's function.
    axes = random_configs(SWEEP_SIZE)
    sweep(report, **{k: v[:10] for k, v in axes.items()})  # compile once
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        sweep(report, **axes)
        runs.append(time.perf_counter() - start)
    figures["sweep_1m_symmem_first_s"] = runs[0]
    t_sweep = statistics.median(runs)
    sample = 20_000
    rows = list(zip(*(axes[k][:sample].tolist() for k in axes), strict=True))
    start = time.perf_counter()
    for B, S, D, NH, V, L, amp, dropout, bias in rows:
        calc_all(B, S, D, NH, V, n_layers=L, amp=amp, dropout=dropout, bias=bias)
    t_loop = (time.perf_counter() - start) / sample * SWEEP_SIZE
    figures["sweep_1m_symmem_median_s"] = t_sweep
    figures["sweep_1m_notebook_loop_s"] = t_loop
    figures["sweep_ratio"] = t_loop / t_sweep

    # Start-up: symmem estimate --json against importing SymPy alone. SymPy's bytecode was
    # compiled when it was installed; symmem's is compiled here as Python does on a first import
    # (an environment with PYTHONDONTWRITEBYTECODE set would recompile it on every call).
    compileall.compile_dir(ROOT / "symmem", quiet=1)
    estimate = [sys.executable, "-m", "symmem.cli", "estimate", "--json"]
    subprocess.run(estimate, check=True, stdout=subprocess.DEVNULL)  # warm the disk cache
    t_estimate = wall(estimate)
    t_sympy = wall([sys.executable, "-c", "import sympy"])
    figures["estimate_json_s"] = t_estimate
    figures["import_sympy_s"] = t_sympy
    figures["estimate_vs_import_sympy"] = t_estimate / t_sympy

    # The command line's solves, warm, against importing SymPy alone.
    for name, argv in SOLVE_COMMANDS.items():
        command = [sys.executable, "-m", "symmem.cli", "solve", *argv]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # warm the disk cache
        figures[f"{name}_s"] = wall(command)
        figures[f"{name}_vs_import_sympy"] = figures[f"{name}_s"] / t_sympy

    # Largest batch after the first call, then each solved size on both maxima.
    gpt2 = Config(S=1024, D=768, NH=12, V=50257, L=12, amp=True)
    largest(report, gpt2, "B", "80GiB")
    figures["solve_ms"] = per_call(lambda: largest(report, gpt2, "B", "80GiB")) * 1e3
    figures |= solve_figures()

    figures |= llm_analysis_figures(t_symmem, t_sweep)
    for name, value in figures.items():
        print(f"{name}: {value:.4g}" if isinstance(value, float) else f"{name}: {value}")
    return 0


#: The command-line solves timed (issue figures): B on an RTX 4090, S on the math path.
SOLVE_COMMANDS = {
    "solve_cli_B": [
        "--for", "B", "--gpu", "rtx-4090", "--D", "768", "--NH", "12", "--L", "12",
        "--V", "50257", "--S", "1024", "--amp",
    ],
    "solve_cli_S_math": [
        "--for", "S", "--budget", "40GiB", "--B", "8", "--D", "1024", "--NH", "16",
        "--V", "50257", "--L", "24", "--amp", "--platform", "cuda", "--attention", "math",
    ],
    # The fewest tensor-parallel ranks (docs/parallel.md's example): a per-rank solve.
    "solve_cli_t": [
        "--for", "t", "--budget", "80GiB", "--B", "8", "--S", "2048", "--D", "8192",
        "--NH", "64", "--V", "51200", "--L", "80", "--amp", "--sp",
    ],
}  # fmt: skip


def solve_figures() -> dict[str, float | str]:
    """``largest`` after its first call: B, S (efficient and math kernels) and L, on ``peak``
    and on ``max_memory_allocated``, in milliseconds."""
    cases = {
        "B": ("efficient", Config(S=1024, D=768, NH=12, V=50257, L=12, amp=True)),
        "S_efficient": ("efficient", Config(B=8, D=1024, NH=16, V=50257, L=24, amp=True)),
        "S_math": ("math", Config(B=8, D=1024, NH=16, V=50257, L=24, amp=True)),
        "L": ("efficient", Config(B=8, S=1024, D=768, NH=12, V=50257, amp=True)),
    }
    figures: dict[str, float | str] = {}
    for name, (attention, config) in cases.items():
        report = build_report("cuda", attention)
        symbol = name.split("_")[0]
        for quantity in ("peak", "max_memory_allocated"):
            solve = functools.partial(largest, report, config, symbol, "40GiB", quantity=quantity)
            solve()
            figures[f"solve_ms_{name}_{quantity}"] = per_call(solve) * 1e3
    return figures


def llm_analysis_figures(t_symmem: float, t_sweep: float) -> dict[str, float | str]:
    """The same single-config and sweep comparison against llm-analysis, if it is installed."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            from llm_analysis.analysis import LLMAnalysis, ModelConfig, get_gpu_config_by_name
    except ImportError:
        return {"llm_analysis": "not installed (pip install llm-analysis to compare)"}
    logging.disable(logging.CRITICAL)
    gpu = get_gpu_config_by_name("a100-sxm-80gb")

    def one(B: int, S: int, D: int, NH: int, V: int, L: int) -> object:
        model = ModelConfig(
            name="gpt", num_layers=L, n_head=NH, hidden_dim=D, vocab_size=V, max_seq_len=S
        )
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                return LLMAnalysis(model, gpu).training(batch_size_per_gpu=B, seq_len=S)
            except AssertionError:  # it refuses configs that do not fit its GPU, after sizing
                return None

    t_one = per_call(lambda: one(24, 1024, 384, 4, 8192, 4), seconds=1.0)
    axes = random_configs(200, seed=1)
    start = time.perf_counter()
    for B, S, D, NH, V, L in zip(
        *(axes[k].tolist() for k in ("B", "S", "D", "NH", "V", "L")), strict=True
    ):
        one(B, S, D, NH, V, L)
    t_loop = (time.perf_counter() - start) / 200 * SWEEP_SIZE
    return {
        "llm_analysis_single_config_us": t_one * 1e6,
        "llm_analysis_single_config_ratio": t_one / t_symmem,
        "llm_analysis_sweep_1m_loop_s": t_loop,
        "llm_analysis_sweep_ratio": t_loop / t_sweep,
    }


if __name__ == "__main__":
    sys.exit(main())
