"""Measure live memory through one training step of nanoGPT, phase by phase.

:func:`measure_timeline` runs nanoGPT's training loop (``train.py``: forward with the loss,
fetch the next batch, backward, optional gradient clipping, AdamW step, ``zero_grad(set_to_none=
True)``) in its steady state: a first step has already created the optimizer state, and the
previous step's ``logits`` and ``loss`` are still held by the loop's variables when the forward
starts, as they are in nanoGPT.

Live memory is the sum of the live tensor storages of the step: every storage allocated by an
operator during the step (seen by a ``TorchDispatchMode``, released when a weak reference to the
storage fires) plus the ones alive when the step starts (parameters, optimizer state, the batch,
the previous logits and loss). Each storage counts its exact byte size once, however many tensors
view it. The result gives, for each phase, the live bytes at its start and end, its peak and the
operator at which the peak was reached; on CUDA also ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from symmem.config import Config
from symmem.validate.measure import build_adamw, build_model, kernel_context

__all__ = ["PHASES", "Phase", "Timeline", "measure_timeline"]

#: The phases of one step, in order.
PHASES = ("forward", "next_batch", "backward", "clip", "step", "zero_grad")


@dataclass(frozen=True)
class Phase:
    """Live memory through one phase.

    Attributes:
        name: One of :data:`PHASES`.
        start: Live bytes when the phase starts.
        end: Live bytes when it ends.
        peak: The most live bytes at any point in it.
        at: The operator after whose outputs the peak was reached (``start`` if never above).
    """

    name: str
    start: int
    end: int
    peak: int
    at: str


@dataclass(frozen=True)
class Timeline:
    """Live memory through a training step.

    Attributes:
        config: The config.
        device: ``cpu`` or ``cuda``.
        phases: Each phase, in order.
        max_memory_allocated: ``torch.cuda.max_memory_allocated()`` over the step (CUDA only).
    """

    config: Config
    device: str
    phases: tuple[Phase, ...]
    max_memory_allocated: int | None = None

    @property
    def peak(self) -> int:
        return max(p.peak for p in self.phases)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda p: p.peak).name

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)


class _LiveStorages(TorchDispatchMode):
    """Counts the bytes of live storages, recording each phase's peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.phase = ""
        self.peak = 0
        self.peak_at = "start"

    def track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        nbytes = storage.nbytes()
        key = id(storage)
        if nbytes == 0 or key in self.live:
            return
        self.live[key] = nbytes
        self.current += nbytes
        weakref.finalize(storage, self._release, key)

    def _release(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.track(value)
        if self.current > self.peak:
            self.peak, self.peak_at = self.current, str(func.overloadpacket.__name__)
        return out

    @contextlib.contextmanager
    def measuring(self, name: str, phases: list[Phase]) -> Iterator[None]:
        start = self.current
        self.phase, self.peak, self.peak_at = name, start, "start"
        yield
        phases.append(Phase(name, start, self.current, max(self.peak, self.current), self.peak_at))


def measure_timeline(
    config: Config,
    *,
    device: str = "cpu",
    attention: str = "default",
    optimizer: str = "default",
    grad_clip: float = 1.0,
    seed: int = 0,
) -> Timeline:
    """Run nanoGPT's training loop for ``config`` and measure live memory phase by phase.

    ``grad_clip`` is nanoGPT's default (1.0); 0 skips clipping, as nanoGPT does.
    """
    config.require_complete()
    torch.manual_seed(seed)
    dev = torch.device(device)
    model = build_model(config, dev)
    adamw = build_adamw(model, optimizer, dev)
    autocast = (
        torch.autocast(dev.type, dtype=torch.bfloat16) if config.amp else contextlib.nullcontext()
    )

    B, S, V = config.B or 0, config.S or 0, config.V or 0  # complete: checked above

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.randint(0, V, (B, S), device=dev),
            torch.randint(0, V, (B, S), device=dev),
        )

    # The loop's variables, as train.py holds them: the batch, and the last logits and loss.
    held: dict[str, torch.Tensor] = {}

    def one_step(mode: _LiveStorages | None, phases: list[Phase]) -> None:
        def measuring(name: str) -> contextlib.AbstractContextManager[None]:
            return mode.measuring(name, phases) if mode else contextlib.nullcontext()

        with measuring("forward"), autocast:
            held["logits"], held["loss"] = model(held["X"], held["Y"])
        with measuring("next_batch"):
            held["X"], held["Y"] = get_batch()
        with measuring("backward"):
            held["loss"].backward()
        with measuring("clip"):
            if grad_clip != 0.0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        with measuring("step"):
            adamw.step()
        with measuring("zero_grad"):
            adamw.zero_grad(set_to_none=True)

    held["X"], held["Y"] = get_batch()
    with kernel_context(attention):
        one_step(None, [])  # the first step creates AdamW's state
        mode = _LiveStorages()
        state = [v for s in adamw.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
        for tensor in (*model.parameters(), *state, *held.values()):
            mode.track(tensor)
        del tensor, state  # a loop variable would keep the last loss alive
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        phases: list[Phase] = []
        with mode:
            one_step(mode, phases)
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else None
    return Timeline(config, device, tuple(phases), peak)
