"""RMSNorm as Hugging Face's Llama-family models compute it (``LlamaRMSNorm.forward``)::

    input_dtype = hidden_states.dtype
    hidden_states = hidden_states.to(torch.float32)
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
    return self.weight * hidden_states.to(input_dtype)

No op here is on an autocast list, so under AMP it runs in fp32 like the residual stream it reads.
What its nodes save (measured, torch 2.13 CPU, transformers 5.23.0): ``PowBackward0`` its input
(the exponent is a number), ``RsqrtBackward0`` its (B, S, 1) result, the first ``MulBackward0``
the input and that result again (the same storages), the second the normalised tensor (and the
weight, a parameter). ``mean`` and ``+ eps`` save no tensor.
"""

from __future__ import annotations

from typing import Any

from symmem.dtypes import FLOAT32
from symmem.ops.graph import Tensor, Trace
from symmem.ops.hf import pow_number
from symmem.ops.pointwise import multiply

__all__ = ["rms_norm"]


def rms_norm(t: Trace, x: Tensor, weight: Tensor) -> Tensor:
    """``LlamaRMSNorm(x)`` with its ``weight`` (D,): returns the fp32 normalised tensor.

    Backward (derivatives.yaml): each node makes fresh gradients of its inputs' shapes; the
    broadcast ones (the weight's, the (B, S, 1) factor's) are summed by the engine.
    """
    origin = x.dtype
    x = t.cast(x, FLOAT32)
    rows = (*x.shape[:-1], 1)
    squared = pow_number(t, x)
    node = t.node("MeanBackward1", (squared,), {}, _fresh_like(squared))
    variance = t.new(rows, FLOAT32, grad_fn=node)
    del squared
    node = t.node("AddBackward0", (variance,), {}, lambda engine, grad: [grad])
    shifted = t.new(rows, FLOAT32, grad_fn=node)
    del variance
    node = t.node("RsqrtBackward0", (shifted,), {}, _fresh_like(shifted))
    inverse = t.new(rows, FLOAT32, grad_fn=node)
    t.save_output(node, "result", inverse)
    del shifted
    normed = multiply(t, x, inverse)
    del inverse
    normed = t.cast(normed, origin) if origin != FLOAT32 else normed
    return multiply(t, weight, normed)


def _fresh_like(x: Tensor) -> Any:
    shape, dtype = x.shape, x.dtype

    def backward(engine: Any, grad: Tensor) -> list[Tensor | None]:
        return [engine.new(shape, dtype)]

    return backward
