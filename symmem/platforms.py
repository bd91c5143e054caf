"""Platforms and attention kernels: the rules that differ between CPU and CUDA builds of PyTorch.

Each platform is one row of :data:`PLATFORMS`; each attention kernel one row of its ``kernels``
table. Where a rule comes from is written beside it (``evidence``): measured here on the CPU build,
measured on an H200 (``docs/cuda.md``, which says how), or read from PyTorch's source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

import sympy

from symmem.dtypes import BFLOAT16, DEVICE, HOST, INT64, UINT64, DType
from symmem.errors import KernelError
from symmem.gpus import GPU, get_gpu

__all__ = ["PLATFORMS", "AttentionKernel", "Platform", "RngField", "get_platform"]


def _unpadded(s: sympy.Expr) -> sympy.Expr:
    return s


def _padded_to_32(s: sympy.Expr) -> sympy.Expr:
    # aten/src/ATen/native/transformers/cuda/attention.cu, _efficient_attention_forward:
    # logsumexp is allocated as {B, NH, ceil_div(max_seqlen_q, kAlignLSE) * kAlignLSE},
    # with kAlignLSE = 32.
    return sympy.ceiling(s / 32) * 32


@dataclass(frozen=True)
class RngField:
    """A random-number-generator state tensor a fused kernel saves.

    Attributes:
        field: The saved field's name.
        shape: Its shape (``()`` for a 0-dim tensor).
        dtype: Its element type.
        location: ``device`` or ``host`` memory.
    """

    field: str
    shape: tuple[int, ...]
    dtype: DType
    location: str


@dataclass(frozen=True)
class AttentionKernel:
    """One SDPA backend and what its backward node saves.

    Attributes:
        name: The name users pass to ``--attention``.
        node: The fused backward node, or ``None`` for the composite math path.
        lse_field: The saved logsumexp field's name.
        lse_length: Length of the logsumexp rows as a function of S (padding, if any).
        rng: RNG state tensors saved beside q, k, v, output and logsumexp.
        half_only: Runs only on 16-bit inputs (so only under AMP).
        supports_dropout: Can apply attention dropout itself.
        evidence: Where these rules come from.
    """

    name: str
    node: str | None
    lse_field: str = "logsumexp"
    lse_length: Callable[[sympy.Expr], sympy.Expr] = _unpadded
    rng: tuple[RngField, ...] = ()
    half_only: bool = False
    supports_dropout: bool = True
    evidence: str = ""

    def limit(self, *, amp: bool, dropout: bool) -> str | None:
        """What keeps this kernel from running with the given switches, or ``None``."""
        if self.half_only and not amp:
            return "needs 16-bit inputs"
        if dropout and not self.supports_dropout:
            return "cannot apply dropout"
        return None

    def refuses(self, *, amp: bool, dropout: bool) -> str | None:
        """Why this kernel cannot run with the given switches, or ``None`` if it can."""
        limit = self.limit(amp=amp, dropout=dropout)
        if limit is None:
            return None
        remedy = "turn on AMP" if self.half_only and not amp else "turn dropout off"
        return f"{self.name} attention {limit}: {remedy}"


MATH = AttentionKernel(
    name="math",
    node=None,
    evidence="composite ops (aten/src/ATen/native/transformers/attention.cpp, "
    "_scaled_dot_product_attention_math); measured on CPU",
)


@dataclass(frozen=True)
class Platform:
    """What one PyTorch build does differently.

    Attributes:
        name: ``cpu`` or ``cuda``.
        half: The 16-bit type autocast computes in.
        dropout_saves_mask: ``native_dropout`` with a 1-byte bool mask (CUDA); otherwise
            ``input * noise`` with the scaled noise saved in the input's dtype (CPU).
        cross_entropy_autocast: ``cross_entropy`` is on autocast's fp32 list, so the loss sees one
            fp32 copy of the logits (CPU); otherwise ``log_softmax`` keeps the half dtype and
            ``nll_loss`` saves an fp32 copy of its result (CUDA).
        kernels: The attention kernels it can run, by name.
        default_order: Kernels ``--attention default`` tries, first that can run wins.
        optimizers: AdamW implementations (``fused``, ``foreach``, ``forloop``), each with where
            its per-parameter ``step`` tensors live.
        default_optimizer: The implementation nanoGPT's training runs with on this platform.
        evidence: Where the platform's rules come from.
        caching_allocator: Whether allocations go through PyTorch's CUDA caching allocator, which
            rounds them and holds cuBLAS workspaces (:mod:`symmem.allocator`).
        gpu: The GPU preset, if one is given: it sets ``default_order`` and refuses kernels its
            architecture cannot run (see :mod:`symmem.gpus`).
        wrapped: Where a Python number used as a tensor lives (a 0-dim "wrapped number", made
            on the CPU whatever the other operand's device): the training device on the CPU,
            host memory beside a GPU.
    """

    name: str
    half: DType
    dropout_saves_mask: bool
    cross_entropy_autocast: bool
    kernels: Mapping[str, AttentionKernel]
    default_order: tuple[str, ...]
    optimizers: Mapping[str, str]
    default_optimizer: str
    evidence: str
    caching_allocator: bool = False
    gpu: GPU | None = None
    wrapped: str = DEVICE

    @property
    def bf16(self) -> bool:
        """Whether autocast computes in bfloat16 here (else float16)."""
        return self.half.name == "bfloat16"

    @property
    def where(self) -> str:
        """The platform's name, with the GPU's where one is given (``cuda (h200, sm90)``)."""
        return self.name if self.gpu is None else f"{self.name} ({self.gpu.name}, {self.gpu.sm})"

    def kernel(self, requested: str, *, amp: bool, dropout: bool) -> AttentionKernel:
        """The kernel that runs for ``requested`` (a name or ``default``), or a KernelError."""
        return self.choose(requested, amp=amp, dropout=dropout)[0]

    def choose(self, requested: str, *, amp: bool, dropout: bool) -> tuple[AttentionKernel, str]:
        """The kernel that runs for ``requested`` and why, or a KernelError naming the kernels
        that can run."""
        if requested == "default":
            skipped: list[str] = []
            for name in self.default_order:
                limit = self._limit(name, amp=amp, dropout=dropout, default=True)
                if limit is None:
                    return self.kernels[name], self._reason(name, skipped, amp=amp, dropout=dropout)
                skipped.append(f"{name} skipped: {limit}")
            raise KernelError(f"no attention kernel on {self.where} runs with these switches")
        if requested not in self.kernels:
            allowed = ", ".join(["default", *self.kernels])
            raise KernelError(
                f"attention kernel {requested!r} is not available on {self.name} "
                f"(allowed: {allowed})"
            )
        kernel = self.kernels[requested]
        limit = None
        if self.gpu is not None:
            limit = self.gpu.limit(
                requested, amp=amp, dropout=dropout, default=False, bf16=self.bf16
            )
        reason = kernel.refuses(amp=amp, dropout=dropout)
        if limit is not None:
            reason = f"{requested} attention {limit}"
        if reason is None:
            return kernel, f"{requested} was asked for"
        if self.gpu is None:
            raise KernelError(f"{reason} (platform {self.name})")
        runs = [n for n in self.kernels if self._limit(n, amp=amp, dropout=dropout) is None]
        precision = f"{self.half.name} autocast" if amp else "fp32"
        raise KernelError(
            f"{reason} (allowed on {self.gpu.name} in {precision}: {', '.join(['default', *runs])})"
        )

    def _limit(self, name: str, *, amp: bool, dropout: bool, default: bool = False) -> str | None:
        """Why kernel ``name`` does not run here, or ``None``: what the GPU cannot run first,
        then what the kernel cannot, then the GPU's skips when PyTorch chooses."""
        limits = [self.kernels[name].limit(amp=amp, dropout=dropout)]
        if self.gpu is not None:
            limits.insert(
                0, self.gpu.limit(name, amp=amp, dropout=dropout, default=False, bf16=self.bf16)
            )
            limits.append(
                self.gpu.limit(name, amp=amp, dropout=dropout, default=default, bf16=self.bf16)
            )
        return next((limit for limit in limits if limit is not None), None)

    def _reason(self, chosen: str, skipped: list[str], *, amp: bool, dropout: bool) -> str:
        """Why ``default`` resolves to ``chosen``: the order tried, then what was skipped."""
        order = ", ".join(self.default_order)
        if self.gpu is not None:
            head = f"{self.gpu.name} is {self.gpu.sm}, where PyTorch tries {order}"
            head += f" ({self.gpu.order_reason})"
        elif self.name == "cuda":
            head = f"No GPU preset: the reference notebook's order, {order}"
        else:
            head = f"On {self.name}, PyTorch tries {order}"
        case = f"under {self.half.name} autocast" if amp else "in fp32"
        case += " with dropout" if dropout else " without dropout"
        return f"{head}. {case[0].upper()}{case[1:]}: {'; '.join([*skipped, f'{chosen} runs'])}."

    def optimizer(self, requested: str) -> str:
        """The AdamW implementation for ``requested`` (a name or ``default``)."""
        if requested == "default":
            return self.default_optimizer
        if requested not in self.optimizers:
            allowed = ", ".join(["default", *self.optimizers])
            raise KernelError(f"unknown optimizer {requested!r} (allowed: {allowed})")
        return requested


_H200 = "measured on an H200, torch 2.11 (docs/cuda.md)"

CPU = Platform(
    name="cpu",
    half=BFLOAT16,
    dropout_saves_mask=False,
    cross_entropy_autocast=True,
    kernels=MappingProxyType(
        {
            "flash": AttentionKernel(
                name="flash",
                node="ScaledDotProductFlashAttentionForCpuBackward0",
                supports_dropout=False,
                evidence="measured, torch 2.13 CPU build",
            ),
            "math": MATH,
        }
    ),
    default_order=("flash", "math"),
    # On the CPU every tensor is on the training device; PyTorch picks the for-loop AdamW for CPU
    # tensors unless asked otherwise (torch/optim/optimizer.py, _default_to_fused_or_foreach).
    optimizers=MappingProxyType({"forloop": DEVICE, "foreach": DEVICE, "fused": DEVICE}),
    default_optimizer="forloop",
    evidence="measured, torch 2.13 CPU build",
)

CUDA = Platform(
    name="cuda",
    half=BFLOAT16,
    dropout_saves_mask=True,
    cross_entropy_autocast=False,
    kernels=MappingProxyType(
        {
            "efficient": AttentionKernel(
                name="efficient",
                node="ScaledDotProductEfficientAttentionBackward0",
                lse_field="log_sumexp",
                lse_length=_padded_to_32,
                # Host tensors: _efficient_attention_forward makes them with at::scalar_tensor /
                # at::empty without a device (aten/src/ATen/native/transformers/cuda/attention.cu).
                rng=(
                    RngField("philox_seed", (), INT64, HOST),
                    RngField("philox_offset", (), INT64, HOST),
                ),
                evidence=_H200,
            ),
            "flash": AttentionKernel(
                name="flash",
                node="ScaledDotProductFlashAttentionBackward0",
                rng=(
                    RngField("rng_state", (2,), UINT64, DEVICE),
                    RngField("unused", (), UINT64, DEVICE),
                ),
                half_only=True,
                evidence=_H200,
            ),
            "cudnn": AttentionKernel(
                name="cudnn",
                node="ScaledDotProductCudnnAttentionBackward0",
                rng=(
                    RngField("philox_seed", (), INT64, DEVICE),
                    RngField("philox_offset", (), INT64, DEVICE),
                ),
                half_only=True,
                evidence=_H200,
            ),
            "math": MATH,
        }
    ),
    # The reference notebook's assumption; which kernel a given GPU picks is a GPU preset's job.
    default_order=("efficient", "math"),
    # step is a host tensor unless fused (or capturable): measured on an H200, docs/cuda.md.
    # nanoGPT passes fused=True on CUDA.
    optimizers=MappingProxyType({"fused": DEVICE, "foreach": HOST, "forloop": HOST}),
    default_optimizer="fused",
    evidence=_H200,
    caching_allocator=True,
    wrapped=HOST,
)

PLATFORMS: Mapping[str, Platform] = MappingProxyType({"cpu": CPU, "cuda": CUDA})


def get_platform(name: str, gpu: str | None = None) -> Platform:
    """The platform called ``name``, on the GPU preset ``gpu`` if given, or a KernelError naming
    the allowed ones.

    A GPU makes ``default`` resolve as PyTorch's dispatcher does there (:mod:`symmem.gpus`):

    >>> get_platform("cuda", gpu="h200").default_order
    ('cudnn', 'flash', 'efficient', 'math')
    """
    try:
        platform = PLATFORMS[name]
    except KeyError:
        raise KernelError(f"unknown platform {name!r} (allowed: {', '.join(PLATFORMS)})") from None
    if gpu is None:
        return platform
    preset = get_gpu(gpu)
    if platform is not CUDA:
        raise KernelError(f"GPU {preset.name!r} needs the cuda platform, not {name!r}")
    return replace(platform, default_order=preset.sdpa_order, gpu=preset)
