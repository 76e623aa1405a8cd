"""finetune / evaluate / generate on the tiny model: our LoRA, PEFT, QLoRA, divergence."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download anything

import pandas as pd
import pytest
import torch

from lora_course import add_lora, count_parameters
from lora_course.data import collate, load_task, tokenize_example
from lora_course.models import load_model
from lora_course.train import evaluate, finetune, generate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def task():
    return {split: load_task(split) for split in ("train", "test")}


def lora_model(quantization=None, rank=8, alpha=16):
    model, tokenizer = load_model(quantization=quantization, device="cpu")
    torch.manual_seed(0)
    return add_lora(model, "all-linear", rank=rank, alpha=alpha), tokenizer


def test_the_base_model_fails_the_task(task):
    model, tokenizer = load_model(device="cpu")
    accuracy = evaluate(model, tokenizer, task["test"])
    assert isinstance(accuracy, float) and accuracy < 0.2


def test_a_few_steps_lower_the_loss_and_train_only_the_adapters(task):
    model, tokenizer = lora_model()
    frozen = model.model.layers[0].self_attn.q_proj.original.weight.clone()
    history = finetune(model, tokenizer, task["train"], steps=8, lr=3e-3, progress=False)
    assert isinstance(history, pd.DataFrame)
    assert list(history.columns[:3]) == ["step", "loss", "diverged"]
    assert history["step"].tolist() == list(range(1, 9))
    assert history["loss"].iloc[-3:].mean() < history["loss"].iloc[:3].mean()
    assert not history["diverged"].any()
    torch.testing.assert_close(model.model.layers[0].self_attn.q_proj.original.weight, frozen)
    assert not model.training


@pytest.mark.slow
def test_a_rank_8_lora_learns_the_task_on_held_out_adjectives(task):
    model, tokenizer = lora_model()
    finetune(model, tokenizer, task["train"], progress=False)  # the defaults notebooks use
    assert evaluate(model, tokenizer, task["test"]) >= 0.9
    item = task["test"][0]
    assert generate(model, tokenizer, item["prompt"]) == [item["answer"]]


def test_finetune_works_on_a_peft_model(task):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_model(device="cpu")
    torch.manual_seed(0)
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0)
    model = get_peft_model(model, config)
    history = finetune(model, tokenizer, task["train"], steps=8, lr=3e-3, progress=False)
    assert history["loss"].iloc[-3:].mean() < history["loss"].iloc[:3].mean()
    assert 0.0 <= evaluate(model, tokenizer, task["test"][:16]) <= 1.0


@pytest.mark.slow
def test_qlora_nf4_base_with_fp32_adapters_lowers_the_loss(task):
    import bitsandbytes as bnb

    model, tokenizer = lora_model(quantization="nf4")
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer.original, bnb.nn.Linear4bit)
    assert layer.lora_A.weight.dtype == torch.float32
    trainable, _ = count_parameters(model)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    history = finetune(model, tokenizer, task["train"], steps=8, lr=3e-3, progress=False)
    assert history["loss"].iloc[-3:].mean() < history["loss"].iloc[:3].mean()


def test_a_non_finite_loss_stops_training_and_is_reported(task):
    model, tokenizer = lora_model()
    calls = []

    def overflow_from_the_fourth_step(module, args, output):
        calls.append(1)
        return output * float("inf") if len(calls) >= 4 else output

    model.lm_head.register_forward_hook(overflow_from_the_fourth_step)
    history = finetune(model, tokenizer, task["train"], steps=20, progress=False)
    assert history["diverged"].tolist() == [False, False, False, True]
    assert not torch.isfinite(torch.tensor(history["loss"].iloc[-1]))
    assert all(torch.isfinite(p).all() for p in model.parameters())  # no NaN step was taken


def test_generate_is_greedy_and_deterministic(task):
    model, tokenizer = load_model(device="cpu")
    prompts = [item["prompt"] for item in task["test"][:3]]
    first = generate(model, tokenizer, prompts, max_new_tokens=5)
    assert first == generate(model, tokenizer, prompts, max_new_tokens=5)
    assert len(first) == 3 and all(isinstance(t, str) for t in first)
    assert generate(model, tokenizer, prompts[0], max_new_tokens=5) == first[:1]  # no pad effect
    assert tokenizer.padding_side == "right"  # restored


def test_errors_name_the_fix(task):
    model, tokenizer = load_model(device="cpu")
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters.*add_lora"):
        finetune(model, tokenizer, task["train"], steps=1, progress=False)
    model = add_lora(model, ["q_proj"], rank=2, alpha=2)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        finetune(model, tokenizer, task["train"], steps=0, progress=False)
    with pytest.raises(ValueError, match="dataset is empty"):
        evaluate(model, tokenizer, [])


@pytest.mark.parametrize("native_bf16", [True, False], ids=["bf16-compute", "fp32-compute"])
def test_qlora_gradients_reach_the_first_layer_after_an_evaluation(monkeypatch, native_bf16):
    """bitsandbytes repacks 4-bit weights on the first eval forward on some CPUs, and then
    passes no gradient back; load_model prevents that, so training after evaluating works,
    with either compute dtype the nf4 preset picks (bf16 where native, fp32 where emulated)."""
    from lora_course.machinery import hardware

    monkeypatch.setattr(hardware, "native_bf16", lambda: native_bf16)
    model, tokenizer = load_model(quantization="nf4", device="cpu")
    expected = torch.bfloat16 if native_bf16 else torch.float32
    assert model.model.layers[0].self_attn.q_proj.compute_dtype == expected
    evaluate(model, tokenizer, load_task("test")[:4])
    add_lora(model, "all-linear", rank=4, alpha=8)
    examples = [tokenize_example(tokenizer, ex) for ex in load_task("train")[:8]]
    model.train()
    model(**collate(examples, tokenizer.pad_token_id)).loss.backward()
    grad = model.model.layers[0].self_attn.q_proj.lora_B.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_finetune_refuses_a_4bit_model_repacked_for_inference():
    model, tokenizer = load_model(quantization="nf4", device="cpu")
    layer = model.model.layers[0].self_attn.q_proj
    layer.weight.quant_state.packing_format_for_cpu = True  # as bitsandbytes' repacking leaves it
    add_lora(model, "all-linear", rank=4, alpha=8)
    with pytest.raises(ValueError, match="repacked by bitsandbytes.*load_model"):
        finetune(model, tokenizer, load_task("train")[:8], steps=1, progress=False)
