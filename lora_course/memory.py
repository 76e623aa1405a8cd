"""Memory of a model before and during QLoRA training, computed from its architecture.

``weight_footprint(config, scheme)`` walks the architecture on the meta device and prices every
tensor the way bitsandbytes and transformers store it (measured with the pinned versions):

- fp32 / fp16 / bf16: every parameter at that width; buffers (rotary ``inv_freq``) stay fp32.
- int8 (LLM.int8, ``load_in_8bit``): the decoder's linear weights are int8 (1 byte); their
  per-row fp32 scales (``SCB``) are attributes, not parameters, so
  ``get_memory_footprint()`` does not count them.
- nf4 (``load_in_4bit``): linear weights are packed uint8, 0.5 byte per weight; the absmax
  per block of 64 (fp32, or uint8 + fp32 per 256 + one fp32 mean with double quantization)
  lives in ``quant_state``, also not counted (QLoRA, arXiv 2305.14314, section 3).
- Embeddings, ``lm_head`` and norms are never quantized (a tied ``lm_head`` is the embedding
  matrix itself, priced once); they keep ``keep_dtype``.
  ``peft.prepare_model_for_kbit_training`` upcasts them (every fp16/bf16 parameter that is not
  4-bit) to fp32: ``prepared=True``.

So ``Footprint.footprint_bytes`` equals ``model.get_memory_footprint()`` to the byte, and
``Footprint.total_bytes`` adds what it misses. Sizes in the tables are decimal GB (1e9 bytes),
as in the lesson.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from lora_course.params import meta_model

__all__ = [
    "SCHEMES",
    "Footprint",
    "weight_footprint",
    "shapes_model",
    "measured_quant_state_bytes",
    "lesson_memory_table",
    "real_memory_table",
    "NOMINAL_PARAMETERS",
    "LORA_TARGETS",
]

GB = 1e9
SCHEMES = ("fp32", "fp16", "bf16", "int8", "nf4", "nf4+dq")
_FLOAT = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
NOMINAL_PARAMETERS = {
    "Llama-2-7B": 7e9,
    "Llama-2-13B": 13e9,
    "Llama-2-70B": 70e9,
    "Llama-3.1-8B": 8e9,
    "Llama-3.1-70B": 70e9,
}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Footprint:
    """Bytes of one model under one scheme."""

    scheme: str
    linear_bytes: int  # the decoder's linear layers, as the scheme stores them
    other_bytes: int  # embeddings, lm_head, norms: never quantized
    buffer_bytes: int  # buffers such as rotary inv_freq (fp32)
    quant_state_bytes: int  # absmax / SCB statistics: NOT counted by get_memory_footprint

    @property
    def footprint_bytes(self) -> int:
        """What ``model.get_memory_footprint()`` reports: parameters + buffers."""
        return self.linear_bytes + self.other_bytes + self.buffer_bytes

    @property
    def total_bytes(self) -> int:
        """Everything the weights occupy: the footprint plus the quantization state."""
        return self.footprint_bytes + self.quant_state_bytes


@functools.lru_cache(maxsize=16)
def _named_meta_model(name: str) -> nn.Module:
    return meta_model(name)


def shapes_model(config) -> nn.Module:
    """``params.meta_model(config)``, built once per shipped name: read it, do not change it."""
    return _named_meta_model(config) if isinstance(config, str) else meta_model(config)


def _check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {list(SCHEMES)}")
    return scheme


def _quantized_bytes(n: int, rows: int, scheme: str) -> tuple[int, int]:
    """(stored weight bytes, quant-state bytes) of one linear weight with n values."""
    if scheme == "int8":
        return n, 4 * rows  # int8 values; one fp32 scale (SCB) per output row
    blocks = math.ceil(n / 64)
    if scheme == "nf4":
        return math.ceil(n / 2), 4 * blocks
    return math.ceil(n / 2), blocks + 4 * math.ceil(blocks / 256) + 4  # nf4+dq


def weight_footprint(
    config, scheme: str, keep_dtype: torch.dtype = torch.bfloat16, prepared: bool = False
) -> Footprint:
    """Weight bytes of ``config`` (a transformers config or a name in ``data/model-configs``).

    ``keep_dtype``: the width of the layers that are not quantized (int8/nf4 schemes; the
    float schemes set it themselves). ``prepared``: after ``prepare_model_for_kbit_training``,
    which upcasts those layers to fp32.
    """
    _check_scheme(scheme)
    model = shapes_model(config)
    quantized = scheme not in _FLOAT
    keep = _FLOAT[scheme] if not quantized else keep_dtype
    if prepared and keep in (torch.float16, torch.bfloat16):
        keep = torch.float32
    keep_size = torch.empty(0, dtype=keep).element_size()
    skip = {id(model.get_output_embeddings())}
    seen = set()  # a tied output head is the input embedding: stored once, priced once
    linear = other = state = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(module, nn.Linear) and id(module) not in skip and name == "weight":
                if quantized:
                    stored, extra = _quantized_bytes(p.numel(), p.shape[0], scheme)
                    linear, state = linear + stored, state + extra
                else:
                    linear += p.numel() * keep_size
            else:
                other += p.numel() * keep_size
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return Footprint(scheme, linear, other, buffers, state)


def measured_quant_state_bytes(model: nn.Module) -> int:
    """Bytes of the quantization statistics held by a loaded bitsandbytes model: int8 ``SCB``,
    4-bit ``absmax`` (+ ``offset`` and nested absmax). Shared code books are left out."""
    total = 0
    for p in model.parameters():
        scb = getattr(p, "SCB", None)
        if scb is not None:
            total += scb.numel() * scb.element_size()
        state = getattr(p, "quant_state", None)
        if state is not None:
            tensors = [state.absmax, state.offset]
            if state.state2 is not None:
                tensors.append(state.state2.absmax)
            total += sum(t.numel() * t.element_size() for t in tensors if t is not None)
    return total


def lesson_memory_table() -> pd.DataFrame:
    """The lesson's table: nominal parameters x bytes per parameter, in decimal GB."""
    width = {"FP32": 4, "FP16": 2, "INT8": 1, "INT4(QLoRA)": 0.5}
    sizes = {"7B model": 7e9, "13B model": 13e9, "70B model": 70e9}
    data = {size: [n * b / GB for b in width.values()] for size, n in sizes.items()}
    return pd.DataFrame(data, index=pd.Index(list(width), name="Precision"))


_LESSON_ROWS = [  # (label, scheme, bytes per parameter in the lesson's arithmetic, prepared)
    ("FP32", "fp32", 4, False),
    ("FP16", "fp16", 2, False),
    ("INT8", "int8", 1, False),
    ("INT4 (nf4+dq)", "nf4+dq", 0.5, False),
    ("INT4 (nf4+dq), prepared", "nf4+dq", 0.5, True),
]


def _reason(fp: Footprint, scheme: str, prepared: bool, real: int, nominal: float) -> str:
    parts = [f"{real / 1e9:.2f}B real parameters, not {nominal / 1e9:.0f}B"]
    if scheme in ("int8", "nf4+dq"):
        width = "fp32" if prepared else "16-bit"
        parts.append(f"embeddings + lm_head + norms kept {width} ({fp.other_bytes / GB:.2f} GB)")
        what = "row scales (SCB)" if scheme == "int8" else "absmax, double-quantized"
        parts.append(f"{what}: {fp.quant_state_bytes / GB:.2f} GB not in get_memory_footprint")
    if prepared:
        parts.append("upcast to fp32 by prepare_model_for_kbit_training")
    return "; ".join(parts)


def real_memory_table(names=None, keep_dtype: torch.dtype = torch.bfloat16) -> pd.DataFrame:
    """The lesson's arithmetic beside each real architecture, with the reason they differ.

    Columns: ``lesson_gb`` (nominal parameters x bytes), ``footprint_gb`` (what
    ``get_memory_footprint`` would say), ``quant_state_gb``, ``total_gb``, ``reason``.
    """
    from lora_course.params import count_parameters

    rows = []
    for name in names or list(NOMINAL_PARAMETERS):
        real = count_parameters(meta_model(name))[1]
        nominal = NOMINAL_PARAMETERS[name]
        for label, scheme, width, prepared in _LESSON_ROWS:
            fp = weight_footprint(name, scheme, keep_dtype=keep_dtype, prepared=prepared)
            rows.append(
                {
                    "model": name,
                    "precision": label,
                    "parameters": real,
                    "lesson_gb": nominal * width / GB,
                    "footprint_gb": fp.footprint_bytes / GB,
                    "quant_state_gb": fp.quant_state_bytes / GB,
                    "total_gb": fp.total_bytes / GB,
                    "reason": _reason(fp, scheme, prepared, real, nominal),
                }
            )
    return pd.DataFrame(rows)
