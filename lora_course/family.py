"""The LoRA family on one task: DoRA from scratch, QLoRA's error at step 0, variants side by side.

- **DoRA** (Liu et al. 2024, arXiv 2402.09353, section 4): split the adapted weight into a
  magnitude per output unit and a direction, W' = m * (W + s B A) / ||W + s B A||, the norm
  taken over each row of W (out x in; the paper's "column" in its x W convention). m starts at
  ||W|| so that W' = W at step 0 and trains; the norm is treated as a constant in the backward
  pass (section 4.3), as PEFT does (``peft/tuners/lora/dora.py``, ``DoraLinearLayer.forward``).
- **LoftQ** (Li et al. 2023, arXiv 2310.08659, Algorithm 1): alternate Q = nf4(W - s B A) and
  s B A = best rank-r fit of W - Q, so that Q + s B A is closer to W than nf4(W) alone.
- **PiSSA** (Meng et al. 2024, arXiv 2404.02948): A and B from the top r singular vectors of W,
  the residual W - s B A frozen (and, for QLoRA, quantized: its error is smaller because the
  large singular directions are kept in full precision in A and B).

``variant_runs`` fine-tunes the tiny model once per (variant, seed), side by side in forked
processes (:mod:`lora_course.machinery.parallel`), every variant through PEFT as a GPU learner
would run it, with the course's data, batches and held-out evaluation (:mod:`lora_course.train`).
"""

from __future__ import annotations

import copy
import math
import time

import torch
from torch import nn

from lora_course.data import batches, tokenize_example
from lora_course.lora import LoRALayer, lora_layers
from lora_course.machinery.parallel import run_all
from lora_course.nf4 import dequantize_nf4, quantize_nf4
from lora_course.train import evaluate

__all__ = [
    "DoRALayer",
    "add_dora",
    "dora_twin",
    "VARIANTS",
    "QLORA_INITS",
    "nf4_roundtrip",
    "loftq_factors",
    "pissa_factors",
    "step0_errors",
    "steps_to",
    "variant_runs",
    "variant_table",
    "step_time_ratios",
]


class DoRALayer(LoRALayer):
    """LoRA plus a trainable magnitude per output unit (DoRA, arXiv 2402.09353, eq. 5).

    ``forward(x) = m / ||W + s B A|| * (W x + s B A x) + bias``, the norm per row of W
    (shape (out,)) detached from the graph. ``magnitude`` starts at the row norms of W (B = 0),
    so the layer starts as the original one. ``merge()`` writes W' into the frozen weight.
    """

    def __init__(self, original_layer: nn.Linear, rank: int = 8, alpha: float = 16, **kwargs):
        super().__init__(original_layer, rank=rank, alpha=alpha, **kwargs)
        self.magnitude = nn.Parameter(self.weight_norm().detach().clone())  # (out,)
        self._merged_norm = None

    def weight_norm(self) -> torch.Tensor:
        """||W + s B A|| per output row, shape (out,)."""
        w = self.original.weight.float() + self.get_delta_weight().float()
        return torch.linalg.norm(w, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.original(x)
        bias = self.original.bias
        base = self.original(x)  # (..., out)
        if bias is not None:
            base = base - bias
        h = self.lora_A(self.lora_dropout(x.to(self.lora_A.weight.dtype)))  # (..., r)
        update = self.lora_B(h) * self.scaling  # (..., out)
        scale = (self.magnitude / self.weight_norm().detach()).to(base.dtype)  # (out,)
        out = scale * (base + update.to(base.dtype))
        return out + bias if bias is not None else out

    @torch.no_grad()
    def merge(self) -> None:
        """W <- m / ||W + s B A|| * (W + s B A), row by row. Idempotent."""
        if self.merged:
            return
        weight = self._mergeable_weight()
        norm = self.weight_norm()
        self._merged_norm = norm
        merged = (self.magnitude / norm).unsqueeze(1) * (weight.float() + self.get_delta_weight())
        weight.copy_(merged.to(weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo ``merge()`` (exact up to float rounding). Idempotent."""
        if not self.merged:
            return
        weight = self._mergeable_weight()
        scale = (self.magnitude / self._merged_norm).unsqueeze(1)
        weight.copy_((weight.float() / scale - self.get_delta_weight()).to(weight.dtype))
        self.merged = False


def add_dora(model: nn.Module, target_modules, rank: int = 8, alpha: float = 16) -> nn.Module:
    """Like ``add_lora``, with :class:`DoRALayer`: the model is frozen, then wrapped in place."""
    from lora_course.lora import add_lora

    add_lora(model, target_modules, rank=rank, alpha=alpha)
    for name, layer in lora_layers(model):
        dora = DoRALayer(layer.original, rank=layer.rank, alpha=layer.alpha)
        with torch.no_grad():
            dora.lora_A.weight.copy_(layer.lora_A.weight)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, dora)
    return model


def dora_twin(layer: DoRALayer, name: str = "proj") -> nn.Module:
    """The same adapter built by PEFT (``LoraConfig(use_dora=True)``), with A, B and the
    magnitude copied from ``layer``. Call it like the layer: ``twin(x)``."""
    from peft import LoraConfig, get_peft_model

    if not isinstance(layer, DoRALayer):
        raise TypeError(f"dora_twin needs a DoRALayer, got {type(layer).__name__}")
    if layer.merged:
        raise ValueError("unmerge() the layer first: PEFT adds the adapter to an unmerged base")
    host = nn.Sequential()
    host.add_module(name, copy.deepcopy(layer.original))
    config = LoraConfig(r=layer.rank, lora_alpha=layer.alpha, use_dora=True, target_modules=[name])
    twin = get_peft_model(host, config)
    adapted = twin.get_submodule(f"base_model.model.{name}")
    with torch.no_grad():
        adapted.lora_A["default"].weight.copy_(layer.lora_A.weight)
        adapted.lora_B["default"].weight.copy_(layer.lora_B.weight)
        adapted.lora_magnitude_vector["default"].weight.copy_(layer.magnitude)
    return twin


# Every variant trains r=8, alpha=16 on every linear layer (the course's setting), 40 steps of 8.
# lr: the course's 3e-3 for LoRA on the tiny model; the papers of rsLoRA, DoRA, PiSSA and OLoRA
# compare at LoRA's learning rate; LoRA+ at half of it with B's 16 times larger (PEFT's
# create_loraplus_optimizer docstring: "slightly smaller (e.g., by a factor of 2)"; ratio 16:
# Hayou et al. 2024, arXiv 2402.12354, section 4).
LR = 3e-3
VARIANTS = {
    "LoRA": {"config": {}, "lr": LR, "note": "Hu et al. 2021"},
    "rsLoRA": {"config": {"use_rslora": True}, "lr": LR, "note": "scaling alpha/sqrt(r)"},
    "DoRA": {"config": {"use_dora": True}, "lr": LR, "note": "magnitude + direction"},
    "PiSSA": {"config": {"init_lora_weights": "pissa"}, "lr": LR, "note": "top-r SVD init"},
    "OLoRA": {"config": {"init_lora_weights": "olora"}, "lr": LR, "note": "QR init"},
    "LoRA+": {"config": {}, "lr": LR / 2, "loraplus_ratio": 16, "note": "lr_B = 16 lr_A"},
}
# QLoRA's starting point (section 4): the base is nf4 (blocks of 64, no double quantization,
# as PEFT's LoftQ does), stored here as its dequantized fp32 values: what a QLoRA step computes
# with an fp32 compute dtype, without bitsandbytes' kernels.
QLORA_INITS = ("QLoRA", "LoftQ-1", "LoftQ-5", "PiSSA-nf4")


def nf4_roundtrip(weight: torch.Tensor) -> torch.Tensor:
    """nf4(W) dequantized (our NF4, byte for byte bitsandbytes'), in fp32."""
    return dequantize_nf4(quantize_nf4(weight.detach().float())).float()


def _top_r(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, R) with L @ R the best rank-r fit of ``matrix`` (Eckart-Young): L = U sqrt(S)."""
    u, s, vh = torch.linalg.svd(matrix.float(), full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root.unsqueeze(1) * vh[:rank]  # (out, r), (r, in)


def loftq_factors(weight: torch.Tensor, rank: int, scaling: float, iters: int = 1):
    """LoftQ (arXiv 2310.08659, Algorithm 1): ``(Q, A, B)`` with Q = nf4(W - s B A) and s B A
    the rank-r fit of W - Q, alternated ``iters`` times. A is (r, in), B (out, r)."""
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    w = weight.detach().float()
    low = torch.zeros_like(w)
    for _ in range(iters):
        q = nf4_roundtrip(w - low)
        left, right = _top_r(w - q, rank)
        low = left @ right
    return q, right / math.sqrt(scaling), left / math.sqrt(scaling)


def pissa_factors(weight: torch.Tensor, rank: int, scaling: float):
    """PiSSA for QLoRA: ``(Q, A, B)`` with s B A the top r singular directions of W and
    Q = nf4(W - s B A), the quantized residual."""
    w = weight.detach().float()
    left, right = _top_r(w, rank)
    q = nf4_roundtrip(w - left @ right)
    return q, right / math.sqrt(scaling), left / math.sqrt(scaling)


def _qlora_factors(kind: str, weight, rank: int, scaling: float):
    if kind == "QLoRA":
        return nf4_roundtrip(weight), None, None
    if kind.startswith("LoftQ-"):
        return loftq_factors(weight, rank, scaling, iters=int(kind.split("-")[1]))
    if kind == "PiSSA-nf4":
        return pissa_factors(weight, rank, scaling)
    raise ValueError(f"unknown QLoRA start {kind!r}; choose from {list(QLORA_INITS)}")


def step0_errors(model, kinds=QLORA_INITS, rank: int = 8, alpha: float = 16):
    """||W - (Q + s B A)||_F / ||W||_F at step 0, one row per linear layer (not ``lm_head``)
    and one column per start in ``kinds`` (plain QLoRA: B = 0, the nf4 error itself)."""
    import pandas as pd

    scaling = alpha / rank
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or name.endswith("lm_head"):
            continue
        w = module.weight.detach().float()
        row = {"layer": name, "shape": tuple(w.shape)}
        for kind in kinds:
            q, a, b = _qlora_factors(kind, w, rank, scaling)
            approx = q if a is None else q + scaling * (b @ a)
            row[kind] = float((w - approx).norm() / w.norm())
        rows.append(row)
    return pd.DataFrame(rows)


def steps_to(curve, level: float = 0.9):
    """The first step at which ``curve`` (pairs ``(step, accuracy)``) reaches ``level``; NaN
    when it never does."""
    for step, accuracy in curve:
        if accuracy >= level:
            return step
    return math.nan


def _peft_model(base, variant: dict, seed: int, rank: int, alpha: float, targets):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # the adapter's random A
    config = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, **variant["config"]
    )
    return get_peft_model(copy.deepcopy(base), config)


_FACTORS: dict = {}  # the same W gives the same start: computed once, shared by forked runs


def _cached_factors(name: str, kind: str, weight, rank: int, scaling: float):
    w = weight.detach().double()
    key = (name, kind, rank, scaling, tuple(w.shape), float(w.sum()), float(w.square().sum()))
    if key not in _FACTORS:
        _FACTORS[key] = _qlora_factors(kind, weight, rank, scaling)
    return _FACTORS[key]


@torch.no_grad()
def _start_qlora(model, kind: str, rank: int, alpha: float) -> None:
    """Replace each adapted base weight by its nf4 start and set A and B for ``kind``."""
    scaling = alpha / rank
    for name, module in model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in getattr(module, "lora_A", {}):
            continue
        base = module.get_base_layer()
        q, a, b = _cached_factors(name, kind, base.weight, rank, scaling)
        base.weight.copy_(q)
        if a is not None:
            module.lora_A["default"].weight.copy_(a)
            module.lora_B["default"].weight.copy_(b)


def _full_model(base):
    model = copy.deepcopy(base)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _trainable(base, spec: dict):
    """(model, trainable parameters, optimizer) for one run of ``spec`` (see variant_runs)."""
    from peft.optimizers import create_loraplus_optimizer

    seed, rank, alpha, variant = spec["seed"], spec["rank"], spec["alpha"], spec["variant"]
    if spec.get("full"):
        model = _full_model(base)
    else:
        model = _peft_model(base, variant, seed, rank, alpha, spec["targets"])
        if spec.get("qlora"):
            _start_qlora(model, spec["qlora"], rank, alpha)
    params = [p for p in model.parameters() if p.requires_grad]
    if variant.get("loraplus_ratio"):
        optimizer = create_loraplus_optimizer(
            model, torch.optim.AdamW, lr=spec["lr"], loraplus_lr_ratio=variant["loraplus_ratio"],
            weight_decay=0.0,
        )  # fmt: skip
    else:
        optimizer = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=0.0)
    return model, params, optimizer


def step_time_ratios(base, tokenizer, names, steps: int = 4, rounds: int = 5, batch_size=8):
    """Seconds per training step of each variant in ``names`` over LoRA's, measured in this
    process on one thread, the variants interleaved round by round (median of ``rounds``), so
    that what else the machine does falls on all of them alike: {name: ratio}."""
    from lora_course.data import load_task

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    examples = [tokenize_example(tokenizer, ex) for ex in load_task("train")[: steps * batch_size]]
    names = ["LoRA", *[n for n in names if n != "LoRA"]]
    spec = {"seed": 0, "rank": 8, "alpha": 16, "targets": "all-linear"}
    setups = {
        n: _trainable(base, spec | {"variant": VARIANTS[n], "lr": VARIANTS[n]["lr"]}) for n in names
    }
    times: dict[str, list[float]] = {n: [] for n in names}
    try:
        for round_ in range(rounds + 1):  # round 0 warms every model up and is not counted
            first = round_ % len(names)  # each variant goes first in turn
            order = names[first:] + names[:first]
            for name in order:
                model, _, optimizer = setups[name]
                data = batches(examples, batch_size, tokenizer.pad_token_id, 0)
                model.train()
                start = time.perf_counter()
                for _ in range(steps):
                    model(**next(data)).loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                if round_:
                    times[name].append((time.perf_counter() - start) / steps)
    finally:
        torch.set_num_threads(threads)
    median = {n: sorted(t)[len(t) // 2] for n, t in times.items()}
    return {n: median[n] / median["LoRA"] for n in names}


def _one_run(base, tokenizer, train, test, spec: dict) -> dict:
    """Fine-tune one copy of ``base`` as ``spec`` says; accuracy every ``eval_every`` steps."""
    seed, steps = spec["seed"], spec["steps"]
    model, params, optimizer = _trainable(base, spec)
    torch.manual_seed(seed)
    examples = [tokenize_example(tokenizer, ex) for ex in train]
    data = batches(examples, spec["batch_size"], tokenizer.pad_token_id, seed)
    curve, losses, train_seconds = [], [], 0.0
    for step in range(1, steps + 1):
        model.train()
        batch = next(data)
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_seconds += time.perf_counter() - start
        losses.append(loss.item())
        if spec["eval_every"] and (step % spec["eval_every"] == 0 or step == steps):
            curve.append((step, evaluate(model, tokenizer, test)))
    if not curve or curve[-1][0] != steps:  # the end is always one point of the curve
        curve.append((steps, evaluate(model, tokenizer, test)))
    accuracy = curve[-1][1]
    return {
        "name": spec["name"],
        "seed": seed,
        "lr": spec["lr"],
        "trainable": sum(p.numel() for p in params),
        "accuracy": accuracy,
        "final_loss": losses[-1],
        "mean_loss": sum(losses) / len(losses),
        "steps_to_90": steps_to(curve, 0.9),
        "curve": curve,
        "seconds_per_step": train_seconds / steps,
    }


def variant_runs(
    specs: dict,
    seeds=(0, 1, 2),
    model=None,
    steps: int = 40,
    batch_size: int = 8,
    eval_size: int = 100,
    eval_every: int = 5,
    jobs: int | None = None,
):
    """Fine-tune once per (named spec, seed), side by side; one row per run (a DataFrame).

    specs: ``{name: spec}``; a spec has ``variant`` (a ``VARIANTS`` value) and optionally
        ``rank`` (8), ``alpha`` (16), ``targets`` ("all-linear" or a list), ``lr`` (the
        variant's), ``qlora`` (one of ``QLORA_INITS``: start from an nf4 base), ``full`` (True:
        full fine-tuning, every weight trains). ``eval_every``: held-out accuracy every so many
        steps and at the end (0: at the end only), for ``steps_to_90``.
    Columns: name, seed, lr, trainable, accuracy, final_loss, mean_loss, steps_to_90, curve,
    seconds_per_step (training only, evaluations left out).
    """
    import pandas as pd

    from lora_course.data import load_task
    from lora_course.models import load_model

    if not specs:
        raise ValueError("specs is empty: give e.g. {'LoRA': {'variant': VARIANTS['LoRA']}}")
    base, tokenizer = model if model is not None else load_model()
    train, test = load_task("train"), load_task("test")[:eval_size]
    runs = []
    for name, spec in specs.items():
        if "variant" not in spec:
            raise ValueError(f"spec {name!r} needs a 'variant' (one of VARIANTS' values)")
        for seed in seeds:
            runs.append(
                {"rank": 8, "alpha": 16, "targets": "all-linear", "lr": spec["variant"]["lr"]}
                | spec
                | {"name": name, "seed": seed, "steps": steps, "batch_size": batch_size}
                | {"eval_every": eval_every}
            )

    for spec in {r["qlora"]: r for r in runs if r.get("qlora")}.values():  # before the fork
        _start_qlora(
            _peft_model(base, spec["variant"], 0, spec["rank"], spec["alpha"], spec["targets"]),
            spec["qlora"], spec["rank"], spec["alpha"],
        )  # fmt: skip

    def one(index: int) -> dict:
        return _one_run(base, tokenizer, train, test, runs[index])

    return pd.DataFrame(run_all(one, len(runs), jobs=jobs))


def variant_table(runs, baseline: str = "LoRA"):
    """One row per name of :func:`variant_runs`: accuracy mean and spread (min, max) over
    seeds, how many seeds reached 90 % (``reached_90``) and the mean step at which they did
    (``steps_to_90``; NaN if a seed never got there), trainable parameters, and the
    median seconds per step relative to ``baseline``'s."""
    grouped = runs.groupby("name", sort=False)
    table = grouped.agg(
        seeds=("seed", "size"),
        lr=("lr", "first"),
        trainable=("trainable", "first"),
        accuracy_mean=("accuracy", "mean"),
        accuracy_min=("accuracy", "min"),
        accuracy_max=("accuracy", "max"),
        reached_90=("steps_to_90", lambda s: int(s.notna().sum())),
        steps_to_90=("steps_to_90", lambda s: s.mean(skipna=False)),
        mean_loss=("mean_loss", "mean"),
        seconds_per_step=("seconds_per_step", "median"),
    )
    if baseline in table.index:
        table["time_vs_lora"] = table["seconds_per_step"] / table.loc[baseline, "seconds_per_step"]
    return table.reset_index()
