"""Per-op rules: what each op of nanoGPT allocates and what its backward node saves.

Each function takes the :class:`~symmem.ops.graph.Trace`, mirrors one PyTorch op (with autocast's
casts where it inserts them) and returns the op's output. The comment on each rule says how it was
established.
"""

from __future__ import annotations

import sympy

from symmem.dtypes import BOOL, FLOAT32
from symmem.ops.graph import Tensor, Trace

__all__ = [
    "add",
    "autocast_input",
    "contiguous",
    "cross_entropy",
    "dropout",
    "embedding",
    "gelu",
    "layer_norm",
    "linear",
]


def autocast_input(t: Trace, x: Tensor) -> Tensor:
    """The input an op on autocast's 16-bit list sees: a half copy under AMP, else ``x``."""
    return t.cast(x, t.platform.half) if t.amp else x


def embedding(t: Trace, indices: Tensor, weight: Tensor) -> Tensor:
    """``F.embedding``: saves its indices (not the weight). Not on any autocast list: fp32 out."""
    t.save("EmbeddingBackward0", {"indices": indices})
    return t.new((*indices.shape, weight.shape[1]), FLOAT32)


def add(t: Trace, a: Tensor, b: Tensor) -> Tensor:
    """``a + b``: AddBackward0 saves no tensor."""
    return t.new(a.shape, a.dtype if a.dtype.itemsize >= b.dtype.itemsize else b.dtype)


def layer_norm(t: Trace, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.layer_norm`` (autocast's fp32 list): saves input, mean and rstd (fp32, one per row)."""
    x = t.cast(x, FLOAT32)
    rows = x.shape[:-1]
    mean = t.new((*rows, 1), FLOAT32)
    rstd = t.new((*rows, 1), FLOAT32)
    t.save(
        "NativeLayerNormBackward0",
        {"input": x, "result1": mean, "result2": rstd, "weight": weight, "bias": bias},
    )
    return t.new(x.shape, FLOAT32)


def linear(t: Trace, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear`` on a contiguous (..., n_in) input with an (n_out, n_in) weight.

    The input is flattened to 2-D (a view) and multiplied by the transposed weight: ``mm`` without
    bias (MmBackward0 saves self and mat2), ``addmm`` with it (AddmmBackward0 saves mat1 and
    mat2). Under autocast both input and weight are half copies; the bias copy is not saved.
    """
    n_out, n_in = weight.shape
    x = autocast_input(t, x)
    w = autocast_input(t, weight)
    rows = x.view(sympy.Mul(*x.shape[:-1]), n_in)
    w_t = w.transpose(0, 1)
    if bias is None:
        t.save("MmBackward0", {"self": rows, "mat2": w_t})
    else:
        t.save("AddmmBackward0", {"mat1": rows, "mat2": w_t})
    return t.new((*x.shape[:-1], n_out), x.dtype)


def contiguous(t: Trace, x: Tensor) -> Tensor:
    """``x.contiguous()``: ``x`` itself when already contiguous, else a row-major copy."""
    return x if x.is_contiguous else t.new(x.shape, x.dtype)


def gelu(t: Trace, x: Tensor) -> Tensor:
    """``nn.GELU()`` (exact): saves its input; not on an autocast list, so it keeps x's dtype."""
    t.save("GeluBackward0", {"self": x})
    return t.new(x.shape, x.dtype)


def dropout(t: Trace, x: Tensor) -> Tensor:
    """``F.dropout`` in training mode.

    With p = 0 it returns its input and saves nothing. On CUDA it is ``native_dropout``, which saves
    a bool mask (shared/CUDA_FACTS.md). The CPU build multiplies by a scaled noise tensor in x's
    dtype and MulBackward0 saves that noise (measured, torch 2.13).
    """
    if not t.scenario.dropout:
        return x
    if t.platform.dropout_saves_mask:
        t.save("NativeDropoutBackward0", {"result1": t.new(x.shape, BOOL)})
    else:
        t.save("MulBackward0", {"other": t.new(x.shape, x.dtype)})
    return t.new(x.shape, x.dtype)


def cross_entropy(t: Trace, logits: Tensor, targets: Tensor) -> Tensor:
    """``F.cross_entropy(logits, targets, ignore_index=-1)`` = ``nll_loss(log_softmax(logits))``.

    log_softmax saves its result; nll_loss saves its input (the same storage when no cast comes
    between them), the targets and ``total_weight`` (a 0-dim fp32). Where autocast covers
    cross_entropy (CPU) the logits are cast to fp32 first; where it does not (CUDA), log_softmax
    runs in the half dtype and nll_loss, on the fp32 list, saves an fp32 copy of its input.
    """
    if t.amp and t.platform.cross_entropy_autocast:
        logits = t.cast(logits, FLOAT32)
    log_probs = t.new(logits.shape, logits.dtype)
    t.save("LogSoftmaxBackward0", {"result": log_probs})
    nll_input = t.cast(log_probs, FLOAT32) if t.amp else log_probs
    total_weight = t.new((), FLOAT32)
    t.save("NllLossBackward0", {"self": nll_input, "target": targets, "total_weight": total_weight})
    return t.new((), FLOAT32)
