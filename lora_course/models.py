"""Loading a causal LM the lesson's way: ``from_pretrained(..., quantization_config=...)``.

The default is the offline tiny Llama in ``data/tiny-llama`` (built by ``python -m lora_course
build-model``); ``name=`` or the ``LORA_COURSE_MODEL`` environment variable selects a Hugging
Face hub model instead (e.g. ``meta-llama/Llama-3.1-8B-Instruct``), placed with
``device_map="auto"`` for learners with a GPU.

Quantization presets (``quantization_config(name)``):

* ``"int8"``: ``BitsAndBytesConfig(load_in_8bit=True)``, LLM.int8() (Dettmers et al. 2022).
* ``"nf4"``: exactly the lesson's QLoRA recipe (Dettmers et al. 2023, arXiv 2305.14314):
  4-bit NormalFloat storage, bf16 compute, double quantization. These are NOT the library's
  defaults (fp4, fp32 compute, no double quantization). Given a device
  (``quantization_config("nf4", device="cpu")``, and always inside ``load_model``) the compute
  dtype is ``hardware.qlora_compute_dtype(device)``: the lesson's bf16 on a GPU of compute
  capability 8.0 or more and on a CPU that computes bf16 natively, fp16 on an older GPU (T4,
  V100, RTX 20xx: no bf16 units), fp32 on a CPU that emulates bf16, where bf16 makes a QLoRA
  training step several times slower (about 6x on the tiny model, measured) for the same result.

bitsandbytes 0.50 runs both on the CPU, where transformers needs ``device_map="cpu"``.
transformers and bitsandbytes are imported inside the functions, so ``import lora_course``
stays light.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path

import torch

from lora_course.machinery.hardware import qlora_compute_dtype

__all__ = [
    "TINY_MODEL_DIR",
    "MODEL_ENV",
    "QUANTIZATIONS",
    "quantization_config",
    "weights_gb",
    "load_model",
]

TINY_MODEL_DIR = Path(__file__).resolve().parent.parent / "data" / "tiny-llama"
MODEL_ENV = "LORA_COURSE_MODEL"
QUANTIZATIONS = ("int8", "nf4")
REBUILD = (
    "rebuild it with `python -m lora_course build-model` "
    "(or restore it: `git checkout -- data/tiny-llama`)"
)


def quantization_config(name: str, device: str | None = None):
    """The ``BitsAndBytesConfig`` preset called ``name``: ``"int8"`` or ``"nf4"``.

    device: None for the lesson's config exactly as printed (nf4 with bf16 compute); ``"cpu"``
        or ``"cuda"`` for the compute dtype that suits that device
        (``lora_course.machinery.hardware.qlora_compute_dtype``: fp32 on a CPU without native
        bf16, fp16 on a GPU without it).
    """
    from transformers import BitsAndBytesConfig

    if name == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if name == "nf4":  # the lesson's config, field for field; the compute dtype per device
        compute = torch.bfloat16 if device is None else qlora_compute_dtype(device)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=True,
        )
    raise ValueError(
        f"unknown quantization {name!r}: use None (full precision), one of "
        f"{list(QUANTIZATIONS)}, or a transformers.BitsAndBytesConfig"
    )


def weights_gb(config_name: str) -> dict[str, float]:
    """Decimal GB that the weights of a shipped architecture need, per precision.

    ``fp32``/``bf16``/``int8``: parameters x 4/2/1 bytes. ``nf4``: the linear layers at 4.127
    bits (NF4 + double quantization, QLoRA section 3) and the embeddings and ``lm_head`` in
    bf16, as bitsandbytes loads them. Parameters are counted on the meta device.
    """
    from lora_course.params import load_model_config, meta_model

    model = meta_model(load_model_config(config_name))
    total = sum(p.numel() for p in model.parameters())
    linear = sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head")
    )
    return {
        "parameters": total,
        "fp32": total * 4 / 1e9,
        "bf16": total * 2 / 1e9,
        "int8": total / 1e9,
        "nf4": (linear * 4.127 / 8 + (total - linear) * 2) / 1e9,
    }


def _known_architecture(name: str) -> str | None:
    """The shipped config (``data/model-configs``) a hub name refers to, e.g. Llama-3.1-8B."""
    from lora_course.params import available_model_configs

    for config in sorted(available_model_configs(), key=len, reverse=True):
        if re.search(re.escape(config) + r"(?![0-9.])", name, flags=re.IGNORECASE):
            return config
    return None


def _bitsandbytes_ready(device: str) -> None:
    try:
        import bitsandbytes.functional as bnbf

        bnbf.quantize_4bit(torch.zeros(64, device=device), quant_type="nf4")
    except Exception as exc:  # ImportError, or a library without a backend for this device
        raise RuntimeError(
            f"quantized loading needs bitsandbytes with a {device} backend, but it failed: "
            f"{exc}. Fix: install bitsandbytes 0.50 or newer (`make setup`), which runs 8-bit "
            "and 4-bit on the CPU too; or load with quantization=None"
        ) from exc


class _DropInt8CastNotice(logging.Filter):
    """bitsandbytes logs "inputs will be cast ... to float16" on EVERY int8 matmul with fp32
    inputs (the tiny model's dtype). The cast is expected; a notebook needs it once, not per
    layer per step, and the notebooks say it in prose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("MatMul8bitLt: inputs will be cast")


def _quiet_int8_cast_notice() -> None:
    log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastNotice) for f in log.filters):
        log.addFilter(_DropInt8CastNotice())


def _keep_4bit_layers_trainable(model) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a ``Linear4bit`` weight in place the
    first time the layer runs in eval mode without gradients (``evaluate``, ``generate``).
    The repacked layer computes the same outputs but passes no gradient back to its input, so a
    LoRA trained afterwards gets zero gradient in every layer below the top one. QLoRA needs
    those gradients; inference speed on the tiny model does not need the repacking.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _check_fits(folder: Path, quantization, dtype) -> None:
    """A clear MemoryError before loading a local model that this machine's memory cannot hold
    (the footprint calculator's bytes for the folder's config, scheme and dtype)."""
    from transformers import AutoConfig

    from lora_course.machinery.hardware import check_memory
    from lora_course.memory import weight_footprint

    config = AutoConfig.from_pretrained(folder)
    keep = dtype or getattr(config, "dtype", None) or torch.float32
    if isinstance(keep, str):
        keep = getattr(torch, keep, torch.float32)
    if quantization is None:
        scheme = {torch.float32: "fp32", torch.float16: "fp16"}.get(keep, "bf16")
    elif quantization.load_in_8bit:
        scheme = "int8"
    else:
        scheme = "nf4+dq" if quantization.bnb_4bit_use_double_quant else "nf4"
    need = weight_footprint(config, scheme, keep_dtype=keep).total_bytes
    check_memory(need, f"loading {folder.name} ({scheme})")


def _device_map(device: str, is_hub: bool):
    """Where ``from_pretrained`` puts the weights: ``"cpu"``; ``"cuda:i"`` is one whole copy on
    GPU i (``{"": i}``, what each process of a multi-GPU data-parallel launch needs);
    ``"cuda"`` spreads a hub model over every visible GPU (``"auto"``) and puts a local one on
    the current GPU."""
    if device == "cpu":
        return "cpu"
    if device.startswith("cuda:"):
        return {"": int(device.split(":", 1)[1])}
    return "auto" if is_hub else {"": torch.cuda.current_device()}


@contextlib.contextmanager
def _progress_bars(enabled: bool):
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if was and not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not enabled:
            hf_logging.enable_progress_bar()


def load_model(
    name: str | None = None,
    quantization=None,
    device: str | None = None,
    dtype: torch.dtype | None = None,
):
    """``(model, tokenizer)``: the tiny Llama by default, or a hub model.

    name: a hub id or a local folder; default ``$LORA_COURSE_MODEL`` or ``data/tiny-llama``.
    quantization: None (fp32 for the tiny model, the checkpoint's dtype for any other folder
        or hub model),
        ``"int8"``, ``"nf4"`` (the lesson's ``BitsAndBytesConfig``, with the compute dtype of
        ``quantization_config("nf4", device)``: fp32 on a CPU that emulates bf16) or a
        ``BitsAndBytesConfig``, used as given.
    device: ``"cuda"``, ``"cuda:i"`` or ``"cpu"``; default the GPU when there is one. On
        ``"cuda"`` a hub model uses ``device_map="auto"``; ``"cuda:i"`` puts the whole model
        on GPU i (``device_map={"": i}``: one copy per data-parallel process).
    dtype: the float type of every layer that is not quantized, e.g. ``torch.bfloat16``;
        default fp32 for the tiny model, the checkpoint's dtype (``dtype="auto"``) for a local
        folder or a hub model alike.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    name = name or os.environ.get(MODEL_ENV) or None
    if isinstance(quantization, str) and quantization not in QUANTIZATIONS:
        quantization_config(quantization)  # raises the ValueError that lists the presets
    if not isinstance(quantization, str | None | BitsAndBytesConfig):
        raise TypeError(
            f"quantization must be None, one of {list(QUANTIZATIONS)} or a BitsAndBytesConfig, "
            f"got {type(quantization).__name__}"
        )
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(
            f"dtype must be a torch float type such as torch.bfloat16, or None, got {dtype!r}"
        )
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but torch sees no GPU; use device='cpu'")
    if isinstance(quantization, str):
        quantization = quantization_config(quantization, device=device)

    local = Path(name) if name else TINY_MODEL_DIR
    is_hub = name is not None and not local.exists()
    if is_hub and (local.is_absolute() or name.startswith(("~", ".")) or name.count("/") > 1):
        raise FileNotFoundError(
            f"no model folder {name}: give an existing folder, a hub id such as "
            "meta-llama/Llama-3.1-8B-Instruct, or nothing for the offline tiny model"
        )
    if not is_hub and not (local / "config.json").is_file():
        where = "the tiny model" if name is None else "the model folder"
        raise FileNotFoundError(f"{where} {local} has no config.json; {REBUILD}")
    if is_hub and not device.startswith("cuda"):
        arch = _known_architecture(name)
        if arch is not None:
            gb = weights_gb(arch)
            raise RuntimeError(
                f"{name} is a {arch} model ({gb['parameters']:,} parameters): its weights alone "
                f"need about {gb['bf16']:.1f} GB in bf16, {gb['int8']:.1f} GB in int8 and "
                f"{gb['nf4']:.1f} GB in nf4, and training needs more. That is a GPU job and no "
                f"GPU is visible here. Fix: run on a machine with a GPU, or unset {MODEL_ENV} "
                "to use the offline tiny model, which runs every notebook on a CPU"
            )

    if not is_hub and local.resolve() != TINY_MODEL_DIR.resolve() and device == "cpu":
        _check_fits(local, quantization, dtype)

    kwargs = {}
    if quantization is not None:
        _bitsandbytes_ready("cuda" if device.startswith("cuda") else "cpu")
        kwargs["quantization_config"] = quantization
        if quantization.load_in_8bit:
            _quiet_int8_cast_notice()
    tiny = not is_hub and local.resolve() == TINY_MODEL_DIR.resolve()
    if is_hub or quantization is not None:
        kwargs["device_map"] = _device_map(device, is_hub)
    # A hub id and a local folder load alike: the layers bitsandbytes leaves alone keep the
    # checkpoint's dtype (bf16 for Llama checkpoints), as from_pretrained does by default.
    # The tiny model is documented fp32 (its checkpoint is fp32): said explicitly.
    kwargs["dtype"] = torch.float32 if tiny else "auto"
    if dtype is not None:
        kwargs["dtype"] = dtype

    source = name if is_hub else str(local)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        # a "Loading weights" bar is useful for an 8B download, noise for the local tiny model
        with _progress_bars(is_hub):
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        if not is_hub:
            raise FileNotFoundError(f"cannot load {local}: {exc}; {REBUILD}") from exc
        from huggingface_hub.constants import is_offline_mode

        why = "HF_HUB_OFFLINE is set" if is_offline_mode() else "the hub could not be reached"
        raise OSError(
            f"cannot load {name!r}: no local copy in the Hugging Face cache and {why}. Fix: "
            f"download it once with network (`hf download {name}`; gated models such as "
            "Llama need `hf auth login` and an accepted licence), or unset "
            f"{MODEL_ENV} to use the offline tiny model"
        ) from exc
    if quantization is not None and quantization.load_in_4bit:
        _keep_4bit_layers_trainable(model)
    if "device_map" not in kwargs:
        model = model.to(device)
    model.eval()
    return model, tokenizer
