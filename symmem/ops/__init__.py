"""Per-op rules: symbolic tensors, the trace, and what each op saves for backward."""

from symmem.ops.attention import scaled_dot_product_attention
from symmem.ops.graph import ROOT, Param, Save, Scenario, Storage, Tensor, Trace
from symmem.ops.layers import (
    add,
    contiguous,
    cross_entropy,
    dropout,
    embedding,
    gelu,
    layer_norm,
    linear,
)
from symmem.ops.nodes import NODES

__all__ = [
    "NODES",
    "ROOT",
    "Param",
    "Save",
    "Scenario",
    "Storage",
    "Tensor",
    "Trace",
    "add",
    "contiguous",
    "cross_entropy",
    "dropout",
    "embedding",
    "gelu",
    "layer_norm",
    "linear",
    "scaled_dot_product_attention",
]
