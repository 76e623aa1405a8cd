"""The toy regression of notebook 01: a known rank, a fit that reaches it, exact FLOP counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lora_course import LoRALayer
from lora_course.toy import fit_to_target, forward_flops, low_rank_target


def test_target_change_has_the_requested_rank():
    base, target = low_rank_target(in_features=32, out_features=24, rank=3, seed=0)
    assert target.shape == (24, 32)
    assert torch.linalg.matrix_rank(target - base.weight.detach()).item() == 3


def test_bad_rank_names_the_argument():
    with pytest.raises(ValueError, match="rank must be between 1 and"):
        low_rank_target(in_features=8, out_features=8, rank=9)


def test_lora_fits_a_low_rank_change():
    torch.set_num_threads(1)
    base, target = low_rank_target(in_features=16, out_features=16, rank=2, seed=0)
    layer = LoRALayer(base, rank=4, alpha=8)
    history = fit_to_target(layer, target, steps=150, lr=1e-2, seed=0)
    assert list(history.columns) == ["step", "loss"]
    assert history.loss.iloc[-1] < 1e-3 * history.loss.iloc[0]


def test_flops_count_the_two_extra_matmuls_of_an_unmerged_adapter():
    d, r, tokens = 64, 4, 10
    x = torch.randn(tokens, d)
    plain = nn.Linear(d, d)
    adapted = LoRALayer(plain, rank=r, alpha=8)
    assert forward_flops(plain, x) == 2 * tokens * d * d
    assert forward_flops(adapted, x) == 2 * tokens * d * d + 2 * tokens * (d * r + r * d)
    adapted.merge()
    assert forward_flops(adapted, x) == 2 * tokens * d * d
