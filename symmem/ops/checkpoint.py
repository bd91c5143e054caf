"""Activation checkpointing: ``torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)``.

What PyTorch 2.13 does, measured on CPU op by op (``docs/checkpointing.md``), and how symmem runs
it:

Forward (:func:`checkpoint`)
    The region starts with ``torch.get_rng_state()`` (a ``uint8[5056]`` tensor on CPU), before
    its first op; its ``_CheckpointFrame`` keeps that state and the region's inputs (the same
    storages, not copies). Inside, ``saved_tensors_hooks`` turn every pack into a placeholder, so
    autograd saves nothing and each tensor dies when the program drops it; the nodes still exist,
    and the frame remembers, in order, which node each pack belonged to. The autocast cache
    works as usual (its weight copies live until the forward's ``autocast`` exits).
Backward (:meth:`Frame.recompute`, called by :mod:`symmem.ops.engine`)
    The first node of the region that unpacks a saved tensor runs the region's forward again:
    ``fork_rng`` copies the RNG state first, then the ops run with saving on under a fresh
    autocast cache, and the n-th tensor packed fills the n-th placeholder. The recomputation
    stops as soon as the last placeholder is filled (an op that saves its inputs stops before
    allocating its output); what is alive and unsaved at that moment is freed, then the autocast
    cache and the RNG copy. A recomputed tensor is held by its placeholder until its node unpacks
    it, then by the node's ``apply``: it dies when ``apply`` returns, before the engine's
    ``validate_outputs`` (a bias gradient's ``sum``), where an ordinary saved tensor dies after.
    The frame (inputs, RNG state) dies when the last of the region's saving nodes has run.

The RNG state tensors are device memory on the ``cpu`` platform, host memory beside a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from symmem.dtypes import DEVICE, HOST, DType
from symmem.ops.graph import Node, Tensor, Trace

__all__ = ["CHECKPOINTS", "UINT8", "Frame", "Hooks", "checkpoint", "rng_states"]

#: Activation checkpointing modes: none, every block, the attention core only.
CHECKPOINTS = ("none", "full", "selective")

UINT8 = DType("uint8", 1)

#: ``torch.get_rng_state()``: the CPU generator's state, ``uint8[5056]`` (measured, torch 2.13).
CPU_RNG_STATE = 5056
#: ``torch.cuda.get_rng_state()``: derived from PyTorch's source, not measured.
#: ``CUDAGeneratorImpl::get_state`` (aten/src/ATen/cuda/CUDAGeneratorImpl.cpp) returns a CPU byte
#: tensor of ``seed_size + offset_size`` = sizeof(uint64_t) + sizeof(int64_t) = 16 bytes: the seed
#: and the Philox offset. Checkpoint stashes one per GPU its inputs live on (one here).
CUDA_RNG_STATE = 16


class Hooks(Protocol):
    """``saved_tensors_hooks`` as the trace sees them (:meth:`symmem.ops.graph.Trace.pack`)."""

    #: Whether nodes made under these hooks belong to the graph the backward pass runs.
    records_nodes: bool

    def pack(self, node: Node, saved: Mapping[str, Tensor]) -> None: ...


def rng_states(t: Trace) -> list[tuple[str, Tensor]]:
    """``torch.get_rng_state()`` (and, beside a GPU, ``torch.cuda.get_rng_state()``): fresh
    ``uint8`` tensors, each with the frame field that keeps it. On the ``cpu`` platform the CPU
    is the training device; beside a GPU both states are host memory."""
    on_cpu = t.platform.name == "cpu"
    fields = [("fwd_cpu_state", CPU_RNG_STATE, DEVICE if on_cpu else HOST)]
    if not on_cpu:
        fields.append(("fwd_device_states", CUDA_RNG_STATE, HOST))
    op, t.op = t.op, "get_rng_state"
    try:
        return [(name, t.new((size,), UINT8, location=where)) for name, size, where in fields]
    finally:
        t.op = op


class _StopRecomputationError(Exception):
    """Raised when the recomputation has packed the region's last saved tensor."""


@dataclass(eq=False)
class Frame:
    """One checkpointed region's ``_CheckpointFrame``.

    Attributes:
        fn: The region, called as ``fn(trace, *args)``.
        args: Its arguments; the tensors among them are kept (``saved_args``).
        modules: The module path the region runs in.
        rng: The RNG state tensors stashed when it started (``fwd_cpu_state``, ...).
        holders: The node of each tensor packed in the region's forward, in packing order.
        recomputed: Whether backward has recomputed the region.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    modules: tuple[str, ...]
    rng: list[tuple[str, Tensor]]
    holders: list[Node] = field(default_factory=list)
    recomputed: bool = False

    records_nodes = True

    def pack(self, node: Node, saved: Mapping[str, Tensor]) -> None:
        """Forward inside the region: a placeholder per tensor, nothing kept."""
        node.frame = self
        self.holders += [node] * len(saved)

    def recompute(self, t: Trace) -> None:
        """Run the region again to fill its nodes' saved tensors (the first unpack in backward)."""
        self.recomputed = True
        fork = rng_states(t)  # fork_rng: a copy of the current state, restored at the end
        with t.replaying(_Replay(self), self.modules):
            try:
                self.fn(t, *self.args)
            except _StopRecomputationError:
                pass
            else:
                raise AssertionError("the recomputation never packed the last saved tensor")
        del fork

    def done(self, node: Node) -> None:
        """After ``node`` ran in backward: the frame dies with the region's last saving node
        (the first in forward order), releasing its inputs and RNG state."""
        if self.holders and node is self.holders[0]:
            self.args, self.rng = (), []


@dataclass(eq=False)
class _Replay:
    """The recomputation's hooks: the n-th tensor packed fills the n-th placeholder of the frame
    (the node that packed it in the forward holds it); the last one stops the recomputation."""

    frame: Frame
    packed: int = 0

    records_nodes = False

    def pack(self, node: Node, saved: Mapping[str, Tensor]) -> None:
        holders = self.frame.holders
        for tensor in saved.values():
            holder = holders[self.packed]
            if holder.name != node.name:  # checkpoint's metadata check would raise
                raise AssertionError(f"recomputed {node.name} where {holder.name} packed")
            if all(tensor.storage is not s for s in holder.saved):
                holder.saved.append(tensor.storage)
            self.packed += 1
        if self.packed == len(holders):
            raise _StopRecomputationError


def checkpoint(t: Trace, fn: Callable[..., Tensor], *args: Any) -> Tensor:
    """``checkpoint(fn, *args, use_reentrant=False)``: runs ``fn(t, *args)`` as a checkpointed
    region of the module now running; its frame keeps the tensor arguments and the RNG state."""
    frame = Frame(fn, args, t.modules, rng_states(t))
    inputs = [("saved_args", x) for x in args if isinstance(x, Tensor)]
    t.record("CheckpointFrame", [*inputs, *frame.rng])
    hooks, t.hooks = t.hooks, frame
    try:
        return fn(t, *args)
    finally:
        t.hooks = hooks
