"""Activation checkpointing in the measured nanoGPT (``checkpoint="full"`` / ``"selective"``).

What a checkpointed region keeps between forward and backward, measured on CPU with torch 2.13:
``full`` keeps each block's input (the previous block's output, fp32) and the CPU RNG state
``torch.get_rng_state()`` stashes (uint8[5056]); ``selective`` keeps everything ``none`` keeps
except what the attention core alone saves, plus the core's inputs (the fused ``c_attn`` output)
and the RNG state. Derivation and figures: ``docs/checkpointing.md``.
"""

from __future__ import annotations

import pytest

from symmem import Config
from tests.conftest import needs_torch

pytestmark = needs_torch

RNG = 5056  # bytes of torch.get_rng_state() on CPU (mt19937 state)

CASES = [
    (Config(B=2, S=16, D=32, NH=4, V=64, L=2), "default"),
    (Config(B=1, S=24, D=48, NH=3, V=50, L=3, amp=True, dropout=True, bias=True), "default"),
    (Config(B=3, S=8, D=24, NH=2, V=97, L=1, dropout=True, bias=True), "math"),
]


def _kept(config: Config) -> dict[str, int]:
    B, S, D = config.B or 0, config.S or 0, config.D or 0
    A, DROP = int(config.amp), int(config.dropout)
    return {
        "full": 4 * B * S * D + RNG,
        "selective": B * S * D * (64 - 28 * A + DROP * (8 - 4 * A))
        + 16 * B * S
        + 24 * A * D * D
        + RNG,
    }


@pytest.mark.parametrize(("config", "attention"), CASES, ids=str)
def test_checkpointed_blocks_keep_their_inputs_and_rng_state(config, attention):
    from symmem.validate.measure import measure

    none = measure(config, attention=attention)
    L = config.L or 0
    for mode, block in _kept(config).items():
        m = measure(config, attention=attention, checkpoint=mode)
        assert m.extra["checkpoint"] == mode and m.extra["kernel"] == none.extra["kernel"]
        assert m.totals["block"] == block
        assert m.totals["activations"] == none.totals["activations"] - L * (
            none.totals["block"] - block
        )
        frame = {t.name: t for t in m.terms if t.name.startswith("CheckpointFrame-")}
        assert frame["CheckpointFrame-fwd_cpu_state"].per_block == (RNG,) * L
        # No hook packs the RNG state; everything else is packed exactly once.
        saved = m.totals["activations"] + m.totals["loss"] + m.totals["inputs"]
        assert m.extra["checkpoint_rng_bytes"] == L * RNG
        assert m.hook_bytes == saved - L * RNG
        # The live-memory timeline holds the kept bytes between forward and backward, and the
        # loss divisor DivBackward0 holds (a Python int wrapped as a 0-dim int64, 8 B).
        forward = m.timeline.phase("forward")
        assert forward.start == none.timeline.phase("forward").start
        assert forward.end - forward.start == m.totals["activations"] + m.totals["loss"] + 8
        assert m.timeline.phase("backward").end == none.timeline.phase("backward").end


def test_checkpointing_changes_no_result():
    import torch

    from symmem.validate.measure import build_model

    config = Config(B=2, S=8, D=16, NH=2, V=20, L=2, dropout=True)
    results = []
    for mode in ("none", "full", "selective"):
        torch.manual_seed(0)
        model = build_model(config, torch.device("cpu"), mode)
        idx = torch.randint(0, 20, (2, 8))
        _, loss = model(idx, idx)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    for loss, grads in results[1:]:
        assert torch.equal(loss, results[0][0])
        assert all(torch.allclose(g, h) for g, h in zip(grads, results[0][1], strict=True))


def test_unknown_checkpoint_mode_is_refused():
    from symmem.validate.nanogpt import GPTConfig

    with pytest.raises(ValueError, match="checkpoint must be one of"):
        GPTConfig(block_size=4, vocab_size=4, n_layer=1, n_head=1, n_embd=4, checkpoint="all")
