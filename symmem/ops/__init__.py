"""Symbolic tensors, the per-op rules of what autograd saves, and the backward engine."""

from symmem.ops.attention import heads, scaled_dot_product_attention
from symmem.ops.checkpoint import CHECKPOINTS, checkpoint
from symmem.ops.graph import Node, Param, Save, Scenario, Storage, Tensor, Trace
from symmem.ops.layers import (
    add,
    contiguous,
    cross_entropy,
    divide,
    dropout,
    embedding,
    gelu,
    layer_norm,
    linear,
    split,
)
from symmem.ops.nodes import NODES

__all__ = [
    "CHECKPOINTS",
    "NODES",
    "Node",
    "Param",
    "Save",
    "Scenario",
    "Storage",
    "Tensor",
    "Trace",
    "add",
    "checkpoint",
    "contiguous",
    "cross_entropy",
    "divide",
    "dropout",
    "embedding",
    "gelu",
    "heads",
    "layer_norm",
    "linear",
    "scaled_dot_product_attention",
    "split",
]
