"""Memory per GPU when training is spread over several: ZeRO data parallelism, tensor and
sequence parallelism, pipeline parallelism.

A :class:`Layout` says how training is spread; :func:`per_rank` takes a report's exact one-GPU
terms and gives each rank's share, as expressions in the sizes and in ``N`` (data-parallel
ranks), ``t`` (tensor-parallel ranks) and ``p`` (pipeline stages). One machine cannot run these
layouts, so the rules follow each method's documented semantics; they are derived, not measured:

Tensor parallelism (Megatron-LM, Shoeybi et al. 2019)
    ``c_attn`` and ``c_fc`` are split by output columns, both ``c_proj`` by input rows, the
    attention heads among the ranks, and the tied token embedding with ``lm_head`` by vocabulary
    rows. A tensor saved inside a split region is 1/t on each rank: the attention core, GELU's
    input, the inputs of both ``c_proj``, the autocast copies of split weights, the logits and
    the loss's vocabulary-sized tensors. The LayerNorms' inputs and statistics, the dropout
    masks after ``c_proj`` and the embeddings, and the inputs of ``c_attn`` and ``c_fc`` are
    whole on every rank, as are the position embedding, the LayerNorms' parameters and the
    ``c_proj`` biases.
Sequence parallelism (Korthikanti et al. 2022)
    The tensors tensor parallelism keeps whole are split along the sequence instead: 1/t each.
ZeRO (Rajbhandari et al. 2020), over N data-parallel ranks
    Stage 1 splits AdamW's state, stage 2 the gradients too, stage 3 the parameters too: each
    rank holds ⌈x/N⌉ of a state of x bytes (DeepSpeed pads the flat buffers it partitions to a
    multiple of N).
Pipeline parallelism over p stages, 1F1B (Narayanan et al. 2021)
    Each stage holds L/p blocks. The first stage holds the most activations: p micro-batches in
    flight, so p·(L/p) = L blocks' worth. It is the rank reported; it holds the embeddings.
    ``ln_f``, ``lm_head``, the logits and the loss live on the last stage once p ≥ 2 (a
    symbolic p is taken to be at least 2).

``B`` is the micro-batch each rank runs. The peak of a step is not derived for a layout: the
totals here are sums of what is held.

>>> from symmem import Config, build_report
>>> from symmem.symbols import T
>>> ranks = per_rank(build_report("cuda"), Layout(tp=T, sp=True))
>>> ranks.totals["block"]
24*AMP*D**2/t + B*D*S*(-28*AMP + 2*DROPOUT + 64)/t + 128*B*NH*ceiling(S/32)/t + 16*B*S/t
"""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import sympy

from symmem.cache import cached
from symmem.config import Config
from symmem.dtypes import DEVICE, HOST
from symmem.errors import ConfigError
from symmem.evaluate import exact_value, generate, load
from symmem.kinds import CATEGORIES
from symmem.model.spec import SEQ, TP, WHOLE, ParallelRules
from symmem.ops.graph import Scenario, Trace, UndecidedPredicateError
from symmem.report import Report, Term
from symmem.simplify import paper_form
from symmem.symbols import L, N, P, T

__all__ = ["RANK_TOTALS", "Layout", "RankEstimate", "RankReport", "RankTerm", "per_rank"]

#: Totals of a rank: one block's activations per micro-batch, the categories (device memory),
#: their sum, and host tensors.
RANK_TOTALS = ("block", *CATEGORIES, "total", "host")

_STATE_KINDS = {"params": 3, "grads": 2, "optimizer": 1}  # the ZeRO stage that splits each


@dataclass(frozen=True)
class Layout:
    """How training is spread over GPUs.

    Attributes:
        zero: The ZeRO stage, 0 to 3.
        dp: Data-parallel ranks (an integer or the symbol ``N``).
        tp: Tensor-parallel ranks (an integer or ``t``).
        sp: Sequence parallelism (needs tensor parallelism).
        pp: Pipeline stages (an integer or ``p``).
    """

    zero: int = 0
    dp: int | sympy.Symbol = 1
    tp: int | sympy.Symbol = 1
    sp: bool = False
    pp: int | sympy.Symbol = 1

    def __post_init__(self) -> None:
        if self.zero not in (0, 1, 2, 3):
            raise ConfigError(f"unknown ZeRO stage {self.zero!r} (allowed: 0, 1, 2, 3)")
        for name, symbol in (("dp", N), ("tp", T), ("pp", P)):
            value = getattr(self, name)
            if value == symbol:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"--{name} must be a whole number >= 1 or the symbol {symbol}, got {value!r}"
                )
        if self.sp and self.tp == 1:
            raise ConfigError(
                "sequence parallelism splits along the tensor-parallel ranks: give tp"
            )

    @property
    def single(self) -> bool:
        """Whether this is one GPU (nothing spread)."""
        return self.dp == 1 and self.tp == 1 and self.pp == 1 and not self.sp

    def values(self) -> dict[sympy.Symbol, int | sympy.Symbol]:
        return {N: self.dp, T: self.tp, P: self.pp}

    def as_dict(self) -> dict[str, object]:
        return {
            "zero": self.zero,
            "dp": str(self.dp),
            "tp": str(self.tp),
            "sp": self.sp,
            "pp": str(self.pp),
        }


@dataclass(frozen=True)
class RankTerm:
    """One term's share on the reported rank.

    Attributes:
        term: The one-GPU term.
        split: How it splits under tensor parallelism (``tp``, ``seq`` or ``whole``).
        formula: Its bytes on the rank, in the sizes and N, t, p.
    """

    term: Term
    split: str
    formula: sympy.Expr


@dataclass(frozen=True)
class RankReport:
    """A report's terms and totals on one rank of a layout.

    Attributes:
        report: The one-GPU report.
        layout: The layout.
        terms: Each term's share (terms worth nothing on the rank are left out).
        totals: Every key of :data:`RANK_TOTALS`, simplified.
        profile: ``pytorch`` (symmem's terms) or ``paper`` (:func:`paper_profile`).
        checkpoint: The activation checkpointing the activations assume.
    """

    report: Report
    layout: Layout
    terms: tuple[RankTerm, ...]
    totals: Mapping[str, sympy.Expr] = field(repr=False)
    profile: str = "pytorch"
    checkpoint: str = "none"

    def total(self, key: str) -> sympy.Expr:
        if key not in self.totals:
            raise ConfigError(f"unknown total {key!r}: choose one of {', '.join(self.totals)}")
        return self.totals[key]

    def at(self, config: Config, **layout: int) -> RankEstimate:
        """Exact bytes on the rank for a complete config; ``layout`` gives values to symbolic
        ranks (``dp=8``)."""
        config.require_complete()
        self.report.kernel_for(config)
        values: dict[sympy.Symbol, sympy.Integer] = dict(config.values())
        for name, symbol in (("dp", N), ("tp", T), ("pp", P)):
            given = layout.get(name, getattr(self.layout, name))
            if isinstance(given, sympy.Symbol):
                raise ConfigError(f"give a value for {symbol} ({name}=...)")
            values[symbol] = sympy.Integer(given)
        unknown = set(layout) - {"dp", "tp", "pp"}
        if unknown:
            raise ConfigError(f"unknown layout values {sorted(unknown)}: give dp, tp or pp")
        exprs = [*(t.formula for t in self.terms), *self.totals.values()]
        evaluate = self._evaluate
        if evaluate is None:
            results = [_exact(e, values) for e in exprs]
        else:
            found = evaluate(*config.arguments(), *(int(values[s]) for s in (N, T, P)))
            results = [_whole(v, e, values) for v, e in zip(found, exprs, strict=True)]
        n = len(self.terms)
        totals = dict(zip(self.totals, results[n:], strict=True))
        return RankEstimate(config, self, tuple(results[:n]), totals)

    @cached_property
    def _evaluate(self) -> Callable[..., tuple[Any, ...]] | None:
        """Every term's share and every total as generated code of the model's sizes, switches
        and N, t, p (kept on disk with the rank report); ``None`` where an expression has no
        exact code (a float coefficient)."""
        exprs = [*(t.formula for t in self.terms), *self.totals.values()]
        args = (*self.report.model.arguments, N, T, P)
        name = _entry_name(self.report, self.layout, self.profile, self.checkpoint)

        def build() -> str:
            try:
                return generate(exprs, args, whole=False)
            except TypeError:
                return ""

        source = cached(f"{name}-code", build)
        return load(source) if source else None


@dataclass(frozen=True)
class RankEstimate:
    """A rank report evaluated at one config: exact integers.

    Attributes:
        config: The config.
        ranks: The rank report.
        term_bytes: Bytes of each of ``ranks.terms``.
        totals: Bytes of each key of :data:`RANK_TOTALS`.
    """

    config: Config
    ranks: RankReport
    term_bytes: tuple[int, ...]
    totals: Mapping[str, int]


def per_rank(report: Report, layout: Layout) -> RankReport:
    """Every term of ``report`` as its share on the first pipeline stage's rank of ``layout``.

    The shares and their simplified totals are worked out once per report and layout and kept
    on disk (simplifying them takes a second or more)."""
    rules = _rules(report)

    def build() -> tuple[list[tuple[int, str, sympy.Expr]], dict[str, sympy.Expr]]:
        shares, block = _shares(report, rules, layout)
        ranks = [RankTerm(report.terms[i], split, share) for i, split, share in shares]
        return shares, _rank_totals(ranks, block)

    shares, totals = cached(_entry_name(report, layout, "pytorch", report.checkpoint), build)
    ranks = tuple(RankTerm(report.terms[i], split, share) for i, split, share in shares)
    return RankReport(report, layout, ranks, MappingProxyType(totals), "pytorch", report.checkpoint)


def _shares(
    report: Report, rules: ParallelRules, layout: Layout
) -> tuple[list[tuple[int, str, sympy.Expr]], sympy.Expr]:
    """Each term's share on the rank (by its index in the report, with how it splits; terms
    worth nothing there left out), and one block's activations on it."""
    t = sympy.sympify(layout.tp)
    p = sympy.sympify(layout.pp)
    n = sympy.sympify(layout.dp)
    staged = p != 1
    params = _parameters(report)
    shares: list[tuple[int, str, sympy.Expr]] = []
    block = sympy.Integer(0)
    for index, term in enumerate(report.terms):
        last = any(term.module.startswith(m) for m in rules.last_stage)
        if staged and last and term.name not in rules.first_stage_inputs:
            continue
        if term.kind in _STATE_KINDS:
            split, share = _state_share(report, rules, params, term, t, p)
            if layout.zero >= _STATE_KINDS[term.kind]:
                share = sympy.ceiling(share / n)  # a flat buffer padded to a multiple of N
        else:
            split = _activation_split(rules, term)
            share = term.layer_formula / _divisor(split, t, layout.sp)
            if term.per_layer:
                block += share if term.location == DEVICE else 0
                share *= L  # p micro-batches in flight, L/p blocks each
            elif staged and term.kind in ("activations", "inputs"):
                share *= p  # per micro-batch in flight: the embeddings' saved tensors, idx
        if share != 0:
            shares.append((index, split, share))
    return shares, block


def _entry_name(report: Report, layout: Layout, profile: str, checkpoint: str) -> str:
    """The disk cache entry of a rank report."""
    counts = f"z{layout.zero}-dp{layout.dp}-tp{layout.tp}-sp{int(layout.sp)}-pp{layout.pp}"
    return f"ranks-{_report_name(report)}-{profile}-{checkpoint}-{counts}"


def _report_name(report: Report) -> str:
    """The report's :attr:`~symmem.report.Report.key` in a cache entry's name."""
    return "-".join(str(part) for part in report.key)


def _rank_report(
    report: Report,
    layout: Layout,
    ranks: Sequence[RankTerm],
    block: sympy.Expr,
    profile: str,
    checkpoint: str,
) -> RankReport:
    """The rank report of ``ranks``, its totals simplified once and kept on disk."""
    totals = cached(
        _entry_name(report, layout, profile, checkpoint), lambda: _rank_totals(ranks, block)
    )
    return RankReport(report, layout, tuple(ranks), MappingProxyType(totals), profile, checkpoint)


def _rank_totals(ranks: Sequence[RankTerm], block: sympy.Expr) -> dict[str, sympy.Expr]:
    """The totals of ``ranks``: by category (device memory), the sum of those, and host
    tensors, each simplified."""
    device = [r for r in ranks if r.term.location == DEVICE]
    sums = {
        k: sum((r.formula for r in device if r.term.kind == k), sympy.Integer(0))
        for k in CATEGORIES
    }
    raw = {
        "block": block,
        **sums,
        "total": sum(sums.values(), sympy.Integer(0)),
        "host": sum((r.formula for r in ranks if r.term.location == HOST), sympy.Integer(0)),
    }
    return {k: paper_form(sympy.simplify(v)) for k, v in raw.items()}


def _rules(report: Report) -> ParallelRules:
    rules = report.model.parallel
    if rules is None:
        raise ConfigError(
            f"no tensor-parallel or pipeline rules are written for {report.model.name}"
        )
    return rules


def _activation_split(rules: ParallelRules, term: Term) -> str:
    for module, name, split in rules.activations:
        if fnmatch.fnmatchcase(term.module, module) and fnmatch.fnmatchcase(term.name, name):
            return split
    raise AssertionError(f"no tensor-parallel rule for {term.name} ({term.module})")


def _divisor(split: str, t: sympy.Expr, sp: bool) -> sympy.Expr:
    if split == TP or (split == SEQ and sp):
        return t
    return sympy.Integer(1)


def _state_share(
    report: Report,
    rules: ParallelRules,
    params: Sequence[tuple[str, sympy.Expr, sympy.Expr]],
    term: Term,
    t: sympy.Expr,
    p: sympy.Expr,
) -> tuple[str, sympy.Expr]:
    """A parameter-state term's bytes on the first stage's tensor-parallel rank, and how it
    splits (``mixed`` where some of its tensors split and some do not)."""
    model = report.model
    mine = [
        (name, numel, present)
        for name, numel, present in params
        if model.in_block(name) == term.per_layer
        and not (p != 1 and any(name.startswith(m) for m in rules.last_stage))
    ]
    layers = L / p if term.per_layer else sympy.Integer(1)
    if term.name == "AdamW-step":  # one 0-dim fp32 tensor per parameter tensor, never split
        count = sum((present for _, _, present in mine), sympy.Integer(0))
        return WHOLE, layers * 4 * count
    split = sum(
        (n * k for name, n, k in mine if _parameter_split(rules, name) == TP), sympy.Integer(0)
    )
    whole = sum(
        (n * k for name, n, k in mine if _parameter_split(rules, name) == WHOLE),
        sympy.Integer(0),
    )
    kind = TP if whole == 0 else WHOLE if split == 0 else "mixed"
    return kind, layers * 4 * (split / t + whole)


def _parameter_split(rules: ParallelRules, name: str) -> str:
    for pattern, split in rules.parameters:
        if fnmatch.fnmatchcase(name, pattern):
            return split
    raise AssertionError(f"no rule for parameter {name}")


def _traced_parameters(report: Report) -> list[tuple[str, sympy.Expr, sympy.Expr]]:
    """The model's parameters: each one's name (a block's under the block pattern), elements,
    and when it exists, as a product of switch factors (a bias only with BIAS = 1, an untied
    output embedding only with TIED = 0), from a trace of the forward under every switch
    combination."""
    model, platform = report.model, report.platform
    kernel = next(iter(platform.kernels.values()))
    found: dict[str, tuple[sympy.Expr, sympy.Expr]] = {}
    for values in itertools.product((True, False), repeat=len(model.switches)):
        scenario = Scenario(tuple(zip(model.switches, values, strict=True)))
        trace = Trace(model, platform, kernel, scenario)
        with contextlib.suppress(UndecidedPredicateError):  # parameters are known by then
            model.forward(trace, *model.batch(trace))
        indicator = sympy.Mul(
            *(s if v else 1 - s for s, v in zip(model.switches, values, strict=True))
        )
        for name, param in trace.params.items():
            numel, present = found.get(name, (param.numel, sympy.Integer(0)))
            found[name] = (numel, present + indicator)
    return [(name, numel, sympy.factor(present)) for name, (numel, present) in found.items()]


def _parameters(report: Report) -> list[tuple[str, sympy.Expr, sympy.Expr]]:
    """:func:`_traced_parameters`, traced once per report and kept on disk."""
    return cached(f"parameters-{_report_name(report)}", lambda: _traced_parameters(report))


def _whole(value: Any, expr: sympy.Expr, values: Mapping[sympy.Symbol, sympy.Integer]) -> int:
    """A generated evaluator's ``value`` of ``expr``, which must be a whole number of bytes
    (:func:`_exact` says why not)."""
    if isinstance(value, int):
        return value
    return _exact(expr, values)


def _exact(expr: sympy.Expr, values: Mapping[sympy.Symbol, sympy.Integer]) -> int:
    try:
        exact = exact_value(expr, values)
        value: Any = sympy.Rational(exact.numerator, exact.denominator)
    except TypeError:  # a float coefficient
        value = sympy.sympify(expr).xreplace(dict(values))
    if not value.is_Integer:
        value = sympy.nsimplify(value)
    if not value.is_Integer:
        raise ConfigError(
            f"the share is not a whole number of bytes ({value}): the layout must divide the "
            "sizes it splits (t divides NH, D, V and S; p divides L)"
        )
    return int(value)


#: The profiles a rank report can follow: PyTorch as measured (symmem's own terms) or the
#: papers' assumptions (:mod:`symmem.paper`).
PROFILES = ("pytorch", "paper")

_PAPER_KINDS = {1: "optimizer", 2: "grads", 3: "params"}  # a state's kind, by its ZeRO stage


def paper_profile(report: Report, layout: Layout, recompute: str = "none") -> RankReport:
    """One rank as the papers count it: Korthikanti et al.'s per-layer activations
    (:data:`symmem.paper.PAPER_TERMS`, with ``recompute``) for every layer the first pipeline
    stage holds, and ZeRO's mixed-precision model states (:data:`symmem.paper.ZERO_PAPER`) for
    the report's parameter count split evenly over the t·p model-parallel ranks. Embeddings,
    logits and the loss are outside the papers' per-layer count and are left out."""
    from symmem.paper import paper_terms, zero_terms

    if report.model.name != "nanogpt":
        raise ConfigError(
            "the papers' profile counts the GPT layer of Korthikanti et al. (nanogpt); "
            f"{report.model.name} has another layer: use --profile pytorch"
        )
    t, p = sympy.sympify(layout.tp), sympy.sympify(layout.pp)
    ranks: list[RankTerm] = []
    block = sympy.Integer(0)
    for row, nbytes in paper_terms(tp=t, sp=layout.sp, recompute=recompute):
        term = Term(
            row.name,
            row.module,
            "activations",
            True,
            row.nbytes,
            DEVICE,
            "bool" if "mask" in row.name else "16-bit",
            "",
            ("Korthikanti et al. 2022, Section 4.1",),
        )
        block += nbytes
        if nbytes != 0:
            ranks.append(RankTerm(term, TP if row.shard == "tensor" else SEQ, L * nbytes))
    psi = report.param_count / (t * p)
    states = zero_terms(layout.zero, psi, ranks=sympy.sympify(layout.dp), accounting="paper")
    for state, nbytes in states:
        kind = _PAPER_KINDS[state.sharded_from]
        term = Term(
            state.name,
            report.model.rest,
            kind,
            False,
            state.bytes_per_param * report.param_count,
            DEVICE,
            state.dtype,
            "Ψ",
            ("Rajbhandari et al. 2020, Section 3.1",),
        )
        ranks.append(RankTerm(term, TP, nbytes))
    return _rank_report(report, layout, ranks, block, "paper", recompute)
