"""Counting parameters: trainable vs total, LoRA's r * (in + out), real architectures.

A LoRA adapter on a linear layer W (out x in) adds A (r x in) and B (out x r): r * (in + out)
parameters, against in * out for W itself (Hu et al. 2021, section 4.1). For a square
d x d layer that is 2 d r, the lesson's formula; for Llama-3.1-8B's k_proj/v_proj
(4096 -> 1024) it is r * (4096 + 1024).

Real architectures are built on PyTorch's ``meta`` device (shapes, no memory), so the counts
for 8B and 70B models are exact and cost nothing.
"""

from __future__ import annotations

import functools
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
    "LESSON_CONFIGS",
    "TARGET_SETS",
    "rank_alpha_table",
    "architecture_table",
    "layer_shapes",
    "lora_target_table",
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


# The lesson's rank/alpha table: (rank, alpha, use case), in its own words.
LESSON_CONFIGS = (
    (4, 8, "Light style changes"),
    (8, 16, "General fine-tuning (default recommendation)"),
    (16, 32, "Complex tasks, domain adaptation"),
    (64, 128, "When near Full FT performance is needed"),
)

# Which linear layers get an adapter; the names are Llama's (and PEFT's ``target_modules``).
TARGET_SETS = {
    "q+v": ("q_proj", "v_proj"),  # the LoRA paper's choice (Wq, Wv)
    "attention q,k,v,o": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "all linear": "all-linear",  # every linear layer but lm_head, QLoRA's choice
}


def rank_alpha_table(d: int = 4096, configs=LESSON_CONFIGS):
    """The lesson's table for a d x d layer: rank, alpha, scaling = alpha / rank, LoRA
    parameters 2 * d * rank, their percentage of the d * d weight, and the use case.

    ``configs`` is a sequence of ``(rank, alpha, use_case)``.
    """
    import pandas as pd

    d = _positive_int("d", d)
    rows = []
    for rank, alpha, use_case in configs:
        params = lora_parameter_count(d, d, rank)
        rows.append(
            {
                "rank": rank,
                "alpha": alpha,
                "scaling": alpha / rank,
                "lora_params": params,
                "percent_of_weight": 100 * params / (d * d),
                "use_case": use_case,
            }
        )
    return pd.DataFrame(rows)


def architecture_table(names=None):
    """Shape and exact parameter count (built on the meta device) of each shipped config,
    family by family, smallest first."""
    import pandas as pd

    names = names or sorted(
        available_model_configs(), key=lambda n: (n.rsplit("-", 1)[0], _base_count(n))
    )
    rows = []
    for name in names:
        config = load_model_config(name)
        rows.append(
            {
                "model": name,
                "hidden": config.hidden_size,
                "intermediate": config.intermediate_size,
                "layers": config.num_hidden_layers,
                "heads": config.num_attention_heads,
                "kv_heads": config.num_key_value_heads,
                "vocab": config.vocab_size,
                "parameters": _base_count(name),
            }
        )
    return pd.DataFrame(rows)


@functools.cache
def _base_count(name: str) -> int:
    return count_parameters(meta_model(name))[1]


@functools.cache
def _lora_count_at_rank_1(name: str, targets) -> int:
    # An adapter has rank * (in + out) parameters, linear in rank: count once at rank 1 with
    # our own add_lora, so the layers chosen are exactly the ones add_lora would wrap.
    from lora_course.lora import add_lora

    model = add_lora(meta_model(name), targets, rank=1, alpha=1)
    return count_parameters(model)[0]


def layer_shapes(name: str = "Llama-3.1-8B", rank: int = 8):
    """The linear layers of one decoder block: in, out, weight parameters, and the LoRA
    parameters ``rank * (in + out)`` next to the square-matrix formula ``2 * d * rank``."""
    import pandas as pd

    rank = _positive_int("rank", rank)
    model = meta_model(name)
    d = model.config.hidden_size
    block = model.model.layers[0]
    rows = []
    for module_name, m in block.named_modules():
        if isinstance(m, nn.Linear):
            lora = lora_parameter_count(m.in_features, m.out_features, rank)
            rows.append(
                {
                    "module": module_name,
                    "in_features": m.in_features,
                    "out_features": m.out_features,
                    "weight_params": m.in_features * m.out_features,
                    "lora_params": lora,
                    "square_formula_2dr": 2 * d * rank,
                    "percent_of_weight": 100 * lora / (m.in_features * m.out_features),
                }
            )
    return pd.DataFrame(rows)


def lora_target_table(name: str = "Llama-3.1-8B", ranks=(8,), target_sets=None):
    """Trainable LoRA parameters of a real architecture per target set and rank.

    ``total`` is the base model plus the adapters and ``percent`` = 100 * trainable / total,
    the numbers PEFT's ``print_trainable_parameters`` reports.
    """
    import pandas as pd

    target_sets = TARGET_SETS if target_sets is None else target_sets
    if isinstance(ranks, numbers.Integral):
        ranks = (ranks,)
    base = _base_count(name)
    rows = []
    for label, targets in target_sets.items():
        key = targets if isinstance(targets, str) else tuple(targets)
        per_rank = _lora_count_at_rank_1(name, key)
        for rank in ranks:
            trainable = per_rank * _positive_int("rank", rank)
            rows.append(
                {
                    "model": name,
                    "targets": label,
                    "rank": rank,
                    "trainable": trainable,
                    "total": base + trainable,
                    "percent": 100 * trainable / (base + trainable),
                }
            )
    return pd.DataFrame(rows)
