"""Hugging Face transformers models, built here to be measured (the ``hf`` extra).

Each architecture is its class in transformers (``GPT2LMHeadModel``, ``LlamaForCausalLM``,
``Qwen2ForCausalLM``, ``MistralForCausalLM``), built offline from its config class with random
weights, ``attn_implementation="sdpa"`` (the default) and every other setting at the config
class's default, in training mode. A forward is ``model(input_ids=idx, labels=targets)``, as the
library's own training examples call it, and the step keeps the returned output until it ends.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any, cast

import torch

from symmem.config import Config
from symmem.errors import MeasurementError

if TYPE_CHECKING:
    from symmem.validate.measure import Forward

__all__ = ["build", "hf_config", "run"]


def _transformers() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import transformers
    except ImportError:
        raise MeasurementError(
            "measuring a Hugging Face architecture needs transformers: pip install 'symmem[hf]'"
        ) from None
    return transformers


def hf_config(config: Config) -> Any:
    """The transformers config object of ``config`` (every size given)."""
    config.require_complete()
    tf = _transformers()
    if config.model == "gpt2":
        p = 0.1 if config.dropout else 0.0
        return tf.GPT2Config(
            vocab_size=config.V,
            n_positions=config.SMAX,
            n_embd=config.D,
            n_layer=config.L,
            n_head=config.NH,
            attn_pdrop=p,
            resid_pdrop=p,
            embd_pdrop=p,
            tie_word_embeddings=config.tied,
            attn_implementation="sdpa",
        )
    common = {
        "vocab_size": config.V,
        "hidden_size": config.D,
        "intermediate_size": config.F,
        "num_hidden_layers": config.L,
        "num_attention_heads": config.NH,
        "num_key_value_heads": config.NKV,
        "max_position_embeddings": config.S,
        "tie_word_embeddings": config.tied,
        "attn_implementation": "sdpa",
    }
    if config.model == "llama":
        return tf.LlamaConfig(**common, attention_bias=config.bias, mlp_bias=config.bias)
    if config.model == "qwen2":
        return tf.Qwen2Config(**common)
    if config.model == "mistral":
        return tf.MistralConfig(**common)
    raise MeasurementError(f"no transformers class is known for {config.model}")


_CLASSES = {
    "gpt2": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "mistral": "MistralForCausalLM",
}


def build(config: Config, device: torch.device, checkpoint: str = "none") -> torch.nn.Module:
    """The transformers model of ``config`` on ``device``, fp32, random weights, training mode."""
    if checkpoint != "none":
        raise MeasurementError(
            f"activation checkpointing is not measured for {config.model} (only none)"
        )
    tf = _transformers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(tf, _CLASSES[config.model])(hf_config(config))
    model.to(device)
    model.train()
    return model


#: The attention module of layer ``i``, where the key/value cache is filled.
_ATTENTION = {
    "gpt2": "transformer.h.{}.attn",
    "llama": "model.layers.{}.self_attn",
    "qwen2": "model.layers.{}.self_attn",
    "mistral": "model.layers.{}.self_attn",
}


class _StorageTag:
    """Which storage a tensor has, without holding it (a label that kept cos and sin alive
    until the step's end would change what the training step's timeline measures): enough for
    the measurement to name the storage (its device and ``untyped_storage().data_ptr()``)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.device = tensor.device
        self._ptr = tensor.untyped_storage().data_ptr()

    def untyped_storage(self) -> _StorageTag:
        return self

    def data_ptr(self) -> int:
        return self._ptr


def run(model: Any, idx: torch.Tensor, targets: torch.Tensor) -> Forward:
    """``out = model(input_ids=idx, labels=targets)``: the logits, the loss, the output itself
    (it keeps the key/value cache alive) and the cache's tensors as terms; for the Llama family
    also the rotary cos and sin, made once by ``model.rotary_emb`` and saved by every layer
    (terms of that module, not of the first layer that saves them)."""
    from symmem.validate.measure import Forward

    rotary: list[_StorageTag] = []
    rotary_emb = getattr(getattr(model, "model", None), "rotary_emb", None)
    handle = None
    if rotary_emb is not None:  # cos and sin, made once and saved by every layer

        def tag(module: Any, args: Any, made: tuple[torch.Tensor, ...]) -> None:
            rotary.extend(_StorageTag(x) for x in made)

        handle = rotary_emb.register_forward_hook(tag)
    try:
        out = model(input_ids=idx, labels=targets)
    finally:
        if handle is not None:
            handle.remove()
    attention = _ATTENTION[model.config.model_type]
    labelled = [
        (cast(torch.Tensor, tag), f"RotaryEmbedding-{name}", "activations", "model.rotary_emb")
        for tag, name in zip(rotary, ("cos", "sin"), strict=False)
    ]
    cache = getattr(out, "past_key_values", None)
    for i, layer in enumerate(getattr(cache, "layers", ())):
        module = attention.format(i)
        labelled.append((layer.keys, "DynamicCache-keys", "cache", module))
        labelled.append((layer.values, "DynamicCache-values", "cache", module))
    return Forward(out.logits, out.loss, out, tuple(labelled))
