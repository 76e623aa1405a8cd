"""hardware: bf16 measured native or emulated, and the QLoRA compute dtype that follows."""

import os
import platform
import subprocess
import sys

import pytest
import torch

from lora_course.machinery import hardware
from lora_course.machinery.hardware import bf16_slowdown, native_bf16, qlora_compute_dtype

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_measurement_is_a_positive_ratio_and_a_bool_cached_per_process():
    ratio = bf16_slowdown()
    assert isinstance(ratio, float) and ratio > 0
    assert isinstance(native_bf16(), bool)
    assert native_bf16() == (ratio <= hardware.NATIVE_LIMIT)
    assert bf16_slowdown() == ratio  # measured once: the second call is the cached value
    assert torch.get_num_threads() == 1  # the thread count it changed is restored


def test_a_bad_repeats_names_the_argument():
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        bf16_slowdown(0)


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_the_cpu_dtype_follows_the_measurement(monkeypatch, native, expected):
    monkeypatch.setattr(hardware, "native_bf16", lambda: native)
    assert qlora_compute_dtype("cpu") == expected
    assert qlora_compute_dtype(torch.device("cpu")) == expected


def _a_gpu(monkeypatch, capability):
    """Pretend the CUDA device has this compute capability (a CPU-only torch has none)."""
    seen = []

    def capability_of(device=None):
        seen.append(device)
        return capability

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability_of)

    def no_measuring():
        raise AssertionError("a GPU needs no CPU measurement")

    monkeypatch.setattr(hardware, "native_bf16", no_measuring)
    return seen


@pytest.mark.parametrize(
    "capability, expected",
    [
        ((8, 0), torch.bfloat16),  # A100
        ((8, 6), torch.bfloat16),  # RTX 3060-3090
        ((8, 9), torch.bfloat16),  # RTX 4090, L4
        ((9, 0), torch.bfloat16),  # H100
        ((7, 5), torch.float16),  # T4, RTX 20xx
        ((7, 0), torch.float16),  # V100
        ((6, 1), torch.float16),  # P40, GTX 10xx
    ],
)
def test_a_gpu_gets_bf16_only_where_it_is_native(monkeypatch, capability, expected):
    seen = _a_gpu(monkeypatch, capability)
    assert qlora_compute_dtype("cuda") == expected
    assert qlora_compute_dtype("cuda:1") == expected
    assert hardware.gpu_native_bf16("cuda") == (expected == torch.bfloat16)
    assert "cuda:1" in [str(d) for d in seen]  # the device asked about, not always device 0


def test_a_rocm_gpu_counts_as_native(monkeypatch):
    _a_gpu(monkeypatch, (7, 0))
    monkeypatch.setattr(torch.version, "hip", "6.2")
    assert qlora_compute_dtype("cuda") == torch.bfloat16


def test_an_unknown_device_names_the_argument():
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        qlora_compute_dtype("mps")


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="oneDNN ISA is x86")
def test_emulated_bf16_is_detected(tmp_path):
    """oneDNN limited to AVX2 emulates bf16 (as on a CPU without AVX512-BF16): measured ~9x
    slower per 4-bit layer step on an AVX512-BF16 EPYC, so the measurement must say emulated."""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    code = "from lora_course.machinery.hardware import bf16_slowdown as s; print(s())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    ratio = float(out.stdout.strip().splitlines()[-1])
    assert ratio > hardware.NATIVE_LIMIT, f"bf16 / fp32 = {ratio:.2f} with AVX2 only"
