"""A nanoGPT model in PyTorch, written here to be measured.

It follows nanoGPT's ``model.py`` in everything that decides what autograd saves and what stays
alive: the fused ``c_attn`` split into q, k, v views, ``tok_emb`` and ``pos_emb`` as locals of
``forward``, the tied ``lm_head``, dropout modules, ``F.scaled_dot_product_attention`` with
``is_causal=True`` and ``F.cross_entropy`` on the flattened logits with ``ignore_index=-1``.
Module names match the ones symmem reports (``transformer.h.0.attn.c_attn`` and so on).

``GPTConfig.checkpoint`` adds activation checkpointing, always non-reentrant
(``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``, default ``preserve_rng_state``):
``"full"`` wraps each transformer block (only its input is kept, the block is recomputed in
backward), ``"selective"`` wraps only the attention core ``F.scaled_dot_product_attention``
(Korthikanti et al. 2022). ``"none"`` (the default) runs the model exactly as without the option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from symmem.config import Config

if TYPE_CHECKING:
    from symmem.validate.measure import Forward

__all__ = ["CHECKPOINTS", "GPT", "GPTConfig", "build", "run"]

#: The activation checkpointing modes of :class:`GPTConfig`.
CHECKPOINTS = ("none", "full", "selective")


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of the model.

    Attributes:
        block_size: The context length (rows of ``wpe``).
        vocab_size: Rows of the token embedding.
        n_layer: Transformer blocks.
        n_head: Attention heads.
        n_embd: Hidden size.
        dropout: Dropout probability of every dropout site.
        bias: Whether Linear and LayerNorm layers have biases.
        checkpoint: Activation checkpointing: ``"none"``, ``"full"`` (each block) or
            ``"selective"`` (the attention core only), non-reentrant.
    """

    block_size: int
    vocab_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = False
    checkpoint: str = "none"

    def __post_init__(self) -> None:
        if self.checkpoint not in CHECKPOINTS:
            raise ValueError(
                f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {self.checkpoint!r}"
            )


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias, as nanoGPT defines it."""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.checkpoint = config.checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.checkpoint == "selective":
            y = checkpoint(
                F.scaled_dot_product_attention,
                q,
                k,
                v,
                attn_mask=None,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=True,
                use_reentrant=False,
            )
        else:
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=None,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=True,
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c_fc(x)
        x = self.gelu(x)
        x = self.c_proj(x)
        return self.dropout(x)


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        device = idx.device
        _, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=device)
        tok_emb = self.transformer.wte(idx)
        pos_emb = self.transformer.wpe(pos)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            if self.config.checkpoint == "full":
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizers(
        self,
        *,
        weight_decay: float,
        learning_rate: float,
        fused: bool | None = None,
        foreach: bool | None = None,
    ) -> torch.optim.AdamW:
        """AdamW over two groups (decayed matrices, undecayed vectors), as nanoGPT builds it."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(
            groups, lr=learning_rate, betas=(0.9, 0.95), fused=fused, foreach=foreach
        )


def build(config: Config, device: torch.device, checkpoint: str = "none") -> GPT:
    """nanoGPT for ``config`` on ``device``, in training mode (dropout 0.1 when dropout is on),
    with activation checkpointing ``none``, ``full`` or ``selective``."""
    assert config.B and config.S and config.D and config.NH and config.V and config.L
    model = GPT(
        GPTConfig(
            block_size=config.S,
            vocab_size=config.V,
            n_layer=config.L,
            n_head=config.NH,
            n_embd=config.D,
            dropout=0.1 if config.dropout else 0.0,
            bias=config.bias,
            checkpoint=checkpoint,
        )
    ).to(device)
    model.train()
    return model


def run(model: GPT, idx: torch.Tensor, targets: torch.Tensor) -> Forward:
    """``logits, loss = model(idx, targets)``, as nanoGPT's training loop calls it."""
    from symmem.validate.measure import Forward

    logits, loss = model(idx, targets)
    return Forward(logits, loss)
