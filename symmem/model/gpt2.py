"""GPT-2 as Hugging Face transformers 5.23.0 builds it (``GPT2LMHeadModel``), from symmem's op
rules. It reads like ``modeling_gpt2.py``, trained as ``model(input_ids, labels=labels)`` with
``attn_implementation="sdpa"``.

Where it differs from nanoGPT (:mod:`symmem.model.nanogpt`) in memory:

- its linear layers are ``Conv1D`` (``addmm`` with an (in, out) weight, always with a bias) and
  its LayerNorms always have biases;
- the MLP's activation is ``gelu_new``, written in Python: seven saved tensors where nanoGPT's
  GELU saves one, three of them wrapped Python numbers (:mod:`symmem.ops.hf`);
- ``use_cache`` is on, so every layer's keys and values are copied into the ``DynamicCache`` the
  output returns, and the attention saves those copies;
- the loss is ``ForCausalLMLoss``: fp32 logits, shifted labels;
- the position table has ``SMAX`` rows (``n_positions``), and the input and output embeddings are
  tied unless ``TIED`` is 0 (``tie_word_embeddings``);
- dropout (0.1 when DROPOUT is on) after the embeddings, in the attention and after each
  residual branch, as nanoGPT.

Module names are transformers' (``transformer.h.*.mlp.act``). Python's variables are kept where
transformers keeps them (a block's ``attn_output`` lives to the end of the block).
"""

from __future__ import annotations

from symmem import ops
from symmem.errors import ConfigError
from symmem.model.nanogpt import batch
from symmem.model.spec import SEQ, TP, TRAINING, WHOLE, Model, ParallelRules
from symmem.ops import Tensor, Trace, hf
from symmem.symbols import AMP, DROPOUT, NH, SMAX, TIED, B, D, L, S, V

__all__ = ["BLOCK", "GPT2", "forward"]

#: Module path of the traced block.
BLOCK = "transformer.h.*"
#: ``GPT2LMHeadModel.forward`` itself: the loss is computed there.
ROOT = "GPT2LMHeadModel.forward"


def forward(t: Trace, idx: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """``GPT2LMHeadModel.forward(input_ids, labels=labels)`` in training mode."""
    if t.checkpoint != "none":
        raise ConfigError(
            "activation checkpointing is not modelled for gpt2 (transformers' gradient "
            "checkpointing also turns the key/value cache off): use --checkpoint none"
        )
    with t.module("transformer"):
        hidden_states = model(t, idx)  # also transformer_outputs.last_hidden_state: kept
    with t.module("lm_head"):
        weight = t.param("transformer.wte.weight") if t.scenario.tied else t.param("weight", V, D)
        logits = ops.linear(t, hidden_states, weight, None)
    t.label(logits, "logits", "logits")
    loss = hf.causal_lm_loss(t, logits, targets)
    return logits, loss


def model(t: Trace, input_ids: Tensor) -> Tensor:
    """``GPT2Model.forward``: embeddings, the blocks, ``ln_f``."""
    with t.module("wte"):
        inputs_embeds = ops.embedding(t, input_ids, t.param("weight", V, D))
    position_ids = hf.position_ids(t, S)
    with t.module("wpe"):
        position_embeds = ops.embedding(t, position_ids, t.param("weight", SMAX, D))
    hidden_states = ops.add(t, inputs_embeds, position_embeds)
    with t.module("drop"):
        hidden_states = ops.dropout(t, hidden_states)
    t.mark("block")
    with t.module("h.*"):
        hidden_states = block(t, hidden_states)
    t.mark("/block")
    with t.module("ln_f"):
        hidden_states = layer_norm(t, hidden_states)
    return hidden_states


def block(t: Trace, hidden_states: Tensor) -> Tensor:
    """``GPT2Block.forward``: pre-LN attention and MLP, each added to the residual stream."""
    residual = hidden_states
    with t.module("ln_1"):
        hidden_states = layer_norm(t, hidden_states)
    with t.module("attn"):
        attn_output = attention(t, hidden_states)
    hidden_states = ops.add(t, attn_output, residual)
    residual = hidden_states
    with t.module("ln_2"):
        hidden_states = layer_norm(t, hidden_states)
    with t.module("mlp"):
        feed_forward_hidden_states = mlp(t, hidden_states)
    return ops.add(t, residual, feed_forward_hidden_states)


def attention(t: Trace, hidden_states: Tensor) -> Tensor:
    """``GPT2Attention.forward``: c_attn split into q, k, v views (keys and values first), the
    cache update, SDPA (``is_causal``, no mask), c_proj, resid_dropout."""
    with t.module("c_attn"):
        qkv = conv1d(t, hidden_states, D, 3 * D)
    query_states, key_states, value_states = ops.split(t, qkv, D, 3)
    del qkv
    key_states = ops.heads(t, key_states, NH)
    value_states = ops.heads(t, value_states, NH)
    query_states = ops.heads(t, query_states, NH)
    key_states, value_states = hf.cache_update(t, key_states, value_states)
    attn_output = ops.scaled_dot_product_attention(
        t, query_states, key_states, value_states, t.kernel
    )
    attn_output = ops.contiguous(t, attn_output.transpose(1, 2)).view(B, S, D)
    with t.module("c_proj"):
        attn_output = conv1d(t, attn_output, D, D)
    with t.module("resid_dropout"):
        return ops.dropout(t, attn_output)


def mlp(t: Trace, hidden_states: Tensor) -> Tensor:
    """``GPT2MLP.forward``: c_fc, gelu_new, c_proj, dropout."""
    with t.module("c_fc"):
        hidden_states = conv1d(t, hidden_states, D, 4 * D)
    with t.module("act"):
        hidden_states = hf.gelu_new(t, hidden_states)
    with t.module("c_proj"):
        hidden_states = conv1d(t, hidden_states, 4 * D, D)
    with t.module("dropout"):
        return ops.dropout(t, hidden_states)


def layer_norm(t: Trace, x: Tensor) -> Tensor:
    """``nn.LayerNorm(D)``: a weight and a bias."""
    return ops.layer_norm(t, x, t.param("weight", D), t.param("bias", D))


def conv1d(t: Trace, x: Tensor, n_in: object, n_out: object) -> Tensor:
    """``Conv1D(n_out, n_in)``: an (n_in, n_out) weight and a bias."""
    return hf.conv1d(t, x, t.param("weight", n_in, n_out), t.param("bias", n_out))


#: How GPT-2 splits under Megatron-style tensor parallelism (:mod:`symmem.parallel`), as nanoGPT
#: does, module for module; the key/value cache is split by heads, and the wrapped numbers of
#: ``gelu_new`` (8 bytes each) are whole on every rank.
PARALLEL = ParallelRules(
    activations=(
        ("transformer.h.*.attn", "*", TP),  # the attention core and the cache: heads split
        ("transformer.h.*.attn.c_attn", "*-mat2", TP),  # the weight's autocast copy
        ("transformer.h.*.attn.c_attn", "*", SEQ),  # its input (ln_1's output)
        ("transformer.h.*.attn.c_proj", "*", TP),
        ("transformer.h.*.mlp.c_fc", "*-mat2", TP),
        ("transformer.h.*.mlp.c_fc", "*", SEQ),
        ("transformer.h.*.mlp.act", "MulBackward0-other", WHOLE),  # wrapped numbers
        ("transformer.h.*.mlp.act", "MulBackward0#[23]-other", WHOLE),
        ("transformer.h.*.mlp.act", "*", TP),
        ("transformer.h.*.mlp.c_proj", "*", TP),
        ("transformer.h.*", "*", SEQ),  # LayerNorms, dropout masks after c_proj
        ("transformer.drop", "*", SEQ),
        ("transformer.ln_f", "*", SEQ),
        ("transformer.wpe", "*", WHOLE),  # the position ids
        ("lm_head", "*-self", SEQ),  # ln_f's output
        ("lm_head", "*", TP),  # the weight's copy, the logits
        (ROOT, "*-total_weight", WHOLE),
        (ROOT, "*-target", WHOLE),  # the shifted labels
        (ROOT, "idx", WHOLE),
        (ROOT, "targets", WHOLE),
        (ROOT, "*", TP),  # the loss's B·S·V tensors
    ),
    parameters=(
        ("*.c_attn.*", TP),
        ("*.c_fc.*", TP),
        ("*.c_proj.weight", TP),
        ("transformer.wte.weight", TP),
        ("lm_head.weight", TP),
        ("*", WHOLE),
    ),
    last_stage=("transformer.ln_f", "lm_head", ROOT),
)

GPT2 = Model(
    name="gpt2",
    title="GPT-2 (transformers GPT2LMHeadModel)",
    sizes=(B, S, D, NH, V, L, SMAX),
    switches=(AMP, DROPOUT, TIED),
    meanings={
        B: "batch size (sequences per step)",
        S: "sequence length",
        D: "hidden size (n_embd)",
        NH: "attention heads (n_head)",
        V: "vocabulary size",
        L: "transformer blocks (n_layer)",
        SMAX: "rows of the position table (n_positions), at least S",
        AMP: "1 under autocast mixed precision (16-bit compute), else 0",
        DROPOUT: "1 when attn_pdrop, resid_pdrop and embd_pdrop are 0.1, 0 when they are 0",
        TIED: "1 when lm_head shares the token embedding's weight (tie_word_embeddings)",
    },
    forward=forward,
    batch=batch,
    block=BLOCK,
    root=ROOT,
    rest="transformer",
    divides=((NH, D),),
    bounds=((S, SMAX),),
    reasons={
        "NKV": "GPT-2's attention has as many key/value heads as query heads",
        "F": "GPT-2's MLP is 4·D wide (n_inner unset)",
        "bias": "GPT-2's Conv1D and LayerNorm layers always have biases",
    },
    parallel=PARALLEL,
    reference="symmem.validate.hf",
    loop="plain",
    regimes=TRAINING,
)
