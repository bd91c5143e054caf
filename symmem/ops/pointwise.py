"""Elementwise ops between tensors, and the slicing and concatenation rotary embeddings use.

``a * b`` between two tensors is ``MulBackward0``: it saves ``other`` when ``self`` needs a
gradient and ``self`` when ``other`` does (derivatives.yaml), so a product with a tensor made
without a graph (the rotary cos and sin) saves only that tensor. None of these ops is on an
autocast list; mixed 16- and 32-bit operands give an fp32 result (type promotion). The output
keeps the memory order of the full-shaped operand, as TensorIterator does. (Measured, torch 2.13
CPU.)
"""

from __future__ import annotations

from typing import Any

import sympy

from symmem.ops.graph import Tensor, Trace

__all__ = ["concat_last", "multiply", "negate", "silu", "slice_last"]


def _needs_grad(x: Tensor) -> bool:
    return x.grad_fn is not None or x.storage.kind == "param"


def _broadcast(a: Tensor, b: Tensor) -> tuple[sympy.Expr, ...]:
    """The broadcast shape of two shapes of equal rank, or of a lower-rank one (right-aligned)."""
    if len(a.shape) < len(b.shape):
        a, b = b, a
    tail = len(a.shape) - len(b.shape)
    shape = list(a.shape)
    for i, size in enumerate(b.shape):
        if shape[tail + i] == 1:
            shape[tail + i] = size
    return tuple(shape)


def multiply(t: Trace, a: Tensor, b: Tensor) -> Tensor:
    """``a * b`` (MulBackward0). Backward: ``self``'s gradient then ``other``'s, each fresh in
    the promoted dtype; the engine casts each to its input's dtype and sums a broadcast one."""
    shape = _broadcast(a, b)
    dtype = a.dtype if a.dtype.itemsize >= b.dtype.itemsize else b.dtype
    saved = {"other": b if _needs_grad(a) else None, "self": a if _needs_grad(b) else None}
    layout = a if a.shape == shape else b
    # Shapes and flags only: a rule that held the tensors would keep them alive.
    needs = ((saved["other"] is not None, a.shape), (saved["self"] is not None, b.shape))

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        grads: list[Tensor | None] = []
        for needed, own in needs:
            if not needed:
                grads.append(None)
                continue
            fresh = engine.new(shape, dtype, grad.order)
            grads.append(fresh if own == shape else engine.sum_to(fresh))
        return grads

    node = t.node("MulBackward0", (a, b), saved, backward)
    out = t.new(shape, dtype, grad_fn=node)
    return Tensor(out.shape, out.dtype, out.storage, layout.order, grad_fn=node)


def silu(t: Trace, x: Tensor) -> Tensor:
    """``nn.SiLU()``: saves its input, keeps its dtype. Backward: a fresh gradient."""

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        return [engine.new(x_shape, x_dtype)]

    x_shape, x_dtype = x.shape, x.dtype
    node = t.node("SiluBackward0", (x,), {"self": x}, backward)
    return t.like(x, grad_fn=node)


def negate(t: Trace, x: Tensor) -> Tensor:
    """``-x``: NegBackward0 saves nothing; backward makes a fresh gradient."""
    shape, dtype = x.shape, x.dtype
    node = t.node("NegBackward0", (x,), {}, lambda engine, grad: [engine.new(shape, dtype)])
    return t.like(x, grad_fn=node)


def slice_last(t: Trace, x: Tensor, size: sympy.Expr) -> Tensor:
    """``x[..., a:a+size]``: a view (SliceBackward0 saves sizes only). Backward: ``slice_backward``
    makes a zero tensor of ``x``'s shape and copies the gradient in (fresh)."""
    shape, dtype = x.shape, x.dtype
    node = t.node("SliceBackward0", (x,), {}, lambda engine, grad: [engine.new(shape, dtype)])
    return Tensor((*x.shape[:-1], size), x.dtype, x.storage, x.order, False, node)


def concat_last(t: Trace, a: Tensor, b: Tensor) -> Tensor:
    """``torch.cat((a, b), dim=-1)``: a fresh contiguous tensor; CatBackward0 saves nothing and
    hands each input a slice (a view) of the gradient."""

    sizes = (a.shape, b.shape)

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        pieces = [Tensor(s, grad.dtype, grad.storage, grad.order, False) for s in sizes]
        engine.views.update(pieces)
        return list(pieces)

    node = t.node("CatBackward0", (a, b), {}, backward)
    return t.new((*a.shape[:-1], a.shape[-1] + b.shape[-1]), a.dtype, grad_fn=node)
