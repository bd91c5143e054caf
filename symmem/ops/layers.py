"""Per-op rules: what each op of nanoGPT allocates, what its backward node saves, and how that
node makes its gradients.

Each function takes the :class:`~symmem.ops.graph.Trace`, mirrors one PyTorch op (with autocast's
casts where it inserts them) and returns the op's output. The node it records carries a backward
rule: a function that gets the engine (:mod:`symmem.ops.engine`) and the output gradients, and
returns the input gradients, allocating them in the order PyTorch's kernels do. Rules keep shapes
and dtypes only, never the forward tensors, so that nothing outlives its last use. The comment on
each rule says how it was established.
"""

from __future__ import annotations

from typing import Any

import sympy

from symmem.dtypes import BOOL, FLOAT32, INT64
from symmem.ops.graph import Tensor, Trace

__all__ = [
    "add",
    "autocast_input",
    "contiguous",
    "cross_entropy",
    "divide",
    "dropout",
    "embedding",
    "gelu",
    "layer_norm",
    "linear",
    "split",
]

# Gradient rules. Measured on CPU with the profiler's allocator events (torch 2.13): the order of
# allocations inside each node, and which gradients are fresh tensors and which are passed on.


def _fresh(*specs: tuple[Any, Any] | None) -> Any:
    """A rule that allocates one fresh gradient per input, in the order given."""

    def backward(engine: Any, *grads: Tensor | None) -> list[Tensor | None]:
        return [engine.new(*spec) if spec is not None else None for spec in specs]

    return backward


def autocast_input(t: Trace, x: Tensor) -> Tensor:
    """The input an op on autocast's 16-bit list sees: a half copy under AMP, else ``x``."""
    return t.cast(x, t.platform.half) if t.amp else x


def embedding(t: Trace, indices: Tensor, weight: Tensor) -> Tensor:
    """``F.embedding``: saves its indices (not the weight). Not on any autocast list: fp32 out.

    Backward: ``embedding_dense_backward`` makes a fresh gradient of the whole weight.
    """
    node = t.node(
        "EmbeddingBackward0",
        (weight,),
        {"indices": indices},
        _fresh((weight.shape, FLOAT32)),
    )
    return t.new((*indices.shape, weight.shape[1]), FLOAT32, grad_fn=node)


def add(t: Trace, a: Tensor, b: Tensor) -> Tensor:
    """``a + b``: AddBackward0 saves no tensor.

    Backward passes the one gradient on to both inputs (the same tensor); for an input broadcast
    over leading dimensions (the positional embedding) the engine sums it (``validate_outputs``,
    a fresh tensor). The engine
    casts the gradient to an input's dtype when they differ (AMP's half branch).
    """
    out_shape = a.shape if len(a.shape) >= len(b.shape) else b.shape
    broadcast = len(b.shape) < len(out_shape)

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        return [grad, engine.sum_to(grad) if broadcast else grad]

    node = t.node("AddBackward0", (a, b), {}, backward)
    dtype = a.dtype if a.dtype.itemsize >= b.dtype.itemsize else b.dtype
    return t.new(out_shape, dtype, grad_fn=node)


def layer_norm(t: Trace, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.layer_norm`` (autocast's fp32 list): saves input, mean and rstd (fp32, one per row).

    Backward: one kernel makes the input, weight and bias gradients, all fresh.
    """
    x = t.cast(x, FLOAT32)
    rows = x.shape[:-1]
    mean = t.new((*rows, 1), FLOAT32)
    rstd = t.new((*rows, 1), FLOAT32)
    node = t.node(
        "NativeLayerNormBackward0",
        (x, weight, bias),
        {"input": x, "result1": mean, "result2": rstd, "weight": weight, "bias": bias},
        _fresh(
            (x.shape, FLOAT32),
            (weight.shape, FLOAT32),
            (bias.shape, FLOAT32) if bias is not None else None,
        ),
    )
    return t.new(x.shape, FLOAT32, grad_fn=node)


def linear(t: Trace, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear`` on a contiguous (..., n_in) input with an (n_out, n_in) weight.

    The input is flattened to 2-D (a view) and multiplied by the transposed weight: ``mm`` without
    bias (MmBackward0 saves self and mat2), ``addmm`` with it (AddmmBackward0 saves mat1 and
    mat2). Under autocast both input and weight are half copies; the bias copy is not saved.
    Autocast casts the arguments right to left (bias, weight, input), so in backward the input's
    cast runs first.

    Backward: MmBackward0 makes the weight gradient, then the input's; AddmmBackward0 the input's,
    then the weight's, and returns the output gradient itself for the bias, which the engine's
    ``validate_outputs`` sums to the bias's shape; all fresh, in the output gradient's dtype.
    """
    n_out, n_in = weight.shape
    if bias is not None:
        bias = autocast_input(t, bias)
    w = autocast_input(t, weight)
    x = autocast_input(t, x)
    rows = x.view(sympy.Mul(*x.shape[:-1]), n_in)
    w_t = w.transpose(0, 1)
    dtype, x_shape = x.dtype, x.shape
    if bias is None:
        node = t.node(
            "MmBackward0",
            (x, w),
            {"self": rows, "mat2": w_t},
            _backward_mm(x_shape, (n_out, n_in), dtype),
        )
    else:
        t.biased_matmul = True
        node = t.node(
            "AddmmBackward0",
            (x, w, bias),
            {"mat1": rows, "mat2": w_t},
            _backward_addmm(x_shape, (n_out, n_in), dtype),
        )
    return t.new((*x.shape[:-1], n_out), x.dtype, grad_fn=node)


def _backward_mm(x_shape: Any, w_shape: Any, dtype: Any) -> Any:
    """MmBackward0: the weight gradient first, then the input's (returned in input order)."""

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        grad_w = engine.new(w_shape, dtype)  # computed as mat2's gradient, then transposed back
        return [engine.new(x_shape, dtype), engine.view(grad_w)]

    return backward


def _backward_addmm(x_shape: Any, w_shape: Any, dtype: Any) -> Any:
    """AddmmBackward0: the input's gradient, the weight's, then the bias's to be summed."""

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        return [engine.new(x_shape, dtype), engine.new(w_shape, dtype), engine.sum_to(grad)]

    return backward


def split(t: Trace, x: Tensor, size: sympy.Expr, pieces: int) -> tuple[Tensor, ...]:
    """``x.split(size, dim=-1)``: views. SplitBackward0 concatenates the gradients (a fresh
    tensor of x's shape) once all of them have arrived."""
    node = t.node("SplitBackward0", (x,), {}, _fresh((x.shape, x.dtype)), outputs=pieces)
    return tuple(
        Tensor((*x.shape[:-1], size), x.dtype, x.storage, x.order, False, node, i)
        for i in range(pieces)
    )


def contiguous(t: Trace, x: Tensor) -> Tensor:
    """``x.contiguous()``: ``x`` itself when already contiguous, else a row-major copy
    (CloneBackward0, which passes the gradient on)."""
    if x.is_contiguous:
        return x
    node = t.node("CloneBackward0", (x,), {}, lambda engine, grad: [grad])
    return t.new(x.shape, x.dtype, grad_fn=node)


def gelu(t: Trace, x: Tensor) -> Tensor:
    """``nn.GELU()`` (exact): saves its input; not on an autocast list, so it keeps x's dtype.
    Backward: a fresh gradient."""
    node = t.node("GeluBackward0", (x,), {"self": x}, _fresh((x.shape, x.dtype)))
    return t.new(x.shape, x.dtype, grad_fn=node)


def dropout(t: Trace, x: Tensor) -> Tensor:
    """``F.dropout`` in training mode.

    With p = 0 it returns its input and saves nothing. On CUDA it is ``native_dropout``, which saves
    a bool mask (measured on an H200: docs/cuda.md). The CPU build multiplies by a scaled noise
    tensor in x's dtype and MulBackward0 saves that noise (measured, torch 2.13). Backward: a
    fresh gradient.
    """
    if not t.scenario.dropout:
        return x
    backward = _fresh((x.shape, x.dtype))
    if t.platform.dropout_saves_mask:
        mask = t.new(x.shape, BOOL)
        node = t.node("NativeDropoutBackward0", (x,), {"result1": mask}, backward)
    else:  # the noise lives until the product exists, saved or not (checkpointed regions)
        mask = t.new(x.shape, x.dtype)
        node = t.node("MulBackward0", (x,), {"other": mask}, backward)
    return t.new(x.shape, x.dtype, grad_fn=node)


def cross_entropy(t: Trace, logits: Tensor, targets: Tensor) -> Tensor:
    """``F.cross_entropy(logits, targets, ignore_index=-1)`` = ``nll_loss(log_softmax(logits))``.

    log_softmax saves its result; nll_loss saves its input (the same storage when no cast comes
    between them), the targets and ``total_weight`` (a 0-dim fp32). Where autocast covers
    cross_entropy (CPU) the logits are cast to fp32 first; where it does not (CUDA), log_softmax
    runs in the half dtype and nll_loss, on the fp32 list, saves an fp32 copy of its input.

    Backward: ``nll_loss_backward`` and ``_log_softmax_backward_data`` each make a fresh
    gradient of the log-probabilities' shape.
    """
    if t.amp and t.platform.cross_entropy_autocast:
        logits = t.cast(logits, FLOAT32)
    shape, dtype = logits.shape, logits.dtype
    node = t.node("LogSoftmaxBackward0", (logits,), {}, _fresh((shape, dtype)))
    log_probs = t.new(shape, dtype, grad_fn=node)
    t.save_output(node, "result", log_probs)
    nll_input = t.cast(log_probs, FLOAT32) if t.amp else log_probs
    total_weight = t.new((), FLOAT32)
    node = t.node(
        "NllLossBackward0",
        (nll_input,),
        {"self": nll_input, "target": targets, "total_weight": total_weight},
        _fresh((shape, FLOAT32)),
    )
    return t.new((), FLOAT32, grad_fn=node)


def scale(t: Trace, x: Tensor) -> Tensor:
    """``x * s`` by a 0-dim tensor that needs no gradient and outlives the step (GradScaler's
    ``scale(loss)``): MulBackward0 saves ``s`` alone, nothing new. Backward: a fresh gradient.
    """
    node = t.node("MulBackward0", (x,), {}, _fresh((x.shape, x.dtype)))
    return t.new(x.shape, x.dtype, grad_fn=node)


def divide(t: Trace, x: Tensor) -> Tensor:
    """``x / n`` by a Python number (the training loop's ``loss / gradient_accumulation_steps``).

    DivBackward0 saves the number as a 0-dim int64 made outside any operator, before ``div``
    runs (Python's number wrapped as a tensor, where the platform keeps those): it lives until
    the node has run in backward. No operator made it, so it is no saved term; the training
    step counts it. Backward: a fresh gradient.
    """
    number = t.new((), INT64, location=t.platform.wrapped)
    node = t.node("DivBackward0", (x,), {}, _fresh((x.shape, x.dtype)))
    node.saved.append(number.storage)
    return t.new(x.shape, x.dtype, grad_fn=node)
