"""Peak training memory, part by part: full fine-tuning, LoRA and QLoRA, on one or N devices.

The course's one training-memory estimate: notebooks 03, 08 and 09, ``memory_evidence`` and
the README's figures all call ``training_memory`` (``qlora_training_estimate`` is a thin
call of it, kept for notebook 02's table).

``training_memory(config, method, ...)`` returns one row per part, priced from the
architecture (``config``: a name in ``data/model-configs`` or a transformers config):

- base weights as stored (``memory.weight_footprint``) and, for 4-bit, the quantization state;
- trainable parameters (LoRA's A and B, or every weight for full fine-tuning), their gradients
  and the optimizer state. Full fine-tuning as most people run it (``precision="mixed"``,
  torch autocast or the Trainer's ``bf16=True``) keeps fp32 master weights, fp32 gradients and
  two fp32 AdamW moments: 4 + 4 + 8 = 16 bytes per parameter between steps (the figure of the
  ZeRO paper, Rajbhandari et al. 2019, arXiv 1910.02054, section 3.1), plus the bf16 copy of
  each weight that autocast makes for the matmuls and autograd keeps for the backward pass
  (2 bytes; Hugging Face's "model memory anatomy" counts these 18). ``precision="bf16"`` is
  pure bf16 (weights, gradients and moments in bf16: 2 + 2 + 4 bytes). AdamW keeps two
  states per trainable value in the parameter's dtype (torch's ``AdamW``); 8-bit AdamW
  (bitsandbytes) keeps two uint8 states plus one fp32 absmax
  per block of 256 for each tensor of at least 4,096 values, and fp32 states for smaller ones.
  "Paged" optimizers keep the same bytes in memory the GPU can evict to the CPU under
  pressure: the state does not shrink, it can move;
- activations saved for the backward pass, per token (below), with or without gradient
  checkpointing, and the logits: vocabulary x tokens, the largest single tensor for Llama 3;
- for 4-bit bases, one dequantized weight at a time (bitsandbytes dequantizes each weight for
  its matmul and frees it after): alive beside one layer's tensors, not beside the logits, so
  it counts only where that layer's moment would beat the logits' (measured at Llama-3.2-1B's
  size, ``data/measurements``: a QLoRA step peaks where LoRA's does, at the logits); the
  runtime's fixed overhead (CUDA context, allocator slack) only when given.

What the backward pass keeps, per token and decoder layer, in bytes (``c`` compute width, ``a``
adapter width, ``q``/``kv`` query and key/value widths = heads x head_dim, measured with
``torch.autograd.graph.saved_tensors_hooks`` on transformers' Llama with PEFT, SDPA attention):

- two RMSNorms: their fp32 input (4h) and reciprocal RMS (4) each;
- attention: rotated q and k, v and the attention output (c (2q + 2kv)) and the softmax
  log-sum-exp (4 per head); no seq x seq matrix (fused attention);
- MLP: gate, its SiLU and up (3ci);
- the inputs of the layers that train: with ``a == c`` they are the normed inputs (ch, once
  for q/k/v and once for gate/up) and the MLP product (ci); PEFT's adapters in fp32 over a
  bf16 model cast each input to fp32 (a x in_features per adapted layer); plus r values per
  adapter (A's output). Full fine-tuning keeps 4ch + ci (inputs of the layers that train and
  two more h-wide copies, measured).

The first layer keeps nothing that comes before its first adapter (no gradient flows there):
the estimate leaves out its first norm's input, exact when q, k or v is adapted, and an upper
bound by at most one layer otherwise. With gradient checkpointing each layer keeps only its
input (ch); one layer is recomputed at a time in the backward pass. The loss keeps its fp32
log-softmax (4V per token); when the backward pass starts, the logits (cV) and the gradients
of the log-softmax and of the logits (4V each) are alive too. That moment is the peak unless
a layer's backward is larger: with checkpointing that layer is recomputed (all its saved
tensors) and its MLP holds three i-wide gradients at once.

FSDP (``devices=N``) divides weights, quantization state, trainable parameters, gradients and
optimizer state by N and adds one gathered decoder layer; activations are not divided.

Units: every size is decimal GB (1e9 bytes). GPU sizes are named as their makers sell them
(12, 16, 24, 40, 80 GB), and those makers' "GB" are binary: a "24 GB" card holds 24 GiB =
24 x 2**30 bytes = 25.8 GB (``gpu_bytes``). A fit whose spare is smaller than the estimate's
worst measured miss (``ESTIMATE_ERROR`` of the peak) is "borderline" (``gpu_fit``).
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

from lora_course.memory import LORA_TARGETS, shapes_model, weight_footprint

__all__ = [
    "qlora_training_estimate",
    "METHODS",
    "OPTIMIZERS",
    "GPU_SIZES_GB",
    "PRECISIONS",
    "ESTIMATE_ERROR",
    "gpu_bytes",
    "gpu_fit",
    "activation_bytes_per_token",
    "optimizer_state_bytes",
    "training_memory",
    "peak_bytes",
    "smallest_gpu",
    "scenario_table",
]

GB = 1e9
METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw", "paged-adamw-8bit")
GPU_SIZES_GB = (12, 16, 24, 40, 80)  # as sold; each holds that many GiB (gpu_bytes)
PRECISIONS = ("mixed", "bf16")  # full fine-tuning: fp32 master + autocast, or pure bf16
# The worst miss of the step's measured peak above baseline (|estimate / measured - 1|) in
# `make bench` row 9 (README, Performance): 5.37 %. Notebook 09 checks that its own
# measurement misses by no more.
ESTIMATE_ERROR = 0.054
_WIDTH = {torch.float32: 4, torch.bfloat16: 2, torch.float16: 2}
_ATTENTION = ("q_proj", "k_proj", "v_proj")
_MLP_IN = ("gate_proj", "up_proj")


def _width(name: str, dtype) -> int:
    if dtype not in _WIDTH:
        raise ValueError(f"{name} must be torch.float32, torch.bfloat16 or float16, got {dtype}")
    return _WIDTH[dtype]


def _shapes(config):
    model = shapes_model(config)
    cfg = model.config
    linears = {
        n.rsplit(".", 1)[-1]: m for n, m in model.named_modules() if isinstance(m, nn.Linear)
    }
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    dims = {
        "h": cfg.hidden_size,
        "i": cfg.intermediate_size,
        "layers": cfg.num_hidden_layers,
        "heads": cfg.num_attention_heads,
        "q": cfg.num_attention_heads * head_dim,
        "kv": cfg.num_key_value_heads * head_dim,
        "vocab": cfg.vocab_size,
    }
    return model, linears, dims


def _check_targets(linears, target_modules) -> tuple[str, ...]:
    targets = tuple(target_modules)
    missing = [t for t in targets if t not in linears or t == "lm_head"]
    if missing or not targets:
        raise ValueError(
            f"target_modules {missing or targets} are not decoder linear layers of this model; "
            f"choose from {list(LORA_TARGETS)}"
        )
    return targets


def activation_bytes_per_token(
    config,
    method: str = "qlora",
    rank: int = 8,
    target_modules=LORA_TARGETS,
    compute_dtype=torch.bfloat16,
    adapter_dtype=torch.float32,
) -> dict[str, int]:
    """Bytes per token the backward pass needs (see the module docstring for each term).

    Returns ``layer`` (one decoder layer, all its saved tensors), ``checkpoint`` (one layer's
    input, what gradient checkpointing keeps), ``final`` (the last norm and the fp32
    log-softmax), ``frozen_input`` (not kept: the first norm's input when the embeddings are
    frozen), ``logits_backward`` (logits + the two vocab-wide gradients alive when the
    backward pass starts), ``layer_backward`` (the gradients a layer's MLP holds at once).
    """
    _check_method(method)
    _, linears, d = _shapes(config)
    c = _width("compute_dtype", compute_dtype)
    a = _width("adapter_dtype", adapter_dtype) if method != "full" else c
    layer = 2 * (4 * d["h"] + 4) + c * (2 * d["q"] + 2 * d["kv"]) + 4 * d["heads"] + 3 * c * d["i"]
    final = 4 * d["h"] + 4 + 4 * d["vocab"]
    if method == "full":
        # the trainable layers' inputs, plus two more h-wide copies that autograd keeps when
        # every weight trains (measured with saved_tensors_hooks; not named here)
        layer += c * (4 * d["h"] + d["i"])
        final += 2 * c * d["h"]  # lm_head trains: its input, and a copy (measured)
    else:
        targets = _check_targets(linears, target_modules)
        if a == c:  # the adapters read the tensors the layer keeps anyway, or their own input
            layer += c * d["h"] * any(t in _ATTENTION for t in targets)
            layer += c * d["h"] * any(t in _MLP_IN for t in targets)
            layer += c * d["i"] * ("down_proj" in targets)
        else:  # each adapter keeps its own copy of its input, cast to the adapter's dtype
            layer += sum(a * linears[t].in_features for t in targets)
        layer += a * rank * len(targets)
    return {
        "layer": layer,
        # frozen embeddings: the first layer's norm input needs no gradient, so it is not kept
        "frozen_input": 4 * d["h"] if method != "full" else 0,
        "checkpoint": c * d["h"],
        "final": final,
        "logits_backward": (c + 8) * d["vocab"],
        # the MLP's backward holds the gradients of its product, SiLU and up at once
        "layer_backward": 3 * c * d["i"],
    }


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")


def optimizer_state_bytes(numels, optimizer: str = "adamw", param_bytes: int = 4) -> int:
    """Optimizer-state bytes for trainable tensors of ``numels`` values each.

    ``adamw`` (torch's ``AdamW``): two states in the parameter's dtype (``param_bytes``) and a
    4-byte step per tensor. ``paged-adamw`` (bitsandbytes, 32-bit): two fp32 states.
    ``adamw-8bit`` and ``paged-adamw-8bit``: two uint8 states + two fp32 absmax per block of 256
    for tensors of at least 4,096 values, two fp32 states below that (``min_8bit_size``), and
    two shared 256-value fp32 code maps. Paged state has the same bytes as unpaged.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    numels = list(numels)
    if optimizer == "adamw":
        return sum(2 * param_bytes * n + 4 for n in numels)
    if optimizer == "paged-adamw":
        return sum(2 * 4 * n for n in numels)
    big = [n for n in numels if n >= 4096]
    small = sum(2 * 4 * n for n in numels if n < 4096)
    return small + sum(2 * n + 2 * 4 * math.ceil(n / 256) for n in big) + 2 * 4 * 256 * bool(big)


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def training_memory(
    config,
    method: str = "qlora",
    rank: int = 8,
    target_modules=LORA_TARGETS,
    batch_size: int = 1,
    seq_len: int = 512,
    gradient_checkpointing: bool = True,
    optimizer: str = "adamw",
    compute_dtype=torch.bfloat16,
    adapter_dtype=torch.float32,
    prepared: bool = True,
    devices: int = 1,
    overhead_bytes: int = 0,
    precision: str = "mixed",
) -> pd.DataFrame:
    """Peak memory of one training step on each of ``devices`` devices, one row per part.

    ``method``: ``full`` (every weight trains; ``precision="mixed"``: fp32 master weights,
    gradients and AdamW moments, a ``compute_dtype`` copy of each weight for the matmuls;
    ``precision="bf16"``: everything in ``compute_dtype``), ``lora`` (base in
    ``compute_dtype``), ``qlora`` (nf4 + double quantization, other layers in compute_dtype,
    upcast to fp32 when ``prepared`` by ``prepare_model_for_kbit_training``, which makes the
    hidden states, activations and logits fp32 too). Adapters and
    their gradients are ``adapter_dtype`` (PEFT's default: fp32). Columns: ``part``,
    ``bytes`` (per device), ``gb``, ``sharded`` (divided by ``devices`` under FSDP), ``note``.
    The peak is the sum of the rows (``peak_bytes``).
    """
    _check_method(method)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    batch_size, seq_len = _positive("batch_size", batch_size), _positive("seq_len", seq_len)
    devices = _positive("devices", devices)
    c = _width("compute_dtype", compute_dtype)
    compute_scheme = {4: "fp32", 2: "bf16" if compute_dtype == torch.bfloat16 else "fp16"}[c]
    model, linears, d = _shapes(config)
    tokens = batch_size * seq_len
    rows = []

    def add(part, n_bytes, sharded, note):
        rows.append(
            (part, int(math.ceil(n_bytes / devices)) if sharded else int(n_bytes), sharded, note)
        )

    if method == "qlora":
        fp = weight_footprint(config, "nf4+dq", keep_dtype=compute_dtype, prepared=prepared)
        kept = "fp32 (prepared)" if prepared else compute_scheme
        add(
            "base weights", fp.footprint_bytes, True, f"nf4 linear layers; embeddings, norms {kept}"
        )
        add("quantization state", fp.quant_state_bytes, True, "absmax, double-quantized")
    elif method == "full" and precision == "mixed":
        fp = weight_footprint(config, "fp32")
        add("base weights", fp.footprint_bytes, True, "fp32 master weights; they train")
        copy = weight_footprint(config, compute_scheme)
        add(
            "weight copies for compute",
            (copy.linear_bytes + copy.other_bytes) * (c < 4),  # fp32 compute needs no copy
            True,
            f"autocast's {compute_scheme} copy of each weight, kept for backward",
        )
    else:
        fp = weight_footprint(config, compute_scheme)
        what = "the weights train" if method == "full" else "frozen"
        add("base weights", fp.footprint_bytes, True, f"{compute_scheme}, {what}")
    if method == "full":
        numels = [p.numel() for p in model.parameters()]
        p_bytes = 4 if precision == "mixed" else c
        trainable_note = f"{sum(numels):,} parameters: the base weights themselves"
        add("trainable parameters", 0, True, trainable_note)
    else:
        targets = _check_targets(linears, target_modules)
        numels = []
        for t in targets:
            numels += [rank * linears[t].in_features, rank * linears[t].out_features]
        numels *= d["layers"]
        p_bytes = _width("adapter_dtype", adapter_dtype)
        add(
            "trainable parameters",
            p_bytes * sum(numels),
            True,
            f"{sum(numels):,} LoRA values, r={rank}",
        )
    add("gradients", p_bytes * sum(numels), True, f"one per trainable value, {p_bytes} bytes")
    state = optimizer_state_bytes(numels, optimizer, p_bytes)
    where = "paged: evictable to CPU memory, same bytes" if optimizer.startswith("paged") else ""
    add("optimizer state", state, True, f"{optimizer}; {where}".rstrip("; "))
    # prepare_model_for_kbit_training upcasts embeddings and norms to fp32: the hidden states,
    # and so every activation and the logits, are fp32 then (4-bit matmuls cast back)
    act_dtype = torch.float32 if method == "qlora" and prepared else compute_dtype
    per = activation_bytes_per_token(config, method, rank, target_modules, act_dtype, adapter_dtype)
    if gradient_checkpointing:
        saved = d["layers"] * per["checkpoint"] + per["final"]
        layer_moment = per["layer"] + per["layer_backward"]  # a recomputed layer's backward
        how = "each layer's input; one layer recomputed at a time"
    else:
        saved = d["layers"] * per["layer"] + per["final"] - per["frozen_input"]
        layer_moment = per["layer_backward"]
        how = "every layer's saved tensors"
    extra = max(per["logits_backward"], layer_moment)
    add(
        "activations",
        tokens * (saved - 4 * d["vocab"]),
        False,
        f"{batch_size} x {seq_len} tokens: {how}",
    )
    add(
        "logits and loss",
        tokens * (4 * d["vocab"] + extra),
        False,
        f"vocab {d['vocab']:,} x tokens",
    )
    if method == "qlora":
        # bitsandbytes dequantizes a 4-bit weight for its own matmul (forward and backward) and
        # frees it: it is alive beside one layer's tensors, never beside the logits' gradients.
        # It raises the peak only by what that layer's moment then exceeds the logits' moment.
        biggest = max(m.in_features * m.out_features for n, m in linears.items() if n != "lm_head")
        beyond = max(0, tokens * (layer_moment - extra) + c * biggest)
        add(
            "dequantized weight",
            beyond,
            False,
            f"one 4-bit weight at a time ({c * biggest / GB:.3f} GB), during its own matmul:"
            " only what it adds above the logits' moment",
        )
    if devices > 1:
        layer = model.model.layers[0]
        four_bit = method == "qlora"
        stored = sum(
            math.ceil(m.weight.numel() / 2) if four_bit and isinstance(m, nn.Linear) else 0
            for m in layer.modules()
        )
        stored += sum(
            p.numel() * (4 if four_bit and prepared else c)
            for m in layer.modules()
            for p in m.parameters(recurse=False)
            if not (four_bit and isinstance(m, nn.Linear))
        )
        add("gathered layer (FSDP)", stored, False, "one decoder layer unsharded at a time")
    add(
        "runtime overhead",
        overhead_bytes,
        False,
        "CUDA context, allocator slack: given, not priced",
    )
    table = pd.DataFrame(rows, columns=["part", "bytes", "sharded", "note"])
    table["gb"] = table["bytes"] / GB
    return table[["part", "bytes", "gb", "sharded", "note"]]


def peak_bytes(table: pd.DataFrame) -> int:
    """The estimated peak: the sum of a ``training_memory`` table's parts."""
    return int(table["bytes"].sum())


def gpu_bytes(size_gb: int) -> int:
    """What a GPU sold as ``size_gb`` "GB" holds: that many GiB (2**30 bytes each)."""
    return int(size_gb * 2**30)


def gpu_fit(n_bytes: float, size_gb: int, error: float = ESTIMATE_ERROR) -> str:
    """ "fits", "borderline" (the spare is under ``error`` x ``n_bytes``, the estimate's worst
    measured miss) or "does not fit", for a peak of ``n_bytes`` on a GPU sold as ``size_gb``."""
    spare = gpu_bytes(size_gb) - n_bytes
    if spare < 0:
        return "does not fit"
    return "borderline" if spare < error * n_bytes else "fits"


def smallest_gpu(n_bytes: float, sizes=GPU_SIZES_GB) -> int | None:
    """The smallest GPU in ``sizes`` (as sold, in "GB" that are GiB: ``gpu_bytes``) that
    holds ``n_bytes``, borderline included (``gpu_fit`` says which), or None."""
    for size in sorted(sizes):
        if n_bytes <= gpu_bytes(size):
            return size
    return None


def scenario_table(config="Llama-3.1-8B", batches=(1, 4), seq_lens=(512, 2048), **kwargs):
    """Peak per part for full fine-tuning, LoRA and QLoRA over batch, length and checkpointing.

    One row per scenario: ``method``, ``batch_size``, ``seq_len``, ``checkpointing``, one column
    per part (GB), ``peak_gb``, ``smallest_gpu`` (the size as sold, None when over 80) and
    ``fit`` (``gpu_fit`` on that GPU: "fits" or "borderline"; "does not fit" past 80).
    """
    rows = []
    for method in METHODS:
        for batch in batches:
            for seq in seq_lens:
                for gc in (False, True):
                    table = training_memory(
                        config,
                        method,
                        batch_size=batch,
                        seq_len=seq,
                        gradient_checkpointing=gc,
                        **kwargs,
                    )
                    row = {
                        "method": method,
                        "batch_size": batch,
                        "seq_len": seq,
                        "checkpointing": gc,
                    }
                    row.update(dict(zip(table["part"], table["gb"], strict=True)))
                    row["peak_gb"] = peak_bytes(table) / GB
                    row["smallest_gpu"] = gpu = smallest_gpu(peak_bytes(table))
                    row["fit"] = gpu_fit(peak_bytes(table), gpu or max(GPU_SIZES_GB))
                    rows.append(row)
    table = pd.DataFrame(rows)
    parts = [c for c in table.columns if c != "smallest_gpu" and table[c].dtype == float]
    table[parts] = table[parts].fillna(0.0)
    table["smallest_gpu"] = table["smallest_gpu"].astype("Int64")
    return table


def qlora_training_estimate(config, **settings) -> pd.DataFrame:
    """QLoRA's peak training memory (nf4 + double quant, prepared model, AdamW), in the layout
    notebook 02 shows: a thin call of ``training_memory.training_memory(config, "qlora",
    **settings)``, the course's one estimate, so the same setting gives the same number
    everywhere (``settings``: its arguments, e.g. ``rank``, ``batch_size``, ``seq_len``).

    Columns: ``component`` (base weights with their quantization state, LoRA parameters, LoRA
    gradients, AdamW states, activations, logits and loss, dequantized weight, overhead),
    ``bytes``, ``gb``, ``assumption`` (the estimate's note).
    """
    table = training_memory(config, "qlora", **settings).set_index("part")
    names = {
        "base weights": "base weights (nf4+dq, prepared)",
        "trainable parameters": "LoRA parameters",
        "gradients": "LoRA gradients",
        "optimizer state": "AdamW states",
        "runtime overhead": "overhead",
    }
    weights = table.loc["base weights", "bytes"] + table.loc["quantization state", "bytes"]
    table.loc["base weights", "bytes"] = weights
    table.loc["base weights", "note"] = "footprint + quant state"
    table = table.drop(index="quantization state").reset_index()
    out = pd.DataFrame(
        {
            "component": table["part"].replace(names),
            "bytes": table["bytes"],
            "gb": table["bytes"] / GB,
            "assumption": table["note"],
        }
    )
    return out
