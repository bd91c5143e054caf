"""A training configuration: the sizes and the switches.

A :class:`Config` may leave sizes out (``None``); they then stay symbolic, which is what the
solvers and the LaTeX renderers need. Evaluating bytes needs every size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import sympy

from symmem.errors import ConfigError
from symmem.symbols import AMP, BIAS, DROPOUT, SYMBOLS

__all__ = ["SIZE_NAMES", "SWITCH_NAMES", "Config"]

SIZE_NAMES = ("B", "S", "D", "NH", "V", "L")
SWITCH_NAMES = ("amp", "dropout", "bias")


@dataclass(frozen=True, kw_only=True)
class Config:
    """Sizes and switches of one nanoGPT training run.

    Attributes:
        B: Batch size (sequences per step).
        S: Sequence length; nanoGPT trains on ``block_size`` tokens, so ``wpe`` has S rows.
        D: Hidden size (``n_embd``).
        NH: Attention heads (``n_head``); must divide D.
        V: Vocabulary size.
        L: Transformer blocks (``n_layer``).
        amp: Mixed precision (autocast to a 16-bit type) on or off.
        dropout: Dropout probability above zero (its value does not change memory).
        bias: Biases in Linear and LayerNorm layers.

    >>> Config(B=2, S=8, D=12, NH=3, V=10, L=1).values()[SYMBOLS["D"]]
    12
    """

    B: int | None = None
    S: int | None = None
    D: int | None = None
    NH: int | None = None
    V: int | None = None
    L: int | None = None
    amp: bool = False
    dropout: bool = False
    bias: bool = False

    def __post_init__(self) -> None:
        for name in SIZE_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        for name in SWITCH_NAMES:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.D is not None and self.NH is not None and self.D % self.NH:
            raise ConfigError(f"D={self.D} is not divisible by NH={self.NH}")

    @classmethod
    def notebook(cls) -> Config:
        """The reference notebook's ``calc_all`` config: GPT-style model, AMP and dropout on."""
        return cls(B=24, S=1024, D=384, NH=4, V=8192, L=4, amp=True, dropout=True, bias=False)

    def sizes(self) -> dict[str, int | None]:
        """Sizes by name, ``None`` where left symbolic."""
        return {name: getattr(self, name) for name in SIZE_NAMES}

    def switches(self) -> dict[sympy.Symbol, int]:
        """The switch symbols with their 0/1 values."""
        return {AMP: int(self.amp), DROPOUT: int(self.dropout), BIAS: int(self.bias)}

    def values(self) -> dict[sympy.Symbol, sympy.Integer]:
        """Every known symbol with its value, for ``expr.xreplace``."""
        known = {SYMBOLS[n]: sympy.Integer(v) for n, v in self.sizes().items() if v is not None}
        return known | {s: sympy.Integer(v) for s, v in self.switches().items()}

    def arguments(self) -> tuple[int, ...]:
        """Sizes then switches (0/1), in the order of ``SIZES + SWITCHES``; every size needed."""
        self.require_complete()
        sizes = tuple(v for v in self.sizes().values() if v is not None)
        return (*sizes, int(self.amp), int(self.dropout), int(self.bias))

    @property
    def missing(self) -> tuple[str, ...]:
        """Names of the sizes left symbolic."""
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

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
