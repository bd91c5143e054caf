"""Rotary position embeddings as Hugging Face's Llama-family models apply them.

``LlamaRotaryEmbedding.forward`` runs once per forward, under ``torch.no_grad()`` and with
autocast off: ``inv_freq`` (a buffer) times the float positions, concatenated with itself, then
``cos()`` and ``sin()`` times ``attention_scaling``, cast to the hidden states' dtype (fp32, the
embedding's). Every layer's ``apply_rotary_pos_emb`` multiplies q and k by views of the same two
(1, S, head_dim) tensors, so each is one storage for the whole model, saved by every layer's
``MulBackward0`` (``other``: they need no gradient). ``rotate_half`` is two slices, a negation
and a ``cat``, which save nothing. (Measured, torch 2.13 CPU, transformers 5.23.0.)
"""

from __future__ import annotations

import sympy

from symmem.dtypes import FLOAT32
from symmem.ops.graph import Tensor, Trace
from symmem.ops.layers import add
from symmem.ops.pointwise import concat_last, multiply, negate, slice_last

__all__ = ["apply_rotary", "rotary_embedding"]


def rotary_embedding(t: Trace, ids: Tensor, head_dim: sympy.Expr) -> tuple[Tensor, Tensor]:
    """``LlamaRotaryEmbedding(x, position_ids)``: the (1, S, head_dim) fp32 ``cos`` and ``sin``,
    labelled as terms of the module that makes them (``RotaryEmbedding-cos``, ``-sin``)."""
    s = ids.shape[-1]
    half = head_dim / 2
    # inv_freq and original_inv_freq (its copy): buffers made with the model (measured).
    inv_freq = t.buffer(half)
    t.buffer(half)
    float_ids = t.new((1, 1, s), FLOAT32)  # position_ids[:, None, :].float()
    freqs = t.new((1, half, s), FLOAT32).transpose(1, 2)  # inv_freq @ positions, transposed
    del inv_freq
    del float_ids
    emb = t.new((1, s, head_dim), FLOAT32)  # torch.cat((freqs, freqs), dim=-1)
    del freqs
    made = []
    for name in ("cos", "sin"):
        raw = t.new((1, s, head_dim), FLOAT32)  # emb.cos()
        scaled = t.new((1, s, head_dim), FLOAT32)  # * attention_scaling
        del raw
        t.label(scaled, f"RotaryEmbedding-{name}", "activations")
        t.share(scaled)  # saved by every layer's apply_rotary_pos_emb
        made.append(scaled)
    del emb
    return made[0], made[1]


def apply_rotary(t: Trace, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``(x * cos) + (rotate_half(x) * sin)`` for one of q, k: (B, heads, S, head_dim).

    Mixed with the fp32 cos and sin, a 16-bit x gives an fp32 result (type promotion)."""
    head_dim = x.shape[-1]
    cos4, sin4 = (c.view(1, 1, *c.shape[1:]) for c in (cos, sin))
    rotated_cos = multiply(t, x, cos4)
    first = slice_last(t, x, head_dim / 2)
    second = slice_last(t, x, head_dim / 2)
    halves = concat_last(t, negate(t, second), first)
    del first, second
    rotated_sin = multiply(t, halves, sin4)
    del halves
    return add(t, rotated_cos, rotated_sin)
