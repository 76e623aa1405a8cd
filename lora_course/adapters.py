"""Adapters after training: save, load and size them in PEFT's format; merge them, also into 4-bit.

**PEFT's format** (what ``PeftModel.save_pretrained`` writes, checked against PEFT 0.21): a folder
with ``adapter_config.json`` (``peft_type`` "LORA", ``r``, ``lora_alpha``, ``target_modules``,
...) and ``adapter_model.safetensors``, whose keys are the wrapped module's path in the base model
behind ``base_model.model.``: ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``
(r, in) and ``...lora_B.weight`` (out, r), with no adapter name. Our ``LoRALayer`` sits at that
same path and holds the same two matrices, so the files are interchangeable.

**Size.** An adapter file holds only A and B: r * (in + out) numbers per adapted layer, times 4
bytes (fp32) or 2 (bf16), plus a small safetensors header (LoRA paper, section 4.2: GPT-3's
checkpoint shrinks from 350 GB to 35 MB).

**Merging into a 4-bit base** (QLoRA, arXiv 2305.14314, trains the adapter on the NF4 base).
``merge_4bit`` offers the three ways people try: ``"original"`` adds the update to the
full-precision weights the NF4 base came from; ``"dequantize"`` adds it to the dequantized NF4
weights and keeps the sum in 16-bit; ``"requantize"`` quantizes that sum to NF4 again, as PEFT's
``merge_and_unload`` does on a 4-bit model.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from torch import nn

from lora_course.lora import LoRALayer, add_lora, lora_layers

__all__ = [
    "PEFT_PREFIX",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "adapter_state_dict",
    "save_adapter",
    "load_adapter",
    "merge_and_unload",
    "merge_4bit",
    "state_bytes",
    "safetensors_header_bytes",
    "adapter_size_table",
    "text_loss",
    "forgetting_runs",
]

PEFT_PREFIX = "base_model.model."  # PeftModel -> LoraModel -> the base model
CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors"
_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def _layers(model: nn.Module) -> list[tuple[str, LoRALayer]]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRALayer: add one with add_lora(model, ...) first")
    return layers


def adapter_state_dict(model: nn.Module, dtype: torch.dtype = torch.float32) -> dict:
    """The adapters of ``model`` under PEFT's key names, as ``dtype`` tensors.

    ``{"base_model.model.<path>.lora_A.weight": (r, in), "...lora_B.weight": (out, r)}``.
    """
    out = {}
    for name, layer in _layers(model):
        if layer.merged:
            raise ValueError(f"{name} is merged; unmerge() it first, or save the merged model")
        for part in ("lora_A", "lora_B"):
            weight = getattr(layer, part).weight.detach()
            out[f"{PEFT_PREFIX}{name}.{part}.weight"] = weight.to("cpu", dtype).contiguous()
    return out


def _config(model: nn.Module, base_model_name_or_path: str | None) -> dict:
    layers = _layers(model)
    settings = {
        (m.rank, m.alpha, m.use_rslora, getattr(m.lora_dropout, "p", 0.0)) for _, m in layers
    }
    if len(settings) > 1:
        raise ValueError(f"the adapters differ in rank/alpha/rslora/dropout: {sorted(settings)}")
    ((rank, alpha, rslora, dropout),) = settings
    wrapped = {name for name, _ in layers}
    # Short names (q_proj) when they pick exactly the wrapped layers, as people write them.
    short = sorted({name.rsplit(".", 1)[-1] for name in wrapped})
    every = {n for n, m in model.named_modules() if isinstance(m, (nn.Linear, LoRALayer))}
    if {n for n in every if n.rsplit(".", 1)[-1] in short} != wrapped:
        short = sorted(wrapped)
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": rank,
        "lora_alpha": alpha,
        "use_rslora": rslora,
        "lora_dropout": dropout,
        "target_modules": short,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
    }


def save_adapter(
    model: nn.Module,
    folder: str | Path,
    base_model_name_or_path: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Path]:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` of ``model``'s LoRALayers
    into ``folder``, loadable by ``PeftModel.from_pretrained(base, folder)``. Returns the paths."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = _config(model, base_model_name_or_path)
    paths = {"config": folder / CONFIG_NAME, "weights": folder / WEIGHTS_NAME}
    paths["config"].write_text(json.dumps(config, indent=2) + "\n")
    save_file(adapter_state_dict(model, dtype), paths["weights"], metadata={"format": "pt"})
    return paths


def load_adapter(model: nn.Module, folder: str | Path) -> nn.Module:
    """Wrap ``model`` with LoRALayers and fill them from a PEFT LoRA folder (ours or PEFT's).

    The layers to wrap are read from the weight keys, so any ``target_modules`` form works;
    rank, alpha and rsLoRA from the config (dropout is left off: loading is for inference).
    DoRA, per-layer ranks, biases and extra trained modules are refused with a ValueError.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    extras = ("use_dora", "rank_pattern", "alpha_pattern", "lora_bias", "modules_to_save")
    unsupported = [k for k in extras if config.get(k)]
    if config.get("peft_type") != "LORA" or unsupported or config.get("bias", "none") != "none":
        raise ValueError(
            f"{folder} is not a plain LoRA adapter (peft_type={config.get('peft_type')!r}, "
            f"extras {unsupported}, bias={config.get('bias')!r}); load it with PEFT instead"
        )
    weights = load_file(folder / WEIGHTS_NAME)
    other = [k for k in weights if not k.endswith((".lora_A.weight", ".lora_B.weight"))]
    if other:
        raise ValueError(f"{folder} holds more than LoRA's A and B (e.g. {other[0]})")
    paths = sorted({k[len(PEFT_PREFIX) :].rsplit(".lora_", 1)[0] for k in weights})
    add_lora(
        model,
        paths,
        rank=config["r"],
        alpha=config["lora_alpha"],
        use_rslora=config.get("use_rslora", False),
    )
    with torch.no_grad():
        for name, layer in lora_layers(model):
            for part in ("lora_A", "lora_B"):
                getattr(layer, part).weight.copy_(weights[f"{PEFT_PREFIX}{name}.{part}.weight"])
    return model


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every LoRALayer into its weight and put the plain layer back (PEFT's
    ``merge_and_unload`` for our layers): same outputs, no adapter left. In place."""
    for name, layer in _layers(model):
        layer.merge()
        _replace(model, name, layer.original)
    return model


class _Linear16(nn.Linear):
    """A linear layer kept in 16-bit that takes and returns the model's own dtype, as a
    bitsandbytes ``Linear4bit`` computes in its ``compute_dtype``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.weight.dtype)).to(x.dtype)


def _to_linear16(weight: torch.Tensor, bias, dtype: torch.dtype) -> _Linear16:
    """A frozen ``_Linear16`` in ``dtype`` holding ``weight`` (out, in) and ``bias``."""
    out_features, in_features = weight.shape
    new = _Linear16(in_features, out_features, bias=bias is not None, dtype=dtype,
                    device=weight.device)  # fmt: skip
    new.weight.copy_(weight)
    if bias is not None:
        new.bias.copy_(bias)
    return new.requires_grad_(False)


@torch.no_grad()
def merge_4bit(
    model: nn.Module,
    how: str,
    original: nn.Module | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Merge the LoRALayers of a QLoRA model (frozen ``Linear4bit`` inside) and unload them.

    how: ``"original"``: W0 + s B A with W0 the full-precision weight of the same layer in
    ``original`` (the unquantized base model), kept in W0's dtype, or in ``dtype`` when given
    (``torch.bfloat16``: the same storage as ``"dequantize"``, to compare like with like);
    ``"dequantize"``:
    dequant(NF4) + s B A kept in bf16; ``"requantize"``: that sum quantized to NF4 again with
    the base's own settings (blocksize, double quantization). In place; returns ``model``
    (with ``"original"``, the layers of ``original`` are merged and moved into ``model``).
    """
    import bitsandbytes.functional as bnbf

    if how not in ("original", "dequantize", "requantize"):
        raise ValueError(f"how must be 'original', 'dequantize' or 'requantize', got {how!r}")
    if how == "original" and original is None:
        raise ValueError("how='original' needs original=, the unquantized base model")
    for name, layer in _layers(model):
        base, delta = layer.original, layer.get_delta_weight().float()  # (out, in)
        state = getattr(base.weight, "quant_state", None)
        if state is None:
            raise TypeError(f"{name} wraps {type(base).__name__}, not a 4-bit layer")
        if how == "original":
            plain = original.get_submodule(name)
            plain.weight += delta.to(plain.weight.dtype)
            if dtype is not None and dtype != plain.weight.dtype:
                plain = _to_linear16(plain.weight.float(), plain.bias, dtype)
            _replace(model, name, plain)
            continue
        merged = bnbf.dequantize_4bit(base.weight.data, state).float() + delta
        if how == "dequantize":
            _replace(model, name, _to_linear16(merged, base.bias, torch.bfloat16))
            continue
        packed, new_state = bnbf.quantize_4bit(
            merged.to(state.dtype),
            blocksize=state.blocksize,
            compress_statistics=state.nested,
            quant_type=state.quant_type,
            quant_storage=base.weight.dtype,
        )
        base.weight.data, base.weight.quant_state = packed, new_state
        _replace(model, name, base)
    return model


def state_bytes(model: nn.Module) -> int:
    """Bytes of every tensor in ``model.state_dict()``, shared tensors once: what a checkpoint
    of the model holds (for a 4-bit model: packed weights plus their quantization state)."""
    seen, total = set(), 0
    for tensor in model.state_dict().values():
        key = (tensor.data_ptr(), tensor.numel(), tensor.dtype)
        if key not in seen:
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


def safetensors_header_bytes(path: str | Path) -> int:
    """Bytes before the tensor data of a ``.safetensors`` file: an 8-byte little-endian length
    and that many bytes of JSON (names, dtypes, shapes, offsets)."""
    with open(path, "rb") as f:
        return 8 + struct.unpack("<Q", f.read(8))[0]


def adapter_size_table(
    name: str = "Llama-3.1-8B", settings=(("q+v", 8), ("all linear", 16)), dtypes=("fp32", "bf16")
):
    """Adapter file size of a real architecture per (targets, rank) and dtype, beside the bf16
    base weights: parameters from ``params.lora_target_table``, bytes = parameters x width
    (the safetensors header, a few kB, left out)."""
    import pandas as pd

    from lora_course.memory import weight_footprint
    from lora_course.params import TARGET_SETS, lora_target_table

    base = weight_footprint(name, "bf16")
    base_bytes = base.linear_bytes + base.other_bytes  # parameters only, as a checkpoint
    rows = []
    for targets, rank in settings:
        table = lora_target_table(name, ranks=(rank,), target_sets={targets: TARGET_SETS[targets]})
        n = int(table["trainable"].iloc[0])
        for dtype in dtypes:
            if dtype not in _BYTES:
                raise ValueError(f"dtype must be one of {list(_BYTES)}, got {dtype!r}")
            size = n * _BYTES[dtype]
            rows.append(
                {
                    "model": name,
                    "targets": targets,
                    "rank": rank,
                    "dtype": dtype,
                    "parameters": n,
                    "adapter_MB": size / 1e6,
                    "base_bf16_GB": base_bytes / 1e9,
                    "percent_of_base": 100 * size / base_bytes,
                }
            )
    return pd.DataFrame(rows)


@torch.no_grad()
def text_loss(model: nn.Module, tokenizer, texts: list[str], batch_size: int = 16) -> float:
    """Mean next-token cross-entropy of ``model`` on ``texts`` (``[bos] text [eos]`` each, padding
    ignored): how well the model still predicts plain text, e.g. held-out pretraining documents."""
    from lora_course.data import collate

    if not texts:
        raise ValueError("texts is empty: pass documents, e.g. data.load_held_out_corpus()")
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    total = count = 0.0
    for start in range(0, len(texts), batch_size):
        ids = [
            enc + [tokenizer.eos_token_id]
            for enc in tokenizer(texts[start : start + batch_size])["input_ids"]
        ]
        batch = collate([{"input_ids": i, "labels": i} for i in ids], tokenizer.pad_token_id)
        n = int((batch["labels"][:, 1:] != -100).sum())  # the tokens that are predicted
        loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        total, count = total + loss.item() * n, count + n
    model.train(was_training)
    return total / count


def forgetting_runs(runs: list[dict], steps: int = 60, jobs: int | None = None):
    """Train the tiny model on the sentiment task once per run and measure what it learned and
    what it forgot: one row per run with ``method``, ``lr``, ``seed``, ``held-out accuracy``
    (the task's test reviews) and ``text loss`` (``text_loss`` on the held-out pretraining
    documents, ``data.load_held_out_corpus``; the base's own is the reference).

    ``runs``: dicts with ``method`` (``"lora"``: r=8, alpha=16 on every linear layer but
    ``lm_head``, adapter on; ``"full"``: every parameter), ``lr`` and ``seed`` (the adapters'
    initialisation and the batch order). Runs go side by side (``parallel.run_all``).
    """
    import pandas as pd

    from lora_course.data import load_held_out_corpus, load_task
    from lora_course.machinery.parallel import run_all
    from lora_course.models import load_model
    from lora_course.train import evaluate, finetune

    for run in runs:
        if run.get("method") not in ("lora", "full"):
            raise ValueError(f"each run's method must be 'lora' or 'full', got {run!r}")
    train, test, held_out = load_task("train"), load_task("test"), load_held_out_corpus()
    base, tokenizer = load_model()

    def one(index: int) -> dict:
        import copy

        run = runs[index]
        torch.manual_seed(run["seed"])
        model = copy.deepcopy(base)
        if run["method"] == "lora":
            add_lora(model, "all-linear", rank=8, alpha=16)
        else:
            model.requires_grad_(True)
        finetune(
            model, tokenizer, train, steps=steps, lr=run["lr"], seed=run["seed"], progress=False
        )
        return {
            **run,
            "held-out accuracy": evaluate(model, tokenizer, test),
            "text loss": text_loss(model, tokenizer, held_out),
        }

    return pd.DataFrame(run_all(one, len(runs), jobs=jobs))
