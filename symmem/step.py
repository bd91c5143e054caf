"""Live memory through one training step, phase by phase, and its peak.

:func:`simulate` runs nanoGPT's training loop once on the symbolic model (the trace's
:class:`~symmem.model.spec.Model`), in its steady state (the optimizer state exists; the loop
still holds the previous step's logits and loss):

``forward``
    ``logits, loss = model(X, Y)`` and ``loss = loss / gradient_accumulation_steps``, under
    autocast when AMP is on. Python frees the symbolic tensors when PyTorch frees the real
    ones (a model's ``forward`` keeps its variables, as :mod:`symmem.model.nanogpt` keeps
    nanoGPT's), and the trace logs when.
``next_batch``
    ``X, Y = get_batch('train')``.
``backward``
    ``loss.backward()``, run by :mod:`symmem.ops.engine`.
``clip``
    ``clip_grad_norm_``: a 0-dim norm per parameter tensor, their stack and the total norm.
``step``
    AdamW's step. The for-loop implementation makes, per parameter, ``exp_avg_sq.sqrt()`` and the
    ``denom`` it divides into, while the previous parameter's ``denom`` is still bound; the
    foreach one makes the square roots of a whole parameter group at once; the fused one
    allocates nothing.
``zero_grad``
    ``set_to_none=True`` frees the gradients.

One block is traced. Live memory inside the forward of block ``j`` is what the traced block
shows plus ``j`` times the block's net growth; in backward, block ``L-1-k`` sees ``k`` times the
backward's net change per block. Both are linear in the block index, so the peak over blocks is
at the first or the last block, and the phase's peak is the largest of a finite list of
candidates. Candidates that another one provably bounds for all sizes are dropped.

With activation checkpointing (:mod:`symmem.ops.checkpoint`) nothing here changes: the traced
block's forward keeps its frame instead of its saved tensors, and its backward recomputes the
region inside the block, so both growths stay linear in the block index (measured on CPU).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import sympy

from symmem import ops
from symmem.dtypes import DEVICE, FLOAT32, INT32
from symmem.loops import NANOGPT as NANOGPT_LOOP
from symmem.loops import Loop
from symmem.ops.engine import backward
from symmem.ops.graph import Node, Scenario, Trace
from symmem.ops.layers import scale
from symmem.symbols import B, L, S, V

__all__ = ["PHASES", "StepPhase", "StepRun", "dominated", "prune", "simulate", "walk"]

#: The phases of one step, in order (as :mod:`symmem.validate.timeline` measures them).
PHASES = ("forward", "next_batch", "backward", "clip", "step", "zero_grad")


@dataclass(frozen=True)
class StepPhase:
    """Live bytes through one phase under one scenario.

    Attributes:
        name: One of :data:`PHASES`.
        start: Live bytes when it starts.
        end: Live bytes when it ends.
        candidates: The live bytes at every point that can be the phase's peak, each with the
            operator or module that allocated last before it. The peak is their maximum.
    """

    name: str
    start: sympy.Expr
    end: sympy.Expr
    candidates: tuple[tuple[sympy.Expr, str], ...]

    @property
    def peak(self) -> sympy.Expr:
        return _max([c for c, _ in self.candidates])


@dataclass(frozen=True)
class StepRun:
    """The step simulated under one scenario.

    Attributes:
        scenario: The switch values and size decisions it ran under.
        phases: Its phases, in order: the bytes of live tensors.
        allocated: The same phases as a caching allocator counts them (each block rounded, its
            workspaces held throughout: :mod:`symmem.allocator`); empty where the platform has
            none.
        workspaces: Bytes of the allocator's workspaces in ``allocated`` (0 without one).
    """

    scenario: Scenario
    phases: tuple[StepPhase, ...]
    allocated: tuple[StepPhase, ...] = ()
    workspaces: int = 0

    @cached_property
    def peak(self) -> sympy.Expr:
        """The step's peak: the largest candidate of any phase (computed once, and stored with
        the report)."""
        return _step_peak(self.phases)

    @cached_property
    def peak_text(self) -> str:
        """:attr:`peak` as text (printing a long ``Max`` is slow: done once, stored)."""
        return _text(self.peak)

    @cached_property
    def allocated_text(self) -> str:
        """:attr:`allocated_peak` as text."""
        return _text(self.allocated_peak)

    @cached_property
    def allocated_peak(self) -> sympy.Expr:
        """The allocator's peak (``max_memory_allocated``); the tensors' peak without one."""
        return _step_peak(self.allocated or self.phases)


def _text(expr: sympy.Expr) -> str:
    return str(expr)


def _step_peak(phases: Sequence[StepPhase]) -> sympy.Expr:
    found = [c for phase in phases for c in phase.candidates]
    return _max([c for c, _ in prune(found)])


def _max(exprs: Sequence[sympy.Expr]) -> sympy.Expr:
    """``Max`` of candidates already pruned: SymPy need not compare them again."""
    return exprs[0] if len(exprs) == 1 else sympy.Max(*exprs, evaluate=False)


def simulate(
    trace: Trace,
    optimizer: str,
    step_location: str,
    loop: Loop = NANOGPT_LOOP,
    grad_accum: int = 1,
    fp16: bool = False,
    buckets: bool = False,
) -> tuple[StepPhase, ...]:
    """One training step of ``loop`` with ``grad_accum`` micro-steps under ``trace``'s scenario
    (``trace.events`` must be a list), as the bytes of live tensors. :func:`walk` reads the same
    step again another way. ``fp16``: autocast runs in float16, where the loop runs a
    GradScaler (under AMP only). ``buckets``: DistributedDataParallel's reducer keeps its
    gradient buckets throughout.

    ``optimizer`` is the AdamW implementation; ``step_location`` where its ``step`` tensors live.
    With 2 or more micro-steps, the first and one later micro-step are simulated: the later
    ones all start alike (the previous micro-step's gradients and logits alive).
    """
    assert trace.events is not None
    model = trace.model
    held: dict[str, Any] = {}  # the loop's variables
    held["X"], held["Y"] = model.batch(trace)
    scaler = fp16 and loop.scaler and trace.amp
    if scaler:  # GradScaler's _scale (fp32) and _growth_tracker (int32), made by its first step
        held["scaler"] = (trace.new((), FLOAT32), trace.new((), INT32))
    if loop.holds_previous:
        half = trace.platform.half if trace.amp else FLOAT32
        held["logits"] = trace.new((B, S, V), half)  # the previous step's
        held["loss"] = trace.new((), FLOAT32)
    if loop.phases[0] == "zero_grad":
        trace.mark("zero_grad")  # the previous step's gradients: added by walk

    grads: dict[int, ops.Tensor] = {}
    in_block = [False]

    def on_node(node: Node, when: str) -> None:
        inside = model.in_block(node.module)
        if when == "start" and inside != in_block[0]:
            trace.mark("block" if inside else "/block")
            in_block[0] = inside

    for suffix in _suffixes(grad_accum):
        trace.mark("forward" + suffix)
        held["logits"], held["loss"] = model.forward(trace, held["X"], held["Y"])
        held["returned"] = list(trace.returned)  # what the model's output holds, with logits
        trace.returned.clear()
        if loop.divides_loss:
            held["loss"] = ops.divide(trace, held["loss"])
        trace.mark("every block")  # autocast's cache holds copies from every block
        trace.end_forward()
        trace.mark("/every block")

        if loop.next_batch:
            trace.mark("next_batch" + suffix)
            held["X"], held["Y"] = model.batch(trace)
            trace.end_forward()

        trace.mark("backward" + suffix)
        in_block[0] = False
        root = scale(trace, held["loss"]) if scaler else held["loss"]  # scaler.scale(loss)
        backward(trace, root, grads, on_node)
        del root
        trace.nodes.clear()
    trace.mark(_TAIL)  # clip and step are analytic (see walk)
    trace.mark("every block")
    del grads  # zero_grad(set_to_none=True) frees every block's gradients
    trace.mark("/every block")
    if not loop.holds_previous:
        trace.mark(_RETURN)  # the step's function returns: its locals die
        trace.mark("every block")  # the output's key/value cache: one copy per block
        held.pop("logits"), held.pop("loss"), held.pop("returned")
        trace.mark("/every block")
    return walk(
        trace,
        optimizer,
        step_location,
        loop=loop,
        grad_accum=grad_accum,
        fp16=fp16,
        buckets=buckets,
    )


def _suffixes(grad_accum: int) -> tuple[str, ...]:
    """The micro-steps simulated: the first, and a later one where there are several."""
    return ("",) if grad_accum == 1 else ("", " k")


#: Marks in the event log: the analytic end of the step starts; the step's function returns.
_TAIL, _RETURN = "tail", "return"


def _exact(nbytes: sympy.Expr) -> sympy.Expr:
    return nbytes


def walk(
    trace: Trace,
    optimizer: str,
    step_location: str,
    size: Callable[[sympy.Expr], sympy.Expr] = _exact,
    resident: sympy.Expr = sympy.S.Zero,
    loop: Loop = NANOGPT_LOOP,
    grad_accum: int = 1,
    fp16: bool = False,
    buckets: bool = False,
) -> tuple[StepPhase, ...]:
    """The phases of the step :func:`simulate` ran on ``trace`` with ``loop``: its event log,
    with the analytic clip, step and zero_grad phases added (and, where the loop runs a
    GradScaler under fp16, ``unscale`` and ``update``: empty without AMP).

    ``size`` gives what an allocation of so many bytes takes (the bytes themselves by default;
    :func:`symmem.allocator.block_bytes` for a caching allocator); ``resident`` is held
    throughout (an allocator's workspaces).
    """
    assert trace.events is not None
    live = sympy.Integer(0)
    phase, region, every = "", "", False
    in_block: set[int] = set()  # storages allocated inside a block (one of L copies)
    marks: dict[tuple[str, str], sympy.Expr] = {}
    # (phase, region, live, what, shared storages freed so far in the block region)
    points: list[tuple[str, str, sympy.Expr, str, sympy.Expr]] = []
    zero_grad_frees = sympy.Integer(0)  # the gradients, freed by zero_grad
    # Frees of storages every block saves (trace.shared), by phase: the traced block's frees
    # are those of the last block to run; the others and the first keep them.
    shared: dict[str, sympy.Expr] = {}
    return_frees = sympy.Integer(0)  # the step function's locals, freed when it returns
    events = trace.events
    names = loop.phases_for(grad_accum, fp16)
    scaler = fp16 and loop.scaler and trace.amp
    for i, (kind, key, nbytes, location, what) in enumerate(events):
        if kind == "mark":
            if what in (*names, _TAIL, _RETURN):
                phase, region = what, "pre"
            elif what in ("every block", "/every block"):
                every = what == "every block"
            else:
                region = "block" if what == "block" else "post"
            marks[(phase, what)] = live
            continue
        if location != DEVICE:
            continue
        nbytes = size(nbytes)
        if kind == "alloc":
            live += nbytes
            if region == "block":
                in_block.add(key)
            following = events[i + 1][0] if i + 1 < len(events) else "end"
            if following != "alloc":
                kept = shared.get(phase, sympy.Integer(0)) if region == "block" else 0
                points.append((phase, region, live, what, sympy.sympify(kept)))
            continue
        # A free: where every block's copy goes at once (autocast's cache, zero_grad), L of them.
        freed = nbytes * (L if every and key in in_block else 1)
        if region == "block" and key in trace.shared:
            # Saved by every block: only the last block to run in backward frees it.
            shared[phase] = shared.get(phase, sympy.Integer(0)) + freed
        if phase == _TAIL:
            zero_grad_frees += freed
        elif phase == _RETURN:
            return_frees += freed
        else:
            live -= freed

    base = _state_bytes(trace, step_location, size) + resident
    base += sum((size(b.nbytes) for b in trace.buffers), sympy.Integer(0))
    if buckets:
        # DDP with gradient_as_bucket_view=False: the reducer's flat buckets hold a copy of every
        # gradient (fp32, like the parameters) for the life of the module (reducer.cpp,
        # initialize_buckets). Measured with gloo on CPU: 4 bytes per parameter at every mark.
        # A caching allocator rounds each bucket; they are counted here as one block.
        params = _param_numels(trace)
        base += size(4 * sum((p.numel * p.layers for p in params), sympy.Integer(0)))
    others = L - 1
    # What the L - 1 blocks not traced add, by phase and region: each block's net growth in the
    # forward and the backward of every micro-step so far.
    table: dict[str, dict[str, list[sympy.Expr]]] = {}
    carry = sympy.Integer(0)
    for suffix in _suffixes(grad_accum):
        forward, batch, back = ("forward" + suffix, "next_batch" + suffix, "backward" + suffix)
        zero = sympy.Integer(0)
        f = others * (marks[(forward, "/block")] - marks[(forward, "block")])
        f += others * shared.get(forward, zero)
        b = others * (marks[(back, "/block")] - marks[(back, "block")] + shared.get(back, zero))
        table[forward] = {"pre": [carry], "block": [carry, carry + f], "post": [carry + f]}
        table[batch] = {"pre": [carry + f]}
        table[back] = {"pre": [carry + f], "block": [carry + f, carry + f + b]}
        table[back]["post"] = [carry + f + b]
        carry += f + b

    def first(kept: sympy.Expr) -> sympy.Expr:
        """What the first block to run in backward still holds of the storages every block
        saves, which the traced (last) block has freed: ``kept`` when L >= 2, 0 when the first
        block is the last (``Max(0, kept·(2 - L))`` is ``kept`` at L = 1 and 0 from L = 2)."""
        if kept == 0:
            return kept
        return kept - sympy.Max(0, kept * (2 - L))

    def shifts(phase: str, region: str) -> list[sympy.Expr]:
        return table[phase][region] if phase in table else [carry]

    def at_mark(phase: str) -> sympy.Expr:
        return sympy.expand(base + marks[(phase, phase)] + shifts(phase, "pre")[-1])

    traced = [p for p in names if p in table]
    starts = [at_mark(p) for p in (*traced, _TAIL)]
    found_by: dict[str, StepPhase] = {}
    for name, start, end in zip(traced, starts, starts[1:], strict=False):
        found = [
            (sympy.expand(base + value + shift + (first(kept) if i == 0 else 0)), what)
            for p, region, value, what, kept in points
            if p == name
            for i, shift in enumerate(shifts(p, region))
        ]
        found_by[name] = StepPhase(name, start, end, prune([(start, "start"), *found]))
    after = starts[-1]
    four, wrapped = size(sympy.Integer(4)), size(sympy.Integer(8))
    if trace.platform.wrapped != DEVICE:
        wrapped = sympy.Integer(0)
    if scaler:
        # unscale_: inv_scale = _scale.double().reciprocal().float(), then found_inf = full((),
        # 0.0); inv_scale dies at its end, found_inf is kept until update() (torch/amp/
        # grad_scaler.py).
        eight = size(sympy.Integer(8))
        points_u = [(sympy.expand(after + 2 * eight), "reciprocal")]
        found_by["unscale"] = StepPhase(
            "unscale", after, sympy.expand(after + four), tuple(points_u)
        )
        found_by["update"] = StepPhase(
            "update", sympy.expand(after + four), after, ((sympy.expand(after + four), "start"),)
        )
        after = sympy.expand(after + four)
    elif "unscale" in names:
        found_by["unscale"] = StepPhase("unscale", after, after, ((after, "start"),))
        found_by["update"] = StepPhase("update", after, after, ((after, "start"),))
    params = _param_numels(trace)
    count = sum((p.layers for p in params), sympy.Integer(0))
    # A 0-dim norm per parameter tensor, their stack and the total norm.
    norms = count * size(sympy.Integer(4)) + size(4 * count) + size(sympy.Integer(4))
    found_by["clip"] = StepPhase("clip", after, after, ((sympy.expand(after + norms), "norms"),))
    temporaries = _step_temporaries(optimizer, params, size, loop.groups, wrapped)
    if scaler and optimizer == "fused":
        # step() passes found_inf to the fused kernel as sum([found_inf]): 0 + found_inf, a new
        # 0-dim tensor (with a wrapped int), kept as optimizer.found_inf while it steps.
        temporaries = [(four + wrapped, "add"), *((four + c, w) for c, w in temporaries)]
    step = [(sympy.expand(after + c), what) for c, what in temporaries]
    found_by["step"] = StepPhase("step", after, after, prune([(after, "start"), *step]))
    if scaler:
        after = sympy.expand(after - four)  # update() lets found_inf go
    if loop.phases[0] == "zero_grad":  # at the start of the next step, once the locals died
        first = sympy.expand(after - return_frees)
        end = sympy.expand(first - zero_grad_frees)
        found_by["zero_grad"] = StepPhase("zero_grad", first, end, ((first, "start"),))
    else:
        end = sympy.expand(after - zero_grad_frees)
        found_by["zero_grad"] = StepPhase("zero_grad", after, end, ((after, "start"),))
    return tuple(found_by[name] for name in names)


def _state_bytes(
    trace: Trace, step_location: str, size: Callable[[sympy.Expr], sympy.Expr]
) -> sympy.Expr:
    """Parameters and AdamW state on the device: three fp32 tensors per parameter (itself,
    ``exp_avg``, ``exp_avg_sq``) and a 0-dim fp32 ``step``."""
    total = sympy.Integer(0)
    for p in _param_numels(trace):
        step = size(sympy.Integer(4)) if step_location == DEVICE else 0
        total += p.layers * (3 * size(4 * p.numel) + step)
    return total


class _Numel(NamedTuple):
    """A parameter as the optimizer sees it."""

    numel: sympy.Expr  #: its elements
    layers: sympy.Expr  #: how many the model has: L for a block's, else 1
    name: str
    ndim: int


def _param_numels(trace: Trace) -> list[_Numel]:
    """Each parameter's element count, how many the model has, its name and dimensions."""
    model = trace.model
    return [
        _Numel(p.numel, L if model.in_block(p.name) else sympy.Integer(1), p.name, len(p.shape))
        for p in trace.params.values()
    ]


def _step_temporaries(
    optimizer: str,
    params: Sequence[_Numel],
    size: Callable[[sympy.Expr], sympy.Expr],
    grouping: str = "decay",
    wrapped: sympy.Expr = sympy.S.Zero,
) -> list[tuple[sympy.Expr, str]]:
    """Bytes of AdamW's temporaries (fp32, one per parameter tensor) at each candidate peak of
    its step. ``wrapped`` is what a Python float made a tensor takes on the device (8 B of
    float64 on the CPU, nothing beside a GPU): the for-loop's ``sqrt() / bias_correction2_sqrt``
    holds one while ``div`` allocates.

    ``decay``: nanoGPT's two parameter groups, tensors of 2 or more dims (decayed), then the
    rest, each in ``named_parameters`` order; ``one``: every parameter in that order.
    """
    if grouping == "one":
        groups = [list(params)]
    else:
        groups = [[p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]]
    found: list[tuple[sympy.Expr, str]] = []
    for group in groups:
        if optimizer == "foreach":  # _foreach_sqrt of the whole group
            roots = sum((size(4 * p.numel) * p.layers for p in group), sympy.Integer(0))
            found.append((roots, "_foreach_sqrt"))
        elif optimizer == "forloop":  # the previous denom, then sqrt and div of this one
            before = [sympy.Integer(0), *(size(4 * p.numel) for p in group)]
            for previous, p in zip(before, group, strict=False):
                found.append((previous + 2 * size(4 * p.numel) + wrapped, f"div ({p.name})"))
            blocks = [p for p in group if p.layers != 1]
            if len(blocks) > 1:  # the last block's last tensor, then the next block's first
                crossing = size(4 * blocks[-1].numel) + 2 * size(4 * blocks[0].numel) + wrapped
                found.append((sympy.Piecewise((crossing, L >= 2), (0, True)), "div"))
    return found


def dominated(small: sympy.Expr, large: sympy.Expr) -> bool:
    """Whether ``small <= large`` for all sizes >= 1, by a sufficient test: with every symbol
    (and every ``ceiling``) written as 1 plus a non-negative variable, the difference must have
    no negative coefficient."""
    a, b = _coefficients([sympy.expand(small), sympy.expand(large)])
    return _below(a, b)


def prune(
    candidates: Sequence[tuple[sympy.Expr, str]],
) -> tuple[tuple[sympy.Expr, str], ...]:
    """The candidates that no other candidate bounds (the first of equal ones kept)."""
    coefficients = _coefficients([expr for expr, _ in candidates])
    kept: list[int] = []
    for i, mine in enumerate(coefficients):
        if any(_below(mine, coefficients[j]) for j in kept):
            continue
        kept = [j for j in kept if not _below(coefficients[j], mine)]
        kept.append(i)
    return tuple(candidates[i] for i in kept)


_Coefficients = dict[tuple[int, ...], sympy.Rational] | None


def _coefficients(exprs: Sequence[sympy.Expr]) -> list[_Coefficients]:
    """Each expanded expression as a polynomial in its atoms (symbols and ``ceiling`` terms),
    with every atom shifted to 1 plus a non-negative variable; ``None`` for anything else."""
    atoms: dict[sympy.Expr, int] = {}
    for expr in exprs:
        for atom in sorted(expr.atoms(sympy.Symbol, sympy.ceiling), key=str):
            atoms.setdefault(atom, len(atoms))
    return [_shifted(expr, atoms) for expr in exprs]


def _shifted(expr: sympy.Expr, atoms: dict[sympy.Expr, int]) -> _Coefficients:
    plain: dict[tuple[int, ...], sympy.Rational] = {}
    for term in sympy.Add.make_args(expr):
        coefficient, rest = term.as_coeff_Mul()
        if not coefficient.is_Rational:
            return None
        powers = [0] * len(atoms)
        for factor in sympy.Mul.make_args(rest):
            if factor == 1:
                continue
            base, exponent = factor.as_base_exp()
            if base not in atoms or not exponent.is_Integer or exponent < 0:
                return None
            powers[atoms[base]] += int(exponent)
        key = tuple(powers)
        plain[key] = plain.get(key, sympy.Integer(0)) + coefficient
    # x = 1 + y for every atom: each monomial spreads over the monomials it contains.
    shifted: dict[tuple[int, ...], sympy.Rational] = {}
    for powers_of, coefficient in plain.items():
        for sub in itertools.product(*(range(p + 1) for p in powers_of)):
            weight = math.prod(math.comb(p, k) for p, k in zip(powers_of, sub, strict=True))
            shifted[sub] = shifted.get(sub, sympy.Integer(0)) + coefficient * weight
    return shifted


def _below(small: _Coefficients, large: _Coefficients) -> bool:
    if small is None or large is None:
        return False
    zero = sympy.Integer(0)
    return all(large.get(m, zero) - small.get(m, zero) >= 0 for m in {*small, *large})
