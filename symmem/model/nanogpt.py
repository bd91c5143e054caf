"""nanoGPT, built from symmem's op rules. It reads like nanoGPT's ``model.py``.

The transformer blocks are identical, so one block is traced (module ``transformer.h.*``) and its
terms count L times. ``forward`` also declares the parameters (the tied ``lm_head`` weight is
``transformer.wte.weight``) and labels the tensors that are terms of their own: the inputs and
the logits.
"""

from __future__ import annotations

from symmem import ops
from symmem.dtypes import INT64
from symmem.ops import Tensor, Trace
from symmem.symbols import NH, B, D, S, V

__all__ = ["BLOCK", "forward"]

#: Module path of the traced block; terms under it are per layer.
BLOCK = "transformer.h.*"


def forward(t: Trace) -> None:
    """``GPT.forward(idx, targets)`` in training mode, then the loss."""
    idx = t.new((B, S), INT64, label="idx", kind="inputs")
    targets = t.new((B, S), INT64, label="targets", kind="inputs")
    pos = t.new((S,), INT64)  # torch.arange(0, t, dtype=torch.long)
    with t.module("transformer.wte"):
        tok_emb = ops.embedding(t, idx, t.param("weight", V, D))
    with t.module("transformer.wpe"):
        pos_emb = ops.embedding(t, pos, t.param("weight", S, D))
    with t.module("transformer.drop"):
        x = ops.dropout(t, ops.add(t, tok_emb, pos_emb))
    with t.module(BLOCK):
        x = block(t, x)
    with t.module("transformer.ln_f"):
        x = layer_norm(t, x)
    with t.module("lm_head"):
        logits = ops.linear(t, x, t.param("transformer.wte.weight"), None)  # weight tying
    t.label(logits, "logits", "logits")
    ops.cross_entropy(t, logits.view(B * S, V), targets.view(B * S))


def block(t: Trace, x: Tensor) -> Tensor:
    """``Block.forward``: pre-LN attention and MLP, each added to the residual stream."""
    with t.module("ln_1"):
        h = layer_norm(t, x)
    with t.module("attn"):
        x = ops.add(t, x, attention(t, h))
    with t.module("ln_2"):
        h = layer_norm(t, x)
    with t.module("mlp"):
        return ops.add(t, x, mlp(t, h))


def attention(t: Trace, x: Tensor) -> Tensor:
    """``CausalSelfAttention.forward``: fused c_attn split into q, k, v views, SDPA, c_proj."""
    with t.module("c_attn"):
        qkv = linear(t, x, D, 3 * D)
    hs = D / NH
    q, k, v = (qkv.slice_last(D).view(B, S, NH, hs).transpose(1, 2) for _ in range(3))
    y = ops.scaled_dot_product_attention(t, q, k, v, t.kernel)
    y = ops.contiguous(t, y.transpose(1, 2)).view(B, S, D)
    with t.module("c_proj"):
        y = linear(t, y, D, D)
    with t.module("resid_dropout"):
        return ops.dropout(t, y)


def mlp(t: Trace, x: Tensor) -> Tensor:
    """``MLP.forward``: c_fc, GELU, c_proj, dropout."""
    with t.module("c_fc"):
        x = linear(t, x, D, 4 * D)
    with t.module("gelu"):
        x = ops.gelu(t, x)
    with t.module("c_proj"):
        x = linear(t, x, 4 * D, D)
    with t.module("dropout"):
        return ops.dropout(t, x)


def layer_norm(t: Trace, x: Tensor) -> Tensor:
    """nanoGPT's ``LayerNorm`` module: a weight, and a bias when biases are on."""
    weight = t.param("weight", D)
    bias = t.param("bias", D) if t.scenario.bias else None
    return ops.layer_norm(t, x, weight, bias)


def linear(t: Trace, x: Tensor, n_in: object, n_out: object) -> Tensor:
    """``nn.Linear(n_in, n_out, bias=config.bias)``."""
    weight = t.param("weight", n_out, n_in)
    bias = t.param("bias", n_out) if t.scenario.bias else None
    return ops.linear(t, x, weight, bias)
