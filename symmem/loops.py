"""The training loops symmem simulates around a model, one :class:`Loop` value each.

A loop decides what is alive besides the model's own tensors while a step runs: whether the
previous step's ``logits`` and ``loss`` are still bound when the forward starts, whether the next
batch is fetched before backward, whether gradients are clipped, when ``zero_grad`` runs and how
the AdamW parameter groups are formed. :func:`symmem.step.simulate` reads these fields;
:mod:`symmem.validate.timeline` runs the same loops in PyTorch.

>>> get_loop("plain").phases
('zero_grad', 'forward', 'backward', 'step')
>>> get_loop("nanogpt").phases_for(3)  # doctest: +NORMALIZE_WHITESPACE
('forward', 'next_batch', 'backward', 'forward k', 'next_batch k', 'backward k',
 'clip', 'step', 'zero_grad')
>>> get_loop("nanogtp")
Traceback (most recent call last):
...
symmem.errors.ConfigError: unknown loop 'nanogtp' (did you mean nanogpt? known: nanogpt, plain)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from symmem.errors import ConfigError, unknown

__all__ = ["AMP_DTYPES", "LOOPS", "Loop", "get_loop"]

#: Autocast dtypes under AMP: both take 2 bytes; nanoGPT runs a GradScaler with ``fp16``.
AMP_DTYPES = ("bf16", "fp16")


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
        accumulates: Runs ``gradient_accumulation_steps`` micro-steps (forward, backward) per
            optimizer step.
        scaler: Runs a ``torch.amp.GradScaler`` under fp16 autocast (``scale`` before backward,
            ``unscale_`` before clipping, ``step`` and ``update``).
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
    accumulates: bool = False
    scaler: bool = False
    code: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.groups not in ("decay", "one"):
            raise ValueError(f"loop {self.name}: groups must be decay or one")
        object.__setattr__(
            self, "default_optimizer", MappingProxyType(dict(self.default_optimizer))
        )

    @property
    def micro_phases(self) -> tuple[str, ...]:
        """The phases of one micro-step (forward to backward)."""
        return tuple(p for p in self.phases if p in ("forward", "next_batch", "backward"))

    def check(self, grad_accum: int) -> None:
        """Raise ConfigError unless ``grad_accum`` micro-steps make sense for this loop."""
        if isinstance(grad_accum, bool) or not isinstance(grad_accum, int) or grad_accum < 1:
            raise ConfigError(f"--grad-accum must be a whole number >= 1, not {grad_accum!r}")
        if grad_accum > 1 and not self.accumulates:
            raise ConfigError(
                f"--grad-accum {grad_accum} does not apply to the {self.name} loop: it runs one "
                "forward and backward per step (use --loop nanogpt)"
            )

    def phases_for(self, grad_accum: int, scaler: bool = False) -> tuple[str, ...]:
        """The phases of a step of ``grad_accum`` micro-steps: the first micro-step's, then
        (for 2 or more) those of a later one, suffixed `` k`` (micro-steps 2 to K are alike);
        with ``scaler`` (a GradScaler runs), ``unscale`` after the micro-steps and ``update``
        after ``step``."""
        self.check(grad_accum)
        micro = self.micro_phases
        last = self.phases.index(micro[-1]) + 1
        later = tuple(f"{p} k" for p in micro) if grad_accum > 1 else ()
        rest = self.phases[last:]
        if scaler and self.scaler:
            at = rest.index("step") + 1
            rest = ("unscale", *rest[:at], "update", *rest[at:])
        return (*self.phases[:last], *later, *rest)

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
    accumulates=True,
    scaler=True,
    code="""\
while True:
    for micro_step in range(gradient_accumulation_steps):
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
    raise unknown("loop", name, list(LOOPS))
