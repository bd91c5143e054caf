"""The architectures symmem models, each a :class:`~symmem.model.spec.Model` value, by name.

>>> get_model("nanogpt").block
'transformer.h.*'
>>> get_model("nanogtp")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
symmem.errors.ConfigError: unknown architecture 'nanogtp' (did you mean nanogpt? known: ...)
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from symmem.errors import unknown
from symmem.model.gpt2 import GPT2
from symmem.model.llama import LLAMA, MISTRAL, QWEN2
from symmem.model.nanogpt import NANOGPT
from symmem.model.spec import Model, ParallelRules

__all__ = ["MODELS", "Model", "ParallelRules", "get_model"]

#: Every architecture, by the name ``--arch`` takes.
MODELS: Mapping[str, Model] = MappingProxyType(
    {m.name: m for m in (NANOGPT, GPT2, LLAMA, QWEN2, MISTRAL)}
)


def get_model(name: str | Model) -> Model:
    """The architecture called ``name`` (a :class:`Model` is returned as it is), or a
    ConfigError naming the known ones and the closest."""
    if isinstance(name, Model):
        return name
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        pass
    raise unknown("architecture", name, list(MODELS))
