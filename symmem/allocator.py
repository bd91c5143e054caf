"""What PyTorch's CUDA caching allocator counts: the figure ``torch.cuda.max_memory_allocated``
reports for a training step.

Two things separate the allocator's count from the bytes of live tensors:

* **Rounding.** Every block is a multiple of 512 bytes: a request of ``n`` bytes takes
  ``512·⌈n/512⌉`` (``kMinBlockSize`` and ``round_size`` in ``c10/cuda/CUDACachingAllocator.cpp``;
  a request of 0 bytes takes no block). Parameters, gradients and optimizer state are one
  block per tensor, so a 0-dim ``step`` takes 512 bytes.
* **cuBLAS workspaces.** PyTorch gives each cuBLAS handle a workspace from the same allocator,
  kept for the life of the process, one handle per thread that runs matmuls: the forward's
  thread and autograd's. Without ``CUBLAS_WORKSPACE_CONFIG`` its size is 32 MiB on compute
  capability 9.0 and later and ``:4096:2:16:8`` (8,519,680 B) before
  (``parseChosenWorkspaceSize`` in ``aten/src/ATen/cuda/CublasHandlePool.cpp``). A biased
  ``Linear`` runs cuBLASLt's matmul with a bias epilogue, which adds a 1 MiB workspace
  (``CUBLASLT_WORKSPACE_SIZE``'s default, 1024 KiB).

Measured on an H200 (``docs/cuda.md``, "The caching allocator"): with
``expandable_segments:True`` the allocator's peak equals the peak of live storages rounded to
512 bytes, plus 64 MiB of workspaces (65 MiB with biases), exactly. The default allocator
sometimes hands a request a cached block without splitting it, which counts a little more (1.3
to 7.3 MiB at the reference notebook's scale): for it symmem's figure is a lower bound. The
workspace rule for other architectures is read from PyTorch's source, not measured.

>>> block_bytes(sympy.Integer(4))
512
>>> block_bytes(sympy.Integer(1025))
1536
>>> workspace_bytes(None, cublaslt=True)
68157440
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import sympy

from symmem.errors import ConfigError
from symmem.gpus import GPU

__all__ = [
    "ALLOCATORS",
    "BLOCK",
    "block_bytes",
    "check_allocator",
    "cublas_workspace",
    "describe",
    "workspace_bytes",
]

#: Every allocation is a whole number of these bytes.
BLOCK = 512

#: The allocator settings symmem knows, with what its ``max_memory_allocated`` figure is there.
ALLOCATORS: Mapping[str, str] = MappingProxyType(
    {
        "expandable": "exact (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)",
        "default": (
            "a lower bound: the default allocator can hand out cached blocks unsplit, "
            "1.3 to 7.3 MiB more at the reference notebook's scale"
        ),
    }
)

#: Threads that run matmuls in a training step: the forward's and autograd's.
MATMUL_THREADS = 2
#: cuBLASLt's workspace, taken once a biased Linear has run (CUBLASLT_WORKSPACE_SIZE's default).
CUBLASLT_WORKSPACE = 1024 * 1024
#: The capability symmem assumes for the cuda platform without a GPU preset: the H200 the cuda
#: profile was measured on.
MEASURED_CAPABILITY = (9, 0)


def block_bytes(nbytes: sympy.Expr) -> sympy.Expr:
    """What a request of ``nbytes`` takes from the caching allocator."""
    return BLOCK * sympy.ceiling(nbytes / BLOCK)


def cublas_workspace(gpu: GPU | None) -> int:
    """Bytes of one cuBLAS handle's workspace on ``gpu`` (the measured H200 if ``None``)."""
    major = (gpu.capability if gpu is not None else MEASURED_CAPABILITY)[0]
    return 4096 * 8 * 1024 if major >= 9 else 4096 * 1024 * 2 + 16 * 1024 * 8


def workspace_bytes(gpu: GPU | None, *, cublaslt: bool) -> int:
    """The workspaces a training step holds throughout, in bytes; ``cublaslt`` when the step
    runs a matmul with a bias (``addmm``), which takes cuBLASLt's as well."""
    return MATMUL_THREADS * cublas_workspace(gpu) + CUBLASLT_WORKSPACE * int(cublaslt)


def describe(name: str, *, caching: bool) -> dict[str, str] | None:
    """What ``max_memory_allocated`` is under the allocator setting ``name``, for JSON; ``None``
    on a platform without a caching allocator (``caching`` False)."""
    check_allocator(name)
    return {"name": name, "max_memory_allocated": ALLOCATORS[name]} if caching else None


def check_allocator(name: str) -> str:
    """``name`` if symmem knows that allocator setting, else a ConfigError naming them."""
    if name not in ALLOCATORS:
        raise ConfigError(f"unknown allocator {name!r} (allowed: {', '.join(ALLOCATORS)})")
    return name
