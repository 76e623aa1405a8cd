"""Rows 1-3: our LoRALayer against PEFT's, and what merging saves at inference.

1. forward + backward, ours vs PEFT's LoRA ``Linear`` (target: ours / PEFT <= 1.0);
2. merged LoRA vs the plain ``nn.Linear`` at inference (target: <= 1.02);
3. unmerged LoRA vs plain at inference (no target: it shows why one merges).

Row 0 times the same work twice (a copy of the plain layer against the plain layer): how far
from 1 that ratio lands is the noise floor of this machine, against which the others read.
"""

from __future__ import annotations

import copy
from functools import partial

import torch
from timing import interleaved_medians, ratio_row
from torch import nn

from lora_course import LoRALayer
from lora_course.lora import peft_twin

TOKENS = 512


def _pair(d: int, rank: int) -> tuple[LoRALayer, nn.Module]:
    torch.manual_seed(0)
    ours = LoRALayer(nn.Linear(d, d), rank=rank, alpha=2 * rank)
    with torch.no_grad():
        ours.lora_B.weight.normal_(std=0.01)
    return ours, peft_twin(ours)


def _train_step(module: nn.Module, x: torch.Tensor):
    def step():
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()

    return step


def rows(sizes=(1024, 4096), ranks=(8, 64), repeats: int = 7) -> list[dict]:
    out = []
    for d in sizes:
        x = torch.randn(TOKENS, d)
        for rank in ranks:
            ours, theirs = _pair(d, rank)
            t = interleaved_medians(
                {"ours": _train_step(ours, x), "peft": _train_step(theirs, x)}, repeats
            )
            what = f"LoRA fwd+bwd, d={d}, r={rank}, {TOKENS} tokens: ours / PEFT"
            out.append(ratio_row(1, what, t, "ours", "peft", limit=1.0))
        ours, _ = _pair(d, 8)
        plain = copy.deepcopy(ours.original)
        merged = copy.deepcopy(ours)
        merged.merge()
        with torch.no_grad():
            t = interleaved_medians(
                {
                    "plain": partial(plain, x),
                    "plain copy": partial(copy.deepcopy(plain), x),
                    "merged": partial(merged, x),
                    "unmerged": partial(ours, x),
                },
                repeats,
            )
        out += [
            ratio_row(
                0,
                f"noise floor, d={d}: a copy of the plain Linear / the plain Linear",
                t,
                "plain copy",
                "plain",
                target="1 (same work)",
                digits=2,
            ),
            ratio_row(
                2,
                f"inference, d={d}, r=8: merged LoRA / plain Linear",
                t,
                "merged",
                "plain",
                limit=1.02,
                digits=2,
            ),
            ratio_row(
                3,
                f"inference, d={d}, r=8: unmerged LoRA / plain Linear",
                t,
                "unmerged",
                "plain",
                target="none (why one merges)",
                digits=2,
            ),
        ]
    return out
