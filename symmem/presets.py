"""Published model sizes by name, and configs read from a ``config.json`` as transformers writes it.

A preset gives an architecture's sizes (hidden size, heads, layers, vocabulary, ...) and its
fixed switches (tied embeddings, biases); the batch size and sequence length stay the caller's.
The GPT-2 sizes serve two architectures: ``nanogpt`` (as nanoGPT's ``from_pretrained`` builds
them: biases on, ``block_size`` 1024) and ``gpt2`` (Hugging Face's ``GPT2LMHeadModel``, 1024
positions).

>>> preset("gpt2").config(B=8, S=1024).as_dict()["D"]
768
>>> preset("llama3.2-1b")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
symmem.errors.ConfigError: unknown preset 'llama3.2-1b' (did you mean llama-3.2-1b?); presets: ...
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from symmem.config import Config
from symmem.errors import ConfigError

__all__ = ["HF_MODEL_TYPES", "PRESETS", "Preset", "from_hf_config", "preset"]


@dataclass(frozen=True)
class Preset:
    """The published sizes of one model.

    Attributes:
        name: The name ``--model`` takes.
        architectures: The architectures it can be built as; the first is the default.
        sizes: Sizes by config field (every size but B and S).
        switches: Switches the published model fixes (``tied``, ``bias``), by config field.
        source: Where the sizes come from.
    """

    name: str
    architectures: tuple[str, ...]
    sizes: Mapping[str, int]
    switches: Mapping[str, bool] = field(default_factory=dict)
    source: str = ""

    def config(self, architecture: str | None = None, **given: Any) -> Config:
        """The config of this model as ``architecture`` (its default if ``None``), with the
        fields in ``given`` (B, S, switches, or sizes that override the preset's)."""
        arch = architecture or self.architectures[0]
        if arch not in self.architectures:
            raise ConfigError(
                f"{self.name} is a {' or '.join(self.architectures)} model, not {arch}"
            )
        fields = dict(_FIELDS[arch](self)) | {k: v for k, v in given.items() if v is not None}
        return Config(model=arch, **fields)


def _gpt(name: str, d: int, nh: int, layers: int) -> Preset:
    return Preset(
        name,
        ("nanogpt", "gpt2"),
        {"D": d, "NH": nh, "L": layers, "V": 50257, "SMAX": 1024},
        {"tied": True, "bias": True},
        "OpenAI GPT-2 (n_embd, n_head, n_layer; 50,257 tokens, 1,024 positions)",
    )


def _hf(
    name: str, arch: str, d: int, nh: int, nkv: int, f: int, v: int, layers: int, tied: bool
) -> Preset:
    sizes = {"D": d, "NH": nh, "NKV": nkv, "F": f, "V": v, "L": layers}
    return Preset(name, (arch,), sizes, {"tied": tied}, f"the published config.json of {name}")


#: Every preset, by name.
PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        p.name: p
        for p in (
            _gpt("gpt2", 768, 12, 12),
            _gpt("gpt2-medium", 1024, 16, 24),
            _gpt("gpt2-large", 1280, 20, 36),
            _gpt("gpt2-xl", 1600, 25, 48),
            _hf("llama-3.2-1b", "llama", 2048, 32, 8, 8192, 128256, 16, True),
            _hf("llama-3.2-3b", "llama", 3072, 24, 8, 8192, 128256, 28, True),
            _hf("llama-3.1-8b", "llama", 4096, 32, 8, 14336, 128256, 32, False),
            _hf("qwen2.5-0.5b", "qwen2", 896, 14, 2, 4864, 151936, 24, True),
            _hf("qwen2.5-7b", "qwen2", 3584, 28, 4, 18944, 152064, 28, False),
            _hf("mistral-7b-v0.1", "mistral", 4096, 32, 8, 14336, 32000, 32, False),
        )
    }
)


def _nanogpt_fields(p: Preset) -> dict[str, Any]:
    """nanoGPT's ``from_pretrained``: biases on, the position table is S rows (block_size)."""
    return {k: v for k, v in p.sizes.items() if k != "SMAX"} | {"bias": True}


def _gpt2_fields(p: Preset) -> dict[str, Any]:
    return dict(p.sizes) | {"tied": p.switches.get("tied", True)}


def _llama_fields(p: Preset) -> dict[str, Any]:
    return dict(p.sizes) | {"tied": p.switches.get("tied", False)}


_FIELDS = {
    "nanogpt": _nanogpt_fields,
    "gpt2": _gpt2_fields,
    "llama": _llama_fields,
    "qwen2": _llama_fields,
    "mistral": _llama_fields,
}


def preset(name: str) -> Preset:
    """The preset called ``name``, or a ConfigError listing them and suggesting the closest."""
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(name, list(PRESETS), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"unknown preset {name!r}{hint}; presets: {', '.join(PRESETS)}")


# -- config.json ------------------------------------------------------------------------------

#: ``model_type`` of a transformers ``config.json`` -> the architecture symmem models.
HF_MODEL_TYPES: Mapping[str, str] = MappingProxyType(
    {"gpt2": "gpt2", "llama": "llama", "qwen2": "qwen2", "mistral": "mistral"}
)


def from_hf_config(path: str | Path, **given: Any) -> Config:
    """The config a transformers ``config.json`` describes (its ``model_type`` and sizes),
    with the fields in ``given`` (B, S, switches, overriding sizes). Read offline.

    Settings that change memory in ways symmem does not model (a ``head_dim`` other than
    hidden size / heads, attention dropout in a Llama-family model, ``use_cache`` off, ...) are
    refused with the setting's name rather than ignored.
    """
    data = _read_json(Path(path))
    kind = data.get("model_type")
    if kind not in HF_MODEL_TYPES:
        known = ", ".join(HF_MODEL_TYPES)
        raise ConfigError(
            f"{path}: model_type {kind!r} is not modelled (modelled: {known})"
            if kind is not None
            else f"{path}: no model_type (modelled: {known})"
        )
    arch = HF_MODEL_TYPES[str(kind)]
    reader = _gpt2_json if arch == "gpt2" else _llama_json
    fields = reader(Path(path), data) | {k: v for k, v in given.items() if v is not None}
    return Config(model=arch, **fields)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read ({error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return data


def _number(path: Path, data: Mapping[str, Any], key: str, default: Any = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}: {key} must be a whole number, got {value!r}")
    return value


def _refuse(path: Path, data: Mapping[str, Any], key: str, allowed: Any, why: str) -> None:
    value = data.get(key, allowed)
    if value != allowed and not (value is None and allowed is None):
        raise ConfigError(f"{path}: {key}={value!r} is not modelled ({why})")


def _gpt2_json(path: Path, data: Mapping[str, Any]) -> dict[str, Any]:
    d = _number(path, data, "n_embd")
    inner = data.get("n_inner")
    if inner is not None and inner != 4 * d:
        raise ConfigError(f"{path}: n_inner={inner!r} is not modelled (gpt2's MLP is 4·n_embd)")
    _refuse(path, data, "use_cache", True, "the key/value cache is modelled as built")
    drops = [data.get(k, 0.1) for k in ("attn_pdrop", "resid_pdrop", "embd_pdrop")]
    return {
        "D": d,
        "NH": _number(path, data, "n_head"),
        "L": _number(path, data, "n_layer"),
        "V": _number(path, data, "vocab_size"),
        "SMAX": _number(path, data, "n_positions", 1024),
        "tied": bool(data.get("tie_word_embeddings", True)),
        "dropout": any(p for p in drops),
    }


def _llama_json(path: Path, data: Mapping[str, Any]) -> dict[str, Any]:
    kind = data["model_type"]
    d = _number(path, data, "hidden_size")
    nh = _number(path, data, "num_attention_heads")
    head_dim = data.get("head_dim")
    if head_dim is not None and head_dim * nh != d:
        raise ConfigError(
            f"{path}: head_dim={head_dim!r} is not modelled (hidden_size / num_attention_heads "
            f"= {d / nh:g})"
        )
    _refuse(path, data, "attention_dropout", 0.0, "attention dropout in a Llama-family model")
    _refuse(path, data, "use_cache", True, "the key/value cache is modelled as built")
    fields: dict[str, Any] = {
        "D": d,
        "NH": nh,
        "NKV": _number(path, data, "num_key_value_heads", nh),
        "F": _number(path, data, "intermediate_size"),
        "V": _number(path, data, "vocab_size"),
        "L": _number(path, data, "num_hidden_layers"),
        "tied": bool(data.get("tie_word_embeddings", False)),
    }
    if kind == "llama":
        attention, mlp = bool(data.get("attention_bias")), bool(data.get("mlp_bias"))
        if attention != mlp:
            raise ConfigError(
                f"{path}: attention_bias={attention} with mlp_bias={mlp} is not modelled "
                "(both or neither)"
            )
        fields["bias"] = attention
    return fields
