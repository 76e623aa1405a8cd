"""Exercise 2: ``get_memory_footprint()`` of a model in 8-bit and in 4-bit, and their ratio.

The lesson: "Measure the actual memory usage difference between load_in_8bit=True and
load_in_4bit=True in BitsAndBytesConfig. Use model.get_memory_footprint()."

What the answer means here (notebook 06 says the same):
- ``model`` is the model measured: ``MODEL`` in the notebook, the course's tiny Llama
  (``lora_course.models.TINY_MODEL_DIR``) unless ``LORA_COURSE_MODEL`` names another one (a GPU
  learner's Llama-3.1-8B-Instruct). It is context, not an answer: it alone is no attempt.
- the learner loads it twice with ``from_pretrained(..., quantization_config=BitsAndBytesConfig(
  load_in_8bit=True))`` and ``load_in_4bit=True``, no ``dtype=``: the layers bitsandbytes does
  not quantize (embeddings, ``lm_head``, norms) keep the checkpoint's dtype (``dtype="auto"``
  is transformers 5's default): fp32 for the tiny model, bf16 for the Llama checkpoints;
- ``footprint_8bit`` and ``footprint_4bit`` are the two ``get_memory_footprint()`` values in
  bytes; ``ratio`` = footprint_8bit / footprint_4bit.

The expected bytes come from ``lora_course.memory.weight_footprint`` for that model's
architecture (tested equal to the measured footprint to the byte for the tiny model; the same
pricing for a hub model reads the shipped ``data/model-configs`` of its architecture), so a
grader needs no model and no GPU. A wrong value gets the hint of the mistake it matches.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch

from lora_course.checks.core import Depends, Exercise, Feedback

__all__ = ["EXERCISE", "RATIO_ATOL", "allowed_model", "model_config"]

RATIO_ATOL = 0.005  # a ratio rounded to two decimals still passes

EXERCISE = Exercise(
    "exercise_2",
    title="get_memory_footprint(): load_in_8bit vs load_in_4bit",
    answers={
        "model": "the model measured: MODEL (set in the setup cell)",
        "footprint_8bit": "bytes, model_8bit.get_memory_footprint() (load_in_8bit=True)",
        "footprint_4bit": "bytes, model_4bit.get_memory_footprint() (load_in_4bit=True)",
        "ratio": "footprint_8bit / footprint_4bit, a plain number, unrounded",
    },
    context=("model",),
)


def allowed_model(model=None) -> str | Path | None:
    """The architecture the checker will price for ``MODEL``: None for the tiny model; the name
    of a shipped config in ``data/model-configs`` (``meta-llama/Llama-3.1-8B-Instruct`` ->
    ``Llama-3.1-8B``); or a shape-true folder the course built itself, inside its cache
    (:func:`lora_course.machinery.shape_true.cache_dir`), where a learner's code cannot write in
    the grader. Anything else is refused with :class:`Feedback` before any file is read: the
    grader never builds, or even looks for, a model a learner names.
    """
    from lora_course.machinery.shape_true import cache_dir
    from lora_course.models import TINY_MODEL_DIR, _known_architecture

    name = str(model) if model is not None else str(TINY_MODEL_DIR)
    if name == str(TINY_MODEL_DIR) or Path(name).name == TINY_MODEL_DIR.name:
        return None  # the tiny model, wherever the course (or the learner's copy) lives
    cache = cache_dir().resolve()
    folder = Path(name[:500]).expanduser()
    if folder.is_absolute() and folder.resolve().is_relative_to(cache):
        if (folder / "config.json").is_file():
            return folder.resolve()  # built by shape_true_model: the course's own file
    arch = _known_architecture(name[:200])
    if arch is None:
        raise Feedback(
            f"the checker cannot price {name[:80]!r}: it prices only the course's tiny model, "
            "the Llama architectures in data/model-configs and the shape-true folders the course "
            "builds; measure the tiny model (unset LORA_COURSE_MODEL) or one of those"
        )
    return arch


def model_config(model=None):
    """(transformers config, its checkpoint dtype) of the model a learner measured.

    None or the tiny model's folder: the tiny Llama. A hub id whose architecture ships in
    ``data/model-configs`` (``meta-llama/Llama-3.1-8B-Instruct`` -> ``Llama-3.1-8B``): that
    config, read offline. A shape-true folder in the course's cache: its config and dtype.
    Anything else: :class:`Feedback` (:func:`allowed_model`).
    """
    from transformers import AutoConfig

    from lora_course.models import TINY_MODEL_DIR
    from lora_course.params import load_model_config

    arch = allowed_model(model)
    if arch is None:
        config = AutoConfig.from_pretrained(str(TINY_MODEL_DIR))
    elif isinstance(arch, Path):
        config = AutoConfig.from_pretrained(str(arch))
    else:
        config = load_model_config(arch)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        dtype = torch.float32  # a config that names no dtype: weights load as fp32
    return config, dtype


def _bytes_of(model=None) -> dict[str, float]:
    """The reference bytes for ``model`` (default the tiny Llama), from the footprint calculator.

    Private on purpose, and not the learner's tool: the items return only a verdict and a hint.

    Keys: ``footprint_8bit``, ``footprint_4bit``, ``ratio`` (the answers), and for the hints
    ``fp32``, ``bf16`` (unquantized), ``int8_16bit``, ``nf4_16bit`` (kept layers 16-bit),
    ``parameters``, ``kept_parameters`` (embeddings, lm_head, norms), ``keep_bytes`` (bytes per
    kept parameter: the checkpoint's dtype).
    """
    return _bytes_for(allowed_model(model))  # cached by what is priced, not by the words


@functools.lru_cache(maxsize=8)
def _bytes_for(arch) -> dict[str, float]:
    from lora_course.memory import weight_footprint

    config, keep = model_config(arch)
    int8 = weight_footprint(config, "int8", keep_dtype=keep)
    nf4 = weight_footprint(config, "nf4", keep_dtype=keep)
    fp32 = weight_footprint(config, "fp32")
    width = torch.empty(0, dtype=keep).element_size()
    return {
        "footprint_8bit": int8.footprint_bytes,
        "footprint_4bit": nf4.footprint_bytes,
        "ratio": int8.footprint_bytes / nf4.footprint_bytes,
        "fp32": fp32.footprint_bytes,
        "bf16": weight_footprint(config, "bf16").footprint_bytes,
        "int8_16bit": weight_footprint(config, "int8", keep_dtype=torch.bfloat16).footprint_bytes,
        "nf4_16bit": weight_footprint(config, "nf4", keep_dtype=torch.bfloat16).footprint_bytes,
        "parameters": (fp32.linear_bytes + fp32.other_bytes) // 4,
        "linear_parameters": fp32.linear_bytes // 4,
        "kept_parameters": int8.other_bytes // width,
        "keep_bytes": width,
    }


@EXERCISE.prepare
def _reference(answers: dict) -> dict:
    model = answers["model"]
    if model is not None and not isinstance(model, str | Path):
        raise Feedback(f"`model` should be the name or folder of the model, got {model!r:.60}")
    _bytes_of(None if model is None else str(model))  # a Feedback here names the model
    return {**answers, "model": None if model is None else str(model)}


def _number(answers: dict, name: str) -> float:
    value = answers[name]
    if value is None:
        raise Feedback(f"`{name}` is not set yet: {EXERCISE.answers[name]}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise Feedback(
                f"`{name}` should be a number, got {type(value).__name__} {value!r:.60}; "
                "store the value itself (model.get_memory_footprint()), not a string or a model"
            ) from None
    if not math.isfinite(value):
        raise Feedback(f"`{name}` is {value}; it should be a finite number")
    return float(value)


def _footprint_hints(value: float, name: str, bits: str, model) -> str | None:
    """None if ``value`` is the right byte count; else the hint of the mistake it matches."""
    ref = _bytes_of(model)
    right = ref[name]
    if value == right:
        return None
    other = "footprint_4bit" if name == "footprint_8bit" else "footprint_8bit"
    sixteen = ref["int8_16bit"] if bits == "8" else ref["nf4_16bit"]
    unit_hints = [
        (1e6, "decimal MB (bytes / 1e6)"),
        (2**20, "MiB (bytes / 2**20)"),
        (1e3, "kB (bytes / 1e3)"),
        (2**10, "KiB (bytes / 2**10)"),
        (1e9, "GB (bytes / 1e9)"),
    ]
    for scale, unit in unit_hints:
        if math.isclose(value * scale, right, rel_tol=5e-3):
            return (
                f"`{name}` looks like {unit}; give the bytes exactly as get_memory_footprint() "
                "returns them (an int, no conversion). MB and MiB differ by 4.9 %: say which one "
                "you mean whenever you convert"
            )
    if value == sixteen and ref["keep_bytes"] != 2:
        return (
            f"`{name}` is the footprint with the non-quantized layers in 16-bit: you passed "
            "dtype=torch.float16 or torch.bfloat16 (or loaded a 16-bit copy). The task loads "
            "without dtype=, so embeddings, lm_head and norms keep the checkpoint's dtype. Compare "
            "like with like: load both models the same way, as the task says"
        )
    if value in (ref["fp32"], ref["bf16"]):
        return (
            f"`{name}` is the footprint of the unquantized model: pass "
            f"quantization_config=BitsAndBytesConfig(load_in_{bits}bit=True) to from_pretrained"
        )
    if value == ref[other]:
        return f"`{name}` holds the other model's footprint: 8-bit and 4-bit are swapped"
    if bits == "4" and math.isclose(value, ref["footprint_8bit"] / 2, abs_tol=1):
        return (
            "`footprint_4bit` is half the 8-bit footprint: measure it on the model loaded with "
            "load_in_4bit=True; it is not half (section 4 of the notebook says why)"
        )
    if math.isclose(value, ref["parameters"] * (1 if bits == "8" else 0.5), abs_tol=1):
        return (
            f"`{name}` is the lesson's arithmetic (every parameter at {bits} bits), not a "
            "measurement: call get_memory_footprint() on the loaded model"
        )
    return (
        f"`{name}` should be model.get_memory_footprint() of MODEL loaded with "
        f"BitsAndBytesConfig(load_in_{bits}bit=True) and no dtype=, in bytes"
    )


@EXERCISE.item("footprint_8bit: get_memory_footprint() with load_in_8bit=True, in bytes")
def _check_8bit(answers):
    value = _number(answers, "footprint_8bit")
    return _footprint_hints(value, "footprint_8bit", "8", answers["model"])


@EXERCISE.item("footprint_4bit: get_memory_footprint() with load_in_4bit=True, in bytes")
def _check_4bit(answers):
    value = _number(answers, "footprint_4bit")
    return _footprint_hints(value, "footprint_4bit", "4", answers["model"])


def _why_not_two(model) -> str:
    ref = _bytes_of(model)
    width = ref["keep_bytes"]
    kept = ref["kept_parameters"] * width  # the same in both models
    return (
        "the ratio is not 2 for this model: only the decoder's linear layers go from 1 byte to "
        "half a byte per weight. The embeddings, lm_head and norms are not quantized and keep "
        f"{width} bytes each in both models: {ref['kept_parameters']:,} of "
        f"{ref['parameters']:,} parameters, {kept / ref['footprint_8bit']:.0%} of the 8-bit and "
        f"{kept / ref['footprint_4bit']:.0%} of the 4-bit footprint. Measure both footprints "
        "and divide"
    )


@EXERCISE.item("ratio = footprint_8bit / footprint_4bit")
def _check_ratio(answers):
    ref = _bytes_of(answers["model"])
    ratio = _number(answers, "ratio")
    if math.isclose(ratio, ref["ratio"], abs_tol=RATIO_ATOL):
        return None
    mine = None
    try:
        mine = _number(answers, "footprint_8bit") / _number(answers, "footprint_4bit")
    except (Feedback, ZeroDivisionError):
        pass
    known = [
        (2.0, _why_not_two(answers["model"])),
        (1 / ref["ratio"], "the ratio is upside down: footprint_8bit / footprint_4bit"),
        (100 * ref["ratio"], "give the ratio as a plain number (1.5, not 150), not a percentage"),
        (
            ref["int8_16bit"] / ref["nf4_16bit"],
            "this is the ratio with the non-quantized layers in 16-bit (dtype=torch.float16 or "
            "bfloat16): the task loads without dtype=, so they keep the checkpoint's dtype",
        ),
        (
            ref["fp32"] / ref["footprint_4bit"],
            "this compares the fp32 model with the 4-bit one; the exercise compares the 8-bit "
            "model with the 4-bit one",
        ),
        (
            ref["bf16"] / ref["footprint_4bit"],
            "this compares a 16-bit model with the 4-bit one; the exercise compares the 8-bit "
            "model with the 4-bit one",
        ),
    ]
    if mine is not None and math.isclose(ratio, mine, abs_tol=RATIO_ATOL):
        raise Depends(
            "your ratio is your footprint_8bit / your footprint_4bit, as it should be; it will "
            "be right once those are",
            credit=True,
        )
    for target, hint in known:
        if target is not None and math.isclose(ratio, target, abs_tol=RATIO_ATOL):
            return hint
    return "ratio should be footprint_8bit / footprint_4bit, computed from the two measurements"


@EXERCISE.item("your explanation of the ratio (read by a person)", points=2, review=True)
def _review_explanation(answers):
    return "a person reads your explanation in the markdown cell of section 4"
