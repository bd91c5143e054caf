"""A training configuration: the architecture, its sizes and its switches.

A :class:`Config` may leave sizes out (``None``); they then stay symbolic, which is what the
solvers and the LaTeX renderers need. Evaluating bytes needs every size the architecture has.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import sympy

from symmem.errors import ConfigError
from symmem.symbols import FIELDS, SIZES, SWITCHES

if TYPE_CHECKING:
    from symmem.model.spec import Model

__all__ = ["SIZE_NAMES", "SWITCH_NAMES", "Config"]

#: Every size field, whichever architecture has it.
SIZE_NAMES = tuple(FIELDS[s] for s in SIZES)
#: Every switch field.
SWITCH_NAMES = tuple(FIELDS[s] for s in SWITCHES)


@dataclass(frozen=True, kw_only=True)
class Config:
    """Sizes and switches of one training run of one architecture.

    Attributes:
        B: Batch size (sequences per step).
        S: Sequence length; nanoGPT trains on ``block_size`` tokens, so ``wpe`` has S rows.
        D: Hidden size (``n_embd``, ``hidden_size``).
        NH: Attention heads; must divide D.
        V: Vocabulary size.
        L: Transformer blocks (layers).
        NKV: Key/value heads (grouped-query attention); must divide NH. Only for architectures
            that have it.
        F: The MLP's hidden width (``intermediate_size``). Only for architectures that have it.
        SMAX: Rows of a learned position table (GPT-2's ``n_positions``), at least S. Only
            for architectures that have one apart from S (nanoGPT's has S rows).
        amp: Mixed precision (autocast to a 16-bit type) on or off.
        dropout: Dropout probability above zero (its value does not change memory).
        bias: Biases in Linear (and, in nanoGPT, LayerNorm) layers.
        tied: Input and output embeddings share one weight (nanoGPT: always).
        model: The architecture (a name of :data:`symmem.model.MODELS`).

    >>> from symmem.symbols import D
    >>> Config(B=2, S=8, D=12, NH=3, V=10, L=1).values()[D]
    12
    >>> Config(D=12, NH=3, NKV=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    symmem.errors.ConfigError: --NKV does not apply to nanogpt: nanoGPT's attention has as ...
    """

    B: int | None = None
    S: int | None = None
    D: int | None = None
    NH: int | None = None
    V: int | None = None
    L: int | None = None
    NKV: int | None = None
    F: int | None = None
    SMAX: int | None = None
    amp: bool = False
    dropout: bool = False
    bias: bool = False
    tied: bool = True
    model: str = "nanogpt"

    def __post_init__(self) -> None:
        for name in SIZE_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
            value = int(value)  # a NumPy integer, say, is kept as a Python int
            object.__setattr__(self, name, value)
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        for name in SWITCH_NAMES:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        self.architecture.check(self)

    @property
    def architecture(self) -> Model:
        """The :class:`~symmem.model.spec.Model` named by ``model``."""
        from symmem.model import get_model

        return get_model(self.model)

    @classmethod
    def notebook(cls) -> Config:
        """The reference notebook's ``calc_all`` config: GPT-style model, AMP and dropout on."""
        return cls(B=24, S=1024, D=384, NH=4, V=8192, L=4, amp=True, dropout=True, bias=False)

    def sizes(self) -> dict[str, int | None]:
        """The architecture's sizes by name, ``None`` where left symbolic."""
        return {name: getattr(self, name) for name in self.architecture.size_names}

    def switches(self) -> dict[sympy.Symbol, int]:
        """The architecture's switch symbols with their 0/1 values."""
        return {s: int(getattr(self, FIELDS[s])) for s in self.architecture.switches}

    def values(self) -> dict[sympy.Symbol, sympy.Integer]:
        """Every known symbol with its value, for ``expr.xreplace``."""
        model = self.architecture
        known = {
            s: sympy.Integer(getattr(self, FIELDS[s]))
            for s in model.sizes
            if getattr(self, FIELDS[s]) is not None
        }
        return known | {s: sympy.Integer(v) for s, v in self.switches().items()}

    def arguments(self) -> tuple[int, ...]:
        """The evaluators' arguments: the architecture's sizes then its switches (0/1), in the
        order of ``Model.arguments``; every size needed."""
        self.require_complete()
        return tuple(int(getattr(self, FIELDS[s])) for s in self.architecture.arguments)

    @property
    def missing(self) -> tuple[str, ...]:
        """Names of the architecture's sizes left symbolic."""
        return tuple(n for n, v in self.sizes().items() if v is None)

    def require_complete(self) -> None:
        """Raise :class:`ConfigError` unless every size is given."""
        if self.missing:
            raise ConfigError("missing sizes: " + ", ".join(self.missing))

    def with_(self, **changes: Any) -> Config:
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError("unknown config fields: " + ", ".join(sorted(unknown)))
        return replace(self, **changes)

    def __repr__(self) -> str:
        """The fields the architecture has (as :meth:`as_dict`), the architecture first."""
        shown = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"Config({shown})"

    def as_dict(self) -> dict[str, Any]:
        """The architecture, then the fields it has."""
        model = self.architecture
        names = (*model.size_names, *model.switch_names)
        return {"model": self.model} | {name: getattr(self, name) for name in names}
