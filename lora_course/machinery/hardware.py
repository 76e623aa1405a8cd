"""Does this CPU or GPU compute bf16 natively? Measured on a CPU, read from the GPU's generation.

The lesson's ``bnb_4bit_compute_dtype=torch.bfloat16`` is a choice for recent GPUs: NVIDIA GPUs
of compute capability 8.0 or more (Ampere: A100, RTX 30xx, and later) and CPUs with AVX512-BF16
(or AMX) multiply bf16 in hardware. Older NVIDIA GPUs (T4 and RTX 20xx at 7.5, V100 at 7.0) have
no bf16 units; fp16 is the usual compute dtype there. Other CPUs (most laptops, AVX2
servers) emulate it, converting every value to fp32 and back, and a QLoRA training step then
costs several times more than the same step in fp32 (about 6-7x measured on the tiny model).

``bf16_slowdown()`` times the path QLoRA actually takes, a bitsandbytes ``Linear4bit`` forward
and backward with bf16 compute against the same layer with fp32 compute, interleaved, median
of several, on one thread (so a busy machine slows both alike). The answer is cached for the
process. ``qlora_compute_dtype(device)`` turns it into the compute dtype ``load_model``'s
``"nf4"`` preset uses: bf16 (the lesson's recipe) on a GPU of compute capability 8.0 or more and
on a CPU that computes bf16 natively; fp16 on an older GPU; fp32 on a CPU that emulates bf16.
"""

from __future__ import annotations

import functools
import statistics
import time
from pathlib import Path

import torch

__all__ = [
    "available_bytes",
    "measure_in_fresh_processes",
    "measuring_env",
    "process_status_bytes",
    "check_memory",
    "NATIVE_LIMIT",
    "bf16_slowdown",
    "gpu_native_bf16",
    "native_bf16",
    "qlora_compute_dtype",
]

# bf16 time / fp32 time at or below which bf16 counts as native. Measured on the tiny model's
# layer shape: 0.6-1.1 where AVX512-BF16 computes it, 6-9 where it is emulated (AVX2).
NATIVE_LIMIT = 2.0


def _layer_step(compute_dtype: torch.dtype, n_in: int = 192, n_out: int = 512, tokens: int = 256):
    """A callable running one forward and backward through a 4-bit NF4 layer."""
    import bitsandbytes as bnb

    gen = torch.Generator().manual_seed(0)
    layer = bnb.nn.Linear4bit(n_in, n_out, bias=False, compute_dtype=compute_dtype)
    weight = torch.randn(n_out, n_in, generator=gen)
    layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")
    layer = layer.to("cpu")  # quantizes the weight
    layer.train()  # the training path: dequantize, then a matmul in the compute dtype
    x = torch.randn(tokens, n_in, generator=gen, requires_grad=True)

    def step():
        layer(x).sum().backward()

    return step


def _matmul_step(dtype: torch.dtype, size: int = 256):
    """The same question without bitsandbytes: one square matmul in ``dtype``."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(dtype)
    b = torch.randn(size, size, generator=gen).to(dtype)
    return lambda: a @ b


@functools.cache
def bf16_slowdown(repeats: int = 5) -> float:
    """Median seconds of a QLoRA layer step with bf16 compute over the same with fp32, on this CPU.

    About 1 or below: bf16 is native. Several times 1: bf16 is emulated. Falls back to a plain
    matmul where bitsandbytes cannot run. Takes 0.2-1 s once per process.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a property of the core, not of how busy the others are
    try:
        try:
            steps = {dt: _layer_step(dt) for dt in (torch.float32, torch.bfloat16)}
        except Exception:  # no bitsandbytes, or no CPU backend in it
            steps = {dt: _matmul_step(dt) for dt in (torch.float32, torch.bfloat16)}
        samples: dict[torch.dtype, list[float]] = {dt: [] for dt in steps}
        for step in steps.values():
            step()  # warm-up: first-call allocations and kernel selection
        for _ in range(repeats):
            for dt, step in steps.items():
                start = time.perf_counter()
                step()
                step()
                samples[dt].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(samples[torch.bfloat16]) / statistics.median(samples[torch.float32])


def native_bf16() -> bool:
    """True when this CPU computes bf16 about as fast as fp32 (measured once per process)."""
    return bf16_slowdown() <= NATIVE_LIMIT


def gpu_native_bf16(device: str | torch.device = "cuda") -> bool:
    """True when the GPU ``device`` multiplies bf16 in hardware: compute capability 8.0 or more.

    ``torch.cuda.is_bf16_supported()`` is not this question: by default it also answers True where
    bf16 is only emulated (a T4 can hold bf16 tensors), so the generation is read directly, as
    ``is_bf16_supported(including_emulation=False)`` does for the current device. ROCm GPUs
    count as native, as torch counts them.
    """
    if torch.version.hip:
        return True
    major, _minor = torch.cuda.get_device_capability(device)
    return major >= 8


def qlora_compute_dtype(device: str | torch.device = "cpu") -> torch.dtype:
    """The 4-bit compute dtype for ``device``: bf16 on a GPU with native bf16 (compute capability
    8.0 or more) and on a CPU with native bf16; fp16 on an older GPU (T4, V100, RTX 20xx), the
    usual choice there; fp32 on a CPU that emulates bf16 (where bf16 would cost several times
    more)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if gpu_native_bf16(device) else torch.float16
    if kind != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return torch.bfloat16 if native_bf16() else torch.float32


def available_bytes() -> int:
    """Memory the system can give a new allocation now (``MemAvailable``; Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return psutil.virtual_memory().available


def check_memory(n_bytes: int, what: str, margin: float = 1.1) -> None:
    """Raise ``MemoryError`` naming ``what``, the bytes it needs and the bytes available, when
    ``n_bytes * margin`` is more than this machine has available now."""
    free = available_bytes()
    if n_bytes * margin > free:
        raise MemoryError(
            f"{what} needs about {n_bytes / 1e9:.1f} GB of memory and this machine has "
            f"{free / 1e9:.1f} GB available now. Fix: free memory, use a smaller model or a "
            "smaller scheme (bf16 or nf4 instead of fp32), or use a machine with more memory"
        )


def process_status_bytes(field: str) -> int:
    """A memory field of this process's ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} is not in /proc/self/status: measuring memory needs Linux")


def measuring_env() -> dict:
    """The environment of a fresh process that measures memory: glibc maps every block over
    64 KiB on its own, so freed tensors go back to the system instead of hiding in the
    baseline; the course's own package first on the path."""
    import os

    root = Path(__file__).resolve().parents[2]
    return dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=str(root))


def measure_in_fresh_processes(module: str, specs: dict) -> dict:
    """``{label: result}``: ``python -m module <spec as JSON>`` for each ``{label: spec}``, each
    in its own fresh process in ``measuring_env()``, all side by side; a result is the JSON
    object the process prints last. Each process reads only its own memory counters, so running
    them together changes no byte figure. A failed process raises ``RuntimeError`` naming its
    label, with the end of its stderr."""
    import json
    import subprocess
    import sys

    env = measuring_env()
    running = {
        label: subprocess.Popen(
            [sys.executable, "-m", module, json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for label, spec in specs.items()
    }
    done = {label: process.communicate() for label, process in running.items()}
    for label, process in running.items():
        if process.returncode != 0:
            raise RuntimeError(f"the process measuring {label} failed:\n{done[label][1][-2000:]}")
    return {label: json.loads(out.strip().splitlines()[-1]) for label, (out, _) in done.items()}
