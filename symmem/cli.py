"""The ``symmem`` command line: ``estimate``, ``solve``, ``latex`` and ``validate``.

Every error symmem raises on purpose becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import sympy

from symmem.allocator import ALLOCATORS, describe
from symmem.config import SIZE_NAMES, SWITCH_NAMES, Config
from symmem.errors import ConfigError, KernelError, SymmemError
from symmem.gpus import CUDA_CONTEXT_MARGIN, GPUS, get_gpu, gpu_budget
from symmem.loops import AMP_DTYPES, LOOPS
from symmem.model import MODELS, get_model
from symmem.parallel import PROFILES, Layout, RankReport, paper_profile, per_rank
from symmem.platforms import PLATFORMS
from symmem.presets import PRESETS, from_hf_config, preset
from symmem.render.json import estimate_dict, rank_dict
from symmem.render.text import estimate_table, rank_table
from symmem.report import Report, build_report
from symmem.solve import RANK_SYMBOLS, SOLVABLE, fewest, largest, largest_per_rank
from symmem.symbols import N, P, T
from symmem.units import format_bytes

__all__ = ["main"]

_KERNELS = ("default", "efficient", "flash", "cudnn", "math")
_DEFAULT_QUANTITY = "max_memory_allocated"


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "config",
        "Without any size flag the reference notebook's calc_all config is used (B=24 S=1024 "
        "D=384 NH=4 V=8192 L=4, AMP and dropout on); sizes not given take its values.",
    )
    group.add_argument(
        "--arch",
        choices=tuple(MODELS),
        default=None,
        help="the architecture (default: nanogpt, or the one --model or --hf-config names)",
    )
    group.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="a model's published sizes: one of " + ", ".join(PRESETS) + " (B=8 S=1024 unless "
        "given; size flags override the preset's)",
    )
    group.add_argument(
        "--hf-config",
        default=None,
        metavar="PATH",
        help="a config.json as transformers writes it: its model_type and sizes (read offline)",
    )
    helps = {
        "B": "batch size",
        "S": "sequence length",
        "D": "hidden size (n_embd)",
        "NH": "attention heads",
        "V": "vocabulary size",
        "L": "transformer blocks",
        "NKV": "key/value heads (grouped-query attention; architectures that have it)",
        "F": "the MLP's hidden width (architectures that have it)",
        "SMAX": "rows of a learned position table, at least S (gpt2's n_positions)",
    }
    for name in SIZE_NAMES:
        group.add_argument(f"--{name}", type=int, metavar="N", help=helps[name])
    for name, text in (
        ("amp", "autocast mixed precision (bfloat16)"),
        ("dropout", "dropout probability above zero"),
        ("bias", "biases in Linear and LayerNorm"),
        ("tied", "input and output embeddings share one weight (nanogpt: always)"),
    ):
        group.add_argument(
            f"--{name}", action=argparse.BooleanOptionalAction, default=None, help=text
        )
    parser.add_argument(
        "--platform",
        choices=tuple(PLATFORMS),
        default=None,
        help="PyTorch build whose rules apply (default: cuda)",
    )
    parser.add_argument(
        "--gpu",
        default=None,
        metavar="NAME",
        help="a GPU preset (implies --platform cuda): its architecture decides the kernel "
        f"--attention default picks and which kernels can run; one of {', '.join(GPUS)}",
    )
    parser.add_argument(
        "--attention",
        choices=_KERNELS,
        default="default",
        help="SDPA backend; default: the one PyTorch picks on the platform (and --gpu)",
    )
    parser.add_argument(
        "--optimizer",
        choices=("default", "fused", "foreach", "forloop"),
        default="default",
        help="AdamW implementation; default: what nanoGPT runs (fused on CUDA, for-loop on CPU)",
    )
    parser.add_argument(
        "--loop",
        choices=tuple(LOOPS),
        default=None,
        help="the training loop whose step gives the peak: nanogpt (train.py) or plain (a step "
        "function: zero_grad, forward, backward, step); default: the architecture's own",
    )
    parser.add_argument(
        "--grad-accum",
        type=int,
        default=1,
        metavar="K",
        help="gradient accumulation: K micro-steps (forward, backward) per optimizer step, the "
        "loss divided by K, as nanoGPT's gradient_accumulation_steps (nanogpt loop only)",
    )
    parser.add_argument(
        "--ddp",
        type=int,
        default=1,
        metavar="N",
        help="DistributedDataParallel over N processes (gradient buckets on every rank; "
        "cannot go with --zero)",
    )
    parser.add_argument(
        "--amp-dtype",
        choices=AMP_DTYPES,
        default=None,
        help="autocast's dtype with --amp: bf16 or fp16 (the same bytes; the nanogpt loop then "
        "runs a GradScaler, as nanoGPT does). Default bf16, or fp16 with a --gpu that has no "
        "bfloat16 kernels (below sm80: t4)",
    )
    parser.add_argument(
        "--allocator",
        choices=tuple(ALLOCATORS),
        default="default",
        help="the CUDA caching allocator's setting: max_memory_allocated is exact with "
        "expandable (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True), a lower bound with "
        "the default one",
    )
    ranks = parser.add_argument_group(
        "several GPUs",
        "Memory per GPU when training is spread (symmem.parallel: derived from each method's "
        "documented semantics, not measured). A count may be a number or its symbol (N, t, p) "
        "for symbolic LaTeX.",
    )
    ranks.add_argument(
        "--zero", type=int, choices=(0, 1, 2, 3), default=0, help="ZeRO stage over --dp ranks"
    )
    ranks.add_argument("--dp", default="1", metavar="N", help="data-parallel ranks")
    ranks.add_argument("--tp", default="1", metavar="T", help="tensor-parallel ranks")
    ranks.add_argument(
        "--sp", action="store_true", help="sequence parallelism over the tensor-parallel ranks"
    )
    ranks.add_argument("--pp", default="1", metavar="P", help="pipeline stages (1F1B)")
    parser.add_argument(
        "--checkpoint",
        choices=("none", "full", "selective"),
        default="none",
        help="activation checkpointing: full (every block recomputed in backward) or selective "
        "(the attention core only)",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="pytorch",
        help="pytorch: what PyTorch saves and allocates (default); paper: the papers' "
        "assumptions (Korthikanti et al. 2022 per-layer activations, ZeRO's model states)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


#: B and S of a config from a preset or a config.json when the flags do not give them.
PRESET_RUN = {"B": 8, "S": 1024}


def config_from_args(args: argparse.Namespace, solved: str | None = None) -> Config:
    """The config the flags describe, with ``solved`` left symbolic.

    With ``--model`` or ``--hf-config``: the preset's (or the file's) sizes and switches, B = 8
    and S = 1024 unless given, and any size or switch flag overriding them. Without them:
    for nanogpt the reference notebook's config for what the flags leave out (the switches off
    once any size is given); for another architecture the sizes given.
    """
    sizes = {name: getattr(args, name) for name in SIZE_NAMES}
    if solved is not None and sizes[solved] is not None:
        raise ConfigError(f"--{solved} is the symbol solved for: leave it out")
    switches = {name: getattr(args, name) for name in SWITCH_NAMES}
    given = {k: v for k, v in (sizes | switches).items() if v is not None}
    if args.model is not None and args.hf_config is not None:
        raise ConfigError("give --model or --hf-config, not both")
    if args.model is not None or args.hf_config is not None:
        run = {k: v for k, v in PRESET_RUN.items() if k != solved}
        if args.model is not None:
            config = preset(args.model).config(args.arch, **(run | given))
        else:
            config = from_hf_config(args.hf_config, **(run | given))
            if args.arch is not None and args.arch != config.model:
                raise ConfigError(
                    f"{args.hf_config} describes a {config.model} model, not --arch {args.arch}"
                )
        return config.with_(**{solved: None}) if solved is not None else config
    model = get_model(args.arch or "nanogpt")
    if model.name != "nanogpt":
        return Config(model=model.name, **given)
    notebook = Config.notebook()
    any_size = any(v is not None for v in sizes.values())
    values: dict[str, Any] = {
        name: getattr(notebook, name) if value is None and name != solved else value
        for name, value in sizes.items()
        if name in model.size_names or value is not None
    }
    for name in SWITCH_NAMES:
        default = getattr(Config(), name) if any_size else getattr(notebook, name)
        values[name] = switches[name] if switches[name] is not None else default
    return Config(**values)


def layout_from_args(args: argparse.Namespace, solved: str | None = None) -> Layout:
    """The layout the flags describe (one GPU without any); the count ``solved`` (``N``, ``t``
    or ``p``) stays symbolic, and must not be given."""
    counts: dict[str, int | sympy.Symbol] = {}
    for name, symbol in (("dp", N), ("tp", T), ("pp", P)):
        text = str(getattr(args, name)).strip()
        if solved == str(symbol):
            if text not in ("1", str(symbol)):
                raise ConfigError(f"--{name} is the count solved for: leave it out")
            counts[name] = symbol
            continue
        if text == str(symbol):
            counts[name] = symbol
            continue
        try:
            counts[name] = int(text)
        except ValueError:
            raise ConfigError(
                f"--{name} takes a whole number or the symbol {symbol}, not {text!r}"
            ) from None
    return Layout(zero=args.zero, sp=args.sp, dp=counts["dp"], tp=counts["tp"], pp=counts["pp"])


def _platform(args: argparse.Namespace) -> str:
    """The platform the flags ask for: cuda unless --platform says otherwise; --gpu needs cuda."""
    if args.gpu is not None and args.platform not in (None, "cuda"):
        raise KernelError(
            f"--gpu {args.gpu} is a CUDA GPU: it cannot go with --platform {args.platform} "
            "(leave --platform out, or give cuda)"
        )
    return str(args.platform or "cuda")


def _report(args: argparse.Namespace, config: Config) -> Report:
    # The papers' profile applies --checkpoint to its own tables (see _ranks).
    checkpoint = args.checkpoint if args.profile == "pytorch" else "none"
    return build_report(
        _platform(args),
        args.attention,
        args.optimizer,
        args.gpu,
        checkpoint=checkpoint,
        model=config.model,
        loop=args.loop,
        grad_accum=args.grad_accum,
        amp_dtype=args.amp_dtype,
        ddp=_ddp(args),
    )


def _ddp(args: argparse.Namespace) -> int:
    """``--ddp N``, checked against the flags it conflicts with."""
    ddp = int(args.ddp)
    if ddp > 1 and args.zero:
        raise ConfigError(
            f"--ddp {ddp} cannot go with --zero {args.zero}: DistributedDataParallel keeps whole "
            "gradients and optimizer state on every rank, ZeRO shards them (use --dp with --zero)"
        )
    if ddp > 1 and args.profile != "pytorch":
        raise ConfigError(f"--ddp {ddp} applies to the pytorch profile, not --profile paper")
    return ddp


def _ranks(args: argparse.Namespace, report: Report, layout: Layout) -> RankReport | None:
    """One rank's report where the flags ask for one: the papers' profile, or a layout of
    several GPUs; ``None`` for symmem's one-GPU report."""
    if args.profile == "paper":
        return paper_profile(report, layout, recompute=args.checkpoint)
    if layout != Layout():
        return per_rank(report, layout)
    return None


def _estimate(args: argparse.Namespace) -> int:
    # The text table fits the terminal (COLUMNS, else the terminal's size, else 80 columns).
    width = None if args.wide else shutil.get_terminal_size().columns
    config = config_from_args(args)
    layout = layout_from_args(args)
    report = _report(args, config)
    ranks = _ranks(args, report, layout)
    if ranks is not None:
        at = ranks.at(config)
        print(json.dumps(rank_dict(at), indent=2) if args.json else rank_table(at, width=width))
        return 0
    estimate = report.at(config)
    if args.json:
        print(json.dumps(estimate_dict(estimate, allocator=args.allocator), indent=2))
    else:
        print(estimate_table(estimate, allocator=args.allocator, width=width))
    return 0


def _solve(args: argparse.Namespace) -> int:
    layout = layout_from_args(args, solved=args.solve_for)
    solved = args.solve_for if args.solve_for in SOLVABLE else None
    config = config_from_args(args, solved=solved)
    report = _report(args, config)
    budget: str | int
    if args.budget is not None:
        budget, budget_source = args.budget, "--budget"
    elif args.gpu is not None:
        gpu = get_gpu(args.gpu)
        budget = gpu_budget(gpu)
        budget_source = (
            f"{gpu.name}: {gpu.memory_bytes:,} B ({format_bytes(gpu.memory_bytes)}) less "
            f"{CUDA_CONTEXT_MARGIN:,} B ({format_bytes(CUDA_CONTEXT_MARGIN)}) for the CUDA context"
        )
    else:
        raise ConfigError("give a --budget, or a --gpu whose memory is the budget")
    ranks = _ranks(args, report, layout)
    if args.solve_for in RANK_SYMBOLS and ranks is None:
        ranks = per_rank(report, layout)
    if ranks is not None:
        return _solve_per_rank(args, ranks, config, budget, budget_source)
    solution = largest(
        report,
        config,
        args.solve_for,
        budget,
        multiple_of=args.multiple_of,
        upper=args.max,
        quantity=args.quantity,
    )
    if args.json:
        data = {
            **solution.as_dict(),
            "platform": report.platform.name,
            "gpu": args.gpu and get_gpu(args.gpu).name,
            "budget_source": budget_source,
            "attention": report.kernel_for(solution.config),
            "kernel_reason": report.kernel_reason(solution.config),
            "allocator": describe(args.allocator, caching=report.platform.caching_allocator),
        }
        print(json.dumps(data, indent=2))
    else:
        if args.budget is None:
            print(f"budget: {budget_source}")
        print(solution)
        if solution.limited_by != "budget":
            print(f"(limited by the {solution.limited_by} {args.max})")
        if solution.closed_form_text is not None:
            print(f"closed form: {args.solve_for} = {solution.closed_form_text}")
            print(f"  = {solution.closed_form_value} at this config, M = {solution.budget_bytes}")
        else:
            why = f"memory steps in {args.solve_for} (a padded length or the allocator's rounding)"
            print(f"no closed form: {why}; the answer was found by exact search")
    return 0


def _solve_per_rank(
    args: argparse.Namespace,
    ranks: RankReport,
    config: Config,
    budget: str | int,
    budget_source: str,
) -> int:
    """``solve`` for one rank: the largest B, S or L, or the fewest N, t or p."""
    quantity = "total" if args.quantity == _DEFAULT_QUANTITY else args.quantity
    answer: Any
    if args.solve_for in RANK_SYMBOLS:
        answer = fewest(ranks, config, args.solve_for, budget, quantity=quantity)
    else:
        answer = largest_per_rank(
            ranks,
            config,
            args.solve_for,
            budget,
            multiple_of=args.multiple_of,
            upper=args.max,
            quantity=quantity,
        )
    if args.json:
        data = {
            **answer.as_dict(),
            "per_rank": True,
            "layout": ranks.layout.as_dict(),
            "profile": args.profile,
            "platform": ranks.report.platform.name,
            "budget_source": budget_source,
        }
        print(json.dumps(data, indent=2))
        return 0
    if args.budget is None:
        print(f"budget: {budget_source}")
    print(answer)
    print(
        "per rank: the sum of what each rank holds (the peak of a step is not derived for "
        "several GPUs)"
    )
    return 0


def _latex(args: argparse.Namespace) -> int:
    from symmem.render import latex

    if args.json:
        raise ConfigError("symmem latex prints LaTeX: --json does not apply")
    if args.pdf is not None and args.what != "document":
        raise ConfigError(f"--pdf compiles the whole document: leave out --what {args.what}")
    if args.pdf is not None:
        from symmem.files import writable
        from symmem.render.pdf import pdflatex

        writable(args.pdf)  # before any work: the path, then pdflatex
        pdflatex()
    config = config_from_args(args)
    report = _report(args, config)
    report.kernel_for(config)
    layout = layout_from_args(args)
    ranks = _ranks(args, report, layout)
    options: dict[str, Any] = {
        "symbols": latex.symbol_set(args.symbols),
        "switches": config if args.fix_switches else None,
    }
    if ranks is not None:
        if args.what not in ("block", "total"):
            raise ConfigError(
                "with --profile paper, --zero, --dp, --tp, --sp or --pp, --what block or total "
                "gives the memory of one rank (the peak of a step is not derived for several GPUs)"
            )
        key = "block" if args.what == "block" else args.total or "total"
        print(latex.total(ranks, key, collect=args.collect, **options))
    elif args.what == "term":
        terms = [
            t
            for t in report.terms
            if args.term in (None, t.name) and args.module in (None, t.module)
        ]
        if not terms:
            raise ConfigError(
                f"no term named {args.term!r}"
                + (f" in module {args.module!r}" if args.module else "")
                + ": symmem estimate lists them"
            )
        for term in terms:
            print(f"{latex.inline(term, **options)}  % {term.name} ({term.module})")
    elif args.what in ("block", "total"):
        key = "block" if args.what == "block" else args.total or "total"
        print(latex.total(report, key, collect=args.collect, **options))
    elif args.what == "breakdown":
        print(latex.breakdown(report, args.total or "block", by=args.by, **options))
    elif args.what == "table":
        print(latex.table(report, config, args.total or "total", by=args.by, **options))
    elif args.what == "peak":
        print(latex.peak(report, config, symbols=options["symbols"]), end="")
    elif args.pdf is not None:
        from symmem.render.pdf import compile_pdf

        compiled = compile_pdf(latex.document(report, config, **options), args.pdf)
        print(
            f"wrote {compiled.path}: {compiled.pages} pages "
            f"(pdflatex ran {compiled.passes} time{'s' if compiled.passes > 1 else ''})"
        )
    else:
        print(latex.document(report, config, **options), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("torch") is None:
        raise SymmemError(
            "symmem validate needs PyTorch: pip install 'symmem[torch]' "
            "(or pip install torch==2.13.0)"
        )
    from symmem.validate.run import run_validation

    if args.profile != "pytorch" or layout_from_args(args) != Layout():
        raise ConfigError(
            "symmem validate measures one GPU (or the CPU) with PyTorch: --profile paper and "
            "the several-GPU flags (--zero, --dp, --tp, --sp, --pp) cannot be measured here"
        )
    if args.ddp != 1:
        raise ConfigError(
            "symmem validate measures one process: DDP's buckets are measured with gloo by "
            "symmem.validate.timeline.measure_ddp_timeline"
        )
    config = config_from_args(args)
    attention = args.attention
    if args.gpu is not None:
        # The measurement runs the kernel the preset predicts, by name: whether PyTorch's own
        # dispatcher agrees on this machine is not what validate checks.
        attention = _report(args, config).kernel_for(config)
    return run_validation(
        config,
        device=args.device,
        platform=args.platform or ("cuda" if args.gpu else None),
        attention=attention,
        optimizer=args.optimizer,
        as_json=args.json,
        max_bytes=args.max_bytes,
        timeline=args.timeline,
        checkpoint=args.checkpoint,
        plot=args.plot,
        loop=args.loop,
        grad_accum=args.grad_accum,
        amp_dtype=args.amp_dtype or ("fp16" if args.gpu and not get_gpu(args.gpu).bf16 else "bf16"),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symmem", description="Byte-exact symbolic memory of nanoGPT training."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    estimate = sub.add_parser("estimate", help="every memory term, its formula and its bytes")
    _add_config_flags(estimate)
    estimate.add_argument(
        "--wide",
        action="store_true",
        help="one line per term, every formula whole, however wide (default: the table fits the "
        "terminal, long formulas wrapped)",
    )
    estimate.set_defaults(run=_estimate)
    solve = sub.add_parser("solve", help="the largest B, S or L whose memory fits a budget")
    solve.add_argument(
        "--for",
        dest="solve_for",
        choices=(*SOLVABLE, *RANK_SYMBOLS),
        required=True,
        help="the symbol to solve for: the largest B, S or L that fits, or the fewest N "
        "(data-parallel ranks, with --zero), t (tensor-parallel) or p (pipeline stages)",
    )
    solve.add_argument(
        "--budget",
        default=None,
        help="bytes, or a number with a unit: 80GB, 80GiB, 1.5e10; without it, --gpu's memory "
        f"less {format_bytes(CUDA_CONTEXT_MARGIN)} for the CUDA context (with both, --budget wins)",
    )
    solve.add_argument(
        "--multiple-of",
        type=int,
        default=1,
        metavar="K",
        help="only multiples of K are allowed (default 1)",
    )
    solve.add_argument(
        "--max",
        type=int,
        default=None,
        metavar="N",
        help="upper bound for the answer (e.g. the model's context for S)",
    )
    solve.add_argument(
        "--quantity",
        default=_DEFAULT_QUANTITY,
        help="what must fit: a total (default: max_memory_allocated, the peak of a training "
        "step as the caching allocator counts it; peak: the live tensors' peak; total: the sum "
        "of every category) or a sum like activations+loss",
    )
    _add_config_flags(solve)
    solve.set_defaults(run=_solve)
    tex = sub.add_parser(
        "latex",
        help="LaTeX for papers: a term, a total, a breakdown, a table or a whole document",
        description="Formulas are symbolic in the sizes; the switches stay symbolic unless "
        "--fix-switches. A table or a document also gives bytes at the config.",
    )
    _add_config_flags(tex)
    tex.add_argument(
        "--what",
        choices=("term", "block", "total", "breakdown", "table", "peak", "document"),
        default="document",
        help="term: formulas of terms (all, or --term/--module); block: one block's total; "
        "total: a total (--total); breakdown: an align* of a total's terms; table: a booktabs "
        "table with bytes; peak: the peak of a training step at the config, piece by piece, and "
        "max_memory_allocated; document: a standalone document with all of these (default)",
    )
    tex.add_argument(
        "--pdf",
        default=None,
        metavar="FILE",
        help="compile the document with pdflatex (as many passes as it needs) and write the PDF "
        "to FILE instead of printing the LaTeX",
    )
    tex.add_argument(
        "--symbols",
        default="default",
        metavar="SET",
        help="symbol names: default (B, S, D, n_head, V, L) or paper (b, s, h, a, v, L)",
    )
    tex.add_argument(
        "--total",
        default=None,
        metavar="KEY",
        help="which total for --what total, breakdown or table (default: total; block for "
        "breakdown)",
    )
    tex.add_argument(
        "--by",
        choices=("term", "module"),
        default="term",
        help="one line or row per term (default) or per module",
    )
    tex.add_argument("--term", default=None, metavar="NAME", help="--what term: this term only")
    tex.add_argument(
        "--module", default=None, metavar="MODULE", help="--what term: terms of this module only"
    )
    tex.add_argument(
        "--collect",
        choices=SIZE_NAMES,
        default=None,
        help="--what total or block: collect the total in powers of this size",
    )
    tex.add_argument(
        "--fix-switches",
        action="store_true",
        help="substitute the config's AMP, DROPOUT and BIAS into the formulas",
    )
    tex.set_defaults(run=_latex)
    validate = sub.add_parser("validate", help="compare the estimate with PyTorch, term by term")
    _add_config_flags(validate)
    validate.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where to run the measured step (default: cpu)",
    )
    validate.add_argument(
        "--max-bytes",
        type=int,
        default=None,
        metavar="N",
        help="refuse configs whose estimate exceeds N bytes (default: half the free memory)",
    )
    validate.add_argument(
        "--timeline",
        action="store_true",
        help="also run nanoGPT's training loop and print live memory phase by phase (measured)",
    )
    validate.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="also draw predicted against measured bytes, per term and per phase of the step, "
        "in FILE (.png, .pdf, .svg; needs matplotlib: pip install 'symmem[plot]')",
    )
    validate.set_defaults(run=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
    except SymmemError as error:
        print(f"symmem: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head: nothing more to say
        sys.stderr.close()
        return 0
    return status


def run() -> NoReturn:
    """The console entry point: :func:`main`, then out of the process without tearing down
    the interpreter's objects (freeing a report's tens of thousands of expressions one by one
    takes longer than most commands). Output is flushed first; nothing else is left open."""
    status = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # a closed pipe, or stderr closed above
        pass
    os._exit(status)


if __name__ == "__main__":
    run()
