"""What an architecture is, for everything after the op rules: one frozen :class:`Model` value.

The report, the training step, the evaluators, the solvers, the several-GPU rules and the
measurement never import an architecture: they get a :class:`Model` (from the report, or by name
from :func:`symmem.model.get_model`) and ask it for its symbols, its ``forward``, the name of its
repeated block, its tensor-parallel rules and the PyTorch model that ``validate`` builds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING

import sympy

from symmem.dtypes import FLOAT32, DType
from symmem.errors import ConfigError
from symmem.symbols import AMP, FIELDS, SWITCH_DEFAULTS, B, D, L, S, V

if TYPE_CHECKING:
    from symmem.config import Config
    from symmem.ops.graph import Tensor, Trace

__all__ = ["SEQ", "TP", "WHOLE", "Limit", "Model", "ParallelRules"]

#: How a tensor splits under tensor parallelism: among the t ranks (``tp``), along the sequence
#: with sequence parallelism only (``seq``), or never (``whole``).
TP, SEQ, WHOLE = "tp", "seq", "whole"

#: The proportions of the GPTs people train, as :attr:`Model.regimes`. Broad: a vocabulary at
#: least as wide as the model, a batch of at least as many tokens as the model is wide, a width
#: of at least 32 and sequences of at least 16 tokens (GPT-2 small: V = 50257, D = 768; at
#: B = 1 a sequence of 768 tokens is enough). Narrow: also a vocabulary at least eight times as
#: wide as the model and four blocks or more (GPT-2 and Qwen2.5 at every size, Llama 3 up to
#: 70B; not Llama 2 7B, V = 32000 for D = 4096, nor GPT-3 175B, which the broad one holds).
TRAINING = (
    (V >= D, B * S >= D, D >= 32, S >= 16),
    (V >= D, B * S >= D, D >= 32, S >= 16, V >= 8 * D, L >= 4),
)


@dataclass(frozen=True)
class ParallelRules:
    """How an architecture's terms split over tensor-parallel ranks and pipeline stages
    (:mod:`symmem.parallel`).

    Attributes:
        activations: ``(module pattern, term name pattern, split)`` rows, ``fnmatch`` patterns;
            the first row that matches a saved or labelled term says how it splits.
        parameters: ``(parameter name pattern, split)`` rows, first match wins.
        last_stage: Modules that live on the last pipeline stage, not the first.
        first_stage_inputs: Labelled terms of the last stage's modules that stay on the first
            (the token ids).
    """

    activations: tuple[tuple[str, str, str], ...]
    parameters: tuple[tuple[str, str], ...]
    last_stage: tuple[str, ...]
    first_stage_inputs: tuple[str, ...] = ("idx",)


@dataclass(frozen=True)
class Limit:
    """A condition on an architecture's sizes beyond divisibility and bounds.

    Attributes:
        fields: The sizes it reads, by config field.
        holds: Whether sizes given by field name are allowed.
        reason: Why not, as the error says it (``{field}`` placeholders get the values).
    """

    fields: tuple[str, ...]
    holds: Callable[[Mapping[str, int]], bool] = field(repr=False)
    reason: str


Forward = Callable[["Trace", "Tensor", "Tensor"], "tuple[Tensor, Tensor]"]
Batch = Callable[["Trace"], "tuple[Tensor, Tensor]"]


@dataclass(frozen=True, kw_only=True, eq=False)
class Model:
    """One architecture (compared by identity: each is one registered value).

    Attributes:
        name: The name ``--arch`` takes (``nanogpt``).
        title: What it is, in a few words, for headers.
        sizes: Its size symbols, in the order of the evaluators' arguments (B and S first).
        switches: Its switch symbols (AMP always first), in the same order.
        meanings: What each of its symbols stands for in this architecture's own words.
        forward: ``forward(trace, idx, targets) -> (logits, loss)``, written with the op rules.
        batch: ``batch(trace) -> (idx, targets)``: the inputs of one step.
        block: Module path of the repeated block, ``*`` for the layer index; one block is
            traced and its terms count ``L`` times.
        root: The name of the model's own forward (what runs outside every submodule: the loss).
        rest: The module name under which the parameters outside the blocks are reported.
        divides: ``(a, b)`` pairs of sizes where ``a`` must divide ``b`` (heads divide D).
        bounds: ``(a, b)`` pairs of sizes where ``a`` may not exceed ``b`` (S and a position
            table's rows).
        reasons: Why a switch or size it does not have cannot be set, by field name.
        limits: Other conditions its sizes must meet (an even head size, a sequence shorter
            than a sliding window).
        parallel: Its tensor-parallel and pipeline rules, or ``None`` where none are written.
        param_dtype: The element type its parameters are kept in.
        reference: The module of :mod:`symmem.validate` that builds the same model in PyTorch.
        loop: The training loop its users run by default (:mod:`symmem.step`).
        regimes: Sets of relations between its sizes that the configs people train keep
            (``V >= D``), each narrower than the one before. Where one holds, the generated
            evaluators skip the pieces of the step's maxima that :mod:`symmem.dominance`
            proves are never the largest there (the narrowest that holds decides); where none
            holds they evaluate every piece. Speed only: a value never depends on them.
    """

    name: str
    title: str
    sizes: tuple[sympy.Symbol, ...]
    switches: tuple[sympy.Symbol, ...]
    meanings: Mapping[sympy.Symbol, str]
    forward: Forward = field(repr=False)
    batch: Batch = field(repr=False)
    block: str
    root: str
    rest: str
    divides: tuple[tuple[sympy.Symbol, sympy.Symbol], ...] = ()
    bounds: tuple[tuple[sympy.Symbol, sympy.Symbol], ...] = ()
    reasons: Mapping[str, str] = field(default_factory=dict)
    limits: tuple[Limit, ...] = ()
    parallel: ParallelRules | None = field(default=None, repr=False)
    param_dtype: DType = FLOAT32
    reference: str = ""
    loop: str = "plain"
    regimes: tuple[tuple[sympy.Rel, ...], ...] = ()

    def __post_init__(self) -> None:
        if self.switches[:1] != (AMP,):
            raise ValueError(f"model {self.name}: AMP must be its first switch")
        object.__setattr__(self, "meanings", MappingProxyType(dict(self.meanings)))
        object.__setattr__(self, "reasons", MappingProxyType(dict(self.reasons)))

    # -- symbols --------------------------------------------------------------------------------
    @property
    def size_names(self) -> tuple[str, ...]:
        """The config fields of its sizes (``B``, ``S``, ...)."""
        return tuple(FIELDS[s] for s in self.sizes)

    @property
    def switch_names(self) -> tuple[str, ...]:
        """The config fields of its switches (``amp``, ``dropout``, ...)."""
        return tuple(FIELDS[s] for s in self.switches)

    @property
    def arguments(self) -> tuple[sympy.Symbol, ...]:
        """The evaluators' arguments: sizes, then switches."""
        return (*self.sizes, *self.switches)

    def in_block(self, module: str) -> bool:
        """Whether ``module`` is the traced block or inside it."""
        return module == self.block or module.startswith(self.block + ".")

    # -- configs --------------------------------------------------------------------------------
    def check(self, config: Config) -> None:
        """Raise ConfigError for what ``config`` sets that this architecture does not have, or
        for sizes that do not divide where they must."""
        for symbol, name in FIELDS.items():
            if symbol in self.sizes or symbol in self.switches:
                continue
            value = getattr(config, name)
            switch = symbol in SWITCH_DEFAULTS
            unset = value == SWITCH_DEFAULTS[symbol] if switch else value is None
            if not unset:
                flag = f"--no-{name}" if switch and not value else f"--{name}"
                why = self.reasons.get(name, f"{self.name} has no {name}")
                raise ConfigError(f"{flag} does not apply to {self.name}: {why}")
        for small, large in self.divides:
            a, b = getattr(config, FIELDS[small]), getattr(config, FIELDS[large])
            if a is not None and b is not None and b % a:
                raise ConfigError(f"{large}={b} is not divisible by {small}={a}")
        for small, large in self.bounds:
            a, b = getattr(config, FIELDS[small]), getattr(config, FIELDS[large])
            if a is not None and b is not None and a > b:
                raise ConfigError(f"{small}={a} is larger than {large}={b}")
        for limit in self.limits:
            values = {name: getattr(config, name) for name in limit.fields}
            if None not in values.values() and not limit.holds(values):
                raise ConfigError(limit.reason.format(**values))

    def valid(self, sizes: Sequence[int]) -> bool:
        """Whether sizes given as integers, in :attr:`sizes` order, are all positive and divide
        where they must: the evaluators' fast check (a Config says what is wrong)."""
        if len(sizes) != len(self.sizes) or min(sizes) <= 0:
            return False
        divides = all(sizes[j] % sizes[i] == 0 for i, j in self._positions[0])
        if not divides or not all(sizes[i] <= sizes[j] for i, j in self._positions[1]):
            return False
        named = dict(zip(self.size_names, sizes, strict=True))
        return all(limit.holds(named) for limit in self.limits)

    @cached_property
    def _positions(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        index = self.sizes.index
        return tuple(
            tuple((index(a), index(b)) for a, b in pairs) for pairs in (self.divides, self.bounds)
        )
