"""Hugging Face's Llama family, built from symmem's op rules: ``LlamaForCausalLM``,
``Qwen2ForCausalLM`` and ``MistralForCausalLM`` of transformers 5.23.0, as
``model(input_ids, labels=labels)`` calls them with ``attn_implementation="sdpa"``.

It reads like ``modeling_llama.py``: the token embedding, the rotary cos and sin made once by
``model.rotary_emb``, ``L`` decoder layers (one is traced, module ``model.layers.*``: RMSNorm,
attention with rotary q and k, the key/value cache's copies, SDPA with ``enable_gqa``, ``o_proj``;
RMSNorm, SwiGLU MLP), the final norm, ``lm_head`` and the loss. The three classes differ only in
their linears' biases (Qwen2's q, k and v projections always have one; Llama's attention and MLP
have one with ``BIAS``; Mistral's none) and Mistral's sliding window, which changes nothing
while S is below it (no mask is built and the cache keeps every position): longer sequences are
refused.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from symmem import ops
from symmem.dtypes import INT64
from symmem.errors import ConfigError
from symmem.model.spec import SEQ, TP, TRAINING, WHOLE, Limit, Model, ParallelRules
from symmem.ops import Tensor, Trace
from symmem.ops.hf import cache_update, causal_lm_loss, position_ids
from symmem.ops.pointwise import multiply, silu
from symmem.ops.rmsnorm import rms_norm
from symmem.ops.rope import apply_rotary, rotary_embedding
from symmem.platforms import MATH, AttentionKernel
from symmem.symbols import AMP, BIAS, NH, NKV, TIED, B, D, F, L, S, V

__all__ = ["LLAMA", "MISTRAL", "QWEN2"]

#: Module path of the traced decoder layer.
BLOCK = "model.layers.*"

#: Whether each linear of a decoder layer has a bias: ``always``, ``never`` or with ``BIAS``.
Biases = Callable[[Trace, str], bool]


def _llama_bias(t: Trace, name: str) -> bool:
    return t.scenario.bias  # attention_bias = mlp_bias = BIAS


def _qwen2_bias(t: Trace, name: str) -> bool:
    return name in ("q_proj", "k_proj", "v_proj")


def _no_bias(t: Trace, name: str) -> bool:
    return False


def batch(t: Trace) -> tuple[Tensor, Tensor]:
    """The token ids and the labels, (B, S) int64 each."""
    return (
        t.new((B, S), INT64, label="idx", kind="inputs"),
        t.new((B, S), INT64, label="targets", kind="inputs"),
    )


def _forward(root: str, biases: Biases) -> Callable[[Trace, Tensor, Tensor], tuple[Tensor, Tensor]]:
    def forward(t: Trace, idx: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """``XForCausalLM.forward(input_ids, labels=labels)``: returns ``(logits, loss)``."""
        if t.checkpoint != "none":
            raise ConfigError(
                f"activation checkpointing is not modelled for {t.model.name} (transformers' "
                "gradient checkpointing also turns the key/value cache off): use --checkpoint none"
            )
        with t.module("model.embed_tokens"):
            hidden = ops.embedding(t, idx, t.param("weight", V, D))
        if t.model.limits[-1] is SHORTER_THAN_WINDOW:
            # DynamicCache(config) of a sliding-window model: each layer's
            # DynamicSlidingWindowLayer keeps torch.tensor(sliding_window), an 8-byte int64,
            # in the returned cache (no term: nothing saves it; L of them, as one storage).
            t.returned.append(t.new((L,), INT64))
        ids = position_ids(t, S).view(1, S)
        with t.module("model.rotary_emb"):
            cos, sin = rotary_embedding(t, ids, D / NH)
        t.mark("block")
        with t.module(BLOCK):
            hidden = decoder_layer(t, hidden, cos, sin, biases)
        t.mark("/block")
        with t.module("model.norm"):
            hidden = rms_norm(t, hidden, t.param("weight", D))
        del ids  # LlamaModel.forward returns; its output keeps the norm's output (below)
        weight = t.param("model.embed_tokens.weight") if t.scenario.tied else None
        with t.module("lm_head"):
            if weight is None:
                weight = t.param("weight", V, D)
            logits = ops.linear(t, hidden, weight, None)
        t.label(logits, "logits", "logits")
        loss = causal_lm_loss(t, logits, labels)
        del hidden  # ``outputs.last_hidden_state``: alive until XForCausalLM.forward returns
        return logits, loss

    return forward


def decoder_layer(t: Trace, x: Tensor, cos: Tensor, sin: Tensor, biases: Biases) -> Tensor:
    """``LlamaDecoderLayer.forward``: pre-norm attention and MLP, each added to the residual."""
    with t.module("input_layernorm"):
        normed = rms_norm(t, x, t.param("weight", D))
    with t.module("self_attn"):
        out = attention(t, normed, cos, sin, biases)
    del normed
    x = ops.add(t, x, out)
    del out
    with t.module("post_attention_layernorm"):
        normed = rms_norm(t, x, t.param("weight", D))
    with t.module("mlp"):
        out = mlp(t, normed, biases)
    del normed
    return ops.add(t, x, out)


def attention(t: Trace, x: Tensor, cos: Tensor, sin: Tensor, biases: Biases) -> Tensor:
    """``LlamaAttention.forward``: q, k, v projections viewed as heads, rotary q and k, the
    cache's update, ``sdpa_attention_forward`` (``enable_gqa`` when NKV < NH), ``o_proj``."""
    hd = D / NH
    q = ops.heads(t, _linear(t, "q_proj", x, D, D, biases), NH)
    k = ops.heads(t, _linear(t, "k_proj", x, D, NKV * hd, biases), NKV)
    v = ops.heads(t, _linear(t, "v_proj", x, D, NKV * hd, biases), NKV)
    q = apply_rotary(t, q, cos, sin)
    k = apply_rotary(t, k, cos, sin)
    k, v = cache_update(t, k, v)
    y = ops.scaled_dot_product_attention(t, q, k, v, _kernel(t))
    del q, k, v
    y = ops.contiguous(t, y.transpose(1, 2)).view(B, S, D)
    return _linear(t, "o_proj", y, D, D, biases)


def _kernel(t: Trace) -> AttentionKernel:
    """The SDPA kernel that runs with ``enable_gqa``. CUDA's memory-efficient kernel admits no
    grouped-query heads (PyTorch's ``aten/src/ATen/native/transformers/cuda/sdp_utils.cpp``:
    its dense constraints are ``check_batch_size_and_num_heads_dense<false>``, flash's and
    cuDNN's ``<true>``), so with NKV < NH PyTorch goes on to the math path. Derived from the
    source, not measured; the CPU flash kernel takes them (measured, torch 2.13)."""
    if t.kernel.name == "efficient" and not t.holds(sympy.Eq(NKV, NH)):
        return MATH
    return t.kernel


def mlp(t: Trace, x: Tensor, biases: Biases) -> Tensor:
    """``LlamaMLP.forward``: ``down_proj(act_fn(gate_proj(x)) * up_proj(x))``, SiLU, width F."""
    gate = _linear(t, "gate_proj", x, D, F, biases)
    with t.module("act_fn"):
        act = silu(t, gate)
    del gate
    up = _linear(t, "up_proj", x, D, F, biases)
    product = multiply(t, act, up)
    del act, up
    return _linear(t, "down_proj", product, F, D, biases)


def _linear(
    t: Trace, name: str, x: Tensor, n_in: sympy.Expr, n_out: sympy.Expr, biases: Biases
) -> Tensor:
    with t.module(name):
        weight = t.param("weight", n_out, n_in)
        bias = t.param("bias", n_out) if biases(t, name) else None
        return ops.linear(t, x, weight, bias)


def _parallel(root: str) -> ParallelRules:
    """Megatron-style tensor parallelism for a Llama-family model (:mod:`symmem.parallel`):
    q, k, v, gate and up split by columns, o and down by rows, heads (and the cache) split, the
    rotary cos and sin whole on every rank, the norms split along the sequence."""
    return ParallelRules(
        activations=(
            ("model.layers.*.self_attn", "*", TP),  # rotary q, k, the attention core, the cache
            ("model.layers.*.self_attn.[qkv]_proj", "*-mat2", TP),  # the weights' copies
            ("model.layers.*.self_attn.[qkv]_proj", "*", SEQ),  # their input (the norm's output)
            ("model.layers.*.self_attn.o_proj", "*", TP),
            ("model.layers.*.mlp.gate_proj", "*-mat2", TP),
            ("model.layers.*.mlp.up_proj", "*-mat2", TP),
            ("model.layers.*.mlp.gate_proj", "*", SEQ),
            ("model.layers.*.mlp.up_proj", "*", SEQ),
            ("model.layers.*.mlp*", "*", TP),  # SiLU, the product, down_proj
            ("model.layers.*", "*", SEQ),  # the RMSNorms
            ("model.rotary_emb", "*", WHOLE),
            ("model.norm", "*", SEQ),
            ("lm_head", "*-self", SEQ),
            ("lm_head", "*", TP),
            (root, "*-total_weight", WHOLE),
            (root, "*-target", WHOLE),
            (root, "idx", WHOLE),
            (root, "targets", WHOLE),
            (root, "*", TP),
        ),
        parameters=(
            ("*.self_attn.*", TP),
            ("*.mlp.*", TP),
            ("model.embed_tokens.weight", TP),
            ("lm_head.weight", TP),
            ("*", WHOLE),
        ),
        last_stage=("model.norm", "lm_head", root),
    )


#: ``rotate_half`` splits each head in two halves, and the cos and sin have
#: 2·ceil(head_dim / 2) columns: an odd head size fails in transformers.
EVEN_HEADS = Limit(
    ("D", "NH"),
    lambda s: s["D"] // s["NH"] % 2 == 0,
    "D/NH = {D}/{NH} is an odd head size: rotary embeddings need an even one",
)

#: Mistral's sliding window (``sliding_window``, 4096 in MistralConfig and in Mistral 7B
#: v0.1's config.json): from S = 4096 on, transformers builds a sliding-window mask (SDPA
#: then runs the math kernel on repeated keys and values), which symmem does not model.
MISTRAL_WINDOW = 4096
SHORTER_THAN_WINDOW = Limit(
    ("S",),
    lambda s: s["S"] < MISTRAL_WINDOW,
    f"S={{S}} reaches Mistral's sliding window ({MISTRAL_WINDOW}), where transformers builds a "
    f"mask symmem does not model: use S < {MISTRAL_WINDOW}",
)


def _model(
    name: str, title: str, root: str, biases: Biases, bias_switch: bool, *limits: Limit
) -> Model:
    switches = (AMP, TIED, BIAS) if bias_switch else (AMP, TIED)
    meanings = {
        B: "batch size (sequences per step)",
        S: "sequence length",
        D: "hidden size",
        NH: "attention heads",
        NKV: "key/value heads (NKV = NH: multi-head; 1: multi-query)",
        F: "the MLP's hidden width (intermediate_size)",
        V: "vocabulary size",
        L: "decoder layers",
        AMP: "1 under autocast mixed precision (16-bit compute), else 0",
        TIED: "1 when lm_head shares the token embedding's weight, else 0",
    }
    if bias_switch:
        meanings[BIAS] = "1 when the attention and MLP linears have biases, else 0"
    reasons = {
        "dropout": f"{title} is built with attention_dropout 0",
        "SMAX": f"{title} has rotary positions, no position table",
    }
    if not bias_switch:
        reasons["bias"] = (
            "Qwen2's q, k and v projections always have biases, its other linears none"
            if name == "qwen2"
            else f"{title}'s linears have no biases"
        )
    return Model(
        name=name,
        title=title,
        sizes=(B, S, D, NH, V, L, NKV, F),
        switches=switches,
        meanings=meanings,
        forward=_forward(root, biases),
        batch=batch,
        block=BLOCK,
        root=root,
        rest="model",
        divides=((NH, D), (NKV, NH)),
        reasons=reasons,
        limits=(EVEN_HEADS, *limits),
        parallel=_parallel(root),
        reference="symmem.validate.hf",
        regimes=TRAINING,
    )


LLAMA = _model("llama", "Llama", "LlamaForCausalLM.forward", _llama_bias, True)
QWEN2 = _model("qwen2", "Qwen2", "Qwen2ForCausalLM.forward", _qwen2_bias, False)
MISTRAL = _model(
    "mistral", "Mistral", "MistralForCausalLM.forward", _no_bias, False, SHORTER_THAN_WINDOW
)
