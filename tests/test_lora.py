"""LoRALayer and add_lora: the claims notebook 01 makes, checked on tiny layers."""

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from lora_course import LoRALayer, add_lora, count_parameters, lora_layers, lora_parameter_count
from lora_course.lora import peft_twin


@pytest.fixture
def base():
    torch.manual_seed(0)
    return nn.Linear(24, 10)


def _trained(layer: LoRALayer) -> LoRALayer:
    """Give B non-zero values, as after some training."""
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    return layer


def test_zero_b_gives_the_base_output_exactly(base):
    x = torch.randn(5, 24)
    expected = base(x)
    layer = LoRALayer(base, rank=4, alpha=8)
    assert torch.equal(layer(x), expected)
    assert torch.count_nonzero(layer.lora_B.weight) == 0
    assert torch.count_nonzero(layer.lora_A.weight) == layer.lora_A.weight.numel()


def test_shapes_follow_loralib_names(base):
    layer = LoRALayer(base, rank=4, alpha=8)
    assert layer.lora_A.weight.shape == (4, 24)  # in -> r
    assert layer.lora_B.weight.shape == (10, 4)  # r -> out
    assert layer.get_delta_weight().shape == base.weight.shape


def test_whole_base_layer_is_frozen_and_unchanged_after_a_step(base):
    weight, bias = base.weight.detach().clone(), base.bias.detach().clone()
    layer = LoRALayer(base, rank=4, alpha=8)
    opt = torch.optim.AdamW([p for p in layer.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        loss = layer(torch.randn(8, 24)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert torch.equal(base.weight, weight) and torch.equal(base.bias, bias)
    assert torch.count_nonzero(layer.lora_B.weight) > 0  # the adapter did learn


@pytest.mark.parametrize("use_rslora, expected", [(False, 16 / 4), (True, 16 / math.sqrt(4))])
def test_scaling(base, use_rslora, expected):
    assert LoRALayer(base, rank=4, alpha=16, use_rslora=use_rslora).scaling == expected


def test_output_is_base_plus_scaled_update(base):
    layer = _trained(LoRALayer(base, rank=3, alpha=6))
    x = torch.randn(7, 24)
    manual = base(x) + 2.0 * x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    torch.testing.assert_close(layer(x), manual, rtol=1e-5, atol=1e-6)


def test_merge_equals_w_plus_scaled_ba_and_round_trips(base):
    layer = _trained(LoRALayer(base, rank=4, alpha=8))
    w0 = base.weight.detach().clone()
    x = torch.randn(6, 24)
    unmerged_out = layer(x)
    expected_w = w0 + layer.scaling * layer.lora_B.weight @ layer.lora_A.weight

    layer.merge()
    assert layer.merged
    torch.testing.assert_close(base.weight, expected_w, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x), unmerged_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(base(x), unmerged_out, rtol=1e-5, atol=1e-5)  # plain layer now

    layer.merge()  # idempotent: no second addition
    torch.testing.assert_close(base.weight, expected_w, rtol=0, atol=1e-6)

    layer.unmerge()
    layer.unmerge()
    assert not layer.merged
    torch.testing.assert_close(base.weight, w0, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x), unmerged_out, rtol=1e-5, atol=1e-5)


def test_eval_does_not_merge(base):
    layer = _trained(LoRALayer(base, rank=4, alpha=8, dropout=0.5))
    w0 = base.weight.detach().clone()
    layer.eval()
    assert not layer.merged and torch.equal(base.weight, w0)
    x = torch.randn(4, 24)
    assert torch.equal(layer(x), layer(x))  # dropout is off in eval mode


def test_dropout_zero_is_identity(base):
    assert isinstance(LoRALayer(base, dropout=0.0).lora_dropout, nn.Identity)
    assert isinstance(LoRALayer(base, dropout=0.1).lora_dropout, nn.Dropout)


def _toy_model():
    torch.manual_seed(0)
    attn = nn.ModuleDict(
        {"q_proj": nn.Linear(16, 16), "k_proj": nn.Linear(16, 4), "v_proj": nn.Linear(16, 4)}
    )
    return nn.ModuleDict(
        {
            "layers": nn.ModuleList([nn.ModuleDict({"self_attn": attn})]),
            "lm_head": nn.Linear(16, 50),
        }
    )


def test_add_lora_adds_exactly_rank_times_in_plus_out():
    model = _toy_model()
    _, total = count_parameters(model)
    add_lora(model, ["q_proj", "v_proj"], rank=2, alpha=4)
    trainable, new_total = count_parameters(model)
    expected = lora_parameter_count(16, 16, 2) + lora_parameter_count(16, 4, 2)
    assert trainable == expected == 2 * 32 + 2 * 20
    assert new_total == total + expected
    assert [name for name, _ in lora_layers(model)] == [
        "layers.0.self_attn.q_proj",
        "layers.0.self_attn.v_proj",
    ]


def test_add_lora_all_linear_skips_the_head():
    model = add_lora(_toy_model(), "all-linear", rank=1, alpha=1)
    names = [name for name, _ in lora_layers(model)]
    assert len(names) == 3 and not any("lm_head" in n for n in names)


def test_add_lora_unknown_target_lists_what_exists():
    with pytest.raises(ValueError, match=r"\['o_proj'\].*k_proj.*lm_head.*q_proj"):
        add_lora(_toy_model(), ["q_proj", "o_proj"])


def test_add_lora_twice_is_refused():
    model = add_lora(_toy_model(), ["q_proj"])
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(model, ["v_proj"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 0}, "rank must be a positive integer"),
        ({"rank": -3}, "rank must be a positive integer"),
        ({"rank": 2.5}, "rank must be a positive integer"),
        ({"rank": True}, "rank must be a positive integer"),
        ({"alpha": 0}, "alpha must be a positive number"),
        ({"alpha": -1.0}, "alpha must be a positive number"),
        ({"dropout": 1.0}, r"dropout must be a probability in \[0, 1\)"),
        ({"dropout": -0.1}, r"dropout must be a probability in \[0, 1\)"),
    ],
)
def test_bad_arguments_name_the_argument(base, kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoRALayer(base, **kwargs)


def test_bad_target_modules_and_layer_types(base):
    with pytest.raises(TypeError, match="wraps an nn.Linear.*got Conv1d"):
        LoRALayer(nn.Conv1d(3, 3, 1))
    with pytest.raises(ValueError, match="non-empty list"):
        add_lora(_toy_model(), [])
    with pytest.raises(ValueError, match="rank must be"):
        add_lora(_toy_model(), ["q_proj"], rank=0)


def test_rank_above_min_dimension_warns(base):
    with pytest.warns(UserWarning, match="no longer low-rank"):
        LoRALayer(base, rank=11)


def test_peft_gives_the_same_output_and_count_on_a_non_square_layer():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    ours_base = nn.Linear(24, 10)
    theirs = nn.Sequential()
    theirs.add_module("proj", nn.Linear(24, 10))
    theirs.proj.load_state_dict(ours_base.state_dict())

    ours = _trained(LoRALayer(ours_base, rank=4, alpha=16))
    config = peft.LoraConfig(r=4, lora_alpha=16, target_modules=["proj"], lora_dropout=0.0)
    model = peft.get_peft_model(theirs, config)
    layer = model.base_model.model.proj
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(ours.lora_A.weight)
        layer.lora_B["default"].weight.copy_(ours.lora_B.weight)

    x = torch.randn(9, 24)
    torch.testing.assert_close(ours(x), model(x), rtol=0, atol=1e-6)
    assert layer.scaling["default"] == ours.scaling
    assert count_parameters(ours)[0] == count_parameters(model)[0] == 4 * (24 + 10)
    torch.testing.assert_close(layer.get_delta_weight("default"), ours.get_delta_weight())


def test_wraps_a_bitsandbytes_4bit_layer_and_refuses_to_merge_into_it():
    bnb = pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    dense = nn.Linear(64, 32)
    q = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float32, quant_type="nf4")
    q.load_state_dict(dense.state_dict())
    q = q.to("cpu")  # quantizes on the move to a device
    layer = LoRALayer(q, rank=4, alpha=8)
    x = torch.randn(3, 64)
    assert torch.equal(layer(x), q(x))
    assert layer.lora_A.weight.dtype == torch.float32
    assert count_parameters(layer) == (4 * (64 + 32), 64 * 32 + 32 + 4 * (64 + 32))
    with pytest.raises(TypeError, match="cannot merge"):
        layer.merge()


def test_import_loads_no_heavy_library():
    code = (
        "import sys, lora_course; "
        "print(sorted(m for m in ('transformers', 'peft', 'bitsandbytes') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("use_rslora", [False, True])
def test_peft_twin_matches_and_maps_the_names(use_rslora):
    torch.manual_seed(1)
    ours = _trained(LoRALayer(nn.Linear(12, 30), rank=3, alpha=5, use_rslora=use_rslora))
    twin = peft_twin(ours)
    adapted = twin.base_model.model.proj
    assert adapted.r["default"] == ours.rank and adapted.lora_alpha["default"] == ours.alpha
    x = torch.randn(4, 12)
    torch.testing.assert_close(twin(x), ours(x), rtol=0, atol=1e-6)
    assert count_parameters(twin)[0] == count_parameters(ours)[0]


def test_peft_twin_refuses_a_merged_layer(base):
    layer = LoRALayer(base)
    layer.merge()
    with pytest.raises(ValueError, match="unmerge"):
        peft_twin(layer)
