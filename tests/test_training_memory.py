"""The training-memory estimate, part by part, against what torch and bitsandbytes hold."""

import math

import pytest
import torch

from lora_course import training_memory as tm
from lora_course.machinery.memory_evidence import (
    PUBLISHED,
    measure_step,
    measure_steps,
    published_comparison,
    saved_tensor_bytes,
    state_bytes,
)
from lora_course.memory import weight_footprint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(h=128, i=344, layers=2, heads=4, kv=2, vocab=1000)


def llama(h=128, i=344, layers=2, heads=4, kv=2, vocab=1000, head_dim=None, tied=False):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=h,
        intermediate_size=i,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        vocab_size=vocab,
        head_dim=head_dim or h // heads,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def with_lora(model, targets="all-linear", checkpointing=False):
    from peft import LoraConfig, get_peft_model

    if checkpointing:
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
        model.enable_input_require_grads()
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=targets, lora_dropout=0.0)
    model = get_peft_model(model, lora)
    model.train()
    return model


def estimated_saved(model_config, method, targets, tokens, checkpointing, compute_dtype):
    """What the estimate says autograd keeps: activations + the fp32 log-softmax."""
    table = tm.training_memory(
        model_config,
        method,
        target_modules=targets,
        batch_size=2,
        seq_len=tokens // 2,
        gradient_checkpointing=checkpointing,
        compute_dtype=compute_dtype,
    ).set_index("part")
    return table.loc["activations", "bytes"] + 4 * model_config.vocab_size * tokens


SAVED_CASES = [  # (model kwargs, targets, checkpointing, compute dtype)
    ({}, tm.LORA_TARGETS, False, torch.float32),
    ({}, tm.LORA_TARGETS, True, torch.float32),
    ({}, tm.LORA_TARGETS, False, torch.bfloat16),  # fp32 adapters copy their inputs
    ({}, ("q_proj", "v_proj"), False, torch.float32),
    ({}, ("q_proj", "v_proj"), True, torch.bfloat16),
    ({"tied": True}, tm.LORA_TARGETS, False, torch.float32),
    ({"heads": 2, "head_dim": 96, "kv": 1}, tm.LORA_TARGETS, False, torch.float32),
]


@pytest.mark.parametrize(("sizes", "targets", "checkpointing", "dtype"), SAVED_CASES)
def test_activations_equal_what_autograd_saves(sizes, targets, checkpointing, dtype):
    base = llama(**{**SMALL, **sizes}).to(dtype)
    model = with_lora(base, list(targets), checkpointing)
    ids = torch.randint(0, 1000, (2, 64))
    measured = saved_tensor_bytes(model, input_ids=ids, labels=ids)
    expected = estimated_saved(base.config, "lora", targets, 128, checkpointing, dtype)
    # left out on purpose: rotary cos/sin and the labels, a few bytes per token
    assert expected == pytest.approx(measured, rel=0.02)


def test_full_fine_tuning_activations_equal_what_autograd_saves():
    model = llama(**SMALL).to(torch.bfloat16)
    model.train()
    ids = torch.randint(0, 1000, (2, 64))
    measured = saved_tensor_bytes(model, input_ids=ids, labels=ids)
    expected = estimated_saved(model.config, "full", None, 128, False, torch.bfloat16)
    assert expected == pytest.approx(measured, rel=0.02)


@pytest.mark.parametrize("optimizer", ["adamw", "adamw-8bit", "paged-adamw", "paged-adamw-8bit"])
def test_optimizer_state_equals_the_optimizers_tensors(optimizer):
    import importlib

    import lora_course  # noqa: F401
    from lora_course.machinery.memory_evidence import _OPTIMIZERS

    model = with_lora(llama(**{**SMALL, "i": 512}))  # down_proj's A has 8 x 512 = 4,096 values
    params = [p for p in model.parameters() if p.requires_grad]
    module, name = _OPTIMIZERS[optimizer]
    with pytest.warns(UserWarning) if optimizer.startswith("paged") else _nothing():
        opt = getattr(importlib.import_module(module), name)(params, lr=1e-3)
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    expected = tm.optimizer_state_bytes([p.numel() for p in params], optimizer)
    assert state_bytes(opt) == expected
    if optimizer.endswith("8bit"):  # 8-bit only for tensors of 4,096 values or more
        assert any(p.numel() < 4096 for p in params) and any(p.numel() >= 4096 for p in params)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_eight_bit_adamw_is_about_a_quarter_for_large_tensors():
    n = 4096 * 8
    assert tm.optimizer_state_bytes([n], "adamw-8bit") / tm.optimizer_state_bytes([n]) < 0.27
    assert tm.optimizer_state_bytes([n], "paged-adamw-8bit") == tm.optimizer_state_bytes(
        [n], "adamw-8bit"
    )


def test_parts_of_llama_3_1_8b():
    lora = tm.training_memory("Llama-3.1-8B", "lora").set_index("part")["bytes"]
    assert lora["trainable parameters"] == 4 * 20_971_520  # FACTS: all seven, r=8
    assert lora["gradients"] == lora["trainable parameters"]
    assert lora["base weights"] == weight_footprint("Llama-3.1-8B", "bf16").footprint_bytes
    qlora = tm.training_memory("Llama-3.1-8B", "qlora").set_index("part")["bytes"]
    fp = weight_footprint("Llama-3.1-8B", "nf4+dq", prepared=True)
    assert qlora["base weights"] + qlora["quantization state"] == fp.total_bytes
    n, n_tensors = 8_030_261_248, len(list(tm.shapes_model("Llama-3.1-8B").parameters()))
    full = tm.training_memory("Llama-3.1-8B", "full").set_index("part")["bytes"]  # mixed
    assert full["base weights"] == weight_footprint("Llama-3.1-8B", "fp32").footprint_bytes
    assert full["weight copies for compute"] == 2 * n
    assert full["gradients"] == 4 * n
    assert full["optimizer state"] == 2 * 4 * n + 4 * n_tensors
    pure = tm.training_memory("Llama-3.1-8B", "full", precision="bf16").set_index("part")["bytes"]
    assert pure["base weights"] == weight_footprint("Llama-3.1-8B", "bf16").footprint_bytes
    assert pure["gradients"] == 2 * n
    assert pure["optimizer state"] == 2 * 2 * n + 4 * n_tensors
    assert "weight copies for compute" not in pure


def test_checkpointing_keeps_one_input_per_layer_and_logits_grow_with_vocab():
    with_ckpt = tm.training_memory("Llama-3.1-8B", "lora", gradient_checkpointing=True)
    without = tm.training_memory("Llama-3.1-8B", "lora", gradient_checkpointing=False)
    a, b = (t.set_index("part")["bytes"] for t in (with_ckpt, without))
    assert a["activations"] < b["activations"] / 10
    # at 128k vocabulary the logits are the largest transient with checkpointing
    assert a["logits and loss"] > a["activations"]
    per = tm.activation_bytes_per_token("Llama-3.1-8B", "lora")
    assert per["checkpoint"] == 2 * 4096


def test_tied_embeddings_are_priced_once():
    tied = tm.training_memory("Llama-3.2-1B", "lora").set_index("part")["bytes"]
    buffers = weight_footprint("Llama-3.2-1B", "bf16").buffer_bytes
    assert tied["base weights"] == 2 * 1_235_814_400 + buffers


def test_fsdp_divides_weights_and_state_not_activations():
    one = tm.training_memory("Llama-3.1-70B", "qlora", prepared=False).set_index("part")
    two = tm.training_memory("Llama-3.1-70B", "qlora", prepared=False, devices=2).set_index("part")
    for part in ("base weights", "quantization state", "gradients", "optimizer state"):
        assert two.loc[part, "bytes"] == math.ceil(one.loc[part, "bytes"] / 2)
        assert two.loc[part, "sharded"]
    assert two.loc["activations", "bytes"] == one.loc["activations", "bytes"]
    assert "gathered layer (FSDP)" in two.index and "gathered layer (FSDP)" not in one.index
    assert 0 < two.loc["gathered layer (FSDP)", "bytes"] < one.loc["base weights", "bytes"] / 70


def test_smallest_gpu():
    assert tm.smallest_gpu(12 * 2**30) == 12
    assert tm.smallest_gpu(12 * 2**30 + 1) == 16
    assert tm.smallest_gpu(81 * 2**30) is None


def test_scenario_table_has_every_setting_and_the_plot_draws_it():
    from lora_course.plots import plot_training_memory

    table = tm.scenario_table()
    assert len(table) == 3 * 2 * 2 * 2
    assert (table["peak_gb"] > 0).all()
    fig = plot_training_memory(table)
    assert len(fig.axes) == 3
    assert len(fig.axes[0].patches) == 8 * 4  # 8 bars x 4 parts (no runtime overhead given)
    assert "GB" in fig.axes[0].get_ylabel() and "GiB" not in fig.axes[0].get_ylabel()
    assert "runtime overhead" not in [t.get_text() for t in fig.legends[0].get_texts()]


def test_published_table_is_built_from_the_rows():
    table = published_comparison()
    assert list(table.columns) == [
        "source",
        "model",
        "settings",
        "priced with",
        "published_gb",
        "estimated_gb",
        "ratio",
    ]
    assert len(table) == len(PUBLISHED)
    assert (table["ratio"] == table["estimated_gb"] / table["published_gb"]).all()
    row = dict(PUBLISHED[0], published_gb=1.0)
    assert published_comparison([row])["ratio"].iloc[0] == table["estimated_gb"].iloc[0]


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="method must be one of"):
        tm.training_memory("Llama-2-7B", "prefix")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        tm.training_memory("Llama-2-7B", optimizer="sgd")
    with pytest.raises(ValueError, match="not decoder linear layers"):
        tm.training_memory("Llama-2-7B", target_modules=("query",))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        tm.training_memory("Llama-2-7B", batch_size=0)
    with pytest.raises(ValueError, match="precision must be one of"):
        tm.training_memory("Llama-2-7B", "full", precision="fp8")
    with pytest.raises(ValueError, match="compute_dtype must be"):
        tm.training_memory("Llama-2-7B", compute_dtype=torch.int8)
    with pytest.raises(ValueError, match="spec\\['method'\\]"):
        measure_step({"method": "full", "batch": 1, "seq_len": 8})
    good = {"method": "lora", "batch": 1, "seq_len": 8}
    with pytest.raises(ValueError, match="specs\\['bad'\\]\\['optimizer'\\] must be one of"):
        measure_steps({"good": good, "bad": {**good, "optimizer": "sgd"}})


@pytest.mark.slow
def test_measured_step_is_near_the_estimate():
    """One step of the tiny model in a fresh process: the peak above baseline (RSS) within a
    generous 25 % of the estimate (``make bench`` reports the figures; 4 % when measured)."""
    from transformers import LlamaConfig

    from lora_course.models import TINY_MODEL_DIR

    got = measure_step({"method": "lora", "batch": 4, "seq_len": 128})
    table = tm.training_memory(
        LlamaConfig.from_pretrained(TINY_MODEL_DIR),
        "lora",
        batch_size=4,
        seq_len=128,
        gradient_checkpointing=False,
        compute_dtype=torch.float32,
    ).set_index("part")["bytes"]
    step = table["activations"] + table["logits and loss"] + table["gradients"]
    assert step == pytest.approx(got["step"], rel=0.25)
    assert got["optimizer_state"] == table["optimizer state"]


def _step_bytes(model, optimizer, autocast: bool):
    """One training step of ``model`` on a fixed batch; the bytes of its parameters, gradients
    and optimizer state afterwards (the optimizer's state tensors counted once)."""
    ids = torch.randint(
        0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0)
    )
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters())
    optimizer.step()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return params, grads, state_bytes(optimizer)


@pytest.mark.parametrize("recipe", ["mixed", "bf16", "mixed, adamw-8bit"])
def test_full_fine_tuning_bytes_per_parameter_against_a_measured_optimizer(recipe):
    """Each full fine-tuning recipe on the tiny model: the estimate's weights, gradients and
    optimizer state equal the bytes torch (and bitsandbytes) hold after one step; mixed
    precision is 16 bytes per parameter (fp32 master, fp32 gradient, two fp32 moments)."""
    import bitsandbytes as bnb

    from lora_course.machinery.memory_evidence import llama_config
    from lora_course.models import load_model

    precision, _, optimizer = recipe.partition(", ")
    optimizer = optimizer or "adamw"
    model = load_model(device="cpu")[0].requires_grad_(True).train()
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    make = bnb.optim.AdamW8bit if optimizer == "adamw-8bit" else torch.optim.AdamW
    params, grads, state = _step_bytes(
        model, make(model.parameters(), lr=1e-4), autocast=precision == "mixed"
    )
    table = tm.training_memory(
        llama_config(), "full", precision=precision, optimizer=optimizer
    ).set_index("part")["bytes"]
    buffers = weight_footprint(llama_config(), "fp32").buffer_bytes  # rotary tables, not trained
    assert table["base weights"] - buffers == params
    assert table["gradients"] == grads
    assert table["optimizer state"] == state
    n = sum(p.numel() for p in model.parameters())
    per_parameter = (params + grads + state) / n
    expected = {"mixed": 16, "bf16": 8, "mixed, adamw-8bit": 10}[recipe]
    assert per_parameter == pytest.approx(expected, abs=0.1), per_parameter
    if precision == "mixed":  # autocast's bf16 copy of every weight, priced beside
        assert table["weight copies for compute"] == 2 * n


def test_gpu_sizes_are_binary_and_a_thin_spare_is_borderline():
    assert tm.gpu_bytes(24) == 24 * 2**30
    assert tm.gpu_fit(20e9, 24) == "fits"
    assert tm.gpu_fit(tm.gpu_bytes(24) * 0.97, 24) == "borderline"
    assert tm.gpu_fit(tm.gpu_bytes(24) + 1, 24) == "does not fit"
    table = tm.scenario_table(batches=(1,), seq_lens=(512,))
    assert set(table["fit"]) <= {"fits", "borderline", "does not fit"}
    assert (table.loc[table["smallest_gpu"].isna(), "fit"] == "does not fit").all()


def test_the_thin_estimate_of_notebook_02_is_training_memory():
    from lora_course.training_memory import qlora_training_estimate

    for settings in ({}, {"batch_size": 4, "seq_len": 1024}, {"gradient_checkpointing": False}):
        old = qlora_training_estimate("Llama-2-7B", **settings)["bytes"].sum()
        assert old == tm.peak_bytes(tm.training_memory("Llama-2-7B", "qlora", **settings))


def test_chunked_cross_entropy_equals_the_whole_loss_and_its_gradients():
    from torch.nn import functional as F

    from lora_course.machinery.memory_evidence import chunked_cross_entropy

    torch.manual_seed(0)
    hidden = torch.randn(50, 16, requires_grad=True)
    weight = torch.randn(300, 16, requires_grad=True)
    labels = torch.randint(0, 300, (50,))
    labels[:5] = -100
    whole = F.cross_entropy(hidden @ weight.T, labels)
    whole.backward()
    expected = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    chunked = chunked_cross_entropy(hidden, weight, labels, chunk_size=16)
    chunked.backward()
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(hidden.grad, expected[0])
    torch.testing.assert_close(weight.grad, expected[1])
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        chunked_cross_entropy(hidden, weight, labels, chunk_size=0)
