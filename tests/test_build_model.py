"""build-model: the quick build loads and is deterministic; the shipped model fits its card."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download anything

import json

import pytest

from lora_course import data
from lora_course.__main__ import main
from lora_course.machinery.build_model import TINY_MODEL_DIR


@pytest.fixture(scope="module")
def quick_builds(tmp_path_factory):
    folders = [tmp_path_factory.mktemp("quick-a"), tmp_path_factory.mktemp("quick-b")]
    for folder in folders:
        assert main(["build-model", "--quick", "--no-progress", "--output", str(folder)]) == 0
    return folders


@pytest.mark.slow
def test_quick_build_loads_with_the_auto_classes(quick_builds):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = quick_builds[0]
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    assert tokenizer("the soup")["input_ids"][0] == tokenizer.bos_token_id
    assert (folder / "README.md").read_text().startswith("# tiny-llama")


@pytest.mark.slow
def test_the_build_is_deterministic(quick_builds):
    a, b = quick_builds
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_quick_without_output_refuses_to_overwrite_the_course_model(capsys):
    assert main(["build-model", "--quick"]) == 2
    assert "--output" in capsys.readouterr().err


def test_every_word_of_the_corpus_and_task_is_one_token():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL_DIR)
    words = set(data.DISHES + data.PLACES + data.POSITIVE + data.NEGATIVE + data.DAYS)
    words |= {"review", "sentiment", "positive", "negative"}
    split = [w for w in words if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) > 1]
    assert split == []


def test_the_model_card_matches_the_shipped_model():
    config = json.loads((TINY_MODEL_DIR / "config.json").read_text())
    card = (TINY_MODEL_DIR / "README.md").read_text()
    for key in ("hidden_size", "num_hidden_layers", "num_key_value_heads", "vocab_size"):
        assert f"| {key} | {config[key]} |" in card
    assert "python -m lora_course build-model" in card
