"""The autograd nodes symmem knows, with the fields each one saves for backward.

Field names are PyTorch's (``node._saved_<field>``), as generated from ``derivatives.yaml``; they
were read off the torch 2.13 build (``torch._C._functions.<Node>``), which lists the CUDA-only
nodes too. Only tensor fields are listed; scalars such as ``dropout_p`` cost no memory.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["NODES"]

# fmt: off
NODES = MappingProxyType(
    {
        # node                                            tensor fields it can save
        "EmbeddingBackward0":                             ("indices",),
        "NativeLayerNormBackward0":                       ("input", "result1", "result2", "weight", "bias"),
        "MmBackward0":                                    ("self", "mat2"),
        "AddmmBackward0":                                 ("mat1", "mat2"),
        "GeluBackward0":                                  ("self",),
        "SiluBackward0":                                  ("self",),
        "PowBackward0":                                   ("self",),
        "RsqrtBackward0":                                 ("result",),
        "MulBackward0":                                   ("self", "other"),
        "TanhBackward0":                                  ("result",),
        "NativeDropoutBackward0":                         ("result1",),
        "BmmBackward0":                                   ("self", "mat2"),
        "SafeSoftmaxBackward0":                           ("result",),
        "ScaledDotProductFlashAttentionForCpuBackward0":  ("query", "key", "value", "output", "logsumexp"),
        "ScaledDotProductEfficientAttentionBackward0":    ("query", "key", "value", "output", "log_sumexp",
                                                           "philox_seed", "philox_offset"),
        "ScaledDotProductFlashAttentionBackward0":        ("query", "key", "value", "output", "logsumexp",
                                                           "rng_state", "unused"),
        "ScaledDotProductCudnnAttentionBackward0":        ("query", "key", "value", "output", "logsumexp",
                                                           "philox_seed", "philox_offset"),
        "LogSoftmaxBackward0":                            ("result",),
        "NllLossBackward0":                               ("self", "target", "total_weight"),
    }
)
# fmt: on
