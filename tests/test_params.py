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
    "Llama-3.2-1B": 1_235_814_400,  # tied embeddings: the shared matrix counted once
    "Llama-3.2-3B": 3_212_749_824,
}
TIED = {"Llama-3.2-1B", "Llama-3.2-3B"}


def test_every_shipped_config_is_known():
    assert available_model_configs() == sorted(FACTS)


@pytest.mark.parametrize("name", sorted(FACTS))
def test_architecture_counts_equal_the_published_ones(name):
    model = meta_model(name)
    assert count_parameters(model) == (FACTS[name], FACTS[name])
    assert model.config.tie_word_embeddings == (name in TIED)


def test_unknown_config_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="Llama-2-13B.*Llama-3.1-8B"):
        load_model_config("Llama-4")


# --- tables: the lesson's rank/alpha table, architectures, target sets -----------------------

from lora_course.params import (  # noqa: E402
    TARGET_SETS,
    architecture_table,
    layer_shapes,
    lora_target_table,
    rank_alpha_table,
)


def test_rank_alpha_table_is_the_lessons():
    table = rank_alpha_table(d=4096)
    assert table["rank"].tolist() == [4, 8, 16, 64]
    assert table["alpha"].tolist() == [8, 16, 32, 128]
    assert table["scaling"].tolist() == [2.0] * 4
    assert table["lora_params"].tolist() == [32_768, 65_536, 131_072, 524_288]  # 2 * d * r
    assert table.loc[1, "percent_of_weight"] == 0.390625
    assert table.loc[1, "use_case"] == "General fine-tuning (default recommendation)"


def test_rank_alpha_table_any_d():
    table = rank_alpha_table(d=1024, configs=[(2, 4, "x")])
    assert table.loc[0, "lora_params"] == 2 * 1024 * 2
    with pytest.raises(ValueError, match="d must be a positive integer"):
        rank_alpha_table(d=0)


def test_architecture_table_counts_equal_the_facts():
    table = architecture_table().set_index("model")
    assert table["parameters"].to_dict() == FACTS
    assert table.loc["Llama-3.1-8B", "kv_heads"] == 8
    assert list(table.index) == [
        "Llama-2-7B",
        "Llama-2-13B",
        "Llama-2-70B",
        "Llama-3.1-8B",
        "Llama-3.1-70B",
        "Llama-3.2-1B",
        "Llama-3.2-3B",
    ]


def test_llama_31_8b_kv_projections_are_not_square():
    shapes = layer_shapes("Llama-3.1-8B", rank=8).set_index("module")
    assert (shapes.loc["self_attn.k_proj", ["in_features", "out_features"]] == [4096, 1024]).all()
    assert shapes.loc["self_attn.v_proj", "lora_params"] == 40_960
    assert shapes.loc["self_attn.q_proj", "lora_params"] == 65_536


def test_llama_31_8b_target_sets_equal_the_facts():
    table = lora_target_table("Llama-3.1-8B", ranks=(8,)).set_index("targets")
    assert table.loc["q+v", "trainable"] == 3_407_872
    assert table.loc["all linear", "trainable"] == 20_971_520
    assert f"{table.loc['q+v', 'percent']:.3f}" == "0.042"
    assert f"{table.loc['all linear', 'percent']:.2f}" == "0.26"


def _peft_trainable(name, targets, rank):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets)
    return get_peft_model(meta_model(name), config).get_nb_trainable_parameters()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, label, rank",
    [
        ("Llama-3.1-8B", "q+v", 8),
        ("Llama-3.1-8B", "attention q,k,v,o", 16),
        ("Llama-3.1-8B", "all linear", 8),
    ],
)
def test_lora_counts_equal_peft_on_the_meta_model(name, label, rank):
    row = lora_target_table(name, ranks=(rank,)).set_index("targets").loc[label]
    targets = TARGET_SETS[label]
    targets = targets if isinstance(targets, str) else list(targets)
    assert (row["trainable"], row["total"]) == _peft_trainable(name, targets, rank)
