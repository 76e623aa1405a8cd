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
from timing import interleaved_medians
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
            out.append(
                {
                    "row": 1,
                    "what": f"LoRA fwd+bwd, d={d}, r={rank}, {TOKENS} tokens: ours / PEFT",
                    "value": t["ours"] / t["peft"],
                    "target": "<= 1.0",
                    "met": t["ours"] / t["peft"] <= 1.0,
                    "detail": f"{t['ours'] * 1e3:.1f} ms vs {t['peft'] * 1e3:.1f} ms",
                }
            )
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
        out.append(
            {
                "row": 0,
                "what": f"noise floor, d={d}: a copy of the plain Linear / the plain Linear",
                "value": t["plain copy"] / t["plain"],
                "target": "1 (same work)",
                "met": None,
                "detail": f"{t['plain copy'] * 1e3:.2f} ms vs {t['plain'] * 1e3:.2f} ms",
            }
        )
        out.append(
            {
                "row": 2,
                "what": f"inference, d={d}, r=8: merged LoRA / plain Linear",
                "value": t["merged"] / t["plain"],
                "target": "<= 1.02",
                "met": t["merged"] / t["plain"] <= 1.02,
                "detail": f"{t['merged'] * 1e3:.2f} ms vs {t['plain'] * 1e3:.2f} ms",
            }
        )
        out.append(
            {
                "row": 3,
                "what": f"inference, d={d}, r=8: unmerged LoRA / plain Linear",
                "value": t["unmerged"] / t["plain"],
                "target": "none (why one merges)",
                "met": None,
                "detail": f"{t['unmerged'] * 1e3:.2f} ms vs {t['plain'] * 1e3:.2f} ms",
            }
        )
    return out
