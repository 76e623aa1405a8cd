"""What works on this machine: versions, CPU/GPU, the bitsandbytes backend, the offline model.

Each check returns a row (what, status, detail, fix) so notebook 00 can show a table and
``python -m lora_course doctor`` can print it; nothing here raises on a missing piece.
"""

from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass

import torch

__all__ = ["Check", "compute_dtype_reason", "package_versions", "run_checks", "report"]

PACKAGES = ("torch", "transformers", "bitsandbytes", "peft", "pandas", "matplotlib", "nbval")


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str
    fix: str = ""


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """Installed version of each package, or None where it is missing."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _check_packages() -> list[Check]:
    rows = []
    for name, ver in package_versions().items():
        rows.append(
            Check(
                f"package {name}",
                ver is not None,
                ver or "not installed",
                "" if ver else "run `make setup` (or `pip install -c constraints.txt -e .[dev]`)",
            )
        )
    return rows


def _check_device() -> Check:
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        from lora_course.machinery.hardware import gpu_native_bf16

        major, minor = torch.cuda.get_device_capability(0)
        bf16 = "native" if gpu_native_bf16("cuda:0") else "not native"
        return Check("GPU", True, f"{name} (compute capability {major}.{minor}, bf16 {bf16})")
    return Check(
        "GPU",
        True,
        f"none: every notebook runs on the CPU ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads)",
    )


def _check_bitsandbytes() -> Check:
    try:
        import bitsandbytes.functional as bnbf
    except Exception as exc:  # ImportError, or a backend that fails while loading
        return Check(
            "bitsandbytes 4-bit",
            False,
            f"cannot import bitsandbytes: {exc}",
            "install bitsandbytes>=0.46 (`make setup`); on a Mac use the CPU notebooks' "
            "from-scratch NF4 instead",
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        x = torch.linspace(-1, 1, 128, device=device)
        packed, state = bnbf.quantize_4bit(x, quant_type="nf4")
        back = bnbf.dequantize_4bit(packed, state)
        err = (back - x).abs().max().item()
    except Exception as exc:
        return Check(
            "bitsandbytes 4-bit",
            False,
            f"quantize_4bit failed on {device}: {exc}",
            "upgrade bitsandbytes to 0.50 or newer, which runs 4-bit and 8-bit on the CPU",
        )
    return Check("bitsandbytes 4-bit", True, f"NF4 round trip on {device}, max error {err:.3f}")


def compute_dtype_reason(device: str | None = None) -> str:
    """One sentence: the 4-bit compute dtype ``load_model("nf4")`` uses here, and why."""
    from lora_course.machinery.hardware import NATIVE_LIMIT, bf16_slowdown, qlora_compute_dtype

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = str(qlora_compute_dtype(device)).removeprefix("torch.")
    if device.startswith("cuda"):
        major, minor = torch.cuda.get_device_capability(device)
        if dtype == "bfloat16":
            return (
                f"{dtype} on the GPU, the lesson's choice: compute capability {major}.{minor} "
                "(8.0 or more) computes bf16 natively"
            )
        return (
            f"{dtype} on the GPU, not the lesson's bf16: compute capability {major}.{minor} "
            "(below 8.0: T4, V100, RTX 20xx) has no native bf16, and fp16 is the usual choice there"
        )
    ratio = bf16_slowdown()
    how = "native" if ratio <= NATIVE_LIMIT else "emulated"
    measured = f"a 4-bit layer step in bf16 takes {ratio:.1f}x its time in fp32 on this CPU"
    if how == "native":
        return f"{dtype}, as the lesson: bf16 is native here ({measured})"
    return (
        f"{dtype}, not the lesson's bf16: bf16 is emulated here ({measured}); the lesson's "
        "bf16 is a GPU choice"
    )


def _check_compute_dtype() -> Check:
    try:
        return Check("QLoRA compute dtype", True, compute_dtype_reason())
    except Exception as exc:  # bitsandbytes and plain torch both failed to run the probe
        return Check("QLoRA compute dtype", False, f"could not measure bf16: {exc}", "")


def _check_tiny_model() -> Check:
    try:
        models = importlib.import_module("lora_course.models")
    except ImportError:
        return Check("offline model", False, "lora_course.models is not available", "")
    try:
        model, _ = models.load_model()
    except Exception as exc:
        return Check(
            "offline model",
            False,
            str(exc),
            "rebuild it: `python -m lora_course build-model`",
        )
    n = sum(p.numel() for p in model.parameters())
    return Check("offline model", True, f"{type(model).__name__}, {n:,} parameters")


def run_checks(include_model: bool = True) -> list[Check]:
    """Every check, in the order notebook 00 shows them."""
    rows = [Check("python", True, platform.python_version())]
    rows += _check_packages()
    rows.append(_check_device())
    rows.append(_check_bitsandbytes())
    rows.append(_check_compute_dtype())
    if include_model:
        rows.append(_check_tiny_model())
    return rows


def report(checks: list[Check] | None = None):
    """The checks as a DataFrame: what, status (OK / MISSING), detail, fix."""
    import pandas as pd

    checks = run_checks() if checks is None else checks
    return pd.DataFrame(
        {
            "what": [c.what for c in checks],
            "status": ["OK" if c.ok else "PROBLEM" for c in checks],
            "detail": [c.detail for c in checks],
            "fix": [c.fix for c in checks],
        }
    )
