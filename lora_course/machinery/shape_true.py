"""Shape-true models: a real architecture's exact layout with random weights, built offline.

``shape_true_model("Llama-3.2-1B")`` writes a local model folder with the layout of a config in
``data/model-configs`` (every tensor's name, shape and dtype as the real checkpoint has them)
and random weights, and returns its path; ``load_model(name=path)`` and ``LORA_COURSE_MODEL``
accept it like any downloaded model. The memory, the time and the code path of loading,
quantizing and training it are real; the text it writes is not (its weights are random).

- Built tensor by tensor from the architecture on the meta device and written in safetensors
  shards of at most ``SHARD_BYTES``: building holds one shard, never the whole model, so it does
  not need twice the model's memory (nor once).
- Cached: the folder is keyed on the architecture, the overrides and the dtype, under
  ``$LORA_COURSE_CACHE`` (default ``~/.cache/lora-course/shape-true``); a second call returns it
  without rebuilding.
- ``overrides`` scale a layout down for tests (``{"num_hidden_layers": 2}``): the name of the
  folder and its ``README.md`` say so.
- The tokenizer is the tiny model's (byte-level BPE, about 900 tokens; ids fit any Llama
  vocabulary); bos/eos/pad ids in ``config.json`` are that tokenizer's.
- Weights: normal(0, ``initializer_range``) for linear layers and embeddings, ones for norms,
  seeded, as transformers initialises a fresh Llama.

``check_memory(n_bytes, what)`` raises a clear ``MemoryError`` (how much is needed, how much is
available) before a load that the machine cannot hold.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from lora_course.machinery.hardware import check_memory

__all__ = [
    "SHARD_BYTES",
    "CACHE_ENV",
    "cache_dir",
    "shape_true_config",
    "shape_true_model",
    "SMALL_1B",
]

SHARD_BYTES = 1_000_000_000
CACHE_ENV = "LORA_COURSE_CACHE"
_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
# Llama-3.2-1B scaled down for tests: its layout (GQA 4 query heads per k/v head, head_dim 64,
# SwiGLU at 4x the width, tied embeddings, llama3 RoPE scaling), narrower and 2 layers deep,
# with a 2,048-token vocabulary so that a notebook trains it in seconds on a CPU.
SMALL_1B = {
    "num_hidden_layers": 2,
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "intermediate_size": 1024,
    "vocab_size": 2048,
}


def cache_dir() -> Path:
    """Where shape-true folders are kept: ``$LORA_COURSE_CACHE`` or the user's cache."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "lora-course" / "shape-true"


def shape_true_config(name: str, overrides: dict | None = None):
    """The transformers config of ``name`` (``data/model-configs``), with ``overrides``, and the
    tiny tokenizer's special-token ids."""
    from lora_course.models import TINY_MODEL_DIR
    from lora_course.params import load_model_config

    config = load_model_config(name)
    for key, value in (overrides or {}).items():
        if not hasattr(config, key):
            raise ValueError(f"{name} has no config field {key!r} to override")
        setattr(config, key, value)
    tiny = json.loads((TINY_MODEL_DIR / "config.json").read_text())
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, key, tiny[key])
    if config.vocab_size < tiny["vocab_size"]:
        raise ValueError(
            f"vocab_size {config.vocab_size} is smaller than the tokenizer's {tiny['vocab_size']}"
        )
    return config


def _folder_name(name: str, overrides: dict, dtype: str) -> str:
    if not overrides:
        return f"{name}-{dtype}"
    key = json.dumps(overrides, sort_keys=True)
    return f"{name}-scaled-{hashlib.sha256(key.encode()).hexdigest()[:10]}-{dtype}"


def _card(name: str, overrides: dict, dtype: str, parameters: int) -> str:
    scaled = (
        f"scaled down from {name} for tests: {json.dumps(overrides, sort_keys=True)}"
        if overrides
        else f"exactly {name}'s layout"
    )
    return f"""# Shape-true {name} ({dtype}), random weights

Built by `lora_course.machinery.shape_true.shape_true_model` from `data/model-configs/{name}.json`:
{scaled}; {parameters:,} parameters. The weights are RANDOM (normal, std
`initializer_range`; norms 1): memory, time and code paths are real, the text is not. The
tokenizer is the course's tiny model's. Nothing here was downloaded.
"""


def shape_true_model(
    name: str = "Llama-3.2-1B",
    dtype: str = "bf16",
    overrides: dict | None = None,
    root: str | Path | None = None,
    seed: int = 0,
    rebuild: bool = False,
) -> Path:
    """The folder of a shape-true ``name`` in ``dtype`` (``"bf16"`` or ``"fp32"``), built on
    first use and cached (see the module docstring). ``overrides`` scale the layout down."""
    from safetensors.torch import save_file

    from lora_course.models import TINY_MODEL_DIR
    from lora_course.params import meta_model

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    overrides = dict(overrides or {})
    config = shape_true_config(name, overrides)
    folder = Path(root) if root is not None else cache_dir()
    folder = folder / _folder_name(name, overrides, dtype)
    if (folder / "config.json").is_file() and not rebuild:
        return folder

    torch_dtype = _DTYPES[dtype]
    shapes = meta_model(config)  # named_parameters() gives a tied lm_head once, as embed_tokens
    params = list(shapes.named_parameters())
    total = sum(p.numel() for _, p in params) * torch_dtype.itemsize
    free = shutil.disk_usage(folder.parent if folder.parent.exists() else Path.home()).free
    if total * 1.05 > free:
        raise OSError(
            f"a shape-true {name} in {dtype} needs {total / 1e9:.1f} GB of disk and "
            f"{folder.parent} has {free / 1e9:.1f} GB free; set {CACHE_ENV} to a roomier folder"
        )
    check_memory(min(total, SHARD_BYTES), f"building one shard of {name}")
    work = folder.with_name(folder.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    gen = torch.Generator().manual_seed(seed)
    std = getattr(config, "initializer_range", 0.02)
    # Group the tensors into shards first (names and sizes only), then build and write one
    # shard at a time: memory holds one shard.
    groups: list[list] = [[]]
    size = 0
    for key, p in params:
        nbytes = p.numel() * torch_dtype.itemsize
        if groups[-1] and size + nbytes > SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append((key, p.shape))
        size += nbytes
    index = {}
    for i, group in enumerate(groups):
        file = (
            "model.safetensors"
            if len(groups) == 1
            else f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        )
        shard = {}
        for key, shape in group:
            if key.endswith("norm.weight"):
                shard[key] = torch.ones(shape, dtype=torch_dtype)
            else:
                shard[key] = torch.empty(shape, dtype=torch_dtype).normal_(0.0, std, generator=gen)
        save_file(shard, work / file, metadata={"format": "pt"})
        index.update(dict.fromkeys(shard, file))
        del shard
    if len(groups) > 1:
        (work / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": index}, indent=2)
        )
    config.dtype = torch_dtype
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(work)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TINY_MODEL_DIR / file, work / file)
    n = sum(p.numel() for _, p in params)
    (work / "README.md").write_text(_card(name, overrides, dtype, n))
    shutil.rmtree(folder, ignore_errors=True)
    work.rename(folder)
    return folder
