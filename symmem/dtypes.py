"""The element types symmem meets, with their sizes in bytes, and where tensors live."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BFLOAT16",
    "BOOL",
    "DEVICE",
    "DTYPES",
    "FLOAT16",
    "FLOAT32",
    "FLOAT64",
    "HOST",
    "INT64",
    "UINT64",
    "DType",
]

#: A tensor on the training device (the GPU; the CPU for CPU training).
DEVICE = "device"
#: A tensor in host memory beside a GPU: not GPU memory.
HOST = "host"


@dataclass(frozen=True)
class DType:
    """An element type.

    Attributes:
        name: PyTorch's name for it, without the ``torch.`` prefix.
        itemsize: Bytes per element.
    """

    name: str
    itemsize: int

    def __str__(self) -> str:
        return self.name


FLOAT32 = DType("float32", 4)
FLOAT64 = DType("float64", 8)
BFLOAT16 = DType("bfloat16", 2)
FLOAT16 = DType("float16", 2)
INT64 = DType("int64", 8)
UINT64 = DType("uint64", 8)
BOOL = DType("bool", 1)

DTYPES = {d.name: d for d in (FLOAT32, FLOAT64, BFLOAT16, FLOAT16, INT64, UINT64, BOOL)}
