"""Measure live memory through one training step of nanoGPT, phase by phase.

:func:`measure_timeline` runs nanoGPT's training loop (``train.py``: forward with the loss divided
by the gradient-accumulation steps, fetch the next batch, backward, optional gradient clipping,
AdamW step, ``zero_grad(set_to_none=True)``) in its steady state: a first step has already
created the optimizer state, and the previous step's ``logits`` and ``loss`` are still held by
the loop's variables when the forward starts, as they are in nanoGPT.

The allocations come from PyTorch's profiler (``profile_memory=True``), which reports every
allocation and free of the device's allocator without changing what the program does. (A
``TorchDispatchMode`` would: while one is active, the autograd engine never accumulates
gradients in place, so it measures a different program.) Profiling starts before the model is
built, so every live storage is known.

Live memory counts the storages that operators return: an allocation made inside an operator
and freed before the operator returns (a kernel's scratch buffer) is counted separately, as
``scratch``. Allocations made outside any operator are Python numbers wrapped as 0-dim
tensors (``loss / gradient_accumulation_steps``, AdamW's ``sqrt() / bias_correction2_sqrt``):
they are counted as live, named ``wrapped number``, for as long as they live. "Operator" means
one the dispatcher runs after composite operators are decomposed: ``mm``, not ``linear``; where
the profiler shows no such operator around an allocation, the innermost composite one
(``where``) stands for it.

With activation checkpointing, ``torch.utils.checkpoint`` stashes the RNG state with
``torch.get_rng_state()`` when a region starts, and again (``torch.random.fork_rng``) while backward
recomputes it; that call allocates its tensor outside any operator. While profiling, it runs
inside a ``record_function`` range that counts as an operator named ``get_rng_state``, so those
tensors are counted like any operator's output.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from symmem.config import Config
from symmem.loops import get_loop
from symmem.validate.measure import (
    autocast_context,
    build_adamw,
    build_model,
    kernel_context,
    reference,
)

__all__ = ["PHASES", "Phase", "Timeline", "measure_ddp_timeline", "measure_timeline"]

#: The phases of one step, in order.
PHASES = ("forward", "next_batch", "backward", "clip", "step", "zero_grad")

_MARK = "symmem:"
_OP = "symmem_op::"  # a record_function range that stands for an operator
_WRAPPED = "wrapped number"
_DDP_TRIES = 5  # measurements of a DDP step before one that does not end where it began is an error


@dataclass(frozen=True)
class Phase:
    """Live memory through one phase.

    Attributes:
        name: One of :data:`PHASES`.
        start: Live bytes when the phase starts.
        end: Live bytes when it ends.
        peak: The most live bytes at any point in it.
        at: The operator whose output reached the peak (``start`` if never above the start).
        scratch: The most bytes above live memory that operators used as scratch in this
            phase, together with the live bytes at that moment (the allocator's own peak).
    """

    name: str
    start: int
    end: int
    peak: int
    at: str
    scratch: int = 0


@dataclass(frozen=True)
class Timeline:
    """Live memory through a training step.

    Attributes:
        config: The config.
        device: ``cpu`` or ``cuda``.
        phases: Each phase, in order.
        max_memory_allocated: ``torch.cuda.max_memory_allocated()`` over the step (CUDA only).
    """

    config: Config
    device: str
    phases: tuple[Phase, ...]
    max_memory_allocated: int | None = None

    @property
    def peak(self) -> int:
        return max(p.peak for p in self.phases)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda p: p.peak).name

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)


def measure_timeline(
    config: Config,
    *,
    device: str = "cpu",
    attention: str = "default",
    optimizer: str = "default",
    grad_clip: float = 1.0,
    seed: int = 0,
    checkpoint: str = "none",
    loop: str = "nanogpt",
    grad_accum: int = 1,
    amp_dtype: str = "bf16",
) -> Timeline:
    """Run ``loop`` (:mod:`symmem.loops`: nanoGPT's training loop by default) for ``config`` and
    measure live memory phase by phase.

    ``grad_clip`` is nanoGPT's default (1.0); 0 skips clipping, as nanoGPT does (the plain loop
    never clips). ``checkpoint`` is the model's activation checkpointing: ``none``, ``full`` or
    ``selective``. With ``grad_accum`` >= 2 micro-steps, the phases of the first micro-step keep
    their names and those of the last one are suffixed `` k``
    (:meth:`symmem.loops.Loop.phases_for`). ``amp_dtype`` is autocast's dtype under AMP; with
    ``fp16`` the nanoGPT loop runs ``torch.amp.GradScaler`` (and its ``unscale`` and ``update``
    phases, empty without AMP).
    """
    config.require_complete()
    chosen = get_loop(loop)
    names = chosen.phases_for(grad_accum, amp_dtype == "fp16")
    torch.manual_seed(seed)
    dev = torch.device(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with (
        _quiet_stderr(),
        _named_rng_state(),
        profile(activities=activities, profile_memory=True) as prof,
    ):
        if chosen.name == "plain":
            peak = _train_plain(config, dev, attention, optimizer, checkpoint, amp_dtype)
        else:
            peak = _train(
                config, dev, attention, optimizer, grad_clip, checkpoint, grad_accum, amp_dtype
            )
    events = prof.profiler.kineto_results.experimental_event_tree()
    phases = _phases(events, "cuda" if dev.type == "cuda" else "cpu", names)
    return Timeline(config, device, phases, peak)


def measure_ddp_timeline(config: Config, *, world: int = 2, optimizer: str = "forloop") -> Timeline:
    """:func:`measure_timeline` of nanoGPT's loop on the CPU, with the model wrapped in
    ``DistributedDataParallel`` (``bucket_cap_mb=25``, gloo) in each of ``world`` processes run
    here; the timeline is rank 0's."""
    import json
    import socket
    import tempfile

    from torch.multiprocessing.spawn import spawn

    # The step is measured in its steady state, so it ends with the bytes it started with.
    # Where it does not, a tensor that went through gloo was freed on gloo's worker thread,
    # which the profiler does not record (the tensors DDP broadcasts when it rebuilds its
    # buckets, a few bytes, now and then on a busy machine): that run is measured again.
    for _ in range(_DDP_TRIES):
        with socket.socket() as free:  # a port for the process group to meet on
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "timeline.json")
            spawn(_ddp_rank, args=(world, port, config, optimizer, out), nprocs=world)
            with open(out, encoding="utf-8") as file:
                rows = json.load(file)
        timeline = Timeline(config, "cpu", tuple(Phase(*row) for row in rows))
        if timeline.phases[-1].end == timeline.phases[0].start:
            return timeline
    raise RuntimeError(
        f"the DDP step did not end with the bytes it started with in {_DDP_TRIES} runs "
        f"(last: {timeline.phases[0].start} and {timeline.phases[-1].end})"
    )


def _ddp_rank(rank: int, world: int, port: int, config: Config, optimizer: str, out: str) -> None:
    """One process of :func:`measure_ddp_timeline`."""
    import dataclasses
    import json

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    global build_model
    plain = build_model

    def wrapped(config: Config, dev: torch.device, checkpoint: str = "none") -> Any:
        model = plain(config, dev, checkpoint)
        # init_sync=False: the construction-time check of parameter shapes across ranks
        # allocates two small tensors that gloo's worker thread sometimes frees, where the
        # profiler cannot see it, so they would seem alive through the step. That check and the
        # broadcast of the parameters end before the step; neither changes what it holds.
        ddp = DistributedDataParallel(model, bucket_cap_mb=25, init_sync=False)
        ddp.configure_optimizers = model.configure_optimizers  # nanoGPT calls it on the raw model
        return ddp

    build_model = wrapped
    try:
        if rank == 0:
            timeline = measure_timeline(config, optimizer=optimizer)
            with open(out, "w", encoding="utf-8") as file:
                json.dump([dataclasses.astuple(p) for p in timeline.phases], file)
        else:
            with _quiet_stderr():
                _train(config, torch.device("cpu"), "default", optimizer, 1.0)
    finally:
        build_model = plain
        dist.destroy_process_group()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: the profiler's C++ side logs each start and stop there."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w", encoding="ascii") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _named_rng_state() -> Iterator[None]:
    """Runs ``torch.get_rng_state`` inside a range that stands for an operator."""
    get_rng_state = torch.get_rng_state

    def named() -> torch.Tensor:
        with record_function(_OP + "get_rng_state"):
            return get_rng_state()

    torch.get_rng_state = named
    try:
        yield
    finally:
        torch.get_rng_state = get_rng_state


def _train(
    config: Config,
    dev: torch.device,
    attention: str,
    optimizer: str,
    grad_clip: float,
    checkpoint: str = "none",
    gradient_accumulation_steps: int = 1,
    amp_dtype: str = "bf16",
) -> int | None:
    """Two steps of nanoGPT's loop; the second one's phases are marked for the profiler (of its
    micro-steps, the first and the last)."""
    model = build_model(config, dev, checkpoint)
    forward = reference(config).run
    adamw = build_adamw(model, optimizer, dev)
    autocast = autocast_context(config, dev, amp_dtype)
    fp16 = amp_dtype == "fp16"
    scaler = torch.amp.GradScaler(dev.type, enabled=fp16 and config.amp)
    B, S, V = config.B or 0, config.S or 0, config.V or 0  # complete: checked by the caller

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.randint(0, V, (B, S), device=dev),
            torch.randint(0, V, (B, S), device=dev),
        )

    held: dict[str, Any] = {}  # the loop's variables: X, Y, logits, loss

    def micro(phase: Any, suffix: str) -> None:
        with phase("forward" + suffix), autocast:
            output = forward(model, held["X"], held["Y"])
            held["logits"], held["loss"], held["out"] = output.logits, output.loss, output.held
            del output
            held["loss"] = held["loss"] / gradient_accumulation_steps
        with phase("next_batch" + suffix):
            held["X"], held["Y"] = get_batch()
        with phase("backward" + suffix):
            scaler.scale(held["loss"]).backward()

    def one_step(mark: str) -> None:
        def phase(name: str) -> contextlib.AbstractContextManager[Any]:
            return record_function(mark + name) if mark else contextlib.nullcontext()

        for micro_step in range(gradient_accumulation_steps):
            if micro_step == 0 or micro_step == gradient_accumulation_steps - 1:
                micro(phase, " k" if micro_step else "")
            else:
                micro(lambda name: contextlib.nullcontext(), "")
        if fp16:
            with phase("unscale"):
                scaler.unscale_(adamw)
        with phase("clip"):
            if grad_clip != 0.0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        with phase("step"):
            scaler.step(adamw)
        if fp16:
            with phase("update"):
                scaler.update()
        with phase("zero_grad"):
            adamw.zero_grad(set_to_none=True)

    held["X"], held["Y"] = get_batch()
    with kernel_context(attention):
        one_step("")  # the first step creates AdamW's state
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        one_step(_MARK)
    return torch.cuda.max_memory_allocated() if dev.type == "cuda" else None


def _train_plain(
    config: Config,
    dev: torch.device,
    attention: str,
    optimizer: str,
    checkpoint: str = "none",
    amp_dtype: str = "bf16",
) -> int | None:
    """Two steps of the plain loop (:data:`symmem.loops.PLAIN`); the second one's phases are
    marked for the profiler."""
    model = build_model(config, dev, checkpoint)
    forward = reference(config).run
    flags = {"fused": (True, None), "foreach": (None, True), "forloop": (None, False)}
    fused, foreach = flags.get(optimizer, (None, None))
    adamw = torch.optim.AdamW(model.parameters(), fused=fused, foreach=foreach)
    autocast = autocast_context(config, dev, amp_dtype)
    B, S, V = config.B or 0, config.S or 0, config.V or 0  # complete: checked by the caller
    X = torch.randint(0, V, (B, S), device=dev)
    Y = torch.randint(0, V, (B, S), device=dev)

    def train_step(mark: str) -> None:
        def phase(name: str) -> contextlib.AbstractContextManager[Any]:
            return record_function(mark + name) if mark else contextlib.nullcontext()

        with phase("zero_grad"):
            adamw.zero_grad(set_to_none=True)
        with phase("forward"), autocast:
            output = forward(model, X, Y)
        with phase("backward"):
            output.loss.backward()
        with phase("step"):
            adamw.step()

    with kernel_context(attention):
        train_step("")  # the first step creates AdamW's state
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        train_step(_MARK)
    return torch.cuda.max_memory_allocated() if dev.type == "cuda" else None


@cache
def _composite(name: str, overload: str) -> bool:
    """Whether an aten operator decomposes before the dispatcher runs it (``linear``)."""
    qualified = f"{name}.{overload}" if overload else name
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(
            qualified, "CompositeImplicitAutograd"
        )
    except RuntimeError:  # not a registered operator
        return False


@dataclass
class _Block:
    """One allocation of the device's allocator."""

    start: int
    size: int
    op: str
    op_end: int
    end: int | None = None


def _phases(roots: list[Any], device: str, names: tuple[str, ...] = PHASES) -> tuple[Phase, ...]:
    """Replays the profiler's allocation events into live bytes by phase."""
    blocks: dict[int, _Block] = {}  # by ptr, while allocated
    done: list[_Block] = []
    marks: dict[str, tuple[int, int]] = {}

    def walk(node: Any, op: Any, composite: Any) -> None:
        name = node.name
        if name.startswith(_MARK):
            marks[name[len(_MARK) :]] = (node.start_time_ns, node.end_time_ns)
        elif name.startswith(_OP) and op is None:
            op = node
        elif name.startswith("aten::") and op is None:
            if _composite(name, node.overload_name):
                composite = node
            else:
                op = node
        if name == "[memory]":
            fields = node.extra_fields
            if str(fields.device).split(":")[0] != device:
                return
            events.append((node.start_time_ns, fields.ptr, fields.alloc_size, op or composite))
        for child in node.children:
            walk(child, op, composite)

    events: list[tuple[int, int, int, Any]] = []
    for root in roots:
        walk(root, None, None)
    events.sort(key=lambda e: e[0])
    for time, ptr, size, op in events:
        if size > 0:
            blocks[ptr] = _Block(
                time, size, op.name.split("::", 1)[1] if op else "", op.end_time_ns if op else time
            )
        elif ptr in blocks:
            block = blocks.pop(ptr)
            block.end = time
            done.append(block)
    done.extend(blocks.values())

    # Live bytes: blocks that an operator returned. Scratch: blocks freed inside their operator.
    deltas: list[tuple[int, int, int, str]] = []  # (time, live delta, scratch delta, op)
    for block in done:
        if not block.op:
            block.op = _WRAPPED  # made outside any operator: a Python number as a tensor
        inside = block.end is not None and block.end <= block.op_end
        live, extra = (0, block.size) if inside else (block.size, 0)
        deltas.append((block.start, live, extra, block.op))
        if block.end is not None:
            deltas.append((block.end, -live, -extra, ""))
    deltas.sort(key=lambda d: (d[0], d[1] > 0))

    phases = []
    index, live, scratch = 0, 0, 0
    for name in names:
        begin, end = marks[name]
        while index < len(deltas) and deltas[index][0] < begin:
            live, scratch = live + deltas[index][1], scratch + deltas[index][2]
            index += 1
        start, peak, at, top = live, live, "start", live + scratch
        while index < len(deltas) and deltas[index][0] <= end:
            _, dl, ds, op = deltas[index]
            live, scratch = live + dl, scratch + ds
            index += 1
            if live > peak:
                peak, at = live, op
            top = max(top, live + scratch)
        phases.append(Phase(name, start, live, peak, at, top - peak))
    return tuple(phases)
