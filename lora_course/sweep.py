"""Sweeps over the LoRA scaling: fine-tune the tiny model once per (rank, alpha) setting.

Every run starts from the same frozen base model (a deep copy of one loaded model, which costs
a fraction of a second where reloading costs seconds), the same adapter initialisation (the
``seed``) and the same batches, so the runs differ only in what the setting changes. Each run
is ``add_lora(model, "all-linear", rank, alpha, use_rslora=...)``, then
``lora_course.train.finetune`` and ``lora_course.train.evaluate`` on the held-out split.

A setting is a ``(rank, alpha)`` pair or a dict with ``rank`` and ``alpha`` and optionally
``use_rslora`` (scale by alpha/sqrt(r) instead of alpha/r), ``lr`` (overrides the sweep's) and
``init_scale`` (multiplies the initial A; LoRA section 4.1 says tuning alpha is roughly tuning
the learning rate under Adam *if the initialisation is scaled appropriately*: with Adam,
``(scaling * k**2, lr / k, A / k)`` trains exactly like ``(scaling, lr, A)`` up to Adam's eps).

A run *diverges* when its loss becomes inf or NaN (``finetune`` stops there) or blows up: a
loss above ``BLOWUP`` times the first step's. Divergence is reported in the ``diverged`` column,
never raised.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterable, Mapping

import torch

from lora_course.lora import add_lora, lora_layers
from lora_course.machinery.parallel import run_all
from lora_course.scaling import lora_scaling
from lora_course.train import evaluate, finetune

__all__ = [
    "BLOWUP",
    "SETTING_KEYS",
    "HISTORY_COLUMNS",
    "SUMMARY_COLUMNS",
    "RUN_KEYS",
    "loss_spike",
    "run_label",
    "normalise_settings",
    "relative_update",
    "lora_run",
    "sweep",
    "summarize",
    "SPREAD_METRICS",
    "seed_spread",
    "chance_accuracy",
    "TABLE_COLUMNS",
    "runs_table",
]

BLOWUP = 3.0  # a loss above 3x the first step's loss: the run is no longer learning
SETTING_KEYS = ("rank", "alpha", "use_rslora", "lr", "init_scale")
RUN_KEYS = (
    "rank", "alpha", "use_rslora", "scaling", "lr", "init_scale", "steps", "batch_size", "seed",
    "eval_size",
)  # fmt: skip
_RESULTS = ("final_loss", "mean_loss", "accuracy", "diverged", "spike", "update_ratio")
HISTORY_COLUMNS = RUN_KEYS + ("step", "loss") + _RESULTS
SUMMARY_COLUMNS = RUN_KEYS + _RESULTS + ("seconds",)


def _setting(item, lr: float) -> dict:
    if isinstance(item, Mapping):
        unknown = sorted(set(item) - set(SETTING_KEYS) - {"scaling"})
        if unknown:
            raise ValueError(
                f"settings: unknown key(s) {unknown} in {dict(item)!r}; a setting may have "
                f"{list(SETTING_KEYS)}"
            )
        if "rank" not in item or "alpha" not in item:
            raise ValueError(
                f"settings: each setting needs a rank and an alpha, got {dict(item)!r}; "
                'write {"rank": 8, "alpha": 16}'
            )
        s = {"use_rslora": False, "lr": lr, "init_scale": 1.0, **item}  # scaling: recomputed
    elif isinstance(item, tuple | list) and len(item) == 2:
        s = {"rank": item[0], "alpha": item[1], "use_rslora": False, "lr": lr, "init_scale": 1.0}
    else:
        raise ValueError(
            f"settings: each setting is a (rank, alpha) pair or a dict such as "
            f'{{"rank": 8, "alpha": 16}}, got {item!r}'
        )
    s["scaling"] = lora_scaling(s["alpha"], s["rank"], bool(s["use_rslora"]))
    for key in ("lr", "init_scale"):
        v = s[key]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
            raise ValueError(f"settings: {key} must be a positive number, got {v!r}")
    s["rank"], s["use_rslora"] = int(s["rank"]), bool(s["use_rslora"])
    s["alpha"], s["lr"], s["init_scale"] = float(s["alpha"]), float(s["lr"]), float(s["init_scale"])
    return s


def normalise_settings(settings: Iterable, lr: float = 3e-3) -> list[dict]:
    """Settings as dicts with every key of ``SETTING_KEYS`` plus ``scaling``; checks them."""
    if isinstance(settings, Mapping | str) or not isinstance(settings, Iterable):
        raise ValueError(
            "settings must be a list of (rank, alpha) pairs or dicts, e.g. [(8, 1), (8, 16)], "
            f"got {type(settings).__name__}"
        )
    out = [_setting(item, lr) for item in settings]
    if not out:
        raise ValueError("settings is empty: give at least one (rank, alpha) pair")
    return out


@torch.no_grad()
def relative_update(model) -> float:
    """How big the learned update is next to the weight it changes, median over the adapters.

    For each ``LoRALayer``: ``||scaling * B A||_F / ||W||_F`` (Frobenius norms). 0 before
    training (B = 0). A size, not a verdict: what size works depends on the model, the task and
    the number of steps (on the tiny Llama the runs that learn the task end around 0.5-0.7, and
    the too-high scalings at 2 or more).
    """
    ratios = [
        float(layer.get_delta_weight().norm() / layer.original.weight.float().norm())
        for _, layer in lora_layers(model)
    ]
    if not ratios:
        raise ValueError("the model has no LoRA layers: call add_lora(model, ...) first")
    return float(torch.tensor(ratios).median())


def run_label(setting: Mapping) -> str:
    """A short legend label: ``"r=8 alpha=16 (s=2) lr=0.003"``, plus rsLoRA / A init if used."""
    label = f"r={setting['rank']} alpha={setting['alpha']:g} (s={setting['scaling']:.3g})"
    label += f" lr={setting['lr']:g}"
    if setting.get("use_rslora"):
        label += " rsLoRA"
    if setting.get("init_scale", 1.0) != 1.0:
        label += f" A x{setting['init_scale']:g}"
    return label


def _blew_up(losses: list[float]) -> bool:
    if not all(math.isfinite(x) for x in losses):
        return True
    return max(losses) > BLOWUP * losses[0]


def loss_spike(losses) -> float:
    """The largest jump back up: max over steps t of loss[t] / min(loss[:t]); 1.0 = none.

    A smoothly falling loss scores about 1; a run whose updates overshoot scores 2 or more
    (the loss returns to twice its best so far). inf when the loss became non-finite.
    """
    losses = [float(x) for x in losses]
    if not losses:
        raise ValueError("losses is empty: pass the loss column of a training history")
    if not all(math.isfinite(x) for x in losses):
        return math.inf
    best, spike = losses[0], 1.0
    for x in losses[1:]:
        spike = max(spike, x / best)
        best = min(best, x)
    return spike


def lora_run(
    base,
    tokenizer,
    train: list[dict],
    test: list[dict],
    setting,
    steps: int = 40,
    lr: float = 3e-3,
    seed: int = 0,
    batch_size: int = 8,
):
    """One fine-tune of a deep copy of ``base`` (``base`` is not changed).

    Returns ``(history, model)``: the history has one row per step and every column of
    ``HISTORY_COLUMNS`` (run settings repeated on each row); ``model`` is the trained copy.
    """
    (s,) = normalise_settings([setting], lr)
    model = copy.deepcopy(base)
    torch.manual_seed(seed)  # the same A for every run with the same rank
    add_lora(model, "all-linear", rank=s["rank"], alpha=s["alpha"], use_rslora=s["use_rslora"])
    if s["init_scale"] != 1.0:
        with torch.no_grad():
            for _, layer in lora_layers(model):
                layer.lora_A.weight.mul_(s["init_scale"])
    history = finetune(
        model, tokenizer, train, steps=steps, lr=s["lr"], batch_size=batch_size, seed=seed,
        progress=False,
    )  # fmt: skip
    losses = history["loss"].tolist()
    diverged = _blew_up(losses)
    finite = math.isfinite(losses[-1])
    accuracy = evaluate(model, tokenizer, test) if finite else 0.0
    ratio = relative_update(model) if finite else math.nan
    run = {k: s[k] for k in SETTING_KEYS} | {
        "scaling": s["scaling"],
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "eval_size": len(test),
        "final_loss": losses[-1],
        "mean_loss": sum(losses) / len(losses),  # the area under the curve: learning speed
        "accuracy": accuracy,
        "diverged": diverged,
        "spike": loss_spike(losses),
        "update_ratio": ratio,
    }
    for key in RUN_KEYS + _RESULTS:
        history[key] = run[key]
    history["run"] = run_label(run)
    history["run_seconds"] = history["seconds"].iloc[-1]
    return history[["run", *HISTORY_COLUMNS, "seconds", "run_seconds"]], model


def sweep(
    settings: Iterable,
    steps: int = 40,
    lr: float = 3e-3,
    seed: int = 0,
    batch_size: int = 8,
    eval_size: int | None = 100,
    model=None,
    on_run=None,
    seeds=None,
    jobs: int | None = None,
):
    """Fine-tune once per setting; one tidy DataFrame of every step of every run.

    settings: ``(rank, alpha)`` pairs or dicts (module docstring). steps, lr, seed, batch_size:
        the same for every run (a setting's own ``lr`` wins). eval_size: held-out examples
        scored per run (the first ``eval_size`` of ``load_task("test")``; None for all 200).
    model: ``(base_model, tokenizer)`` to reuse; default ``load_model()`` (the tiny Llama).
    on_run: called with each run's history as it finishes (a progress display).
    seeds: several seeds, e.g. ``(0, 1, 2)``: every setting runs once per seed (a new adapter
        initialisation and batch order each time) and ``seed`` must stay 0; the ``run`` label
        then ends in ``seed=N``. :func:`seed_spread` gives the mean and spread per setting.
    jobs: runs at once, each in a forked process on one torch thread
        (:mod:`lora_course.machinery.parallel`); default one per core on Linux, 1 elsewhere. The
        numbers are the same whatever ``jobs`` is, when the runs here use one thread
        (``torch.set_num_threads(1)``, as the notebooks do); only ``seconds`` changes.

    Columns: ``run`` (a legend label), ``HISTORY_COLUMNS``, ``seconds`` (since the run's
    start) and ``run_seconds``.
    One row per step; ``final_loss``, ``accuracy``, ``diverged`` and ``update_ratio`` (see
    :func:`relative_update`) are per run, repeated on its rows. :func:`summarize` gives one row
    per run.
    """
    import pandas as pd

    from lora_course.data import load_task
    from lora_course.models import load_model

    settings = normalise_settings(settings, lr)
    if seeds is None:
        seeds, tag = [seed], False
    else:
        seeds, tag = _seeds(seeds, seed), True
    _check_eval_size(eval_size)
    base, tokenizer = model if model is not None else load_model()
    train, test = load_task("train"), load_task("test")[:eval_size]
    runs = [(s, run_seed) for s in settings for run_seed in seeds]

    def one(index: int):
        s, run_seed = runs[index]
        history, _ = lora_run(base, tokenizer, train, test, s, steps, lr, run_seed, batch_size)
        if tag:
            history["run"] = history["run"] + f" seed={run_seed}"
        return history

    histories = run_all(one, len(runs), jobs=jobs, on_result=on_run)
    return pd.concat(histories, ignore_index=True)


def _check_eval_size(eval_size) -> None:
    if eval_size is not None and (not isinstance(eval_size, int) or eval_size <= 0):
        raise ValueError(f"eval_size must be a positive integer or None, got {eval_size!r}")


def _seeds(seeds, seed: int) -> list[int]:
    if seed != 0:
        raise ValueError(f"give seed or seeds, not both (got seed={seed!r} and seeds={seeds!r})")
    if isinstance(seeds, numbers.Integral) or not isinstance(seeds, Iterable):
        raise ValueError(f"seeds must be a list of integers such as (0, 1, 2), got {seeds!r}")
    out = list(seeds)
    if not out or any(isinstance(x, bool) or not isinstance(x, numbers.Integral) for x in out):
        raise ValueError(
            f"seeds must be a non-empty list of integers such as (0, 1, 2), got {seeds!r}"
        )
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must not repeat (a repeated seed repeats the run), got {out!r}")
    return [int(x) for x in out]


def summarize(history):
    """One row per run of a :func:`sweep` history, columns ``SUMMARY_COLUMNS``, in run order."""
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise ValueError(
            f"history is missing {missing}: pass the DataFrame that sweep(...) returned"
        )
    keys = list(RUN_KEYS)
    last = history.groupby(keys, sort=False, dropna=False).tail(1)
    out = last[["run", *keys, *_RESULTS, "run_seconds"]]
    return out.rename(columns={"run_seconds": "seconds"}).reset_index(drop=True)


SPREAD_METRICS = ("final_loss", "mean_loss", "accuracy", "update_ratio")


def seed_spread(summary, metrics=SPREAD_METRICS):
    """One row per setting of a :func:`summarize` table, pooled over its seeds.

    For each metric: ``<metric>_mean``, ``<metric>_std`` (sample standard deviation; NaN with
    one seed), ``<metric>_min`` and ``<metric>_max``; ``seeds`` counts the runs pooled. The
    setting columns (every ``RUN_KEYS`` but ``seed``) come first, in run order.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    missing = [c for c in [*RUN_KEYS, *metrics] if c not in summary.columns]
    if missing:
        raise ValueError(
            f"summary is missing {missing}: pass summarize(sweep(...)) and metrics among "
            f"{list(_RESULTS)}"
        )
    keys = [k for k in RUN_KEYS if k != "seed"]
    grouped = summary.groupby(keys, sort=False, dropna=False)
    stats = grouped[metrics].agg(["mean", "std", "min", "max"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    stats.insert(0, "seeds", grouped.size())
    return stats.reset_index()


def chance_accuracy(eval_size: int | None = 100) -> float:
    """The held-out accuracy of always giving the most common answer, on the examples
    :func:`sweep` scores (the first ``eval_size`` of ``load_task("test")``).

    A run at or below it has learned nothing a constant answer would not do.
    """
    from collections import Counter

    from lora_course.data import load_task

    _check_eval_size(eval_size)
    answers = [example["answer"] for example in load_task("test")[:eval_size]]
    return Counter(answers).most_common(1)[0][1] / len(answers)


TABLE_COLUMNS = (
    "rank", "alpha", "scaling", "lr", "seed", "final_loss", "mean_loss", "accuracy", "spike",
    "update_ratio", "diverged",
)  # fmt: skip


def runs_table(summary, columns=TABLE_COLUMNS, digits: int = 3):
    """A :func:`summarize` table to read: the chosen columns, numbers rounded to ``digits``
    decimals, and ``lr`` written exactly (``"0.00075"``, never rounded to 0.001)."""
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the summary; choose from {list(summary)}")
    table = summary[list(columns)].round(digits)
    if "lr" in table.columns:
        table["lr"] = summary["lr"].map(lambda v: f"{v:g}")
    return table
