"""The training loops symmem simulates around a model, one :class:`Loop` value each.

A loop decides what is alive besides the model's own tensors while a step runs: whether the
previous step's ``logits`` and ``loss`` are still bound when the forward starts, whether the next
batch is fetched before backward, whether gradients are clipped, when ``zero_grad`` runs and how
the AdamW parameter groups are formed. :func:`symmem.step.simulate` reads these fields;
:mod:`symmem.validate.timeline` runs the same loops in PyTorch.

>>> get_loop("plain").phases
('zero_grad', 'forward', 'backward', 'step')
>>> get_loop("nanogtp")
Traceback (most recent call last):
...
symmem.errors.ConfigError: unknown loop 'nanogtp' (did you mean nanogpt? known: nanogpt, plain)
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from symmem.errors import ConfigError

__all__ = ["LOOPS", "Loop", "get_loop"]


@dataclass(frozen=True, eq=False)
class Loop:
    """One training loop (compared by identity: each is one registered value).

    Attributes:
        name: The name ``--loop`` takes.
        title: What it is, in a few words.
        phases: Its phases, in the order they run.
        holds_previous: The loop's variables still hold the previous step's ``logits`` and
            ``loss`` when the forward starts (they die when reassigned).
        divides_loss: ``loss = loss / gradient_accumulation_steps`` after the forward.
        next_batch: The next batch is fetched between forward and backward.
        clip: ``clip_grad_norm_`` runs between backward and the optimizer's step.
        groups: AdamW's parameter groups: ``decay`` (nanoGPT's: tensors of two or more
            dimensions, then the rest) or ``one`` (``AdamW(model.parameters())``).
        default_optimizer: The AdamW implementation the loop runs on each platform by default
            (a platform not named runs the platform's own default).
        code: The Python the loop stands for (for the documentation).
    """

    name: str
    title: str
    phases: tuple[str, ...]
    holds_previous: bool
    divides_loss: bool
    next_batch: bool
    clip: bool
    groups: str
    default_optimizer: Mapping[str, str] = field(default_factory=dict)
    code: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.groups not in ("decay", "one"):
            raise ValueError(f"loop {self.name}: groups must be decay or one")
        object.__setattr__(
            self, "default_optimizer", MappingProxyType(dict(self.default_optimizer))
        )

    def optimizer(self, platform: str, platform_default: str) -> str:
        """The AdamW implementation ``default`` means for this loop on ``platform``."""
        return self.default_optimizer.get(platform, platform_default)


NANOGPT = Loop(
    name="nanogpt",
    title="nanoGPT's train.py",
    phases=("forward", "next_batch", "backward", "clip", "step", "zero_grad"),
    holds_previous=True,
    divides_loss=True,
    next_batch=True,
    clip=True,
    groups="decay",
    code="""\
while True:
    with ctx:
        logits, loss = model(X, Y)
        loss = loss / gradient_accumulation_steps
    X, Y = get_batch('train')
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)""",
)

PLAIN = Loop(
    name="plain",
    title="a step written as a function",
    phases=("zero_grad", "forward", "backward", "step"),
    holds_previous=False,
    divides_loss=False,
    next_batch=False,
    clip=False,
    groups="one",
    # PyTorch's own default: foreach for CUDA tensors, the for-loop for CPU ones
    # (torch/optim/optimizer.py, _default_to_fused_or_foreach).
    default_optimizer={"cuda": "foreach", "cpu": "forloop"},
    code="""\
optimizer = torch.optim.AdamW(model.parameters())
X, Y = get_batch('train')

def train_step():
    optimizer.zero_grad(set_to_none=True)
    with ctx:
        logits, loss = model(X, Y)
    loss.backward()
    optimizer.step()

while True:
    train_step()""",
)

#: Every loop, by the name ``--loop`` takes.
LOOPS: Mapping[str, Loop] = MappingProxyType({loop.name: loop for loop in (NANOGPT, PLAIN)})


def get_loop(name: str | Loop) -> Loop:
    """The loop called ``name`` (a :class:`Loop` is returned as it is), or a ConfigError naming
    the known ones."""
    if isinstance(name, Loop):
        return name
    try:
        return LOOPS[name]
    except (KeyError, TypeError):
        pass
    close = difflib.get_close_matches(str(name), list(LOOPS), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(f"unknown loop {name!r} ({hint}known: {', '.join(LOOPS)})")
