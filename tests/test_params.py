"""Parameter counting: LoRA's r * (in + out), trainable vs total, real architectures."""

import pytest
from torch import nn

from lora_course import LoRALayer, count_parameters, lora_parameter_count
from lora_course.params import available_model_configs, load_model_config, meta_model


def test_the_lessons_square_layer():
    assert lora_parameter_count(4096, 4096, 8) == 65_536
    assert lora_parameter_count(4096, 4096, 8) / (4096 * 4096) == 0.00390625  # 0.390625 %


def test_non_square_llama_kv_projection():
    assert lora_parameter_count(4096, 1024, 8) == 40_960


@pytest.mark.parametrize("bad", [0, -1, 2.0, "8", None, True])
def test_lora_parameter_count_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="must be a positive integer"):
        lora_parameter_count(4096, 4096, bad)


def test_count_parameters_trainable_and_total():
    layer = nn.Linear(4096, 4096)
    assert count_parameters(layer) == (4096 * 4096 + 4096, 4096 * 4096 + 4096)
    wrapped = LoRALayer(layer, rank=8, alpha=16)
    assert count_parameters(wrapped) == (65_536, 4096 * 4096 + 4096 + 65_536)


def test_count_parameters_needs_a_module():
    with pytest.raises(TypeError, match="needs an nn.Module"):
        count_parameters([1, 2, 3])


FACTS = {
    "Llama-2-7B": 6_738_415_616,
    "Llama-2-13B": 13_015_864_320,
    "Llama-2-70B": 68_976_648_192,
    "Llama-3.1-8B": 8_030_261_248,
    "Llama-3.1-70B": 70_553_706_496,
}


def test_every_shipped_config_is_known():
    assert available_model_configs() == sorted(FACTS)


@pytest.mark.parametrize("name", sorted(FACTS))
def test_architecture_counts_equal_the_published_ones(name):
    model = meta_model(name)
    assert count_parameters(model) == (FACTS[name], FACTS[name])
    assert not model.config.tie_word_embeddings


def test_unknown_config_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="Llama-2-13B.*Llama-3.1-8B"):
        load_model_config("Llama-4")
