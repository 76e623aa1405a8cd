"""A toy problem where the answer is known: learn W + (a rank-k change) with LoRA.

The target layer is the frozen base W0 plus a random rank-k update Δ. A LoRA adapter of rank
r >= k can represent Δ exactly, so the loss can reach ~0, and the learned B @ A should have
(at most) r non-zero singular values, k of them large. This is the claim of Hu et al. 2021
(section 4) in miniature: a fine-tuning update with low "intrinsic rank" fits in B @ A.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

__all__ = ["low_rank_target", "fit_to_target", "forward_flops"]


def low_rank_target(
    in_features: int = 64, out_features: int = 64, rank: int = 4, seed: int = 0
) -> tuple[nn.Linear, torch.Tensor]:
    """A base layer and a target weight ``W0 + Δ`` with ``rank(Δ) == rank``.

    Returns ``(base, target_weight)``; ``target_weight`` has shape (out, in). Δ is scaled to
    about the size of W0, so the change is visible.
    """
    if not 0 < rank <= min(in_features, out_features):
        raise ValueError(
            f"rank must be between 1 and min(in_features, out_features)="
            f"{min(in_features, out_features)}, got {rank}"
        )
    gen = torch.Generator().manual_seed(seed)
    base = nn.Linear(in_features, out_features)
    with torch.no_grad():
        base.weight.copy_(torch.randn(out_features, in_features, generator=gen) / in_features**0.5)
        base.bias.zero_()
    u = torch.randn(out_features, rank, generator=gen)  # (out, k)
    v = torch.randn(rank, in_features, generator=gen)  # (k, in)
    delta = u @ v / (rank * in_features) ** 0.5  # (out, in), rank k
    return base, base.weight.detach() + delta


def fit_to_target(
    layer: nn.Module,
    target_weight: torch.Tensor,
    steps: int = 300,
    lr: float = 1e-2,
    batch_size: int = 128,
    seed: int = 0,
) -> pd.DataFrame:
    """Train ``layer``'s trainable parameters so that ``layer(x) ≈ x @ target_weight.T``.

    Adam on mean squared error over fresh Gaussian inputs each step. Returns the loss history
    as a DataFrame with columns ``step`` and ``loss``.
    """
    params = [p for p in layer.parameters() if p.requires_grad]
    if not params:
        raise ValueError("layer has no trainable parameters: wrap it with LoRALayer first")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        x = torch.randn(batch_size, target_weight.shape[1], generator=gen)  # (batch, in)
        loss = nn.functional.mse_loss(layer(x), x @ target_weight.T)  # (batch, out) vs same
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return pd.DataFrame({"step": range(1, steps + 1), "loss": losses})


def forward_flops(module: nn.Module, x: torch.Tensor) -> int:
    """Floating-point operations of one ``module(x)``, counted by ``torch.utils.flop_counter``.

    Matrix multiplies only (2 per multiply-add). Element-wise additions, scaling, memory
    traffic and the fixed cost of each kernel call are not counted, so a FLOP ratio is not a
    time ratio: an unmerged r = 8 adapter adds 0.39 % FLOPs to a 4096 x 4096 layer, while
    ``make bench`` (docs/performance.md, row 3) measures it 4-11 % slower.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops()
