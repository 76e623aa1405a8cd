"""lora_course.family: DoRA from scratch against PEFT, QLoRA's error at step 0, variant runs."""

import math

import pytest
import torch
from torch import nn

from lora_course.family import (
    VARIANTS,
    DoRALayer,
    add_dora,
    dora_twin,
    loftq_factors,
    nf4_roundtrip,
    pissa_factors,
    steps_to,
    variant_runs,
    variant_table,
)


def _trained_dora(in_features, out_features, bias, seed=0):
    torch.manual_seed(seed)
    layer = DoRALayer(nn.Linear(in_features, out_features, bias=bias), rank=4, alpha=8)
    with torch.no_grad():
        layer.lora_B.weight.normal_(std=0.1)
        layer.magnitude.mul_(1 + 0.2 * torch.randn_like(layer.magnitude))
    return layer


@pytest.mark.parametrize("shape, bias", [((37, 23), True), ((64, 5), False), ((9, 130), True)])
def test_dora_equals_peft_forward_and_merge(shape, bias):
    layer = _trained_dora(*shape, bias)
    twin = dora_twin(layer)
    x = torch.randn(3, 7, shape[0])
    torch.testing.assert_close(layer(x), twin(x), rtol=0, atol=1e-5)
    original = layer.original.weight.detach().clone()
    twin.merge_adapter()
    layer.merge()
    peft_weight = twin.get_submodule("base_model.model.proj").get_base_layer().weight
    assert not torch.allclose(layer.original.weight, original)  # the merge changed W
    torch.testing.assert_close(layer.original.weight, peft_weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x), twin(x), rtol=0, atol=1e-5)


def test_dora_starts_as_the_original_and_unmerges():
    torch.manual_seed(0)
    linear = nn.Linear(12, 6)
    layer = DoRALayer(linear, rank=2, alpha=4)
    x = torch.randn(5, 12)
    torch.testing.assert_close(layer(x), linear(x))
    torch.testing.assert_close(layer.magnitude, linear.weight.norm(dim=1))
    layer = _trained_dora(12, 6, True)
    before = layer.original.weight.detach().clone()
    layer.merge()
    layer.merge()  # idempotent
    layer.unmerge()
    torch.testing.assert_close(layer.original.weight, before, rtol=0, atol=1e-6)


def test_add_dora_wraps_and_counts_one_magnitude_per_output():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    add_dora(model, "all-linear", rank=2, alpha=4)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 2 * (8 + 16) + 2 * (16 + 4) + 16 + 4
    with pytest.raises(TypeError, match="DoRALayer"):
        dora_twin(model[0].original)


def test_loftq_and_pissa_start_closer_than_plain_qlora():
    torch.manual_seed(0)
    w = torch.randn(96, 160) * 0.02
    w += 0.05 * torch.randn(96, 3) @ torch.randn(3, 160) / 10  # a few large directions
    scaling = 2.0

    def error(q, a=None, b=None):
        approx = q if a is None else q + scaling * b @ a
        return float((w - approx).norm() / w.norm())

    plain = error(nf4_roundtrip(w))
    one = error(*loftq_factors(w, 8, scaling, iters=1))
    five = error(*loftq_factors(w, 8, scaling, iters=5))
    pissa = error(*pissa_factors(w, 8, scaling))
    assert one < plain and five <= one and pissa < plain
    with pytest.raises(ValueError, match="iters"):
        loftq_factors(w, 8, scaling, iters=0)


def test_steps_to():
    assert steps_to([(5, 0.5), (10, 0.9), (15, 1.0)]) == 10
    assert math.isnan(steps_to([(5, 0.5)]))


@pytest.fixture(scope="module")
def tiny():
    from lora_course.models import load_model

    return load_model()


def test_variant_rows_come_from_runs(tiny):
    specs = {name: {"variant": VARIANTS[name]} for name in ("LoRA", "DoRA", "LoRA+", "PiSSA")}
    specs["LoftQ"] = {"variant": VARIANTS["LoRA"], "qlora": "LoftQ-1"}
    specs["full"] = {"variant": VARIANTS["LoRA"], "full": True, "lr": 1e-4}
    runs = variant_runs(specs, seeds=(0,), model=tiny, steps=2, eval_size=4, eval_every=1, jobs=1)
    table = variant_table(runs).set_index("name")
    assert list(table.index) == list(specs)
    outs = sum(
        m.out_features
        for n, m in tiny[0].named_modules()
        if isinstance(m, nn.Linear) and "lm_head" not in n
    )
    assert table.loc["DoRA", "trainable"] == table.loc["LoRA", "trainable"] + outs
    assert table.loc["full", "trainable"] == sum(p.numel() for p in tiny[0].parameters())
    assert table.loc["LoRA+", "lr"] == VARIANTS["LoRA"]["lr"] / 2
    assert (runs["curve"].map(len) == 2).all() and table.loc["LoRA", "time_vs_lora"] == 1
    with pytest.raises(ValueError, match="variant"):
        variant_runs({"x": {}}, model=tiny)


def test_a_run_evaluated_only_at_the_end_counts_its_end(tiny, monkeypatch):
    """eval_every=0: the final accuracy is the curve's one point, so a run that ends above 90 %
    counts as reaching it (it used to count as never reaching it)."""
    import lora_course.family as family

    monkeypatch.setattr(family, "evaluate", lambda *args, **kwargs: 0.95)
    specs = {"LoRA": {"variant": VARIANTS["LoRA"]}}
    runs = variant_runs(specs, seeds=(0,), model=tiny, steps=2, eval_size=4, eval_every=0, jobs=1)
    assert runs.loc[0, "curve"] == [(2, 0.95)] and runs.loc[0, "steps_to_90"] == 2
    assert variant_table(runs).loc[0, "reached_90"] == 1


def test_pissa_factors_match_peft_pissa_init():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    host = nn.Sequential()
    host.add_module("proj", nn.Linear(40, 24, bias=False))
    w = host.proj.weight.detach().clone()
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights="pissa", target_modules=["proj"])
    layer = get_peft_model(host, config).get_submodule("base_model.model.proj")
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    peft_delta = 2.0 * b @ a
    _, ours_a, ours_b = pissa_factors(w, 4, 2.0)
    torch.testing.assert_close(2.0 * ours_b @ ours_a, peft_delta, rtol=0, atol=1e-5)
    torch.testing.assert_close(layer.get_base_layer().weight, w - peft_delta, rtol=0, atol=1e-5)
