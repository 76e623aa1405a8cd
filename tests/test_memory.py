"""The footprint calculator against measured models, FACTS' counts and the lesson's table."""

import pytest
import torch

from lora_course import memory, training_memory
from lora_course.params import available_model_configs, count_parameters, meta_model

FACTS_PARAMETERS = {
    "Llama-2-7B": 6_738_415_616,
    "Llama-2-13B": 13_015_864_320,
    "Llama-2-70B": 68_976_648_192,
    "Llama-3.1-8B": 8_030_261_248,
    "Llama-3.1-70B": 70_553_706_496,
    "Llama-3.2-1B": 1_235_814_400,  # tied: the shared embedding counted once
    "Llama-3.2-3B": 3_212_749_824,
}


@pytest.fixture(scope="module")
def small_llama(tmp_path_factory):
    """A random Llama with grouped-query attention and untied embeddings, saved in fp32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=128,
        intermediate_size=344,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1000,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("small-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    return config, path


def load(path, scheme, keep_dtype):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if scheme == "int8":
        quant = BitsAndBytesConfig(load_in_8bit=True)
    elif scheme.startswith("nf4"):
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=scheme == "nf4+dq",
        )
    else:
        quant, keep_dtype = None, memory._FLOAT[scheme]
    return AutoModelForCausalLM.from_pretrained(
        path, dtype=keep_dtype, quantization_config=quant, device_map="cpu"
    )


CASES = [
    ("fp32", None),
    ("bf16", None),
    ("fp16", None),
    ("int8", torch.bfloat16),
    ("int8", torch.float32),
    ("nf4", torch.bfloat16),
    ("nf4+dq", torch.bfloat16),
    ("nf4+dq", torch.float16),
]


@pytest.mark.parametrize(("scheme", "keep_dtype"), CASES)
def test_footprint_equals_measured_to_the_byte(small_llama, scheme, keep_dtype):
    config, path = small_llama
    model = load(path, scheme, keep_dtype)
    expected = memory.weight_footprint(config, scheme, keep_dtype=keep_dtype or torch.bfloat16)
    assert model.get_memory_footprint() == expected.footprint_bytes
    assert memory.measured_quant_state_bytes(model) == expected.quant_state_bytes
    if scheme in ("int8", "nf4+dq"):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        prepared = memory.weight_footprint(config, scheme, keep_dtype=keep_dtype, prepared=True)
        assert model.get_memory_footprint() == prepared.footprint_bytes


@pytest.mark.parametrize(
    ("quantization", "dtype", "scheme"),
    [
        (None, None, "fp32"),
        (None, torch.bfloat16, "bf16"),
        ("int8", None, "int8"),
        ("nf4", None, "nf4+dq"),
        ("nf4", torch.bfloat16, "nf4+dq"),
    ],
)
def test_footprint_equals_the_tiny_model_loaded_with_load_model(quantization, dtype, scheme):
    """The tiny model as the notebooks load it: an fp32 checkpoint, and ``load_model`` keeps the
    layers bitsandbytes leaves alone in fp32 unless ``dtype=`` says otherwise."""
    from lora_course.models import load_model

    model, _ = load_model(quantization=quantization, dtype=dtype, device="cpu")
    expected = memory.weight_footprint(model.config, scheme, keep_dtype=dtype or torch.float32)
    assert model.get_memory_footprint() == expected.footprint_bytes
    assert memory.measured_quant_state_bytes(model) == expected.quant_state_bytes


def test_load_in_8bit_alone_keeps_the_other_layers_in_the_checkpoint_dtype():
    """What exercise 2's learner does: only ``load_in_8bit=True``/``load_in_4bit=True``, no dtype.
    The embeddings, lm_head and norms stay fp32 (the tiny checkpoint's dtype) on the CPU."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from lora_course.checks.exercise_2 import _bytes_of, model_config
    from lora_course.models import TINY_MODEL_DIR

    _, keep = model_config()  # the checkpoint's dtype: fp32 for the tiny model
    assert keep == torch.float32

    for bits, scheme in (("8", "int8"), ("4", "nf4")):
        quant = BitsAndBytesConfig(**{f"load_in_{bits}bit": True})
        model = AutoModelForCausalLM.from_pretrained(
            TINY_MODEL_DIR, quantization_config=quant, device_map="cpu"
        )
        assert model.model.embed_tokens.weight.dtype == keep
        assert model.get_memory_footprint() == _bytes_of()[f"footprint_{bits}bit"]
        fp = memory.weight_footprint(model.config, scheme, keep_dtype=keep)
        assert model.get_memory_footprint() == fp.footprint_bytes


def shrunk(name):
    """``name``'s layout at 1/32 of the width: same tie flag, same grouping of heads, a head
    width that is not hidden / heads, two layers, a small vocabulary."""
    from lora_course.params import load_model_config

    cfg = load_model_config(name)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    cfg.hidden_size //= 32
    cfg.intermediate_size //= 32
    cfg.num_hidden_layers, cfg.vocab_size = 2, 1000
    cfg.head_dim = head_dim // 8
    cfg.num_attention_heads //= 8
    cfg.num_key_value_heads = max(1, cfg.num_key_value_heads // 8)
    return cfg


@pytest.mark.parametrize("name", available_model_configs())
def test_every_shipped_layout_is_priced_to_the_byte(name, tmp_path):
    """Random-weight small versions of each public layout, tied and untied, in fp32, bf16 and
    nf4 + double quantization: the calculator equals get_memory_footprint() and the state."""
    from transformers import LlamaForCausalLM

    config = shrunk(name)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == config.tie_word_embeddings
    assert model.get_memory_footprint() == memory.weight_footprint(config, "fp32").footprint_bytes
    model.save_pretrained(tmp_path)
    for scheme, keep in (("bf16", None), ("nf4+dq", torch.bfloat16)):
        loaded = load(tmp_path, scheme, keep)
        expected = memory.weight_footprint(config, scheme, keep_dtype=keep or torch.bfloat16)
        assert loaded.get_memory_footprint() == expected.footprint_bytes
        assert memory.measured_quant_state_bytes(loaded) == expected.quant_state_bytes


def test_double_quant_does_not_change_the_footprint_only_the_state():
    nf4 = memory.weight_footprint("Llama-3.1-8B", "nf4")
    dq = memory.weight_footprint("Llama-3.1-8B", "nf4+dq")
    assert nf4.footprint_bytes == dq.footprint_bytes
    linear_weights = 2 * nf4.linear_bytes
    assert 8 * nf4.quant_state_bytes / linear_weights == 0.5  # 32 bits per 64 weights
    assert 8 * dq.quant_state_bytes / linear_weights == pytest.approx(0.127, abs=5e-4)


@pytest.mark.parametrize(("name", "count"), FACTS_PARAMETERS.items())
def test_real_parameter_counts_equal_facts(name, count):
    assert count_parameters(meta_model(name))[1] == count


def test_lesson_table_is_nominal_parameters_times_bytes():
    table = memory.lesson_memory_table()
    assert table["7B model"].tolist() == [28, 14, 7, 3.5]
    assert table["13B model"].tolist() == [52, 26, 13, 6.5]
    assert table["70B model"].tolist() == [280, 140, 70, 35]


def test_real_table_matches_facts_for_llama_3_1_8b():
    table = memory.real_memory_table(["Llama-3.1-8B"]).set_index("precision")
    assert table.loc["INT4 (nf4+dq)", "lesson_gb"] == 4.0
    assert round(table.loc["INT4 (nf4+dq)", "total_gb"], 1) == 5.7
    assert round(table.loc["INT4 (nf4+dq), prepared", "total_gb"], 1) == 7.8
    assert table["reason"].str.contains("8.03B real parameters").all()


def test_training_estimate():
    table = training_memory.qlora_training_estimate("Llama-3.1-8B", rank=8).set_index("component")
    assert table.loc["LoRA parameters", "bytes"] == 4 * 20_971_520  # FACTS: all seven, r=8
    q_v = training_memory.qlora_training_estimate(
        "Llama-3.1-8B", target_modules=("q_proj", "v_proj")
    )
    assert q_v.set_index("component").loc["LoRA parameters", "bytes"] == 4 * 3_407_872
    without = training_memory.qlora_training_estimate("Llama-3.1-8B", gradient_checkpointing=False)
    assert without["bytes"].sum() > table["bytes"].sum()


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"choose one of \['fp32'"):
        memory.weight_footprint("Llama-2-7B", "int4")
    with pytest.raises(ValueError, match="not decoder linear layers"):
        training_memory.qlora_training_estimate("Llama-2-7B", target_modules=("query",))


def test_memory_plot_has_lesson_and_real_bars():
    from lora_course.plots import plot_memory_comparison

    fig = plot_memory_comparison(memory.real_memory_table(["Llama-2-7B"]), "Llama-2-7B")
    assert len(fig.axes[0].patches) == 3 * 5  # lesson, footprint, quant state per precision
