"""Counting parameters: trainable vs total, LoRA's r * (in + out), real architectures.

A LoRA adapter on a linear layer W (out x in) adds A (r x in) and B (out x r): r * (in + out)
parameters, against in * out for W itself (Hu et al. 2021, section 4.1). For a square
d x d layer that is 2 d r, the lesson's formula; for Llama-3.1-8B's k_proj/v_proj
(4096 -> 1024) it is r * (4096 + 1024).

Real architectures are built on PyTorch's ``meta`` device (shapes, no memory), so the counts
for 8B and 70B models are exact and cost nothing.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "count_parameters",
    "lora_parameter_count",
    "MODEL_CONFIG_DIR",
    "available_model_configs",
    "load_model_config",
    "meta_model",
]

MODEL_CONFIG_DIR = Path(__file__).resolve().parent.parent / "data" / "model-configs"


def _numel(p: torch.Tensor) -> int:
    # bitsandbytes' 4-bit Params4bit stores two weights per uint8; its quant_state keeps the
    # logical shape. Count weights, not bytes.
    state = getattr(p, "quant_state", None)
    if state is not None and getattr(state, "shape", None) is not None:
        return math.prod(state.shape)
    return p.numel()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of ``model``.

    Shared tensors are counted once; 4-bit weights count as the weights they stand for.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters needs an nn.Module, got {type(model).__name__}")
    trainable = total = 0
    for p in model.parameters():  # parameters() already skips shared duplicates
        n = _numel(p)
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def lora_parameter_count(in_features: int, out_features: int, rank: int) -> int:
    """Parameters of one LoRA adapter: A (rank x in) + B (out x rank) = rank * (in + out)."""
    in_features = _positive_int("in_features", in_features)
    out_features = _positive_int("out_features", out_features)
    rank = _positive_int("rank", rank)
    return rank * (in_features + out_features)


def available_model_configs() -> list[str]:
    """Names of the public model configurations shipped in ``data/model-configs``."""
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))


def load_model_config(name: str):
    """The ``transformers`` config of a shipped architecture, e.g. ``"Llama-3.1-8B"``."""
    from transformers import AutoConfig

    path = MODEL_CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(
            f"no model configuration named {name!r}; choose one of {available_model_configs()}"
        )
    values = json.loads(path.read_text())
    model_type = values.pop("model_type")
    return AutoConfig.for_model(model_type, **values)


def meta_model(config) -> nn.Module:
    """A causal LM built from ``config`` (a name or a config) on the meta device: shapes only."""
    from transformers import AutoModelForCausalLM

    if isinstance(config, str):
        config = load_model_config(config)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)
