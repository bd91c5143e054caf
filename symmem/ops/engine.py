"""The backward pass, run the way PyTorch's autograd engine runs it on one device.

:func:`backward` takes a trace whose forward recorded its nodes (:class:`~symmem.ops.graph.Node`)
and runs them in reverse creation order, which is the order the engine's ready queue yields for a
graph like nanoGPT's (a node's consumers are all created after it). For each node:

1. its output gradients are taken from its input buffer;
2. its rule allocates the input gradients (:mod:`symmem.ops.layers` says in which order);
3. the output gradients are dropped, and the engine's ``validate_outputs`` runs: a gradient the
   rule returned for a broadcast input (a bias) is summed to the input's shape, one of the wrong
   dtype is cast to the input's; then the node's saved tensors are released;
4. each input gradient goes to the buffer of the node that made the input, or to the parameter's
   AccumulateGrad, which runs at once when its last gradient has arrived and keeps the tensor as
   ``.grad`` without copying it.

A node of a checkpointed region (:mod:`symmem.ops.checkpoint`) first has the region recomputed
if it is the region's first to need its saved tensors; its recomputed tensors die as its rule
returns, before ``validate_outputs``; and the region's frame dies after its last saving node.

When a buffer already holds a gradient, the new one is added to it the way ``InputBuffer``
accumulates: in place into the old one when nothing else holds it and it is not a view, else
out of place into a third tensor. Nothing else is ever counted twice: storages are
freed when the last Python reference to them goes, and the trace's event log records when.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable

import sympy

from symmem.dtypes import FLOAT32, DType
from symmem.ops.graph import Edge, Node, Tensor, Trace

__all__ = ["Engine", "backward"]


class Engine:
    """Allocation for backward rules: ``engine.new(shape, dtype, order)`` makes a gradient."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        # By identity, weakly: a freed gradient's id() can come back for a new tensor.
        self.views: weakref.WeakSet[Tensor] = weakref.WeakSet()
        self.sums: weakref.WeakSet[Tensor] = weakref.WeakSet()

    def view(self, tensor: Tensor) -> Tensor:
        """A view of a gradient (``grad.t()``): it shares its storage, so the engine never
        accumulates into it in place."""
        out = tensor.transpose(0, 1) if len(tensor.shape) == 2 else tensor.view(*tensor.shape)
        self.views.add(out)
        return out

    def sum_to(self, grad: Tensor) -> Tensor:
        """The gradient of an input that was broadcast (a bias), as a derivative formula returns
        it: ``grad`` itself, which ``validate_outputs`` then sums to the input's shape (a fresh
        tensor, allocated after the rule has returned)."""
        out = grad.view(*grad.shape)
        self.sums.add(out)
        return out

    def new(
        self, shape: tuple[sympy.Expr, ...], dtype: DType, order: tuple[int, ...] = ()
    ) -> Tensor:
        out = self.trace.new(shape, dtype)
        if order and len(order) == len(shape):
            return Tensor(out.shape, out.dtype, out.storage, order)
        return out


def backward(
    trace: Trace,
    root: Tensor,
    grads: dict[int, Tensor],
    on_node: Callable[[Node, str], None] | None = None,
) -> None:
    """``root.backward()``: runs every node of ``trace`` that ``root`` depends on.

    Parameter gradients land in ``grads``, keyed by the parameter storage's ``id``.
    ``on_node(node, "start" | "end")`` is called around each node (for marks in the event log).
    """
    engine = Engine(trace)
    uses: Counter[int | None] = Counter(
        edge.param for node in trace.nodes for edge in node.inputs if edge and edge.param
    )
    buffers: dict[tuple[int, int], Tensor] = {}
    pending: dict[int, Tensor] = {}
    assert root.grad_fn is not None
    seed = engine.new((), FLOAT32)  # ones_like(loss); the graph task holds it to the end
    buffers[(id(root.grad_fn), root.output_nr)] = seed
    for node in sorted(trace.nodes, key=lambda n: n.order, reverse=True):
        incoming = [buffers.pop((id(node), i), None) for i in range(node.outputs)]
        if all(g is None for g in incoming):
            continue
        if on_node:
            on_node(node, "start")
        trace.op = node.name
        frame = node.frame
        if frame is not None and not frame.recomputed:
            frame.recompute(trace)  # the region's first node that unpacks a saved tensor
        with trace.module(node.module):
            outputs = list(node.backward(engine, *incoming))
        del incoming
        if frame is not None:
            node.saved.clear()  # recomputed tensors die with the rule's locals
        _validate_outputs(engine, node, outputs)
        node.saved.clear()
        for i, edge in enumerate(node.inputs):
            grad, outputs[i] = outputs[i], None
            if grad is None or edge is None:
                continue
            if edge.node is None:
                _accumulate_param(engine, edge, grad, outputs, pending, uses, grads)
            else:
                key = (id(edge.node), edge.slot)
                old = buffers.pop(key, None)
                buffers[key] = grad if old is None else _add(engine, old, grad, outputs, buffers)
            del grad
        del outputs
        if frame is not None:
            frame.done(node)
        trace.op = ""
        if on_node:
            on_node(node, "end")
    del seed


def _validate_outputs(engine: Engine, node: Node, outputs: list[Tensor | None]) -> None:
    """The engine's ``validate_outputs``: a broadcast input's gradient summed to its shape
    (``sum_to``, in the gradient's dtype), then any gradient cast to its input's dtype."""
    for i, (edge, grad) in enumerate(zip(node.inputs, outputs, strict=False)):
        if grad is None or edge is None:
            continue
        if grad in engine.sums:
            grad = outputs[i] = engine.new(edge.shape, grad.dtype)
        if grad.dtype != edge.dtype:
            outputs[i] = engine.new(edge.shape, edge.dtype, grad.order)


def _accumulate_param(
    engine: Engine,
    edge: Edge,
    grad: Tensor,
    outputs: list[Tensor | None],
    pending: dict[int, Tensor],
    uses: Counter[int | None],
    grads: dict[int, Tensor],
) -> None:
    """AccumulateGrad: sums the parameter's gradients; with the last one, keeps it as .grad,
    or, where a .grad is already there (gradient accumulation), adds it in place
    (``variable_grad += new_grad`` with grad mode off, ``accumulate_grad.h``) and lets it go."""
    assert edge.param is not None
    old = pending.pop(edge.param, None)
    if old is not None:
        grad = _add(engine, old, grad, outputs, pending)
    uses[edge.param] -= 1
    if uses[edge.param]:
        pending[edge.param] = grad
    elif edge.param not in grads:
        grads[edge.param] = grad


def _add(
    engine: Engine,
    old: Tensor,
    new: Tensor,
    outputs: list[Tensor | None],
    held: dict[tuple[int, int], Tensor] | dict[int, Tensor],
) -> Tensor:
    """InputBuffer's accumulate: in place into the gradient already there when nothing else
    holds it and it is not a view, else out of place into a fresh tensor. (Measured on CPU: the
    residual stream's gradients add in place; the tied embedding's, where the first one is
    ``lm_head``'s transposed weight gradient, out of place.)"""
    shared = any(g is old for g in outputs) or any(g is old for g in held.values())
    if not shared and old not in engine.views:
        return old
    return engine.new(old.shape, old.dtype)
