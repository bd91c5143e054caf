"""Scaled dot-product attention: what each SDPA backend saves, and how its backward allocates.

Fused kernels (one backward node) are rows of a platform's kernel table
(:mod:`symmem.platforms`); the math path is PyTorch's composite implementation, traced op by op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sympy

from symmem.dtypes import BOOL, FLOAT32
from symmem.ops.graph import Tensor, Trace
from symmem.ops.layers import autocast_input, dropout

if TYPE_CHECKING:
    from symmem.platforms import AttentionKernel

__all__ = ["heads", "scaled_dot_product_attention"]


def heads(t: Trace, x: Tensor, nh: sympy.Expr) -> Tensor:
    """``x.view(B, T, nh, hs).transpose(1, 2)``: a view of one (B, T, C) piece of ``c_attn``.

    Backward (ViewBackward0 after TransposeBackward0): the (B, NH, T, hs) gradient is transposed
    back and reshaped to (B, T, C). That is a view when the gradient's memory keeps each head's
    ``hs`` values next to each other in (head, hs) order, and a fresh copy otherwise.
    """
    b, s, c = x.shape
    shape, dtype = (b, s, c), x.dtype

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        # grad is (B, NH, T, hs); after transpose(1, 2) its dims 2 and 3 (head, hs) must be
        # adjacent and in order in memory for the reshape to (B, T, C) to be a view.
        order = grad.order if len(grad.order) == 4 else (0, 1, 2, 3)  # 3-D: from bmm
        merged = order.index(3) == order.index(1) + 1
        return [grad if merged or t.holds(sympy.Eq(nh, 1)) else engine.new(shape, dtype)]

    node = t.node("ViewBackward0", (x,), {}, backward)
    view = Tensor(x.shape, x.dtype, x.storage, x.order, x.dense, node)
    return view.view(b, s, nh, c / nh).transpose(1, 2)


def scaled_dot_product_attention(
    t: Trace, q: Tensor, k: Tensor, v: Tensor, kernel: AttentionKernel
) -> Tensor:
    """``F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=...)``.

    q, k and v are (B, NH, S, hs) views. Returns the (B, NH, S, hs) output.
    """
    q, k, v = (autocast_input(t, x) for x in (q, k, v))
    if kernel.node is None:
        return _math(t, q, k, v)
    return _fused(t, q, k, v, kernel.node, kernel)


def _fused(t: Trace, q: Tensor, k: Tensor, v: Tensor, node: str, kernel: AttentionKernel) -> Tensor:
    """One fused kernel: saves q, k, v, its output, the logsumexp rows and any RNG state.

    The output is allocated as (B, S, NH, hs) and returned transposed, so nanoGPT's
    ``y.transpose(1, 2).contiguous()`` copies nothing and ``c_proj`` saves the same storage
    (measured on CPU; on an H200 for CUDA: docs/cuda.md).

    Backward: one kernel makes the three input gradients, fresh, laid out like q, k and v
    (measured on CPU: they reshape back to (B, T, C) without a copy).
    """
    b, nh, s, hs = q.shape
    out = t.new((b, s, nh, hs), q.dtype).transpose(1, 2)
    lse = t.new((b, nh, kernel.lse_length(s)), FLOAT32)
    rng = {f.field: t.new(f.shape, f.dtype, location=f.location) for f in kernel.rng}
    saved = {"query": q, "key": k, "value": v, "output": out, kernel.lse_field: lse}
    layouts = [(x.shape, x.dtype, x.order) for x in (q, k, v)]

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        return [engine.new(shape, dtype, order) for shape, dtype, order in layouts]

    grad_fn = t.node(node, (q, k, v), saved | rng, backward)
    return Tensor(out.shape, out.dtype, out.storage, out.order, grad_fn=grad_fn)


def _math(t: Trace, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The math path (``_scaled_dot_product_attention_math``), op by op, keeping its locals.

    16-bit inputs are upcast to fp32 first (copies kept to the end of the function). q and k are
    each scaled by sqrt(scale) (a multiply by a number saves nothing); the scaled q is kept to the
    end, the scaled k^T only until ``q @ k^T``. The causal mask is built as a float (S, S) tensor
    (``ones``, ``tril``, ``where``) and added (saves nothing). ``_safe_softmax`` saves its result,
    attention dropout saves what the platform's dropout saves, and the function also returns the
    attention weights in the inputs' dtype (a copy under AMP, dropped by SDPA). The output is
    cast back to the input dtype. With fewer key/value heads than query heads (grouped-query
    attention), k and v are repeated to as many heads after q is scaled. (Measured on CPU,
    torch 2.13.)
    """
    origin = q.dtype
    q_acc, k_acc, v_acc = (t.cast(x, FLOAT32) for x in (q, k, v))
    q_scaled = _scale(t, q_acc)
    k_all, v_all = k_acc, v_acc
    if k.shape[1] != q.shape[1] and not t.holds(sympy.Eq(k.shape[1], q.shape[1])):
        k_all, v_all = (_repeat_heads(t, x, q.shape[1]) for x in (k_acc, v_acc))
    mask = _causal_mask(t, q.shape[2])
    scores = _matmul(t, q_scaled, _scale(t, k_all.transpose(-2, -1), transposed=True))
    scores = _add_mask(t, scores)
    node = t.node("SafeSoftmaxBackward0", (scores,), {}, _like_grad(scores))
    probs = t.like(scores, grad_fn=node)
    del scores
    t.save_output(node, "result", probs)
    probs = dropout(t, probs)
    weights = t.cast(probs, origin)
    out = t.cast(_matmul(t, probs, v_all), origin)
    del q_acc, k_acc, v_acc, k_all, v_all, q_scaled, mask, probs, weights
    return out


def _repeat_heads(t: Trace, x: Tensor, heads: sympy.Expr) -> Tensor:
    """``x.repeat_interleave(heads / kv_heads, -3)``, as the math path does for grouped-query
    attention (``enable_gqa``, which Hugging Face passes when it has fewer key/value heads):
    unsqueeze, expand and a contiguous copy (CloneBackward0, nothing saved), viewed with
    ``heads`` heads. Backward: the gradient summed over the repeats, a fresh tensor.
    (Measured on CPU, torch 2.13.)"""
    b, _, s, hd = x.shape
    shape, dtype = x.shape, x.dtype
    node = t.node("CloneBackward0", (x,), {}, lambda engine, grad: [engine.new(shape, dtype)])
    return t.new((b, heads, s, hd), x.dtype, grad_fn=node)


def _causal_mask(t: Trace, s: sympy.Expr) -> Tensor:
    """``ones(S, S, bool).tril()`` turned into a float mask by ``where`` (0-dim fill values)."""
    ones = t.new((s, s), BOOL)
    lower = t.new((s, s), BOOL)
    del ones
    fills = (t.new((), FLOAT32), t.new((), FLOAT32))
    mask = t.new((s, s), FLOAT32)
    del fills, lower
    return mask


def _like_grad(x: Tensor) -> Any:
    """A rule making one fresh gradient laid out like the incoming one."""
    shape, dtype = x.shape, x.dtype

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        return [engine.new(shape, dtype, grad.order)]

    return backward


def _scale(t: Trace, x: Tensor, transposed: bool = False) -> Tensor:
    """``x * sqrt(scale)``: MulBackward1 saves nothing; backward makes a fresh gradient laid out
    like the incoming one. For ``k.transpose(-2, -1)`` the gradient reaches ``k`` transposed
    back: a view whose last two dims are swapped in memory."""
    shape, dtype = x.shape, x.dtype

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        fresh = engine.new(shape, dtype, grad.order)
        return [fresh.transpose(-2, -1) if transposed else fresh]

    node = t.node("MulBackward1", (x,), {}, backward)
    return t.like(x, grad_fn=node)


def _add_mask(t: Trace, scores: Tensor) -> Tensor:
    """``scores + causal_mask``: AddBackward0 passes the gradient on."""
    node = t.node("AddBackward0", (scores,), {}, lambda engine, grad: [grad])
    return t.like(scores, grad_fn=node)


def _matmul(t: Trace, a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for 4-D tensors: both folded to 3-D (batch dims merged), then BmmBackward0.

    Backward: the gradient is folded too (a copy when it cannot merge its batch dims), then bmm
    makes mat2's gradient and self's, both fresh and contiguous.
    """
    a3, b3 = _fold_batch(t, a), _fold_batch(t, b)
    (a_shape, a_dtype), (b_shape, b_dtype) = (a3.shape, a3.dtype), (b3.shape, b3.dtype)
    batch = a.shape[:2]

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        if grad.order[:2] != (0, 1) and not t.holds(_fold_predicate(*batch)):
            grad = engine.new(grad.shape, grad.dtype)  # reshape to 3-D copies
        grad_b = engine.new(b_shape, b_dtype)
        return [engine.new(a_shape, a_dtype), grad_b]

    node = t.node("BmmBackward0", (a3, b3), {"self": a3, "mat2": b3}, backward)
    return t.new((*a.shape[:3], b.shape[3]), a.dtype, grad_fn=node)


def _fold_predicate(b: sympy.Expr, nh: sympy.Expr) -> sympy.Basic:
    return sympy.Or(sympy.Eq(b, 1), sympy.Eq(nh, 1))


def _fold_batch(t: Trace, x: Tensor) -> Tensor:
    """``x.reshape(B*NH, m, n)``: a view when the two batch dims can merge, else a copy.

    They merge when they are adjacent in memory, or when every dimension standing between them in
    memory (or one of them) has size 1: then the saved tensor is a view of ``x``'s whole storage.
    This is why, in fp32, ``v`` (a slice of the fused c_attn output) is saved as the whole c_attn
    output when B = 1 or NH = 1, and as a 4-D copy otherwise. A copy is CloneBackward0, which
    passes the gradient on.
    """
    b, nh, m, n = x.shape
    folded = (b * nh, m, n)
    if x.dense and x.order[:2] == (0, 1):
        return x.view(*folded)
    between = x.order[x.order.index(0) + 1 : x.order.index(1)] if x.dense else ()
    ones = [sympy.Eq(b, 1), sympy.Eq(nh, 1)] + [sympy.Eq(x.shape[d], 1) for d in between]
    if t.holds(sympy.Or(*ones)):
        return Tensor(folded, x.dtype, x.storage, (), x.dense, x.grad_fn, x.output_nr)
    node = t.node("CloneBackward0", (x,), {}, lambda engine, grad: [grad])
    return t.new(folded, x.dtype, grad_fn=node)
