"""LoRA from scratch: the lesson's ``LoRALayer`` and ``add_lora`` for whole models.

LoRA (Hu et al. 2021, arXiv 2106.09685, section 4.1) keeps a pretrained weight W0 frozen and
learns a low-rank update: h = W0 x + (alpha / r) * B A x, with A (r x in) random and B (out x r)
zero, so training starts exactly at the pretrained model. rsLoRA (Kalajdzievski 2023, arXiv
2312.03732) scales by alpha / sqrt(r) instead, which keeps the update's size steady as r grows.

Names follow loralib and PEFT: ``lora_A`` maps in -> r, ``lora_B`` maps r -> out, ``scaling``,
``merged``. The constructor keeps the lesson's ``rank`` and ``alpha`` (PEFT calls them ``r`` and
``lora_alpha``). Unlike loralib, nothing merges as a side effect of ``.eval()``: only ``merge()``
merges.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["LoRALayer", "add_lora", "lora_layers", "peft_twin"]


def _check_rank(rank) -> int:
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank <= 0:
        raise ValueError(f"rank must be a positive integer (e.g. rank=8), got {rank!r}")
    return int(rank)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
        raise ValueError(
            f"alpha must be a positive number (the lesson uses alpha = 2 * rank, e.g. 16), "
            f"got {alpha!r}"
        )
    return float(alpha)


def _check_dropout(dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(
            f"dropout must be a probability in [0, 1) (0 turns it off), got {dropout!r}"
        )
    return float(dropout)


class LoRALayer(nn.Module):
    """Wrap an ``nn.Linear`` (or a subclass, e.g. bitsandbytes' ``Linear4bit``) with LoRA.

    The whole original layer, weight and bias, is frozen; only ``lora_A`` (rank x in) and
    ``lora_B`` (out x rank) train. Output: ``original(x) + scaling * lora_B(lora_A(dropout(x)))``
    with ``scaling = alpha / rank`` (or ``alpha / sqrt(rank)`` when ``use_rslora``).

    A is drawn with ``kaiming_normal_`` as in the lesson (std sqrt(2 / in)); loralib and PEFT
    use ``kaiming_uniform_(a=sqrt(5))`` (std 1 / sqrt(3 * in), sqrt(6) times narrower). Either
    works because B = 0 makes the starting output the original's, but the runs then differ:
    notebook 03 trains PEFT from our starting A and gets our loss curve step for step.
    """

    def __init__(
        self,
        original_layer: nn.Linear,
        rank: int = 8,
        alpha: float = 16,
        dropout: float = 0.0,
        use_rslora: bool = False,
    ):
        super().__init__()
        if not isinstance(original_layer, nn.Linear):
            raise TypeError(
                "LoRALayer wraps an nn.Linear (or a subclass such as bitsandbytes' Linear4bit), "
                f"got {type(original_layer).__name__}; pass a linear layer such as "
                "model.model.layers[0].self_attn.q_proj"
            )
        if isinstance(original_layer, LoRALayer):  # pragma: no cover - LoRALayer is no Linear
            raise TypeError("this layer already has a LoRA adapter")
        rank = _check_rank(rank)
        alpha = _check_alpha(alpha)
        dropout = _check_dropout(dropout)
        in_features, out_features = original_layer.in_features, original_layer.out_features
        if rank > min(in_features, out_features):
            warnings.warn(
                f"rank={rank} is larger than min(in_features, out_features)="
                f"{min(in_features, out_features)}: the update B @ A is no longer low-rank and "
                "has more parameters than needed; choose rank <= "
                f"{min(in_features, out_features)}",
                stacklevel=2,
            )

        self.original = original_layer
        for p in self.original.parameters():
            p.requires_grad_(False)

        self.in_features, self.out_features = in_features, out_features
        self.rank, self.alpha, self.use_rslora = rank, alpha, bool(use_rslora)
        self.scaling = alpha / math.sqrt(rank) if use_rslora else alpha / rank

        # Adapters are kept in fp32 unless the base weight is a float type of its own: a 4-bit
        # base stores uint8, and low-precision adapters would lose small updates.
        weight = original_layer.weight
        dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
        factory = {"device": weight.device, "dtype": dtype}
        self.lora_A = nn.Linear(in_features, rank, bias=False, **factory)
        self.lora_B = nn.Linear(rank, out_features, bias=False, **factory)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A ~ kaiming normal, B = 0: the wrapped layer starts as exactly the original one."""
        nn.init.kaiming_normal_(self.lora_A.weight)
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.original(x)  # (..., out)
        if self.merged:
            return result
        h = self.lora_A(self.lora_dropout(x.to(self.lora_A.weight.dtype)))  # (..., r)
        update = self.lora_B(h).to(result.dtype)  # (..., out)
        return torch.add(result, update, alpha=self.scaling)  # scale and add in one pass

    def get_delta_weight(self) -> torch.Tensor:
        """The update this adapter adds to W: ``scaling * B @ A``, shape (out, in)."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def _mergeable_weight(self) -> torch.Tensor:
        weight = self.original.weight
        if not weight.is_floating_point() or type(weight) is not nn.Parameter:
            raise TypeError(
                f"cannot merge into a {type(self.original).__name__} whose weight is "
                f"{type(weight).__name__}/{weight.dtype}: a quantized weight cannot absorb the "
                "update exactly. Keep the adapter separate, or load the model unquantized and "
                "merge there"
            )
        return weight

    @torch.no_grad()
    def merge(self) -> None:
        """Add the update into the frozen weight, W <- W + scaling * B A. Idempotent."""
        if self.merged:
            return
        weight = self._mergeable_weight()
        weight += self.get_delta_weight().to(weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo ``merge()``: W <- W - scaling * B A. Idempotent."""
        if not self.merged:
            return
        weight = self._mergeable_weight()
        weight -= self.get_delta_weight().to(weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"rank={self.rank}, alpha={self.alpha:g}, scaling={self.scaling:g}, "
            f"use_rslora={self.use_rslora}, merged={self.merged}"
        )


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALayer]]:
    """All ``(name, LoRALayer)`` pairs in ``model``, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALayer)]


def _linear_names(model: nn.Module) -> list[str]:
    names = {
        name.rsplit(".", 1)[-1]
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and not name.endswith((".lora_A", ".lora_B"))
    }
    return sorted(names)


def add_lora(
    model: nn.Module,
    target_modules: Iterable[str] | str,
    rank: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    use_rslora: bool = False,
) -> nn.Module:
    """Freeze ``model`` and wrap the ``nn.Linear`` modules named in ``target_modules``.

    A target matches a module whose full name equals it or ends with ``"." + target``
    (``"q_proj"`` matches every ``...self_attn.q_proj``), as in PEFT. ``"all-linear"`` wraps
    every linear layer except the output head (``lm_head``), as PEFT does. The model is changed
    in place and returned.
    """
    rank, alpha, dropout = _check_rank(rank), _check_alpha(alpha), _check_dropout(dropout)
    if isinstance(target_modules, str) and target_modules != "all-linear":
        target_modules = [target_modules]
    if target_modules != "all-linear":
        target_modules = list(target_modules)
        if not target_modules or not all(isinstance(t, str) for t in target_modules):
            raise ValueError(
                "target_modules must be a non-empty list of module names such as "
                f"['q_proj', 'v_proj'], or 'all-linear'; got {target_modules!r}"
            )

    if lora_layers(model):
        raise ValueError(
            "this model already has LoRA layers; build a fresh model before adding another "
            "adapter, or train the one it has"
        )

    def wanted(name: str) -> str | None:
        if target_modules == "all-linear":
            return None if name.rsplit(".", 1)[-1] == "lm_head" else "all-linear"
        for t in target_modules:
            if name == t or name.endswith("." + t):
                return t
        return None

    chosen = [
        (name, m, wanted(name))
        for name, m in model.named_modules()
        if name and isinstance(m, nn.Linear) and wanted(name)
    ]
    if target_modules != "all-linear":
        missing = sorted(set(target_modules) - {t for _, _, t in chosen})
        if missing:
            raise ValueError(
                f"target_modules {missing} matched no nn.Linear in this model; "
                f"its linear layers are named {_linear_names(model)}"
            )
    if not chosen:
        raise ValueError("this model has no nn.Linear layers to adapt")

    for p in model.parameters():
        p.requires_grad_(False)
    with warnings.catch_warnings():
        warnings.simplefilter("once")
        for name, module, _ in chosen:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(
                parent,
                child,
                LoRALayer(module, rank=rank, alpha=alpha, dropout=dropout, use_rslora=use_rslora),
            )
    return model


def peft_twin(layer: LoRALayer, name: str = "proj") -> nn.Module:
    """The same adapter built by PEFT: a copy of ``layer``'s base inside a one-layer model,
    wrapped by ``get_peft_model`` with ``r=rank``, ``lora_alpha=alpha``, and A and B copied in.

    Our ``rank``/``alpha`` are PEFT's ``r``/``lora_alpha``; ``use_rslora`` and dropout carry
    over. Call the returned model like the layer: ``twin(x)``.
    """
    import copy

    from peft import LoraConfig, get_peft_model

    if not isinstance(layer, LoRALayer):
        raise TypeError(f"peft_twin needs a LoRALayer, got {type(layer).__name__}")
    if layer.merged:
        raise ValueError("unmerge() the layer first: PEFT adds the adapter to an unmerged base")
    host = nn.Sequential()
    host.add_module(name, copy.deepcopy(layer.original))
    config = LoraConfig(
        r=layer.rank,
        lora_alpha=layer.alpha,
        use_rslora=layer.use_rslora,
        lora_dropout=getattr(layer.lora_dropout, "p", 0.0),
        target_modules=[name],
    )
    twin = get_peft_model(host, config)
    adapted = twin.get_submodule(f"base_model.model.{name}")
    with torch.no_grad():
        adapted.lora_A["default"].weight.copy_(layer.lora_A.weight)
        adapted.lora_B["default"].weight.copy_(layer.lora_B.weight)
    return twin
