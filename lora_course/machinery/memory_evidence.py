"""The training-memory estimate checked: against a step measured here, and against papers.

``measure_step(spec)`` trains one step in a fresh Python process and reports, in bytes:

- ``saved``: every tensor autograd keeps for the backward pass, counted once per storage
  (``torch.autograd.graph.saved_tensors_hooks``): the activations and the loss's log-softmax,
  exactly;
- ``step``: the process's peak resident memory during one step (forward, backward, optimizer
  step, ``zero_grad``) minus its resident memory just before it. On Linux the kernel's peak
  counter (``VmHWM``) is reset first by writing 5 to ``/proc/self/clear_refs``; glibc is told to
  map every block over 64 KiB on its own (``MALLOC_MMAP_THRESHOLD_``) so that freed tensors go
  back to the system instead of hiding in the baseline. A warm-up step on 16 tokens runs first,
  so kernels, thread pools and the optimizer's state are already in the baseline;
- ``weights`` (``get_memory_footprint()`` + quantization state), ``trainable``, and
  ``optimizer_state`` (the bytes of the optimizer's state tensors, storages counted once).

A fresh process per measurement keeps one run's freed memory out of the next one's figures.

Two neighbours, re-exported here for notebook 09: ``lora_course.machinery.loss_peaks`` (the
loss alone, whole or chunked, measured the same way) and ``lora_course.machinery.published``
(the estimate against published figures).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch

from lora_course.machinery.hardware import measure_in_fresh_processes, process_status_bytes

# Notebook 09 reads these as ``evidence.<name>`` too; each lives in its own module.
from lora_course.machinery.loss_peaks import chunked_cross_entropy, measure_loss_peaks
from lora_course.machinery.published import PUBLISHED, published_comparison

__all__ = [
    "llama_config",
    "tiny_lora_model",
    "optimizer_state",
    "checkpointing_step_times",
    "measure_step",
    "measure_steps",
    "step_comparison",
    "saved_tensor_bytes",
    "state_bytes",
    "PUBLISHED",
    "published_comparison",
    "chunked_cross_entropy",
    "measure_loss_peaks",
]

_OPTIMIZERS = {
    "adamw": ("torch.optim", "AdamW"),
    "paged-adamw": ("bitsandbytes.optim", "PagedAdamW"),
    "adamw-8bit": ("bitsandbytes.optim", "AdamW8bit"),
    "paged-adamw-8bit": ("bitsandbytes.optim", "PagedAdamW8bit"),
}


def saved_tensor_bytes(model, **inputs) -> int:
    """Bytes autograd saves for the backward pass of ``model(**inputs)``, parameters left out."""
    storages: dict[int, int] = {}

    def pack(t):
        storages.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(**inputs)
    del out
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in params)


def state_bytes(optimizer) -> int:
    """Bytes of an optimizer's state tensors (shared ones, such as code maps, counted once)."""
    seen: dict[int, int] = {}
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                seen.setdefault(
                    value.untyped_storage().data_ptr(), value.untyped_storage().nbytes()
                )
    return sum(seen.values())


def _with_lora(model, checkpointing: bool, quantized: bool = False):
    """PEFT LoRA on every linear layer (r=8, fp32), after checkpointing or k-bit preparation."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if checkpointing:
        model.config.use_cache = False  # a cache is for generation; training recomputes
        model.activation_checkpointing_enable({"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0)
    model = get_peft_model(model, lora)
    model.train()
    return model


def tiny_lora_model(checkpointing: bool = False):
    """The tiny model (fp32) with PEFT LoRA on every linear layer (r=8, fp32), in train mode."""
    from lora_course.models import load_model

    return _with_lora(load_model(device="cpu")[0], checkpointing)


def optimizer_state(model, optimizer: str = "adamw") -> dict:
    """Build ``optimizer`` on ``model``'s trainable parameters, take one step with unit
    gradients, and return ``bytes`` (its state tensors, ``state_bytes``) and ``paged``: False
    when bitsandbytes fell back to unpaged memory (it does on a CPU, with a warning that is
    caught here), True when the state is paged, None for an optimizer that never pages."""
    import importlib
    import warnings

    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(_OPTIMIZERS)}, got {optimizer!r}")
    module, name = _OPTIMIZERS[optimizer]
    params = [p for p in model.parameters() if p.requires_grad]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = getattr(importlib.import_module(module), name)(params, lr=1e-4)
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    opt.zero_grad()
    fell_back = any("Paged optimizers are not supported" in str(w.message) for w in caught)
    paged = (not fell_back) if optimizer.startswith("paged") else None
    return {"bytes": state_bytes(opt), "paged": paged}


def checkpointing_step_times(batch: int = 4, seq_len: int = 128, repeats: int = 5) -> dict:
    """Median seconds of one training step of the tiny LoRA model without and with gradient
    checkpointing, the two measured in turn in each repetition (same conditions for both)."""
    import statistics
    import time

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the ratio, not the machine's parallelism
    torch.manual_seed(0)
    models = {gc: tiny_lora_model(gc) for gc in (False, True)}
    ids = torch.randint(0, models[False].config.vocab_size, (batch, seq_len))
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats + 1):  # the first round warms up and is not counted
        for gc, model in models.items():
            start = time.perf_counter()
            model(input_ids=ids, labels=ids).loss.backward()
            model.zero_grad()
            times[gc].append(time.perf_counter() - start)
    torch.set_num_threads(threads)
    return {
        "without": statistics.median(times[False][1:]),
        "with": statistics.median(times[True][1:]),
    }


def llama_config(sizes: dict | None = None):
    """The tiny model's config, or a Llama of ``sizes`` (``h``, ``i``, ``layers``, ``heads``,
    ``kv``, ``vocab``, optional ``tied``), the models ``measure_step`` trains."""
    from transformers import LlamaConfig

    if sizes is None:
        from lora_course.models import TINY_MODEL_DIR

        return LlamaConfig.from_pretrained(TINY_MODEL_DIR)
    return LlamaConfig(
        hidden_size=sizes["h"],
        intermediate_size=sizes["i"],
        num_hidden_layers=sizes["layers"],
        num_attention_heads=sizes["heads"],
        num_key_value_heads=sizes["kv"],
        vocab_size=sizes["vocab"],
        tie_word_embeddings=sizes.get("tied", False),
    )


def _build(spec: dict):
    """The model of ``spec`` with LoRA, and the bytes of its weights before the adapters."""
    from lora_course.memory import measured_quant_state_bytes
    from lora_course.models import load_model

    quantized = spec["method"] == "qlora"
    if spec.get("model"):  # a model folder (a shape-true one): loaded as a learner loads it
        model, _ = load_model(
            spec["model"],
            quantization="nf4" if quantized else None,
            device="cpu",
            dtype=None if quantized else _FLOATS[spec.get("dtype", "fp32")],
        )
    elif spec.get("sizes"):
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM(llama_config(spec["sizes"]))
    else:
        model, _ = load_model(quantization="nf4" if quantized else None, device="cpu")
    if quantized:  # weights as they train: the kept layers upcast to fp32 by the preparation
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    weights = model.get_memory_footprint() + measured_quant_state_bytes(model)
    return _with_lora(model, spec.get("checkpointing", False)), weights


_FLOATS = {"fp32": torch.float32, "bf16": torch.bfloat16}
_QUANTIZED = {"int8": "int8", "nf4+dq": "nf4"}


def _footprint(spec: dict) -> dict:
    """Load ``spec["model"]`` in ``spec["footprint"]`` (fp32, bf16, int8, nf4+dq) and report
    ``get_memory_footprint()``, the quantization state and the seconds the load took."""
    import time

    from lora_course.memory import measured_quant_state_bytes
    from lora_course.models import load_model

    scheme = spec["footprint"]
    start = time.perf_counter()
    model, _ = load_model(
        spec["model"],
        quantization=_QUANTIZED.get(scheme),
        device="cpu",
        dtype=_FLOATS.get(scheme),
    )
    return {
        "footprint": model.get_memory_footprint(),
        "quant_state": measured_quant_state_bytes(model),
        "load_seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _child(spec: dict) -> dict:
    import importlib
    import time

    import lora_course  # noqa: F401  (quiets bitsandbytes before it loads)

    torch.set_num_threads(spec.get("threads", 1))
    if spec.get("footprint"):
        return _footprint(spec)
    torch.manual_seed(0)
    model, weights = _build(spec)
    trainable = [p for p in model.parameters() if p.requires_grad]
    module, name = _OPTIMIZERS[spec.get("optimizer", "adamw")]
    optimizer = getattr(importlib.import_module(module), name)(trainable, lr=1e-4)
    vocab = model.config.vocab_size

    def step(ids):
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step(torch.randint(0, vocab, (1, 16)))
    ids = torch.randint(0, vocab, (spec["batch"], spec["seq_len"]))
    Path("/proc/self/clear_refs").write_text("5")
    baseline = process_status_bytes("VmRSS")
    start = time.perf_counter()
    step(ids)
    seconds = time.perf_counter() - start
    step_bytes = process_status_bytes("VmHWM") - baseline
    return {
        "step": step_bytes,
        "seconds": seconds,
        "saved": saved_tensor_bytes(model, input_ids=ids, labels=ids),
        "weights": weights,
        "trainable": sum(p.numel() * p.element_size() for p in trainable),
        "optimizer_state": state_bytes(optimizer),
    }


def measure_step(spec: dict) -> dict:
    """Measure one training step of ``spec`` in a fresh process (see the module docstring).

    ``spec``: ``method`` (``"lora"`` or ``"qlora"``: the tiny model in nf4, prepared with
    ``prepare_model_for_kbit_training``), ``batch``, ``seq_len``, optional ``checkpointing``,
    ``optimizer`` (``adamw``, ``adamw-8bit``, ``paged-adamw``, ``paged-adamw-8bit``) and
    ``sizes`` (a random-weight Llama: ``h``, ``i``, ``layers``, ``heads``, ``kv``, ``vocab``,
    optional ``tied``; default the tiny model), or ``model``: a model folder (a shape-true one,
    ``lora_course.machinery.shape_true``) loaded by ``load_model``, in nf4 for qlora, else in
    ``dtype`` (``"fp32"``, default, or ``"bf16"``); optional ``threads`` (default 1).
    ``{"model": folder, "footprint": scheme}`` instead loads the folder in ``scheme`` (fp32,
    bf16, int8, nf4+dq) and reports ``footprint``, ``quant_state``, ``load_seconds``.
    """
    _check_spec(spec, "spec")
    return measure_steps({"step": spec})["step"]


def _check_spec(spec, where: str) -> None:
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a dict such as {{'method': 'lora', ...}}, got {spec!r}")
    if spec.get("footprint"):
        if spec["footprint"] not in (*_FLOATS, *_QUANTIZED) or not spec.get("model"):
            raise ValueError(
                f"{where}: a footprint spec needs a model folder and one of "
                f"{[*_FLOATS, *_QUANTIZED]}"
            )
        return
    if spec.get("method") not in ("lora", "qlora"):
        raise ValueError(f"{where}['method'] must be 'lora' or 'qlora', got {spec.get('method')!r}")
    if spec.get("optimizer", "adamw") not in _OPTIMIZERS:
        raise ValueError(f"{where}['optimizer'] must be one of {list(_OPTIMIZERS)}")


def measure_steps(specs: dict[str, dict]) -> dict[str, dict]:
    """``measure_step`` for each named spec, each in its own fresh process, run side by side.

    Each process reads only its own memory counters, so running them together changes no byte
    figure; on a machine with a core per spec it takes the time of one (most of it is the
    imports every fresh process pays).
    """
    for name, spec in specs.items():
        _check_spec(spec, f"specs[{name!r}]")
    measured = measure_in_fresh_processes(
        "lora_course.machinery.memory_evidence", {repr(name): spec for name, spec in specs.items()}
    )
    return {name: measured[repr(name)] for name in specs}


def step_comparison(spec: dict, measured: dict) -> pd.DataFrame:
    """``measure_step(spec)``'s figures beside ``training_memory``'s for the same step (fp32
    compute, as the tiny model and the random Llamas train here), one row per part.

    Columns: ``part``, ``measured_bytes``, ``estimated_bytes``, ``ratio`` (estimated / measured).
    "saved for backward" is the activations plus the loss's fp32 log-softmax; "step above
    baseline" what the step adds: activations, logits and loss, gradients, dequantized weight.
    """
    from lora_course.training_memory import training_memory

    if spec.get("config"):  # a shipped architecture's name: the saved estimate re-priced
        from lora_course.params import load_model_config

        config = load_model_config(spec["config"])
    elif spec.get("model"):
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(spec["model"])
    else:
        config = llama_config(spec.get("sizes"))
    table = training_memory(
        config,
        spec["method"],
        batch_size=spec["batch"],
        seq_len=spec["seq_len"],
        gradient_checkpointing=spec.get("checkpointing", False),
        compute_dtype=torch.float32,
    ).set_index("part")["bytes"]
    log_softmax = 4 * config.vocab_size * spec["batch"] * spec["seq_len"]
    step_parts = ["activations", "logits and loss", "gradients", "dequantized weight"]
    rows = [
        (
            "weights",
            measured["weights"],
            table["base weights"] + table.get("quantization state", 0),
        ),
        ("trainable parameters", measured["trainable"], table["trainable parameters"]),
        ("optimizer state", measured["optimizer_state"], table["optimizer state"]),
        ("saved for backward", measured["saved"], table["activations"] + log_softmax),
        ("step above baseline", measured["step"], table.reindex(step_parts).fillna(0).sum()),
    ]
    out = pd.DataFrame(rows, columns=["part", "measured_bytes", "estimated_bytes"])
    out["estimated_bytes"] = out["estimated_bytes"].astype("int64")
    out["ratio"] = out["estimated_bytes"] / out["measured_bytes"]
    return out


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
