"""Scaled dot-product attention: what each SDPA backend saves.

Fused kernels (one backward node) are rows of a platform's kernel table
(:mod:`symmem.platforms`); the math path is PyTorch's composite implementation, traced op by op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy

from symmem.dtypes import FLOAT32
from symmem.ops.graph import Tensor, Trace
from symmem.ops.layers import autocast_input, dropout

if TYPE_CHECKING:
    from symmem.platforms import AttentionKernel

__all__ = ["scaled_dot_product_attention"]


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
    (measured on CPU; shared/CUDA_FACTS.md for CUDA).
    """
    b, nh, s, hs = q.shape
    out = t.new((b, s, nh, hs), q.dtype).transpose(1, 2)
    lse = t.new((b, nh, kernel.lse_length(s)), FLOAT32)
    rng = {f.field: t.new(f.shape, f.dtype, location=f.location) for f in kernel.rng}
    saved = {"query": q, "key": k, "value": v, "output": out, kernel.lse_field: lse}
    t.save(node, saved | rng)
    return out


def _math(t: Trace, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The math path (``_scaled_dot_product_attention_math``), op by op.

    16-bit inputs are upcast to fp32 first. q and k are each scaled by sqrt(scale) (a multiply by
    a number saves nothing), ``q @ k^T`` and ``probs @ v`` are 4-D matmuls done as bmm, the causal
    mask is added (saves nothing), ``_safe_softmax`` saves its result, and attention dropout saves
    what the platform's dropout saves. The output is cast back to the input dtype.
    """
    origin = q.dtype
    q, k, v = (t.cast(x, FLOAT32) for x in (q, k, v))
    q = t.like(q)
    k_t = t.like(k.transpose(-2, -1))
    scores = t.like(_matmul(t, q, k_t))
    probs = t.like(scores)
    t.save("SafeSoftmaxBackward0", {"result": probs})
    probs = dropout(t, probs)
    return t.cast(_matmul(t, probs, v), origin)


def _matmul(t: Trace, a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for 4-D tensors: both folded to 3-D (batch dims merged), then BmmBackward0."""
    a3, b3 = _fold_batch(t, a), _fold_batch(t, b)
    t.save("BmmBackward0", {"self": a3, "mat2": b3})
    return t.new((*a.shape[:3], b.shape[3]), a.dtype)


def _fold_batch(t: Trace, x: Tensor) -> Tensor:
    """``x.reshape(B*NH, m, n)``: a view when the two batch dims can merge, else a copy.

    They merge when they are adjacent in memory, or when every dimension standing between them in
    memory (or one of them) has size 1: then the saved tensor is a view of ``x``'s whole storage.
    This is why, in fp32, ``v`` (a slice of the fused c_attn output) is saved as the whole c_attn
    output when B = 1 or NH = 1, and as a 4-D copy otherwise.
    """
    b, nh, m, n = x.shape
    folded = (b * nh, m, n)
    if x.dense and x.order[:2] == (0, 1):
        return x.view(*folded)
    between = x.order[x.order.index(0) + 1 : x.order.index(1)] if x.dense else ()
    ones = [sympy.Eq(b, 1), sympy.Eq(nh, 1)] + [sympy.Eq(x.shape[d], 1) for d in between]
    if t.holds(sympy.Or(*ones)):
        return Tensor(folded, x.dtype, x.storage, (), x.dense)
    return t.new(folded, x.dtype)
