"""GPU presets: capacities from their sources, and the kernel PyTorch's dispatcher picks on each.

Kernel expectations follow aten/src/ATen/native/transformers/cuda/sdp_utils.cpp:
``check_prefer_cudnn_attention`` (cuDNN first on sm90/sm100), the default order flash, efficient,
math, cudnn (aten/src/ATen/Context.h), flash and cuDNN on sm80-sm121 in fp16/bf16 only,
memory-efficient on sm50-sm121 without bf16 below sm80, and ``check_cudnn_dropout`` (cuDNN takes
dropout probabilities that are multiples of 1/16 only; symmem assumes nanoGPT's 0.1).
"""

from __future__ import annotations

import pytest

from symmem import Config, KernelError, build_report
from symmem.gpus import ASSUMED_DROPOUT, CUDA_CONTEXT_MARGIN, GPUS, get_gpu, gpu_budget
from symmem.model import get_model
from symmem.platforms import get_platform
from symmem.report import _build_report

SMALL = Config(B=2, S=64, D=64, NH=2, V=50, L=1)


@pytest.mark.parametrize(
    ("name", "device_name", "capability", "memory_bytes"),
    [
        # deviceQuery's "Total amount of global memory" byte counts (sources in symmem/gpus.py).
        ("a100-40gb", "NVIDIA A100-SXM4-40GB", (8, 0), 42_298_834_944),
        ("a100-80gb", "NVIDIA A100-SXM4-80GB", (8, 0), 85_100_068_864),
        ("h100-80gb", "NVIDIA H100 80GB HBM3", (9, 0), 85_045_477_376),
        ("h200", "NVIDIA H200", (9, 0), 143_156 * 2**20),  # torch's repr: 143156MB (MiB)
        ("l4", "NVIDIA L4", (8, 9), 23_570_219_008),
        ("rtx-4090", "NVIDIA GeForce RTX 4090", (8, 9), 25_386_352_640),
        ("rtx-3090", "NVIDIA GeForce RTX 3090", (8, 6), 25_327_697_920),
        ("t4", "Tesla T4", (7, 5), 15_843_721_216),
    ],
)
def test_presets(name, device_name, capability, memory_bytes):
    gpu = get_gpu(name)
    assert (gpu.name, gpu.device_name, gpu.capability, gpu.memory_bytes) == (
        name,
        device_name,
        capability,
        memory_bytes,
    )
    assert gpu.source
    assert get_gpu(name.upper()) is gpu


def test_unknown_gpu_names_the_presets():
    with pytest.raises(KernelError) as error:
        get_gpu("h300")
    assert str(error.value) == f"unknown GPU 'h300' (allowed: {', '.join(GPUS)})"
    assert "a100-40gb, a100-80gb, h100-80gb, h200, l4, rtx-4090, rtx-3090" in str(error.value)


def test_budget_is_capacity_less_the_context_margin():
    assert CUDA_CONTEXT_MARGIN == 2**30
    assert gpu_budget(get_gpu("h100-80gb")) == 85_045_477_376 - 2**30
    assert gpu_budget(get_gpu("h100-80gb"), margin=0) == 85_045_477_376


@pytest.mark.parametrize(
    ("gpu", "order"),
    [
        ("h100-80gb", ("cudnn", "flash", "efficient", "math")),
        ("h200", ("cudnn", "flash", "efficient", "math")),
        ("a100-80gb", ("flash", "efficient", "math", "cudnn")),
        ("rtx-3090", ("flash", "efficient", "math", "cudnn")),
        ("l4", ("flash", "efficient", "math", "cudnn")),
        ("t4", ("flash", "efficient", "math", "cudnn")),
    ],
)
def test_priority_order(gpu, order):
    assert get_gpu(gpu).sdpa_order == order
    assert get_platform("cuda", gpu).default_order == order


@pytest.mark.parametrize(
    ("gpu", "amp", "dropout", "kernel"),
    [
        ("h200", True, False, "cudnn"),
        ("h100-80gb", True, False, "cudnn"),
        ("h200", True, True, "flash"),  # cuDNN skipped: 0.1 is no multiple of 1/16
        ("h200", False, False, "efficient"),  # flash and cuDNN need fp16/bf16
        ("h200", False, True, "efficient"),
        ("a100-40gb", True, False, "flash"),
        ("a100-80gb", True, True, "flash"),
        ("a100-80gb", False, True, "efficient"),
        ("rtx-3090", True, True, "flash"),
        ("rtx-4090", True, False, "flash"),
        ("l4", True, True, "flash"),
        ("l4", False, False, "efficient"),
        ("t4", True, True, "efficient"),  # no flash below sm80; autocast in fp16 there
        ("t4", False, True, "efficient"),
    ],
)
def test_default_kernel(gpu, amp, dropout, kernel):
    report = build_report("cuda", gpu=gpu)
    config = SMALL.with_(amp=amp, dropout=dropout)
    assert report.kernel_for(config) == kernel
    assert report.kernel_reason(config).endswith(f"{kernel} runs.")


def test_assumed_dropout_is_no_multiple_of_a_sixteenth():
    assert (ASSUMED_DROPOUT.numerator, ASSUMED_DROPOUT.denominator) == (1, 10)
    assert (ASSUMED_DROPOUT * 16).denominator != 1


def test_kernel_reasons():
    h200 = build_report("cuda", gpu="h200")
    assert h200.kernel_reason(SMALL.with_(amp=True)) == (
        "h200 is sm90, where PyTorch tries cudnn, flash, efficient, math "
        "(check_prefer_cudnn_attention puts cuDNN first on sm90 and sm100). "
        "Under bfloat16 autocast without dropout: cudnn runs."
    )
    assert h200.kernel_reason(SMALL) == (
        "h200 is sm90, where PyTorch tries cudnn, flash, efficient, math "
        "(check_prefer_cudnn_attention puts cuDNN first on sm90 and sm100). "
        "In fp32 without dropout: cudnn skipped: needs 16-bit inputs; "
        "flash skipped: needs 16-bit inputs; efficient runs."
    )
    assert "cudnn skipped: runs dropout only at multiples of 1/16 (check_cudnn_dropout)" in (
        h200.kernel_reason(SMALL.with_(amp=True, dropout=True))
    )
    t4 = build_report("cuda", gpu="t4", amp_dtype="bf16").kernel_reason(SMALL.with_(amp=True))
    assert "flash skipped: runs on sm80 to sm121 only" in t4
    assert "efficient skipped: takes no bfloat16 below sm80" in t4
    assert build_report("cuda", "cudnn", gpu="h200").kernel_reason(SMALL.with_(amp=True)) == (
        "cudnn was asked for"
    )
    assert build_report("cuda").kernel_reason(SMALL) == (
        "No GPU preset: the reference notebook's order, efficient, math. "
        "In fp32 without dropout: efficient runs."
    )


@pytest.mark.parametrize(("dropout", "kernel"), [(False, "cudnn"), (True, "flash")])
def test_h200_default_equals_the_kernel_it_resolves_to(dropout, kernel):
    config = Config.notebook().with_(dropout=dropout)
    default = build_report("cuda", gpu="h200").at(config)
    explicit = build_report("cuda", kernel).at(config)
    assert default.kernel == kernel
    assert default.totals == explicit.totals
    assert [(t.key, b) for t, b in default.terms()] == [(t.key, b) for t, b in explicit.terms()]


def test_without_a_gpu_default_stays_the_notebook_order():
    assert build_report("cuda").kernel_for(Config.notebook().with_(dropout=False)) == "efficient"
    assert build_report("cuda").platform.gpu is None


@pytest.mark.parametrize(
    ("gpu", "attention", "amp", "message"),
    [
        (
            "t4",
            "flash",
            True,
            "flash attention runs on sm80 to sm121 only (check_flash_attention_hardware_support), "
            "and t4 is sm75 (allowed on t4 in float16 autocast: default, efficient, math)",
        ),
        (
            # No precision runs it, so the report refuses it as it is built: the first case it
            # tries is autocast (fp16, the t4's default).
            "t4",
            "cudnn",
            False,
            "cudnn attention runs on sm80 to sm121 only (check_cudnn_hardware_support), and t4 is "
            "sm75 (allowed on t4 in float16 autocast: default, efficient, math)",
        ),
        (
            "h200",
            "flash",
            False,
            "flash attention needs 16-bit inputs: turn on AMP "
            "(allowed on h200 in fp32: default, efficient, math)",
        ),
        (
            "a100-80gb",
            "cudnn",
            False,
            "cudnn attention needs 16-bit inputs: turn on AMP "
            "(allowed on a100-80gb in fp32: default, efficient, math)",
        ),
    ],
)
def test_kernels_a_gpu_cannot_run(gpu, attention, amp, message):
    with pytest.raises(KernelError) as error:
        build_report("cuda", attention, gpu=gpu).at(SMALL.with_(amp=amp))
    assert str(error.value) == message


def test_explicit_cudnn_with_dropout_is_taken_at_its_word():
    # Only PyTorch's own choice skips cuDNN for p = 0.1; a probability that is a multiple of 1/16
    # runs it, so asking for it by name is allowed.
    config = SMALL.with_(amp=True, dropout=True)
    assert build_report("cuda", "cudnn", gpu="h200").kernel_for(config) == "cudnn"


def test_a_gpu_needs_the_cuda_platform():
    with pytest.raises(KernelError, match="GPU 'h200' needs the cuda platform, not 'cpu'"):
        build_report("cpu", gpu="h200")


def test_cache_entries_are_per_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMMEM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SYMMEM_NO_CACHE", raising=False)
    plain = _build_report.__wrapped__(
        "cuda", "default", "default", None, "none", get_model("nanogpt")
    )
    h200 = _build_report.__wrapped__(
        "cuda", "default", "default", "h200", "none", get_model("nanogpt")
    )
    names = sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir())
    assert names == ["report-nanogpt-cuda-default-fused", "report-nanogpt-cuda-h200-default-fused"]
    assert plain.kernels[(True, False)] == "efficient" and h200.kernels[(True, False)] == "cudnn"


def test_a_gpu_without_bfloat16_kernels_autocasts_to_float16():
    """nanoGPT's train.py autocasts to float16 where bfloat16 is not supported: a T4 (sm75)
    preset defaults to fp16, where the memory-efficient kernel runs; asked for bf16, only the
    math path can."""
    config = Config.notebook()
    t4 = build_report("cuda", gpu="t4")
    assert t4.amp_dtype == "fp16" and t4.kernel_for(config) == "efficient"
    assert build_report("cuda", gpu="t4", amp_dtype="bf16").kernel_for(config) == "math"
    assert build_report("cuda", gpu="h100-80gb").amp_dtype == "bf16"
