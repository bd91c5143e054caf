"""GPU presets: the architecture and memory of common training GPUs, and what follows from them.

Each preset is one row of :data:`GPUS`. Two things follow from a GPU: which attention kernel
``--attention default`` resolves to (the order PyTorch's dispatcher tries, and the kernels the
architecture can run), and the memory budget ``symmem solve --gpu`` uses.

The kernel rules are read from PyTorch's ``aten/src/ATen/native/transformers/cuda/sdp_utils.cpp``
(``select_sdp_backend``, ``priority_order``, ``check_prefer_cudnn_attention``, the
``check_*_hardware_support`` filters, ``can_use_mem_efficient_attention``, ``check_cudnn_dropout``)
and the default order in ``aten/src/ATen/Context.h`` (``sdp_priority_order``).

Capacities are what CUDA reports as the device's total memory (``cudaDeviceProp.totalGlobalMem``,
which is ``torch.cuda.get_device_properties(0).total_memory`` and the byte count ``deviceQuery``
prints), taken from one public report each. The figure moves by a few tens of MiB between driver
versions; none of the figures below is a vendor's nominal capacity.

>>> gpu = get_gpu("h100-80gb")
>>> gpu.sm, gpu.memory_bytes
('sm90', 85045477376)
>>> gpu_budget(gpu) == gpu.memory_bytes - CUDA_CONTEXT_MARGIN
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType

from symmem.errors import KernelError

__all__ = [
    "ASSUMED_DROPOUT",
    "CUDA_CONTEXT_MARGIN",
    "GPU",
    "GPUS",
    "get_gpu",
    "gpu_budget",
]

#: Memory a training process holds on the GPU outside PyTorch's caching allocator, so outside
#: ``max_memory_allocated``: the CUDA context (its kernel images, including cuBLAS, cuDNN and the
#: attention kernels loaded on first use) and library handles. An assumption, not a measurement:
#: PyTorch's forum reports 723 MiB for the context alone
#: (https://discuss.pytorch.org/t/what-is-the-reason-for-pytorchs-gpu-memory-floor/73021) and
#: "~700+MB" depending on CUDA version and device
#: (https://discuss.pytorch.org/t/high-gpu-memory-overhead/81330); a round GiB leaves room for the
#: kernels loaded later. The budget ``solve --gpu`` uses is the capacity less this margin.
CUDA_CONTEXT_MARGIN = 2**30

#: The dropout probability symmem assumes when DROPOUT = 1, where the probability matters: nanoGPT's
#: usual 0.1 (and what ``symmem validate`` trains with). It matters once: PyTorch's cuDNN attention
#: takes only multiples of 1/16 (``check_cudnn_dropout``), so ``default`` skips cuDNN with dropout.
ASSUMED_DROPOUT = Fraction(1, 10)

# Compute capabilities each fused kernel runs on, inclusive (sdp_utils.cpp:
# check_flash_attention_hardware_support, check_cudnn_hardware_support,
# check_mem_efficient_hardware_support).
_HARDWARE: Mapping[str, tuple[tuple[int, int], tuple[int, int], str]] = MappingProxyType(
    {
        "flash": ((8, 0), (12, 1), "check_flash_attention_hardware_support"),
        "cudnn": ((8, 0), (12, 1), "check_cudnn_hardware_support"),
        "efficient": ((5, 0), (12, 1), "check_mem_efficient_hardware_support"),
    }
)

# Context.h, sdp_priority_order: what select_sdp_backend tries unless cuDNN is preferred. Math
# always runs, so cuDNN (last) is never reached in this order.
_PYTORCH_ORDER = ("flash", "efficient", "math", "cudnn")
# sdp_utils.cpp, priority_order: the order set once check_prefer_cudnn_attention() holds.
_CUDNN_FIRST = ("cudnn", "flash", "efficient", "math")


@dataclass(frozen=True)
class GPU:
    """One GPU preset.

    Attributes:
        name: The preset's name (``--gpu NAME``).
        device_name: What ``torch.cuda.get_device_name()`` reports.
        capability: Compute capability ``(major, minor)``.
        memory_bytes: Total device memory as CUDA reports it (``total_memory``).
        source: Where ``memory_bytes`` comes from.
    """

    name: str
    device_name: str
    capability: tuple[int, int]
    memory_bytes: int
    source: str

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0 or len(self.capability) != 2:
            raise ValueError(f"bad GPU preset {self.name!r}")

    @property
    def sm(self) -> str:
        """The architecture as ``sm`` + major + minor (``sm90``)."""
        return f"sm{self.capability[0]}{self.capability[1]}"

    @property
    def prefers_cudnn(self) -> bool:
        """Whether PyTorch puts cuDNN attention first here.

        ``check_prefer_cudnn_attention``: compute capability 9.x or 10.x with a cuDNN newer than
        9.15.0 (the CUDA 13 wheels; the CUDA 12 wheels also need minor 0 or 3, which sm90 has).
        Older cuDNN builds keep the default order; symmem assumes a current wheel, as measured
        on the H200 (docs/cuda.md: torch 2.11+cu130, cuDNN 9.19).
        """
        return self.capability[0] in (9, 10)

    @property
    def sdpa_order(self) -> tuple[str, ...]:
        """The kernels PyTorch's ``select_sdp_backend`` tries, in order."""
        return _CUDNN_FIRST if self.prefers_cudnn else _PYTORCH_ORDER

    @property
    def order_reason(self) -> str:
        """Why the order is what it is, in a few words."""
        if self.prefers_cudnn:
            return "check_prefer_cudnn_attention puts cuDNN first on sm90 and sm100"
        return "its default order: cuDNN goes first on sm90 and sm100 only"

    @property
    def bf16(self) -> bool:
        """Whether its fused attention kernels take bfloat16 (sm80 on); nanoGPT's ``train.py``
        autocasts to float16 where they do not."""
        return self.capability >= (8, 0)

    def limit(
        self, kernel: str, *, amp: bool, dropout: bool, default: bool, bf16: bool = True
    ) -> str | None:
        """Why ``kernel`` does not run on this GPU with these switches, or ``None``
        (``bf16``: autocast computes in bfloat16, else float16).

        ``default`` says whether PyTorch is choosing (``--attention default``): then cuDNN is
        skipped with dropout (:data:`ASSUMED_DROPOUT` is no multiple of 1/16). A kernel asked for
        by name is taken at its word there: it runs with a probability that is such a multiple.
        """
        if kernel in _HARDWARE:
            low, high, check = _HARDWARE[kernel]
            if not low <= self.capability <= high:
                return (
                    f"runs on sm{low[0]}{low[1]} to sm{high[0]}{high[1]} only ({check}), "
                    f"and {self.name} is {self.sm}"
                )
        if amp and bf16 and not self.bf16 and kernel != "math":
            # can_use_mem_efficient_attention: below sm80 it takes fp16 and fp32, not bf16.
            return f"takes no bfloat16 below sm80, and {self.name} is {self.sm}"
        if default and dropout and kernel == "cudnn" and (ASSUMED_DROPOUT * 16).denominator != 1:
            return (
                "runs dropout only at multiples of 1/16 (check_cudnn_dropout), and symmem "
                f"assumes nanoGPT's {float(ASSUMED_DROPOUT)}"
            )
        return None


_DEVICE_QUERY = "deviceQuery's total global memory"
_THAMADA = "github.com/thamada/nvidia-smi"

#: The presets, by name. ``memory_bytes`` is a reported figure for every row (none is nominal).
GPUS: Mapping[str, GPU] = MappingProxyType(
    {
        gpu.name: gpu
        for gpu in (
            GPU("a100-40gb", "NVIDIA A100-SXM4-40GB", (8, 0), 42_298_834_944,
                f"{_DEVICE_QUERY}, driver 12.2: github.com/bottlerocket-os/bottlerocket/pull/3873"),
            GPU("a100-80gb", "NVIDIA A100-SXM4-80GB", (8, 0), 85_100_068_864,
                f"{_DEVICE_QUERY}, driver 12.5: {_THAMADA} nvsim/A100SXMx4_deviceQuery.py"),
            GPU("h100-80gb", "NVIDIA H100 80GB HBM3", (9, 0), 85_045_477_376,
                f"{_DEVICE_QUERY}, driver 12.7: {_THAMADA} nvsim/H100SXMx8_deviceQuery.py"),
            # torch prints total_memory in whole MiB (labelled MB): this is 143156 MiB, a lower
            # bound within 1 MiB of the byte count. nvidia-smi shows 143771MiB for the H200
            # (its total includes memory the driver reserves); the vendor's nominal is 141 GB.
            GPU("h200", "NVIDIA H200", (9, 0), 143_156 * 2**20,
                "torch.cuda.get_device_properties(0): _CudaDeviceProperties(name='NVIDIA H200', "
                "major=9, minor=0, total_memory=143156MB, ...), printed in a public vLLM example"),
            GPU("l4", "NVIDIA L4", (8, 9), 23_570_219_008,
                f"{_DEVICE_QUERY}, driver 12.4: {_THAMADA} gls/L4_deviceQuery.py"),
            GPU("rtx-4090", "NVIDIA GeForce RTX 4090", (8, 9), 25_386_352_640,
                f"{_DEVICE_QUERY}, driver 12.4 (Linux): {_THAMADA} gls/RTX4090_deviceQuery.py"),
            GPU("rtx-3090", "NVIDIA GeForce RTX 3090", (8, 6), 25_327_697_920,
                f"{_DEVICE_QUERY}, driver 12.6 (Linux): {_THAMADA} gls/RTX3090_deviceQuery.py"),
            GPU("t4", "Tesla T4", (7, 5), 15_843_721_216,
                f"{_DEVICE_QUERY}, driver 11.0: "
                "chiemon.github.io/2024/12/25/%E6%98%BE%E5%8D%A1%E4%BF%A1%E6%81%AF.html"),
        )
    }
)  # fmt: skip


def get_gpu(name: str) -> GPU:
    """The preset called ``name`` (case does not matter), or a KernelError naming the presets."""
    try:
        return GPUS[name.lower()]
    except KeyError:
        raise KernelError(f"unknown GPU {name!r} (allowed: {', '.join(GPUS)})") from None


def gpu_budget(gpu: GPU, *, margin: int = CUDA_CONTEXT_MARGIN) -> int:
    """Bytes PyTorch's allocator can use on ``gpu``: its capacity less ``margin``.

    >>> gpu_budget(get_gpu("a100-80gb"))
    84026327040
    """
    return gpu.memory_bytes - margin
