"""Shape-true models (real layouts, random weights) and a local folder loaded like a hub id.

The folders here are Llama-3.2-1B's layout scaled down (``shape_true.SMALL_1B``: 2 layers,
narrower, a 2,048-token vocabulary), built in a temporary folder in about a second. The 1B
itself is measured by ``make bench-real-scale``, not here; its saved results are re-priced.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download anything

import json

import pytest
import torch

from lora_course import models
from lora_course.machinery import real_scale, shape_true
from lora_course.machinery.shape_true import SMALL_1B, shape_true_config, shape_true_model
from lora_course.memory import measured_quant_state_bytes, weight_footprint
from lora_course.models import load_model
from lora_course.params import meta_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return shape_true_model("Llama-3.2-1B", "bf16", SMALL_1B, root=tmp_path_factory.mktemp("st"))


@pytest.mark.parametrize(
    "name, parameters",
    [("Llama-3.2-1B", 1_235_814_400), ("Llama-3.2-3B", 3_212_749_824),
     ("Llama-3.1-8B", 8_030_261_248)],
)  # fmt: skip
def test_shape_true_layouts_have_the_real_parameter_counts(name, parameters):
    model = meta_model(shape_true_config(name))
    assert sum(p.numel() for p in model.parameters()) == parameters


def test_the_small_folder_is_the_1b_layout_scaled_down_and_says_so(small):
    config = load_model(str(small), device="cpu")[0].config
    real = shape_true_config("Llama-3.2-1B")
    for key in ("head_dim", "tie_word_embeddings", "rope_parameters", "hidden_act"):
        assert getattr(config, key) == getattr(real, key), key
    assert config.num_attention_heads // config.num_key_value_heads == 4  # GQA as in the 1B
    assert config.num_hidden_layers == 2 and config.dtype == torch.bfloat16
    card = (small / "README.md").read_text()
    assert "RANDOM" in card and "scaled down" in card


@pytest.mark.parametrize(
    "quantization, scheme", [(None, "bf16"), ("int8", "int8"), ("nf4", "nf4+dq")]
)
def test_a_local_folder_keeps_its_checkpoint_dtype_and_matches_the_calculator(
    small, quantization, scheme
):
    model, _ = load_model(str(small), quantization=quantization, device="cpu")
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16  # not fp32, as for a hub id
    expected = weight_footprint(model.config, scheme, keep_dtype=torch.bfloat16)
    assert model.get_memory_footprint() == expected.footprint_bytes
    assert measured_quant_state_bytes(model) == expected.quant_state_bytes


def test_int8_of_a_bf16_folder_is_smaller_than_bf16(small):
    sizes = {
        q: load_model(str(small), quantization=q, device="cpu")[0].get_memory_footprint()
        for q in (None, "int8", "nf4")
    }
    assert sizes[None] > sizes["int8"] > sizes["nf4"], sizes


def test_the_tiny_model_keeps_its_documented_fp32_when_quantized():
    model, _ = load_model(quantization="int8", device="cpu")
    assert model.model.embed_tokens.weight.dtype == torch.float32


def test_a_second_call_reuses_the_folder(small):
    before = (small / "config.json").stat().st_mtime_ns
    again = shape_true_model("Llama-3.2-1B", "bf16", SMALL_1B, root=small.parent)
    assert again == small and (small / "config.json").stat().st_mtime_ns == before


def test_a_model_larger_than_a_shard_is_written_in_shards_that_load(tmp_path, monkeypatch):
    monkeypatch.setattr(shape_true, "SHARD_BYTES", 2_000_000)
    folder = shape_true_model("Llama-3.2-1B", "fp32", SMALL_1B, root=tmp_path)
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    assert len(shards) > 1 and (folder / "model.safetensors.index.json").is_file()
    model, _ = load_model(str(folder), device="cpu")
    assert model.get_memory_footprint() == weight_footprint(model.config, "fp32").footprint_bytes


def test_a_model_the_memory_cannot_hold_is_refused_with_the_bytes_it_needs(small, monkeypatch):
    from lora_course.machinery import hardware

    monkeypatch.setattr(hardware, "available_bytes", lambda: 1_000_000)
    with pytest.raises(MemoryError, match=r"needs about 0\.0 GB.*0\.0 GB available.*Fix"):
        load_model(str(small), device="cpu")
    with pytest.raises(MemoryError, match="building one shard"):
        shape_true_model("Llama-3.2-1B", "bf16", {"num_hidden_layers": 1}, root=small.parent)


def test_unknown_dtype_and_override_are_named(tmp_path):
    with pytest.raises(ValueError, match="dtype must be one of"):
        shape_true_model("Llama-3.2-1B", "fp16", root=tmp_path)
    with pytest.raises(ValueError, match="no config field 'num_layers'"):
        shape_true_config("Llama-3.2-1B", {"num_layers": 2})


@pytest.mark.parametrize(
    "device, is_hub, expected",
    [("cpu", True, "cpu"), ("cuda:1", False, {"": 1}), ("cuda:0", True, {"": 0}),
     ("cuda", True, "auto")],
)  # fmt: skip
def test_a_process_on_gpu_i_gets_one_whole_copy_on_gpu_i(device, is_hub, expected):
    assert models._device_map(device, is_hub) == expected


def test_exercise_2_prices_a_shape_true_folder_and_accepts_its_footprints(small, monkeypatch):
    from lora_course.checks import check

    int8 = load_model(str(small), quantization="int8", device="cpu")[0].get_memory_footprint()
    nf4 = load_model(str(small), quantization="nf4", device="cpu")[0].get_memory_footprint()
    answers = dict(model=str(small), footprint_8bit=int8, footprint_4bit=nf4, ratio=int8 / nf4)
    assert not check("exercise_2", **answers).passed  # outside the course's cache: never read
    monkeypatch.setenv(shape_true.CACHE_ENV, str(small.parent))  # the course's own cache
    result = check(
        "exercise_2", model=str(small), footprint_8bit=int8, footprint_4bit=nf4, ratio=int8 / nf4
    )
    assert result.passed, result
    wrong = check(
        "exercise_2", model=str(small), footprint_8bit=int8 + 1, footprint_4bit=nf4, ratio=1.0
    )
    assert not wrong.passed and wrong.score < wrong.max_score


@pytest.mark.parametrize("name", ["Llama-3.2-1B", "Llama-3.2-3B"])
def test_the_saved_estimates_are_what_the_calculators_say_today(name):
    results = real_scale.load_results(name)
    if name == "Llama-3.2-1B":  # every footprint; 3B's fp32 and int8 loads were not run
        assert {r["scheme"] for r in results["footprints"]} == set(real_scale.FOOTPRINT_SCHEMES)
    assert sorted(json.dumps(r["spec"], sort_keys=True) for r in results["steps"]) == sorted(
        json.dumps(s, sort_keys=True) for s in real_scale.STEP_SPECS
    )  # every step
    table = real_scale.reprice(results)
    changed = table[table["saved"] != table["now"]]
    assert changed.empty, (
        "the calculators no longer give the estimates saved beside the 1B measurements; "
        f"re-run `{real_scale.COMMAND}` if the change is meant:\n{changed.to_string()}"
    )


def test_over_by_gradients_is_the_saved_estimate_minus_the_measured_peak():
    results = real_scale.load_results("Llama-3.2-1B")
    table = real_scale.over_by_gradients(results)
    assert len(table) == len(results["steps"])
    row = next(r for r in results["steps"] if r["spec"]["seq_len"] == 128)
    over = (row["estimated"]["step above baseline"] - row["measured"]["step"]) / 1e6
    spec = row["spec"]
    got = table[
        (table["method"] == spec["method"])
        & (table["tokens"] == f"1 x {spec['seq_len']}")
        & (table["checkpointing"] == spec["checkpointing"])
    ]
    assert got["estimate over MB"].item() == round(over, 1)
    assert got["gradients MB"].item() == round(row["measured"]["trainable"] / 1e6, 1)
