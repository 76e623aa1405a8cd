"""How much the adapter's update counts: alpha / rank (LoRA) vs alpha / sqrt(rank) (rsLoRA).

LoRA (Hu et al. 2021, section 4.1) multiplies B A x by alpha / r and notes that, with Adam,
tuning alpha is roughly tuning the learning rate, so the paper sets alpha to the first r it tries
and does not tune it. With alpha fixed, alpha / r shrinks the update as r grows; rsLoRA
(Kalajdzievski 2023, arXiv 2312.03732) shows this slows and stunts learning at high rank and
scales by alpha / sqrt(r) instead (PEFT: ``LoraConfig(use_rslora=True)``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

__all__ = ["DEFAULT_RANKS", "lora_scaling", "scaling_table"]

DEFAULT_RANKS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def lora_scaling(alpha: float, rank: int, use_rslora: bool = False) -> float:
    """``alpha / rank``, or ``alpha / sqrt(rank)`` with ``use_rslora`` (as ``LoRALayer``)."""
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank <= 0:
        raise ValueError(f"rank must be a positive integer (e.g. rank=8), got {rank!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
        raise ValueError(f"alpha must be a positive number (e.g. alpha=16), got {alpha!r}")
    return alpha / math.sqrt(rank) if use_rslora else alpha / rank


def scaling_table(ranks: Sequence[int] = DEFAULT_RANKS, alpha: float | Sequence[float] = 16):
    """One row per rank: alpha, ``alpha/r`` and ``alpha/sqrt(r)``.

    ``alpha`` is one number for every rank (the fixed-alpha view) or one per rank (e.g.
    ``[2 * r for r in ranks]``, the "alpha = 2 x rank" habit).
    """
    import pandas as pd

    ranks = list(ranks)
    alphas = list(alpha) if isinstance(alpha, Sequence) else [alpha] * len(ranks)
    if len(alphas) != len(ranks):
        raise ValueError(
            f"alpha must be one number or one per rank: got {len(alphas)} alphas for "
            f"{len(ranks)} ranks"
        )
    return pd.DataFrame(
        {
            "rank": ranks,
            "alpha": alphas,
            "alpha/r": [lora_scaling(a, r) for a, r in zip(alphas, ranks, strict=True)],
            "alpha/sqrt(r)": [
                lora_scaling(a, r, use_rslora=True) for a, r in zip(alphas, ranks, strict=True)
            ],
        }
    )
