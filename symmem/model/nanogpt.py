"""nanoGPT, built from symmem's op rules. It reads like nanoGPT's ``model.py``.

The transformer blocks are identical, so one block is traced (module ``transformer.h.*``) and its
terms count L times. ``forward`` also declares the parameters (the tied ``lm_head`` weight is
``transformer.wte.weight``) and labels the tensors that are terms of their own: the inputs and
the logits.

The code keeps nanoGPT's variables and temporaries (``x = x + self.attn(self.ln_1(x))``,
``tok_emb`` and ``pos_emb`` living to the end of ``forward``), because Python frees symmem's
symbolic tensors exactly when PyTorch frees the real ones: that is how :mod:`symmem.step` knows
what is alive at every moment of the forward.

``t.checkpoint`` runs it with activation checkpointing, as the measured model does
(:mod:`symmem.validate.nanogpt`): ``full`` checkpoints every block, ``selective`` only the
attention core (:mod:`symmem.ops.checkpoint`).
"""

from __future__ import annotations

from symmem import ops
from symmem.dtypes import INT64
from symmem.model.spec import SEQ, TP, TRAINING, WHOLE, Model, ParallelRules
from symmem.ops import Tensor, Trace
from symmem.symbols import AMP, BIAS, DROPOUT, NH, B, D, L, S, V

__all__ = ["BLOCK", "NANOGPT", "batch", "forward"]

#: Module path of the traced block; terms under it are per layer.
BLOCK = "transformer.h.*"
#: The name of ``GPT.forward`` itself: the loss is computed there, outside every submodule.
ROOT = "GPT.forward"


def batch(t: Trace) -> tuple[Tensor, Tensor]:
    """``get_batch``: the token ids ``X`` and the targets ``Y``, (B, S) int64 each."""
    return (
        t.new((B, S), INT64, label="idx", kind="inputs"),
        t.new((B, S), INT64, label="targets", kind="inputs"),
    )


def forward(t: Trace, idx: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """``GPT.forward(idx, targets)`` in training mode: returns ``(logits, loss)``."""
    pos = t.new((S,), INT64)  # torch.arange(0, t, dtype=torch.long)
    with t.module("transformer.wte"):
        tok_emb = ops.embedding(t, idx, t.param("weight", V, D))
    with t.module("transformer.wpe"):
        pos_emb = ops.embedding(t, pos, t.param("weight", S, D))
    with t.module("transformer.drop"):
        x = ops.dropout(t, ops.add(t, tok_emb, pos_emb))
    t.mark("block")
    with t.module(BLOCK):
        x = ops.checkpoint(t, block, x) if t.checkpoint == "full" else block(t, x)
    t.mark("/block")
    with t.module("transformer.ln_f"):
        x = layer_norm(t, x)
    with t.module("lm_head"):
        logits = ops.linear(t, x, t.param("transformer.wte.weight"), None)  # weight tying
    t.label(logits, "logits", "logits")
    loss = ops.cross_entropy(t, logits.view(B * S, V), targets.view(B * S))
    return logits, loss


def block(t: Trace, x: Tensor) -> Tensor:
    """``Block.forward``: pre-LN attention and MLP, each added to the residual stream."""
    x = ops.add(t, x, _submodule(t, "attn", attention, _submodule(t, "ln_1", layer_norm, x)))
    x = ops.add(t, x, _submodule(t, "mlp", mlp, _submodule(t, "ln_2", layer_norm, x)))
    return x


def attention(t: Trace, x: Tensor) -> Tensor:
    """``CausalSelfAttention.forward``: fused c_attn split into q, k, v views, SDPA, c_proj."""
    q, k, v = ops.split(t, _submodule(t, "c_attn", linear, x, D, 3 * D), D, 3)
    k = ops.heads(t, k, NH)
    q = ops.heads(t, q, NH)
    v = ops.heads(t, v, NH)
    sdpa = ops.scaled_dot_product_attention
    if t.checkpoint == "selective":
        y = ops.checkpoint(t, sdpa, q, k, v, t.kernel)
    else:
        y = sdpa(t, q, k, v, t.kernel)
    y = ops.contiguous(t, y.transpose(1, 2)).view(B, S, D)
    return _submodule(t, "resid_dropout", ops.dropout, _submodule(t, "c_proj", linear, y, D, D))


def mlp(t: Trace, x: Tensor) -> Tensor:
    """``MLP.forward``: c_fc, GELU, c_proj, dropout. Its input stays alive to the end, as the
    module call's arguments hold it (``_submodule``)."""
    x = _submodule(t, "c_fc", linear, x, D, 4 * D)
    x = _submodule(t, "gelu", ops.gelu, x)
    x = _submodule(t, "c_proj", linear, x, 4 * D, D)
    x = _submodule(t, "dropout", ops.dropout, x)
    return x


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


def _submodule(t: Trace, name: str, module: object, *args: object) -> Tensor:
    """Calls ``module(t, *args)`` as the forward of submodule ``name``. Like ``nn.Module``'s
    ``__call__``, it holds the arguments until the forward returns."""
    with t.module(name):
        return module(t, *args)  # type: ignore[operator,no-any-return]


#: How nanoGPT splits under Megatron-style tensor parallelism (:mod:`symmem.parallel`).
PARALLEL = ParallelRules(
    activations=(
        ("*", "CheckpointFrame-fwd_*", WHOLE),  # a checkpoint's RNG states: one per region
        ("transformer.h.*.attn", "*", TP),  # the attention core: heads are split
        ("transformer.h.*.attn.c_attn", "*-mat2", TP),  # the weight's autocast copy
        ("transformer.h.*.attn.c_attn", "*", SEQ),  # its input (ln_1's output)
        ("transformer.h.*.attn.c_proj", "*", TP),
        ("transformer.h.*.mlp.c_fc", "*-mat2", TP),
        ("transformer.h.*.mlp.c_fc", "*", SEQ),
        ("transformer.h.*.mlp.gelu", "*", TP),
        ("transformer.h.*.mlp.c_proj", "*", TP),
        ("transformer.h.*", "*", SEQ),  # LayerNorms, dropout masks after c_proj
        ("transformer.drop", "*", SEQ),
        ("transformer.ln_f", "*", SEQ),
        ("transformer.wpe", "*", WHOLE),  # arange(S)
        ("lm_head", "*-self", SEQ),  # ln_f's output
        ("lm_head", "*", TP),  # the weight's copy, the logits
        (ROOT, "*-total_weight", WHOLE),
        (ROOT, "idx", WHOLE),
        (ROOT, "targets", WHOLE),
        (ROOT, "*", TP),  # the loss's B·S·V tensors
    ),
    parameters=(
        ("*.c_attn.*", TP),
        ("*.c_fc.*", TP),
        ("*.c_proj.weight", TP),
        ("transformer.wte.weight", TP),
        ("*", WHOLE),
    ),
    last_stage=("transformer.ln_f", "lm_head", ROOT),
)

NANOGPT = Model(
    name="nanogpt",
    title="nanoGPT",
    sizes=(B, S, D, NH, V, L),
    switches=(AMP, DROPOUT, BIAS),
    meanings={
        B: "batch size (sequences per step)",
        S: "sequence length",
        D: "hidden size",
        NH: "attention heads",
        V: "vocabulary size",
        L: "transformer blocks",
        AMP: "1 under autocast mixed precision (16-bit compute), else 0",
        DROPOUT: "1 when the dropout probability is above zero, else 0",
        BIAS: "1 when Linear and LayerNorm layers have biases, else 0",
    },
    forward=forward,
    batch=batch,
    block=BLOCK,
    root=ROOT,
    rest="transformer",
    divides=((NH, D),),
    reasons={
        "NKV": "nanoGPT's attention has as many key/value heads as query heads",
        "F": "nanoGPT's MLP is 4·D wide",
        "tied": "nanoGPT always ties lm_head's weight to the token embedding",
    },
    parallel=PARALLEL,
    reference="symmem.validate.nanogpt",
    loop="nanogpt",
    regimes=TRAINING,
)
