"""From traces to terms: every memory term of training one architecture as a SymPy expression.

:func:`build_report` traces the model (a :class:`~symmem.model.spec.Model`, nanoGPT by default)
once per scenario (each combination of its switches the kernel can run with, and each outcome of
the size predicates the ops ask about), turns each trace into raw terms (one per storage, named
after the node that saves it first), and joins the raw terms of all scenarios into :class:`Term`
objects whose formulas keep the switches (AMP, DROPOUT, BIAS, TIED: those the model has)
symbolic: a term present in some scenarios only gets the switch factors that select them, and a
term that depends on a size predicate becomes a ``Piecewise``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from types import MappingProxyType
from typing import Any

import sympy

from symmem.allocator import block_bytes, workspace_bytes
from symmem.cache import cached, entry_path
from symmem.config import Config
from symmem.dtypes import FLOAT16
from symmem.errors import ConfigError, KernelError
from symmem.evaluate import CompiledReport, exact_value, generate, load
from symmem.gpus import get_gpu
from symmem.kinds import CATEGORIES, TOTALS
from symmem.loops import AMP_DTYPES, Loop, get_loop
from symmem.loops import NANOGPT as NANOGPT_LOOP
from symmem.model import Model, get_model
from symmem.ops.checkpoint import CHECKPOINTS
from symmem.ops.graph import (
    DEVICE,
    HOST,
    Save,
    Scenario,
    Storage,
    Trace,
    UndecidedPredicateError,
)
from symmem.platforms import AttentionKernel, Platform, get_platform
from symmem.simplify import paper_form, tidy_term
from symmem.step import PHASES, StepPhase, StepRun, simulate, walk
from symmem.symbols import L

__all__ = ["CATEGORIES", "TOTALS", "Estimate", "Report", "Term", "build_report"]


@dataclass(frozen=True)
class Term:
    """One memory term.

    Attributes:
        name: ``Node-field`` of the first node that saves it (fields of that node sharing the
            storage joined by ``/``), or its own name (``idx``, ``logits``, ``parameters``...).
        module: Qualified name of the module that made it; the model's block pattern
            (``transformer.h.*`` in nanoGPT) stands for every block, its root name
            (``GPT.forward``) for the model's own forward (the loss).
        kind: Its category, one of :data:`CATEGORIES`.
        per_layer: Whether it is one block's term (the model has L of them).
        layer_formula: Bytes of one instance (one block's, for a per-layer term).
        location: ``device`` or ``host``.
        dtype: Element type, per precision where it differs.
        shape: Shape of the saved tensor (or of the allocation).
        saved_by: Every ``Node-field (module)`` that saves this storage.
        text: ``str(formula)``, printed once when the report is built (printing is slow).
        layer_text: ``str(layer_formula)``, likewise.
    """

    name: str
    module: str
    kind: str
    per_layer: bool
    layer_formula: sympy.Expr
    location: str
    dtype: str
    shape: str
    saved_by: tuple[str, ...] = ()
    text: str = field(default="", compare=False)
    layer_text: str = field(default="", compare=False)

    @property
    def formula(self) -> sympy.Expr:
        """Bytes of the whole model: L instances of a per-layer term."""
        return model_formula(self.layer_formula, self.per_layer)

    @property
    def formula_text(self) -> str:
        """``str(formula)``, as printed when the report was built."""
        return self.text or str(self.formula)

    @property
    def layer_formula_text(self) -> str:
        """``str(layer_formula)``, as printed when the report was built."""
        return self.layer_text or str(self.layer_formula)

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.module)

    def _repr_latex_(self) -> str:
        from symmem.render.latex import term_repr_latex

        return term_repr_latex(self)


#: What identifies a report (:attr:`Report.key`): :func:`build_report`'s arguments, resolved.
ReportKey = tuple[str, str, str, str | None, str, str, str, int, str, int]


@dataclass(frozen=True)
class Report:
    """Every term of one architecture, platform and attention choice, with switches symbolic.

    Attributes:
        model: The architecture.
        platform: The platform's rules (with the GPU preset, ``platform.gpu``, if one is given).
        attention: The attention choice (a kernel name or ``default``).
        optimizer: The AdamW implementation (``fused``, ``foreach`` or ``forloop``).
        checkpoint: The activation checkpointing (``none``, ``full``: every block, or
            ``selective``: the attention core), non-reentrant as ``torch.utils.checkpoint``.
        terms: The terms, in forward order.
        kernels: The kernel that runs for each ``(amp, dropout)`` this choice accepts.
        fixed: Switches this choice needs at one value (e.g. AMP = 1 for flash on CUDA).
        totals: Every key of :data:`TOTALS` as a simplified expression.
        param_count: Number of parameters (the tied embedding once).
        phases: The peak of each phase of a training step (:data:`symmem.step.PHASES`); the
            largest of them is ``totals["peak"]``.
        steps: The training step simulated under each scenario, with every candidate peak.
        evaluator: Python source of one function that evaluates every term formula, every total
            and the parameter count at integer values of the model's sizes and switches (see
            :mod:`symmem.evaluate`); generated with the report and stored with it.
        loop: The training loop whose step gives the peak (:mod:`symmem.loops`).
        grad_accum: Its micro-steps per optimizer step (``gradient_accumulation_steps``).
        amp_dtype: The autocast dtype under AMP, ``bf16`` or ``fp16`` (same bytes; the nanoGPT
            loop runs a GradScaler with fp16).
        ddp: Data-parallel processes under ``DistributedDataParallel`` (1: none); from 2 on,
            each keeps its reducer's gradient buckets.
    """

    model: Model
    platform: Platform
    attention: str
    optimizer: str
    checkpoint: str
    terms: tuple[Term, ...]
    kernels: Mapping[tuple[bool, bool], str]
    fixed: Mapping[sympy.Symbol, int]
    totals: Mapping[str, sympy.Expr]
    param_count: sympy.Expr
    phases: Mapping[str, sympy.Expr]
    steps: tuple[StepRun, ...] = field(repr=False)
    evaluator: str = field(repr=False)
    loop: Loop = NANOGPT_LOOP
    grad_accum: int = 1
    amp_dtype: str = "bf16"
    ddp: int = 1
    total_texts: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def key(self) -> ReportKey:
        """What identifies this report among those :func:`build_report` builds: platform,
        attention, optimizer, GPU preset, checkpointing, architecture, loop, micro-steps,
        autocast dtype and processes."""
        gpu = None if self.platform.gpu is None else self.platform.gpu.name
        return (
            self.platform.name,
            self.attention,
            self.optimizer,
            gpu,
            self.checkpoint,
            self.model.name,
            self.loop.name,
            self.grad_accum,
            self.amp_dtype,
            self.ddp,
        )

    def total(self, kind: str) -> sympy.Expr:
        """The simplified total of one key of :data:`TOTALS`."""
        return self.totals[kind]

    def _repr_latex_(self) -> str:
        from symmem.render.latex import report_repr_latex

        return report_repr_latex(self)

    @cached_property
    def compiled(self) -> CompiledReport:
        """The totals compiled to integer arithmetic (built on first use)."""
        return CompiledReport(self)

    def kernel_for(self, config: Config) -> str:
        """The attention kernel that runs for ``config`` (raises KernelError if none can)."""
        self.check_model(config)
        for symbol, value in self.fixed.items():
            if config.switches()[symbol] != value:
                break
        else:
            name = self.kernels.get((config.amp, config.dropout))
            if name is not None:
                return name
        # Let the platform say why, in its own words.
        self.platform.kernel(self.attention, amp=config.amp, dropout=config.dropout)
        raise KernelError(f"attention {self.attention!r} cannot run with this config")

    def check_model(self, config: Config) -> None:
        """Raise ConfigError unless ``config`` is a config of this report's architecture."""
        if config.model != self.model.name:
            raise ConfigError(
                f"the config is for {config.model}, this report for {self.model.name}: build "
                f"the report with model={config.model!r}"
            )

    def kernel_reason(self, config: Config) -> str:
        """Why :meth:`kernel_for` gives the kernel it gives for ``config``, in one line.

        >>> from symmem import Config
        >>> report = build_report("cuda", gpu="h200")
        >>> print(report.kernel_reason(Config.notebook().with_(dropout=False)))
        ... # doctest: +NORMALIZE_WHITESPACE
        h200 is sm90, where PyTorch tries cudnn, flash, efficient, math
        (check_prefer_cudnn_attention puts cuDNN first on sm90 and sm100).
        Under bfloat16 autocast without dropout: cudnn runs.
        """
        self.kernel_for(config)
        return self.platform.choose(self.attention, amp=config.amp, dropout=config.dropout)[1]

    def at(self, config: Config) -> Estimate:
        """Exact bytes of every term and total for a complete config."""
        self.check_model(config)
        config.require_complete()
        kernel = self.kernel_for(config)
        values = config.arguments()
        results = self._evaluate(*values)
        n, m = len(self.terms), len(self.terms) + len(self.totals)
        totals = dict(zip(self.totals, results[n:m], strict=True))
        phases = dict(zip(self.phases, results[m:-1], strict=True))
        return Estimate(config, self, kernel, tuple(results[:n]), totals, results[-1], phases)

    def step_at(self, config: Config) -> StepRun:
        """The simulated step whose scenario ``config`` falls in."""
        switches = tuple(config.switches().values())
        values = config.values()
        for run in self.steps:
            scenario = run.scenario
            if scenario.combo != switches:
                continue
            if all(bool(exact_value(p, values)) == v for p, v in scenario.decisions):
                return run
        raise KernelError(f"no simulated step for {config}")

    @cached_property
    def _evaluate(self) -> Callable[..., tuple[int, ...]]:
        return load(self.evaluator)


@dataclass(frozen=True)
class Estimate:
    """A report evaluated at one config: exact integers.

    Attributes:
        config: The config.
        report: The symbolic report it comes from.
        kernel: The attention kernel that runs.
        term_bytes: Bytes of each of ``report.terms`` (whole model), in the same order.
        totals: Bytes of each key of :data:`TOTALS`.
        param_count: Number of parameters.
    """

    config: Config
    report: Report
    kernel: str
    term_bytes: tuple[int, ...]
    totals: Mapping[str, int]
    param_count: int
    phases: Mapping[str, int] = field(default_factory=dict)

    @cached_property
    def peak_at(self) -> tuple[str, str]:
        """Where the peak is reached: the phase, and the op (with its module) that allocated
        last before it."""
        phase = max(self.phases, key=lambda name: self.phases[name])
        values = self.config.values()
        step = next(p for p in self.report.step_at(self.config).phases if p.name == phase)
        target = self.phases[phase]
        for expr, what in step.candidates:
            if exact_value(expr, values) == target:
                return phase, what
        return phase, ""

    @cached_property
    def timeline(self) -> tuple[tuple[str, int, int, int], ...]:
        """``(phase, start, end, peak)`` live bytes of each phase of a training step."""
        values = self.config.values()
        return tuple(
            (
                p.name,
                int(exact_value(p.start, values)),
                int(exact_value(p.end, values)),
                self.phases[p.name],
            )
            for p in self.report.step_at(self.config).phases
        )

    @property
    def peak_formula(self) -> sympy.Expr:
        """The peak as a formula in the sizes, for this config's switches and size case."""
        return self.report.step_at(self.config).peak

    def formula_text(self, key: str) -> str:
        """``str(self.formula(key))``; the peaks' texts were printed when the report was built
        (a long ``Max`` is slow to print)."""
        if key == "peak":
            return self.report.step_at(self.config).peak_text
        if key == "max_memory_allocated":
            return self.report.step_at(self.config).allocated_text
        return self.report.total_texts.get(key) or str(self.formula(key))

    def formula(self, key: str) -> sympy.Expr:
        """The formula of the total ``key``: for a maximum over the step (``peak``,
        ``max_memory_allocated``), the one for this config's switches and size case (the joined
        one is long); otherwise the report's, with the switches symbolic."""
        if key == "peak":
            return self.peak_formula
        if key == "max_memory_allocated":
            return self.report.step_at(self.config).allocated_peak
        return self.report.totals[key]

    def _repr_html_(self) -> str:
        from symmem.render.html import estimate_html

        return estimate_html(self)

    def terms(self, *, nonzero: bool = True) -> Iterator[tuple[Term, int]]:
        """``(term, bytes)`` pairs, leaving out terms worth zero bytes here unless asked."""
        for term, nbytes in zip(self.report.terms, self.term_bytes, strict=True):
            if nbytes or not nonzero:
                yield term, nbytes


# -- building ---------------------------------------------------------------------------------


def _totals(terms: Sequence[Term]) -> dict[str, sympy.Expr]:
    device = [t for t in terms if t.location == DEVICE]
    sums = {
        k: sum((t.formula for t in device if t.kind == k), sympy.Integer(0)) for k in CATEGORIES
    }
    block = [t for t in device if t.per_layer and t.kind == "activations"]
    raw = {
        "block": sum((t.layer_formula for t in block), sympy.Integer(0)),
        **sums,
        "total": sum(sums.values(), sympy.Integer(0)),
        "host": sum((t.formula for t in terms if t.location == HOST), sympy.Integer(0)),
    }
    return {k: paper_form(v) for k, v in raw.items()}


def build_report(
    platform: str = "cuda",
    attention: str = "default",
    optimizer: str = "default",
    gpu: str | None = None,
    checkpoint: str = "none",
    model: str | Model = "nanogpt",
    loop: str | Loop | None = None,
    grad_accum: int = 1,
    amp_dtype: str | None = None,
    ddp: int = 1,
) -> Report:
    """The report of ``model`` (an architecture's name or :class:`Model`) on ``platform`` with
    ``attention`` (a kernel name or ``default``) and
    ``optimizer`` (an AdamW implementation or ``default``: what ``loop`` runs there), on the GPU
    preset ``gpu`` if given (:mod:`symmem.gpus`: it decides what ``default`` resolves to and
    which kernels can run), with activation checkpointing ``checkpoint`` (``none``, ``full`` or
    ``selective``: :mod:`symmem.ops.checkpoint`), its peak that of a step of ``loop`` (a
    :mod:`symmem.loops` name or value; ``None``: the architecture's own, ``model.loop``) with
    ``grad_accum`` micro-steps, under ``amp_dtype`` autocast (``bf16`` or ``fp16``; ``None``:
    bf16, or fp16 on a GPU preset without bfloat16 kernels, as nanoGPT's ``train.py`` picks)
    with AMP, in each of ``ddp`` processes of ``DistributedDataParallel`` (1: without it).

    Built once per process, and kept on disk between processes (:mod:`symmem.cache`).

    >>> build_report("cpu", checkpoint="some")
    Traceback (most recent call last):
    ...
    symmem.errors.ConfigError: checkpoint must be one of none, full, selective, not 'some'
    """
    arch = get_model(model)
    chosen = get_loop(arch.loop if loop is None else loop)
    chosen.check(grad_accum)
    if amp_dtype is None:
        amp_dtype = "bf16" if gpu is None or get_gpu(gpu).bf16 else "fp16"
    if amp_dtype not in AMP_DTYPES:
        raise ConfigError(f"--amp-dtype must be one of {', '.join(AMP_DTYPES)}, not {amp_dtype!r}")
    if isinstance(ddp, bool) or not isinstance(ddp, int) or ddp < 1:
        raise ConfigError(f"--ddp must be a whole number >= 1, not {ddp!r}")
    return _build_report(
        platform, attention, optimizer, gpu, checkpoint, arch, chosen, grad_accum, amp_dtype, ddp
    )


@cache
def _build_report(
    platform: str,
    attention: str,
    optimizer: str,
    gpu: str | None,
    checkpoint: str,
    model: Model,
    loop: Loop = NANOGPT_LOOP,
    grad_accum: int = 1,
    amp_dtype: str = "bf16",
    ddp: int = 1,
) -> Report:
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, not {checkpoint!r}")
    plat = get_platform(platform, gpu)
    adamw = plat.optimizer(
        loop.optimizer(plat.name, plat.default_optimizer) if optimizer == "default" else optimizer
    )
    where = platform if plat.gpu is None else f"{platform}-{plat.gpu.name}"
    mode = "" if checkpoint == "none" else f"-{checkpoint}"
    mode += "" if loop.name == "nanogpt" else f"-{loop.name}"
    micro = min(grad_accum, 2)  # micro-steps 2 to K are alike
    mode += "" if micro == 1 else f"-k{micro}"
    fp16 = amp_dtype == "fp16"
    if fp16:
        plat = replace(plat, half=FLOAT16)  # the same bytes as bfloat16, named as they are
        mode += "-fp16"
    buckets = ddp > 1  # the buckets do not depend on how many processes there are
    mode += "-ddp" if buckets else ""
    name = f"report-{model.name}-{where}-{attention}-{adamw}{mode}"
    # The same entry asked for again with other spellings of its arguments: read once.
    memo = (str(entry_path(name)), os.environ.get("SYMMEM_NO_CACHE"))
    parts = _PARTS.get(memo)
    if parts is None:
        parts = _PARTS[memo] = cached(
            name,
            lambda: _build_parts(
                model, plat, attention, adamw, checkpoint, loop, micro, fp16, buckets
            ),
            STORED_CLASSES,
        )
    terms, kernels, fixed, totals, param_count, phases, steps, evaluator, texts = parts
    return Report(
        model,
        plat,
        attention,
        adamw,
        checkpoint,
        terms,
        MappingProxyType(kernels),
        MappingProxyType(fixed),
        MappingProxyType(totals),
        param_count,
        MappingProxyType(phases),
        steps,
        evaluator,
        loop,
        grad_accum,
        amp_dtype,
        ddp,
        MappingProxyType(texts),
    )


#: The parts of each report entry read or built in this process, by entry file.
_PARTS: dict[tuple[str, str | None], _Parts] = {}

#: The dataclasses a report's cache entry holds (:func:`symmem.cache.cached`).
STORED_CLASSES = (Term, StepRun, StepPhase, Scenario)

_Parts = tuple[
    tuple[Term, ...],
    dict[tuple[bool, bool], str],
    dict[sympy.Symbol, int],
    dict[str, sympy.Expr],
    sympy.Expr,
    dict[str, sympy.Expr],
    tuple[StepRun, ...],
    str,
    dict[str, str],
]


def _build_parts(
    model: Model,
    plat: Platform,
    attention: str,
    optimizer: str,
    checkpoint: str = "none",
    loop: Loop = NANOGPT_LOOP,
    grad_accum: int = 1,
    fp16: bool = False,
    buckets: bool = False,
) -> _Parts:
    """Trace every scenario and join the traces: terms, kernels, fixed switches, totals, the
    parameter count (parameter bytes / their item size) and the evaluator's source."""
    platform = plat.name
    switches = model.switches
    runs: list[tuple[tuple[int, ...], Scenario, list[_Raw]]] = []
    steps: list[StepRun] = []
    kernels: dict[tuple[bool, bool], str] = {}
    refusals: list[str] = []
    for values in itertools.product((True, False), repeat=len(switches)):
        start = Scenario(tuple(zip(switches, values, strict=True)))
        amp, dropout = start.amp, start.dropout
        try:
            kernel = plat.kernel(attention, amp=amp, dropout=dropout)
        except KernelError as error:
            refusals.append(str(error))
            continue
        kernels[(amp, dropout)] = kernel.name
        for scenario, trace in _explore(model, plat, kernel, start, checkpoint):
            raws = _raw_terms(model, trace, plat.optimizers[optimizer])
            runs.append((start.combo, scenario, raws))
        steps += _explore_step(
            model, plat, kernel, start, optimizer, checkpoint, loop, grad_accum, fp16, buckets
        )
    if not runs:
        raise KernelError(refusals[0])
    combos = {combo for combo, _, _ in runs}
    n = len(switches)
    free = [i for i in range(n) if len({c[i] for c in combos}) == 2]
    if len(combos) != 2 ** len(free):
        raise AssertionError(f"{platform}/{attention}: the switches it accepts are not a subcube")
    fixed = {switches[i]: next(iter(combos))[i] for i in range(n) if i not in free}
    terms = tuple(_combine(runs, model, free))
    totals = _totals(terms)
    totals["saved"] = paper_form(_saved(runs, model, free))
    phases, peaks = _peaks(steps, switches, free, loop.phases_for(grad_accum, fp16))
    totals |= peaks
    totals = {k: totals[k] for k in TOTALS}
    param_count = paper_form(totals["params"] / model.param_dtype.itemsize)
    exprs = [*(t.formula for t in terms), *totals.values(), *phases.values(), param_count]
    evaluator = generate(exprs, model.arguments)
    # The totals' text, printed once (the maxima's texts are per step, stored with it).
    texts = {k: str(e) for k, e in totals.items() if k not in ("peak", "max_memory_allocated")}
    return terms, kernels, fixed, totals, param_count, phases, tuple(steps), evaluator, texts


def _saved(
    runs: Sequence[tuple[tuple[int, ...], Scenario, list[_Raw]]], model: Model, free: Sequence[int]
) -> sympy.Expr:
    """Every byte autograd saves, each storage once (parameters are not terms): the sum over
    terms of each one's bytes in the scenarios where some node saves it, L times in a block."""
    sized = [(c, s, {r.key: r.nbytes for r in raws if r.saved_by}) for c, s, raws in runs]
    keys = list(dict.fromkeys(k for _, _, found in sized for k in found))
    predicates = list(dict.fromkeys(p for _, s, _ in runs for p, _ in s.decisions))
    total = sympy.Integer(0)
    for key in keys:
        formula = _formula(key, sized, model.switches, free, predicates)
        total += formula * (L if model.in_block(key[1]) else 1)
    return total


def _explore_step(
    model: Model,
    platform: Platform,
    kernel: AttentionKernel,
    start: Scenario,
    optimizer: str,
    checkpoint: str,
    loop: Loop = NANOGPT_LOOP,
    grad_accum: int = 1,
    fp16: bool = False,
    buckets: bool = False,
) -> Iterator[StepRun]:
    """Simulate a training step under ``start`` and both outcomes of every predicate asked."""
    pending = [start]
    while pending:
        scenario = pending.pop()
        trace = Trace(model, platform, kernel, scenario, events=[], checkpoint=checkpoint)
        step_location = platform.optimizers[optimizer]
        try:
            phases = simulate(trace, optimizer, step_location, loop, grad_accum, fp16, buckets)
        except UndecidedPredicateError as ask:
            pending += [scenario.deciding(ask.predicate, v) for v in (False, True)]
            continue
        allocated: tuple[StepPhase, ...] = ()
        workspaces = 0
        if platform.caching_allocator:
            workspaces = workspace_bytes(platform.gpu, cublaslt=trace.biased_matmul)
            resident = sympy.Integer(workspaces)
            allocated = walk(
                trace,
                optimizer,
                step_location,
                block_bytes,
                resident,
                loop,
                grad_accum,
                fp16,
                buckets,
            )
        yield StepRun(scenario, phases, allocated, workspaces)


def _peaks(
    steps: Sequence[StepRun],
    switches: Sequence[sympy.Symbol],
    free: Sequence[int],
    names: Sequence[str] = PHASES,
) -> tuple[dict[str, sympy.Expr], dict[str, sympy.Expr]]:
    """Each phase's peak, and the step's as live tensors (``peak``) and as the allocator counts
    it (``max_memory_allocated``), with the switches symbolic again."""
    runs = []
    for step in steps:
        s = step.scenario
        values = {("phase", p.name): p.peak for p in step.phases} | {
            ("step",): step.peak,
            ("allocated",): step.allocated_peak,
        }
        _ = (step.peak_text, step.allocated_text)  # printed now, stored with the report
        runs.append((s.combo, s, values))
    predicates = list(dict.fromkeys(p for _, s, _ in runs for p, _ in s.decisions))

    def joined(key: tuple[str, ...]) -> sympy.Expr:
        return _formula(key, runs, switches, free, predicates, tidy=False)

    phases = {name: joined(("phase", name)) for name in names}
    totals = {"peak": joined(("step",)), "max_memory_allocated": joined(("allocated",))}
    return phases, totals


def _explore(
    model: Model, platform: Platform, kernel: AttentionKernel, start: Scenario, checkpoint: str
) -> Iterator[tuple[Scenario, Trace]]:
    """Trace ``forward`` under ``start`` and under both outcomes of every predicate it asks."""
    pending = [start]
    while pending:
        scenario = pending.pop()
        trace = Trace(model, platform, kernel, scenario, checkpoint=checkpoint)
        try:
            model.forward(trace, *model.batch(trace))
        except UndecidedPredicateError as ask:
            pending += [scenario.deciding(ask.predicate, v) for v in (False, True)]
            continue
        yield scenario, trace


@dataclass(frozen=True)
class _Raw:
    """A term as one trace sees it."""

    name: str
    module: str
    kind: str
    location: str
    dtype: str
    shape: str
    saved_by: tuple[str, ...]
    nbytes: sympy.Expr

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.module, self.kind)


def _raw_terms(model: Model, trace: Trace, step_location: str) -> list[_Raw]:
    """One raw term per storage saved (fp32 parameters excluded) or labelled, then the state."""
    saves: dict[int, list[Save]] = {}
    storages: dict[int, Storage] = {}
    for save in trace.saves:
        storage = save.tensor.storage
        if storage.kind == "param":
            continue
        saves.setdefault(id(storage), []).append(save)
        storages[id(storage)] = storage
    for storage in trace.labelled:
        saves.setdefault(id(storage), [])
        storages[id(storage)] = storage
    raws = [_storage_term(model, storages[key], group) for key, group in saves.items()]
    return raws + _state_terms(model, trace, step_location)


def _storage_term(model: Model, storage: Storage, saves: Sequence[Save]) -> _Raw:
    saved_by = tuple(dict.fromkeys(f"{s.node_name}-{s.field} ({s.module})" for s in saves))
    shape = saves[0].tensor.shape if saves else storage.shape
    if storage.label is not None and storage.kind is not None:
        name, module, kind = storage.label, storage.module, storage.kind
    else:
        first = saves[0]
        fields = sorted({s.field for s in saves if s.order == first.order})
        name, module = f"{first.node_name}-{'/'.join(fields)}", first.module
        kind = "loss" if module == model.root else "activations"
    return _Raw(
        name,
        module,
        kind,
        storage.location,
        storage.dtype.name,
        _shape(shape),
        saved_by,
        storage.nbytes,
    )


def _state_terms(model: Model, trace: Trace, step_location: str) -> list[_Raw]:
    """Parameters, gradients and AdamW state (fp32, as the parameters are), split into the
    per-block part and the rest."""
    raws = []
    dtype = model.param_dtype
    for module in (model.block, model.rest):
        inside = module == model.block
        params = [p for p in trace.params.values() if model.in_block(p.name) == inside]
        numel = sum((p.numel for p in params), sympy.Integer(0))
        count = f"{len(params)} tensors"
        for name, kind in (
            ("parameters", "params"),
            ("gradients", "grads"),
            ("AdamW-exp_avg", "optimizer"),
            ("AdamW-exp_avg_sq", "optimizer"),
        ):
            raws.append(
                _Raw(name, module, kind, DEVICE, dtype.name, count, (), dtype.itemsize * numel)
            )
        raws.append(
            _Raw(
                "AdamW-step",
                module,
                "optimizer",
                step_location,
                "float32",
                count,
                (),
                sympy.Integer(4 * len(params)),
            )
        )
    return raws


def _shape(shape: Sequence[sympy.Expr]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _combine(
    runs: Sequence[tuple[tuple[int, ...], Scenario, list[_Raw]]], model: Model, free: Sequence[int]
) -> list[Term]:
    """Join the raw terms of every run into terms whose formulas keep the switches symbolic."""
    order: list[tuple[str, str, str]] = []
    first: dict[tuple[str, str, str], _Raw] = {}
    dtypes: dict[tuple[str, str, str], dict[int, set[str]]] = {}
    saved_by: dict[tuple[str, str, str], dict[str, None]] = {}
    for combo, _, raws in runs:
        previous = -1
        for raw in raws:
            if raw.key not in first:
                order.insert(previous + 1, raw.key)
                first[raw.key] = raw
            previous = order.index(raw.key)
            dtypes.setdefault(raw.key, {}).setdefault(combo[0], set()).add(raw.dtype)
            saved_by.setdefault(raw.key, {}).update(dict.fromkeys(raw.saved_by))
    predicates = list(dict.fromkeys(p for _, s, _ in runs for p, _ in s.decisions))
    # Each run's bytes by term, looked up once per term and outcome below.
    sized = [(combo, scenario, {r.key: r.nbytes for r in raws}) for combo, scenario, raws in runs]
    terms = []
    for key in order:
        raw = first[key]
        formula = _formula(key, sized, model.switches, free, predicates)
        terms.append(
            Term(
                name=raw.name,
                module=raw.module,
                kind=raw.kind,
                per_layer=model.in_block(raw.module),
                layer_formula=formula,
                location=raw.location,
                dtype=_dtype_text(dtypes[key]),
                shape=raw.shape,
                saved_by=tuple(saved_by[key]),
                text=str(model_formula(formula, model.in_block(raw.module))),
                layer_text=str(formula),
            )
        )
    return terms


def model_formula(layer_formula: sympy.Expr, per_layer: bool) -> sympy.Expr:
    """A term's bytes for the whole model: L instances of a per-layer term."""
    return L * layer_formula if per_layer else layer_formula


def _formula(
    key: tuple[str, ...],
    runs: Sequence[tuple[tuple[int, ...], Scenario, Mapping[Any, sympy.Expr]]],
    switches: Sequence[sympy.Symbol],
    free: Sequence[int],
    predicates: Sequence[sympy.Basic],
    tidy: bool = True,
) -> sympy.Expr:
    """Sum over switch values of (indicator * bytes), one branch per predicate outcome."""
    branches: dict[tuple[bool, ...], sympy.Expr] = {}
    for outcome in itertools.product((True, False), repeat=len(predicates)):
        total = sympy.Integer(0)
        for combo, scenario, sizes in runs:
            if any(
                scenario.decided(p) not in (None, v)
                for p, v in zip(predicates, outcome, strict=True)
            ):
                continue
            nbytes = sizes.get(key, sympy.Integer(0))
            indicator = sympy.Mul(*(switches[i] if combo[i] else 1 - switches[i] for i in free))
            total += indicator * nbytes
        branches[outcome] = tidy_term(total) if tidy else total
    distinct = list(dict.fromkeys(branches.values()))
    if len(distinct) == 1:
        return distinct[0]
    pieces = []
    for value in distinct[:-1]:
        conditions = [
            sympy.And(*(p if v else sympy.Not(p) for p, v in zip(predicates, outcome, strict=True)))
            for outcome, branch in branches.items()
            if branch == value
        ]
        pieces.append((value, sympy.simplify_logic(sympy.Or(*conditions))))
    return sympy.Piecewise(*pieces, (distinct[-1], True))


def _dtype_text(by_amp: Mapping[int, set[str]]) -> str:
    names = {amp: "|".join(sorted(d)) for amp, d in by_amp.items()}
    if len(set(names.values())) == 1:
        return next(iter(names.values()))
    return f"{names.get(0, '-')} (fp32), {names.get(1, '-')} (AMP)"
