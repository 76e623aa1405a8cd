"""load_model: the tiny Llama in fp32/int8/nf4 on the CPU, the presets, and every error."""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download anything

import pytest
import torch

from lora_course import models
from lora_course.machinery.hardware import qlora_compute_dtype
from lora_course.models import TINY_MODEL_DIR, load_model, quantization_config, weights_gb

needs_cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def loaded():
    return {q: load_model(quantization=q, device="cpu") for q in (None, "int8", "nf4")}


def test_tiny_model_is_a_small_llama_with_gqa_and_untied_embeddings(loaded):
    model, tokenizer = loaded[None]
    config = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert config.num_key_value_heads < config.num_attention_heads
    k_proj = model.model.layers[0].self_attn.k_proj
    assert k_proj.out_features < k_proj.in_features  # not square, as in Llama-3.1-8B
    assert not config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= n <= 8_000_000
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert tokenizer.is_fast and len(tokenizer) == config.vocab_size


def test_tiny_model_files_are_small_safetensors():
    files = {p.name: p.stat().st_size for p in TINY_MODEL_DIR.iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files and "README.md" in files
    assert not any(name.endswith(".bin") for name in files)
    assert sum(files.values()) <= 25 * 1024**2


def test_int8_layers_are_bitsandbytes_8bit(loaded):
    import bitsandbytes as bnb

    model, _ = loaded["int8"]
    assert isinstance(model.model.layers[0].mlp.down_proj, bnb.nn.Linear8bitLt)


def test_nf4_layers_are_bitsandbytes_linear4bit_with_the_lessons_settings(loaded):
    import bitsandbytes as bnb

    model, _ = loaded["nf4"]
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear4bit)
    assert layer.weight.quant_state.quant_type == "nf4"
    assert layer.compute_dtype == qlora_compute_dtype("cpu")  # bf16 where the CPU computes it
    assert layer.weight.quant_state.nested  # double quantization
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)  # the head stays unquantized


def test_nf4_preset_equals_the_lessons_config_field_by_field():
    from transformers import BitsAndBytesConfig

    lesson = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )
    assert quantization_config("nf4").to_dict() == lesson.to_dict()
    assert quantization_config("int8").to_dict() == BitsAndBytesConfig(load_in_8bit=True).to_dict()
    # ...and the lesson's recipe is not the library default
    assert BitsAndBytesConfig(load_in_4bit=True).to_dict() != lesson.to_dict()


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_the_nf4_preset_computes_in_bf16_only_where_the_cpu_does(monkeypatch, native, expected):
    from lora_course.machinery import hardware

    monkeypatch.setattr(hardware, "native_bf16", lambda: native)
    assert quantization_config("nf4").bnb_4bit_compute_dtype == torch.bfloat16  # as printed
    assert quantization_config("nf4", device="cpu").bnb_4bit_compute_dtype == expected
    model, _ = load_model(quantization="nf4", device="cpu")
    assert model.model.layers[0].mlp.up_proj.compute_dtype == expected
    # a config given explicitly is used as given: the lesson's bf16 stays bf16
    model, _ = load_model(quantization=quantization_config("nf4"), device="cpu")
    assert model.model.layers[0].mlp.up_proj.compute_dtype == torch.bfloat16


@pytest.mark.parametrize(
    "capability, expected", [((8, 6), torch.bfloat16), ((7, 5), torch.float16)]
)
def test_a_gpu_gets_bf16_where_native_and_fp16_below(monkeypatch, capability, expected):
    from lora_course.machinery import hardware

    monkeypatch.setattr(hardware, "native_bf16", lambda: False)  # the CPU's answer is not asked
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert quantization_config("nf4", device="cuda").bnb_4bit_compute_dtype == expected
    assert quantization_config("nf4").bnb_4bit_compute_dtype == torch.bfloat16  # the lesson's


def test_a_config_object_is_accepted():
    model, _ = load_model(quantization=quantization_config("nf4"), device="cpu")
    assert type(model.model.layers[0].self_attn.v_proj).__name__ == "Linear4bit"


def test_footprints_fall_fp32_int8_nf4(loaded):
    fp32, int8, nf4 = (loaded[q][0].get_memory_footprint() for q in (None, "int8", "nf4"))
    assert fp32 > int8 > nf4


def test_quantized_models_still_write_the_same_text(loaded):
    from lora_course.train import generate

    prompt = "the soup was bland."
    texts = {q: generate(m, tok, prompt, max_new_tokens=4)[0] for q, (m, tok) in loaded.items()}
    assert texts[None].strip()  # the base model continues its own grammar
    assert texts["int8"] == texts[None]  # int8 barely moves the logits of so small a model


def test_env_var_selects_the_model(monkeypatch):
    monkeypatch.setenv(models.MODEL_ENV, str(TINY_MODEL_DIR))
    model, _ = load_model()
    assert type(model).__name__ == "LlamaForCausalLM"


def test_unknown_quantization_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown quantization 'int4'.*'int8', 'nf4'"):
        load_model(quantization="int4")
    with pytest.raises(TypeError, match="BitsAndBytesConfig"):
        load_model(quantization=4)


def test_missing_model_folder_says_how_to_rebuild(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="python -m lora_course build-model"):
        load_model(str(tmp_path))
    monkeypatch.setattr(models, "TINY_MODEL_DIR", tmp_path / "tiny-llama")
    with pytest.raises(FileNotFoundError, match="the tiny model .* build-model"):
        load_model()
    with pytest.raises(FileNotFoundError, match="no model folder .*hub id"):
        load_model(str(tmp_path / "not-there"))


def test_missing_bitsandbytes_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    monkeypatch.setitem(sys.modules, "bitsandbytes.functional", None)
    with pytest.raises(RuntimeError, match="needs bitsandbytes.*install bitsandbytes 0.50"):
        load_model(quantization="nf4", device="cpu")


def test_bitsandbytes_without_a_backend_is_explained(monkeypatch):
    import bitsandbytes.functional as bnbf

    def no_backend(*args, **kwargs):
        raise NotImplementedError("no kernel for this device")

    monkeypatch.setattr(bnbf, "quantize_4bit", no_backend)
    with pytest.raises(RuntimeError, match="no kernel for this device.*quantization=None"):
        load_model(quantization="int8", device="cpu")


@needs_cpu_only
def test_an_8b_model_without_a_gpu_says_the_memory_it_needs():
    with pytest.raises(RuntimeError, match=r"8,030,261,248 parameters.*16\.1 GB in bf16.*5\.7 GB"):
        load_model("meta-llama/Llama-3.1-8B-Instruct", quantization="nf4")


@needs_cpu_only
def test_asking_for_cuda_without_a_gpu_is_explained():
    with pytest.raises(RuntimeError, match="no GPU; use device='cpu'"):
        load_model(device="cuda")


def test_a_hub_name_with_no_local_copy_offline_is_explained(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv(models.MODEL_ENV, "nobody/not-a-cached-model")
    with pytest.raises(OSError, match="no local copy.*HF_HUB_OFFLINE is set.*hf download"):
        load_model(device="cpu")


def test_weights_gb_agrees_with_the_facts():
    gb = weights_gb("Llama-3.1-8B")
    assert gb["parameters"] == 8_030_261_248
    assert round(gb["bf16"], 1) == 16.1 and round(gb["nf4"], 1) == 5.7


def test_a_local_load_shows_no_progress_bar_and_restores_the_setting(capsys):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    load_model(device="cpu")
    assert "Loading weights" not in capsys.readouterr().err
    assert hf_logging.is_progress_bar_enabled()


def test_dtype_sets_the_layers_that_stay_unquantized():
    model, _ = load_model(quantization="nf4", dtype=torch.bfloat16, device="cpu")
    assert model.lm_head.weight.dtype == torch.bfloat16
    with pytest.raises(TypeError, match="dtype must be a torch float type"):
        load_model(dtype="bf16", device="cpu")
