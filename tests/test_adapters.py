"""Adapters in PEFT's format, their sizes, merging into 4-bit, and the symptoms of notebook 08's
mistakes (each asserted, so a library upgrade that changes one is noticed).

Adapters here are not trained: B is filled with random numbers so that every adapter changes
the output, which is all a save/load/merge test needs.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from safetensors.torch import load_file

from lora_course import adapters, data
from lora_course.lora import LoRALayer, add_lora, lora_layers
from lora_course.machinery.build_model import PRETRAIN
from lora_course.models import TINY_MODEL_DIR, load_model
from lora_course.params import count_parameters, meta_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return load_model()[1]


@pytest.fixture(scope="module")
def probe(tokenizer):
    batch = data.collate(
        [data.tokenize_example(tokenizer, ex) for ex in data.load_task("test")[:8]],
        tokenizer.pad_token_id,
    )
    return {k: batch[k] for k in ("input_ids", "attention_mask")}


def _randomize(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=gen) * 0.05)
    return model


def _ours(targets="all-linear", quantization=None, **kwargs):
    model = load_model(quantization=quantization)[0]
    torch.manual_seed(0)
    return _randomize(add_lora(model, targets, **kwargs))


@torch.no_grad()
def _logits(model, probe):
    return model(**probe).logits.float()


def _peft_load(folder, quantization=None):
    from peft import PeftModel

    return PeftModel.from_pretrained(load_model(quantization=quantization)[0], folder)


# ------------------------------------------------------------------ PEFT's format, round trip


def test_our_keys_are_the_keys_peft_writes(tmp_path):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    get_peft_model(load_model()[0], config).save_pretrained(tmp_path / "peft")
    theirs = load_file(tmp_path / "peft" / adapters.WEIGHTS_NAME)
    ours = adapters.adapter_state_dict(_ours(["q_proj", "v_proj"]))
    assert set(ours) == set(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_round_trip_ours_peft_ours_gives_the_same_logits(tmp_path, probe):
    ours = _ours()
    adapters.save_adapter(ours, tmp_path / "ours")
    peft_model = _peft_load(tmp_path / "ours")
    peft_model.save_pretrained(tmp_path / "peft")
    back = adapters.load_adapter(load_model()[0], tmp_path / "peft")
    reference = _logits(ours, probe)
    assert (reference - _logits(load_model()[0], probe)).abs().max() > 0.1  # the adapter matters
    torch.testing.assert_close(_logits(peft_model, probe), reference, rtol=0, atol=1e-5)
    torch.testing.assert_close(_logits(back, probe), reference, rtol=0, atol=1e-5)


def test_rank_alpha_rslora_and_partial_targets_survive_the_round_trip(tmp_path, probe):
    one_layer = "model.layers.1.self_attn.q_proj"  # not every q_proj: full names are written
    ours = _ours([one_layer, "v_proj"], rank=4, alpha=32, use_rslora=True)
    adapters.save_adapter(ours, tmp_path)
    config = json.loads((tmp_path / adapters.CONFIG_NAME).read_text())
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (4, 32, True)
    peft_model = _peft_load(tmp_path)
    wrapped = {n for n, m in peft_model.named_modules() if hasattr(m, "lora_A") and "q_proj" in n}
    assert wrapped == {f"base_model.model.{one_layer}"}
    torch.testing.assert_close(_logits(peft_model, probe), _logits(ours, probe), rtol=0, atol=1e-5)


def test_load_adapter_reads_a_peft_regex_target(tmp_path, probe):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=8, lora_alpha=16, target_modules=r".*\.(k|o)_proj")
    peft_model = get_peft_model(load_model()[0], config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    peft_model.save_pretrained(tmp_path)
    ours = adapters.load_adapter(load_model()[0], tmp_path)
    assert {n.rsplit(".", 1)[-1] for n, _ in lora_layers(ours)} == {"k_proj", "o_proj"}
    torch.testing.assert_close(_logits(ours, probe), _logits(peft_model, probe), rtol=0, atol=1e-5)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no LoRALayer"):
        adapters.save_adapter(load_model()[0], tmp_path)
    ours = _ours(["q_proj"])
    adapters.save_adapter(ours, tmp_path)
    config = json.loads((tmp_path / adapters.CONFIG_NAME).read_text())
    (tmp_path / adapters.CONFIG_NAME).write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ValueError, match="not a plain LoRA adapter"):
        adapters.load_adapter(load_model()[0], tmp_path)
    from safetensors.torch import save_file

    (tmp_path / adapters.CONFIG_NAME).write_text(json.dumps(config))
    weights = load_file(tmp_path / adapters.WEIGHTS_NAME)
    save_file(
        {**weights, "base_model.model.lm_head.weight": torch.zeros(2, 2)},
        tmp_path / adapters.WEIGHTS_NAME,
    )
    with pytest.raises(ValueError, match="more than LoRA's A and B"):
        adapters.load_adapter(load_model()[0], tmp_path)
    lora_layers(ours)[0][1].merge()
    with pytest.raises(ValueError, match="merged"):
        adapters.adapter_state_dict(ours)


# ------------------------------------------------------------------ sizes


@pytest.mark.parametrize("dtype, width", [(torch.float32, 4), (torch.bfloat16, 2)])
def test_adapter_file_is_header_plus_the_numbers(tmp_path, dtype, width):
    ours = _ours()
    paths = adapters.save_adapter(ours, tmp_path, dtype=dtype)
    numbers = count_parameters(ours)[0]
    assert numbers == sum(m.rank * (m.in_features + m.out_features) for _, m in lora_layers(ours))
    size = paths["weights"].stat().st_size
    assert size == adapters.safetensors_header_bytes(paths["weights"]) + width * numbers


def test_state_bytes_is_what_the_base_checkpoint_holds():
    path = TINY_MODEL_DIR / "model.safetensors"
    tensor_bytes = path.stat().st_size - adapters.safetensors_header_bytes(path)
    assert adapters.state_bytes(load_model()[0]) == tensor_bytes


def test_llama_8b_adapter_sizes():
    table = adapters.adapter_size_table().set_index(["targets", "dtype"])
    assert table.loc[("q+v", "fp32"), "parameters"] == 3_407_872  # FACTS: q+v at r=8
    assert table.loc[("all linear", "bf16"), "parameters"] == 2 * 20_971_520  # r=16 = 2x r=8
    assert table.loc[("q+v", "fp32"), "adapter_MB"] == 3_407_872 * 4 / 1e6
    assert table.loc[("all linear", "bf16"), "adapter_MB"] == 2 * 20_971_520 * 2 / 1e6
    assert table["base_bf16_GB"].iloc[0] == pytest.approx(8_030_261_248 * 2 / 1e9)
    with pytest.raises(ValueError, match="dtype"):
        adapters.adapter_size_table(dtypes=("int3",))


# ------------------------------------------------------------------ merging


def test_merge_and_unload_keeps_the_outputs_and_drops_the_adapters(probe):
    ours = _ours()
    before = _logits(ours, probe)
    merged = adapters.merge_and_unload(ours)
    assert not lora_layers(merged) and count_parameters(merged)[0] == 0
    torch.testing.assert_close(_logits(merged, probe), before, rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def qlora_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qlora")
    adapters.save_adapter(_ours(quantization="nf4"), folder)
    return folder


def _merged(folder, how):
    model = adapters.load_adapter(load_model(quantization="nf4")[0], folder)
    original = load_model()[0] if how == "original" else None
    return adapters.merge_4bit(model, how, original=original)


def test_merge_4bit_three_ways(qlora_folder, probe):
    unmerged = adapters.load_adapter(load_model(quantization="nf4")[0], qlora_folder)
    reference = _logits(unmerged, probe)
    diff, size = {}, {}
    for how in ("original", "dequantize", "requantize"):
        model = _merged(qlora_folder, how)
        assert not lora_layers(model)
        diff[how] = (_logits(model, probe) - reference).abs().max().item()
        size[how] = adapters.state_bytes(model)
    assert diff["dequantize"] < diff["original"] / 2 and diff["dequantize"] < diff["requantize"] / 2
    assert size["requantize"] < size["dequantize"] < size["original"]
    assert size["original"] == adapters.state_bytes(load_model()[0])
    # (a) kept in bf16: the same storage as (b), so sizes compare like with like
    model = adapters.load_adapter(load_model(quantization="nf4")[0], qlora_folder)
    same = adapters.merge_4bit(model, "original", original=load_model()[0], dtype=torch.bfloat16)
    assert adapters.state_bytes(same) == size["dequantize"]
    assert (_logits(same, probe) - reference).abs().max().item() > 2 * diff["dequantize"]


def test_requantize_is_what_peft_merge_and_unload_does_on_4bit(qlora_folder, probe):
    peft_model = _peft_load(qlora_folder, quantization="nf4")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft_merged = peft_model.merge_and_unload()
    # The warning people meet (the QLoRA repository's issues 28 and 254 ask about it).
    assert any("Merge lora module to 4-bit linear" in str(w.message) for w in caught)
    ours = _merged(qlora_folder, "requantize")
    torch.testing.assert_close(_logits(ours, probe), _logits(peft_merged, probe), rtol=0, atol=0)


def test_merge_4bit_arguments():
    model = _ours(["q_proj"], quantization="nf4")
    with pytest.raises(ValueError, match="how must be"):
        adapters.merge_4bit(model, "average")
    with pytest.raises(ValueError, match="original="):
        adapters.merge_4bit(model, "original")
    with pytest.raises(TypeError, match="not a 4-bit layer"):
        adapters.merge_4bit(_ours(["q_proj"]), "dequantize")


# ------------------------------------------------------------------ forgetting and the data


def test_text_loss_matches_the_model_loss_and_the_base_knows_its_grammar(tokenizer):
    model = load_model()[0]
    doc = data.load_held_out_corpus()[0]
    ids = torch.tensor([tokenizer(doc)["input_ids"] + [tokenizer.eos_token_id]])
    with torch.no_grad():
        direct = model(input_ids=ids, labels=ids).loss.item()
    assert adapters.text_loss(model, tokenizer, [doc]) == pytest.approx(direct, rel=1e-5)
    held_out = adapters.text_loss(model, tokenizer, data.load_held_out_corpus())
    seen = adapters.text_loss(model, tokenizer, data.corpus(64, seed=PRETRAIN["seed"]))
    assert held_out < 1.1 * seen  # unseen documents of the same grammar: no memorisation
    with pytest.raises(ValueError, match="texts is empty"):
        adapters.text_loss(model, tokenizer, [])


def test_held_out_corpus_is_unseen_and_shipped(tmp_path):
    assert PRETRAIN["n_docs"] == 20000 and PRETRAIN["seed"] == 0  # held_out_corpus's defaults
    docs = data.load_held_out_corpus()
    assert len(docs) == 64 and not set(docs) & set(data.corpus(20000, seed=0))
    assert (
        data.write_held_out_corpus(tmp_path / "h.txt").read_text() == data.HELD_OUT_FILE.read_text()
    )
    with pytest.raises(ValueError, match="seed must differ"):
        data.held_out_corpus(4, seed=0)


def test_stars_task_is_shipped_balanced_and_disjoint(tmp_path):
    data.write_stars_task(tmp_path)
    for split in ("train", "test"):
        assert (tmp_path / f"{split}.jsonl").read_text() == (
            data.STARS_DIR / f"{split}.jsonl"
        ).read_text()
    task = data.make_stars_task()
    assert not {i["adjective"] for i in task["train"]} & {i["adjective"] for i in task["test"]}
    for items in task.values():
        answers = [i["answer"] for i in items]
        assert answers.count(" five") == answers.count(" one") == len(items) // 2
        assert all((i["answer"] == " five") == (i["adjective"] in data.POSITIVE) for i in items)


# ------------------------------------------------------------------ the mistakes' symptoms


def test_symptom_4bit_parameter_count_looks_smaller():
    fp32, nf4 = load_model()[0], load_model(quantization="nf4")[0]
    naive = sum(p.numel() for p in nf4.parameters())
    assert naive < count_parameters(fp32)[1] == count_parameters(nf4)[1]
    linear = sum(m.weight.numel() for _, m in fp32.named_modules() if type(m).__name__ == "Linear")
    head = fp32.lm_head.weight.numel()
    assert count_parameters(fp32)[1] - naive == (linear - head) // 2  # two weights per byte


def test_symptom_target_modules_that_match_nothing_or_some():
    from peft import LoraConfig, get_peft_model

    with pytest.raises(ValueError, match="not found in the base model"):
        get_peft_model(load_model()[0], LoraConfig(target_modules=["query_key_value"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # silently: not even a warning
        some = get_peft_model(load_model()[0], LoraConfig(target_modules=["q_proj", "fc1"]))
    assert {n.rsplit(".", 1)[-1] for n, m in some.named_modules() if hasattr(m, "lora_A")} == {
        "q_proj"
    }
    pattern = r".*layers\.\d\.self_attn\.(q|v)_proj"
    deep = get_peft_model(meta_model("Llama-3.1-8B"), LoraConfig(target_modules=pattern))
    layers = {
        n.split("layers.")[1].split(".")[0] for n, m in deep.named_modules() if hasattr(m, "lora_A")
    }
    assert len(layers) == 10  # of 32
    with pytest.raises(ValueError, match=r"\['fc1'\] matched no nn.Linear"):
        add_lora(load_model()[0], ["q_proj", "fc1"])


def _batch(tokenizer):
    examples = [data.tokenize_example(tokenizer, ex) for ex in data.load_task("train")[:8]]
    return data.collate(examples, tokenizer.pad_token_id)


def test_symptom_reentrant_checkpointing_without_input_grads(tokenizer):
    model = add_lora(load_model()[0], "all-linear")
    model.config.use_cache = False
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    model(**_batch(tokenizer)).loss.backward()  # transformers turns input gradients on itself
    model.disable_input_require_grads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "None of the inputs have requires_grad"
        with pytest.raises(RuntimeError, match="element 0 of tensors does not require grad"):
            model(**_batch(tokenizer)).loss.backward()


def test_symptom_optimizer_built_before_the_adapter(tokenizer):
    model = load_model()[0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    add_lora(model, "all-linear")
    model.train()
    batch, losses = _batch(tokenizer), []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    assert not caught  # silently: no error and no warning
    assert losses[0] == losses[1]
    assert all(bool((m.lora_B.weight == 0).all()) for _, m in lora_layers(model))


def test_symptom_alpha_kept_when_switching_to_rslora():
    from peft import LoraConfig, get_peft_model

    plain = LoRALayer(torch.nn.Linear(64, 64), rank=64, alpha=16)
    rs = LoRALayer(torch.nn.Linear(64, 64), rank=64, alpha=16, use_rslora=True)
    assert rs.scaling / plain.scaling == math.sqrt(64)
    config = LoraConfig(r=64, lora_alpha=16, use_rslora=True, target_modules=["0"])
    twin = get_peft_model(torch.nn.Sequential(torch.nn.Linear(64, 64)), config)
    assert twin.base_model.model[0].scaling["default"] == rs.scaling
    fixed = LoRALayer(torch.nn.Linear(64, 64), rank=64, alpha=plain.scaling * 8, use_rslora=True)
    assert fixed.scaling == plain.scaling


def test_symptom_adapter_loaded_onto_a_merged_model(tmp_path, probe):
    adapters.save_adapter(_ours(), tmp_path)
    merged = _peft_load(tmp_path).merge_and_unload()
    once = _logits(merged, probe)
    from peft import PeftModel

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        twice = PeftModel.from_pretrained(merged, tmp_path)
    assert not [w for w in caught if "merge" in str(w.message).lower()]
    assert (_logits(twice, probe) - once).abs().max() > 0.1
    again = _peft_load(tmp_path)
    again.merge_adapter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again.merge_adapter()
    assert any("already merged" in str(w.message) for w in caught)


# ------------------------------------------------------------------ figures


def test_merge_ways_plot_has_a_bar_per_way_in_both_panels():
    import pandas as pd

    from lora_course.plots import plot_merge_ways

    table = pd.DataFrame(
        {"max |Δ logit|": [0.0, 2.7, 0.3, 2.0], "bytes": [2.6e6, 7.6e6, 4.5e6, 2.2e6]},
        index=["unmerged", "(a) original", "(b) dequantize", "(c) requantize"],
    )
    left, right = plot_merge_ways(table).axes
    assert [t.get_text() for t in left.get_xticklabels()] == ["unmerged", "(a)", "(b)", "(c)"]
    assert [b.get_height() for b in right.patches] == pytest.approx([2.6, 7.6, 4.5, 2.2])
    assert left.get_ylabel() and right.get_ylabel() == "MB"


def test_text_loss_plot_marks_the_base():
    from lora_course.plots import plot_text_loss

    ax = plot_text_loss({"base": 1.0, "LoRA": 3.0, "full": 1.1}).axes[0]
    assert sorted(b.get_width() for b in ax.patches) == [1.0, 1.1, 3.0]
    assert ax.get_legend().get_texts()[0].get_text() == "base: 1.00"
