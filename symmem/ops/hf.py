"""Op rules for what Hugging Face transformers adds around the layers every model shares.

These are the pieces of a transformers causal language model that are not one architecture's own
(:mod:`symmem.model.gpt2` and the Llama family build on them), each as transformers 5.23.0
writes it on torch 2.13 and measured on CPU like the rules of :mod:`symmem.ops.layers`:

- Python numbers in tensor arithmetic (``0.5 * x``): PyTorch wraps the number as a 0-dim tensor
  (float64 for a ``float``, int64 for an ``int``), made on the CPU outside any operator. A node
  that needs it for backward saves it (``_saved_other``): 8 bytes, in the graph's saved fields
  but never passed to ``saved_tensors_hooks`` (PyTorch does not pack wrapped numbers). It lives
  where the platform keeps them (:attr:`symmem.platforms.Platform.wrapped`: host memory beside a
  GPU) and, made outside any operator, is no allocation of a training step's timeline.
- ``position_ids``: ``torch.arange(S) + past_seen_tokens``.
- ``DynamicCache.update``: ``use_cache`` is on by default, also in training, so every attention
  layer concatenates its keys and values onto an empty cache: a contiguous copy of each, which
  the attention then uses (and saves), and which the returned output keeps (kind ``cache``).
- ``ForCausalLMLoss``: the logits upcast to fp32, the labels padded by one ``-100`` and shifted
  (a contiguous copy), then ``cross_entropy(..., ignore_index=-100)``.
- ``Conv1D`` (GPT-2's linear layers): ``torch.addmm(bias, x.view(-1, nx), weight)`` with an
  ``(nx, nf)`` weight.
- the element-wise ops of activations written in Python (``gelu_new``): ``pow``, ``tanh``, ``*``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import sympy

from symmem.dtypes import FLOAT32, FLOAT64, INT64, DType
from symmem.ops.graph import Storage, Tensor, Trace
from symmem.ops.layers import _backward_addmm, add, autocast_input, cross_entropy

__all__ = [
    "AUTOCAST_FP32",
    "add_number",
    "cache_update",
    "causal_lm_loss",
    "conv1d",
    "gelu_new",
    "mul",
    "mul_number",
    "position_ids",
    "pow_number",
    "tanh",
    "wrapped_number",
]

#: Element-wise ops that autocast runs in fp32, by platform (PyTorch's
#: ``aten/src/ATen/autocast_mode.cpp``: ``pow.Tensor_Scalar`` is on the CUDA fp32 list and on no
#: CPU list; measured on CPU: ``torch.pow`` of a bfloat16 tensor under CPU autocast is bfloat16).
AUTOCAST_FP32 = MappingProxyType({"cpu": frozenset[str](), "cuda": frozenset({"pow"})})


def _fresh_like(x: Tensor) -> Any:
    """A rule making one fresh gradient of ``x``'s shape and dtype, laid out like the incoming
    gradient (TensorIterator keeps its input's memory order)."""
    shape, dtype = x.shape, x.dtype

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        return [engine.new(shape, dtype, grad.order)]

    return backward


def _passed_on(engine: Any, grad: Tensor) -> list[Tensor | None]:
    """A rule that passes the gradient on unchanged (AddBackward0 of ``x + number``)."""
    return [grad]


def _autocast_fp32(t: Trace, op: str, x: Tensor) -> Tensor:
    """``x`` as an op on the platform's autocast fp32 list sees it."""
    if t.amp and op in AUTOCAST_FP32.get(t.platform.name, frozenset()):
        return t.cast(x, FLOAT32)
    return x


def wrapped_number(t: Trace, dtype: DType = FLOAT64) -> Tensor:
    """A Python number used as a tensor: a 0-dim ``dtype`` tensor (float64 for a ``float``),
    where the platform keeps wrapped numbers. Made outside any operator, it is no allocation of
    the step's timeline (no event is logged)."""
    storage = Storage((), dtype, t.platform.wrapped, t.module_name, None, None)
    return Tensor((), dtype, storage)


def mul_number(t: Trace, x: Tensor, dtype: DType = FLOAT64) -> Tensor:
    """``number * x``: MulBackward0 saves the wrapped number (``other``, 8 bytes); the output
    keeps ``x``'s dtype (a wrapped number does not promote). Backward: a fresh gradient."""
    other = wrapped_number(t, dtype)
    node = t.node("MulBackward0", (x,), {"other": other}, _fresh_like(x))
    return t.like(x, grad_fn=node)


def add_number(t: Trace, x: Tensor) -> Tensor:
    """``number + x``: AddBackward0 saves nothing and passes the gradient on."""
    node = t.node("AddBackward0", (x,), {}, _passed_on)
    return t.like(x, grad_fn=node)


def pow_number(t: Trace, x: Tensor) -> Tensor:
    """``torch.pow(x, number)``: PowBackward0 saves its input (``self``), in fp32 where autocast
    runs ``pow`` in fp32 (:data:`AUTOCAST_FP32`).

    Backward (``pow_backward``: ``grad * (exponent * self.pow(exponent - 1))``): two temporaries
    of the input's shape live while the fresh gradient is made.
    """
    x = _autocast_fp32(t, "pow", x)
    shape, dtype = x.shape, x.dtype

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        power = engine.new(shape, dtype, grad.order)
        scaled = engine.new(shape, dtype, grad.order)
        out = engine.new(shape, dtype, grad.order)
        del power, scaled
        return [out]

    node = t.node("PowBackward0", (x,), {"self": x}, backward)
    return t.like(x, grad_fn=node)


def tanh(t: Trace, x: Tensor) -> Tensor:
    """``torch.tanh(x)``: TanhBackward0 saves its output (``result``). Backward: a fresh
    gradient (``tanh_backward``)."""
    node = t.node("TanhBackward0", (x,), {}, _fresh_like(x))
    out = t.like(x, grad_fn=node)
    t.save_output(node, "result", out)
    return out


def mul(t: Trace, a: Tensor, b: Tensor) -> Tensor:
    """``a * b`` of two same-shaped tensors that both need a gradient: MulBackward0 saves both
    (``self`` and ``other``); the output has the wider dtype. Backward: a fresh gradient for
    each (``mul_tensor_backward``: ``grad * other``, then ``grad * self``), in the gradient's
    dtype; the engine casts one of another dtype to its input's (``validate_outputs``)."""
    dtype = a.dtype if a.dtype.itemsize >= b.dtype.itemsize else b.dtype
    shapes = (a.shape, b.shape)

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        return [engine.new(shape, grad.dtype, grad.order) for shape in shapes]

    node = t.node("MulBackward0", (a, b), {"self": a, "other": b}, backward)
    return t.like(a, dtype, grad_fn=node)


def gelu_new(t: Trace, x: Tensor) -> Tensor:
    """transformers' ``NewGELUActivation`` (``ACT2FN["gelu_new"]``, GPT-2's activation):
    ``0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))``,
    op by op in Python's order. Saved: three wrapped numbers (0.5, 0.044715, sqrt(2/pi)), ``x``
    (by ``pow``), the tanh, ``0.5 * x`` and ``1 + tanh``."""
    half = mul_number(t, x)
    cube = pow_number(t, x)
    inner = add(t, x, mul_number(t, cube))
    del cube
    scaled = mul_number(t, inner)
    del inner
    th = tanh(t, scaled)
    del scaled
    one_plus = add_number(t, th)
    del th
    return mul(t, half, one_plus)


def conv1d(t: Trace, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """transformers' ``Conv1D``: ``torch.addmm(bias, x.view(-1, nx), weight)`` with an
    ``(nx, nf)`` weight (not transposed, unlike ``nn.Linear``'s).

    AddmmBackward0 saves ``mat1`` (the input, flattened) and ``mat2`` (the weight, or its
    autocast copy under AMP). Autocast casts the arguments right to left (weight, input, bias).
    Backward: as ``nn.Linear`` with a bias (:func:`symmem.ops.layers.linear`).
    """
    nx, nf = weight.shape
    w = autocast_input(t, weight)
    x = autocast_input(t, x)
    b = autocast_input(t, bias)
    rows = x.view(sympy.Mul(*x.shape[:-1]), nx)
    t.biased_matmul = True
    node = t.node(
        "AddmmBackward0",
        (x, w, b),
        {"mat1": rows, "mat2": w},
        _backward_addmm(x.shape, (nx, nf), x.dtype),
    )
    return t.new((*x.shape[:-1], nf), x.dtype, grad_fn=node)


def position_ids(t: Trace, s: sympy.Expr) -> Tensor:
    """``torch.arange(S) + past_seen_tokens`` (0 in training): the sum is a new (S,) int64
    tensor (unsqueezed to (1, S), a view); the ``arange`` dies at once."""
    arange = t.new((s,), INT64)
    positions = t.new((s,), INT64)
    del arange
    return positions


def cache_update(t: Trace, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """``DynamicLayer.update`` on an empty cache: ``torch.cat([empty, states], dim=-2)`` for the
    keys, then the values: contiguous copies the attention goes on with, kept by the cache the
    model returns (terms ``DynamicCache-keys`` and ``DynamicCache-values``, kind ``cache``).

    Backward (CatBackward0, nothing saved): the gradient passed on as a view of itself.
    """
    out = []
    for states, name in ((keys, "keys"), (values, "values")):
        # The empty tensors both have the keys' dtype (lazy_initialization), and cat promotes:
        # Llama's fp32 rotary keys make an fp32 copy of 16-bit values under AMP (measured).
        wider = keys.dtype.itemsize > states.dtype.itemsize
        node = t.node("CatBackward0", (states,), {}, _as_view)
        copy = t.new(states.shape, keys.dtype if wider else states.dtype, grad_fn=node)
        t.label(copy, f"DynamicCache-{name}", "cache")
        t.returned.append(copy)
        out.append(copy)
    return out[0], out[1]


def _as_view(engine: Any, grad: Tensor) -> list[Tensor | None]:
    """CatBackward0 of one input: ``grad.narrow(...)`` over all of it, a view."""
    view = Tensor(grad.shape, grad.dtype, grad.storage, grad.order, grad.dense)
    engine.views.add(view)
    return [view]


def causal_lm_loss(t: Trace, logits: Tensor, labels: Tensor) -> Tensor:
    """transformers' ``ForCausalLMLoss(logits, labels, vocab_size)``.

    ``logits.float()`` (a copy under AMP, the logits themselves in fp32); the labels padded by
    one ``-100`` (a new (B, S + 1) int64, alive to the end) and shifted,
    ``labels[..., 1:].contiguous()`` (a new (B, S) int64, which ``nll_loss`` saves as its
    target; with B = 1 a view of the padded labels, which it saves instead: measured); then
    ``cross_entropy(logits.view(-1, V), shift_labels.view(-1), ignore_index=-100)``
    (:func:`symmem.ops.layers.cross_entropy`).
    """
    b, s = labels.shape
    v = logits.shape[-1]
    logits = t.cast(logits, FLOAT32)
    labels = t.new((b, s + 1), INT64)
    if t.holds(sympy.Eq(b, 1)):  # one row: the shifted slice is contiguous already, a view
        shift_labels = Tensor((b * s,), INT64, labels.storage, (), False)
    else:
        shift_labels = t.new((b * s,), INT64)
    return cross_entropy(t, logits.view(b * s, v), shift_labels)
