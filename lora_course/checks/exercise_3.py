"""Exercise 3: what the LoRA scaling alpha/rank does to training, measured.

The lesson: "Research how the scaling factor alpha/rank affects training, and what goes wrong
when it is too high or too low." Here the learner measures it (notebook 06, section 5):

- ``results``: one row per setting of their own sweep, as ``summarize(sweep(...))`` returns it.
  Needed columns: ``rank``, ``alpha``, ``scaling``, ``lr``, ``steps``, ``seed``, ``final_loss``,
  ``accuracy``; ``use_rslora``, ``init_scale``, ``batch_size`` and ``eval_size`` default to the
  sweep's defaults when absent. At least 4 settings whose scalings span at least two decades.
- ``best``: the setting they would pick: its scaling (a number) or a dict such as
  ``{"rank": 4, "alpha": 8}``. It must be consistent with the table: not diverged, and the
  highest held-out accuracy (within ``ACCURACY_SLACK``) or the lowest final loss.
- the written conclusions live in a markdown cell; an instructor reviews them (rubric in the
  master notebook's instructor cell).

To confirm the numbers were measured, not typed, the check re-runs the ``best`` row itself with
``lora_course.sweep.lora_run`` (same rank, alpha, lr, steps, batch size, seed and held-out
subset; on the CPU, one thread) and compares within tolerances wide enough for another CPU's
rounding: accuracy within ``ACCURACY_TOL``, final loss within ``LOSS_ATOL + LOSS_RTOL * loss``.
"""

from __future__ import annotations

import contextlib
import functools
import math

from lora_course.checks.core import Exercise, Feedback, as_table

__all__ = [
    "EXERCISE",
    "REQUIRED",
    "DEFAULTS",
    "MIN_SETTINGS",
    "MIN_SPAN",
    "LIMITS",
    "rerun",
]

REQUIRED = ("rank", "alpha", "scaling", "lr", "steps", "seed", "final_loss", "accuracy")
DEFAULTS = {"use_rslora": False, "init_scale": 1.0, "batch_size": 8, "eval_size": 100}
MIN_SETTINGS = 4
MIN_SPAN = 100.0  # two decades of scaling
LIMITS = {"rank": 64, "steps": 100, "batch_size": 32, "eval_size": 200}  # keeps the re-run cheap
ACCURACY_SLACK = 0.05
ACCURACY_TOL = 0.10
LOSS_ATOL, LOSS_RTOL = 0.05, 0.25

EXERCISE = Exercise(
    "exercise_3",
    title="What the scaling alpha/rank does to training, measured",
    answers={
        "results": "a DataFrame, one row per setting: summarize(sweep(...)) of your own sweep",
        "best": "the setting you would pick: its scaling, or a dict such as "
        '{"rank": 4, "alpha": 8}',
    },
)


def _number(value, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise Feedback(f"{what} must be a number, got {value!r}") from None
    return x


@EXERCISE.prepare
def _as_frame(answers: dict) -> dict:
    import pandas as pd

    table = answers["results"]
    if table is None:
        raise Feedback("`results` is not set: results = summarize(history) after your sweep")
    frame = as_table(
        table,
        "results",
        how="use results = summarize(sweep(settings))",
        when_empty="run your sweep and pass summarize(history)",
    )
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise Feedback(
            f"`results` is missing column(s) {', '.join(missing)} (it has {list(frame.columns)}); "
            "summarize(sweep(...)) gives every column the check needs"
        )
    for column, default in DEFAULTS.items():
        if column not in frame.columns:
            frame[column] = default
    for column in REQUIRED[:-2] + ("init_scale", "batch_size", "eval_size"):
        values = pd.to_numeric(frame[column], errors="coerce")
        low = values < 0 if column == "seed" else values <= 0
        if values.isna().any() or low.any():
            sign = "non-negative" if column == "seed" else "positive"
            raise Feedback(f"column {column!r} must hold a {sign} number on every row")
        frame[column] = values
    frame["use_rslora"] = frame["use_rslora"].astype(bool)
    return {"results": frame.reset_index(drop=True), "best": answers["best"]}


@EXERCISE.item("at least 4 settings")
def _check_count(answers):
    n = len(answers["results"])
    if n < MIN_SETTINGS:
        return f"the table has {n} setting(s); sweep at least {MIN_SETTINGS} scaling values"
    return None


@EXERCISE.item("scaling = alpha/rank (alpha/sqrt(rank) with rsLoRA), spanning two decades")
def _check_span(answers):
    frame = answers["results"]
    for row in frame.itertuples():
        expected = row.alpha / (math.sqrt(row.rank) if row.use_rslora else row.rank)
        if not math.isclose(row.scaling, expected, rel_tol=1e-6):
            return (
                f"row {row.Index}: scaling {row.scaling:g} is not alpha/rank = "
                f"{row.alpha:g}/{row.rank:g} = {expected:g} (alpha/sqrt(rank) when use_rslora)"
            )
    span = frame["scaling"].max() / frame["scaling"].min()
    if span < MIN_SPAN:
        return (
            f"your scalings span a factor of {span:.3g}; make the largest at least "
            f"{MIN_SPAN:g} times the smallest (e.g. 0.05 to 5, or 0.1 to 100)"
        )
    return None


@EXERCISE.item("a final loss and a held-out accuracy for every setting")
def _check_results(answers):
    import pandas as pd

    frame = answers["results"]
    accuracy = pd.to_numeric(frame["accuracy"], errors="coerce")
    if accuracy.isna().any():
        return "every row needs an accuracy (a number between 0 and 1)"
    if (accuracy > 1).any() and (accuracy <= 100).all():
        return "accuracy is a fraction between 0 and 1 (0.96), not a percentage (96)"
    if ((accuracy < 0) | (accuracy > 1)).any():
        return "accuracy must lie between 0 and 1"
    loss = pd.to_numeric(frame["final_loss"], errors="coerce")
    diverged = frame["diverged"].astype(bool) if "diverged" in frame.columns else loss.isna()
    if (loss.isna() & ~diverged).any():
        return "every run that did not diverge needs a final loss (a number)"
    if (loss < 0).any():
        return "a cross-entropy loss cannot be negative; copy final_loss from summarize(...)"
    return None


def _best_row(answers):
    """(index, row) of the table row that ``best`` names; Feedback if none or unclear."""
    frame, best = answers["results"], answers["best"]
    if best is None:
        raise Feedback('set `best` to the scaling of your pick, or {"rank": ..., "alpha": ...}')
    if isinstance(best, dict) or hasattr(best, "to_dict"):
        keys = dict(best.to_dict() if hasattr(best, "to_dict") else best)
        keys = {str(k).lower(): v for k, v in keys.items()}
        keys = {k: v for k, v in keys.items() if k in ("rank", "alpha", "scaling", "lr")}
        if not keys:
            raise Feedback('`best` should name the setting: {"rank": 4, "alpha": 8}')
    else:
        keys = {"scaling": _number(best, "`best`")}
    mask = None
    for key, value in keys.items():
        match = (frame[key] - _number(value, f"best[{key!r}]")).abs() <= 1e-6 * frame[key].abs()
        mask = match if mask is None else mask & match
    rows = frame[mask]
    if rows.empty:
        raise Feedback(f"`best` = {best!r} matches no row of `results`; pick one of your settings")
    rows = rows.sort_values(["accuracy", "final_loss"], ascending=[False, True])
    return rows.index[0], rows.iloc[0]


@EXERCISE.item("the best setting agrees with the table")
def _check_best(answers):
    frame = answers["results"]
    _, row = _best_row(answers)
    if "diverged" in frame.columns and bool(row["diverged"]):
        return "your pick diverged in your own table; pick a setting that trained"
    ok = frame[~frame["diverged"].astype(bool)] if "diverged" in frame.columns else frame
    top = ok["accuracy"].max()
    lowest = ok["final_loss"].min()
    if row["accuracy"] >= top - ACCURACY_SLACK or row["final_loss"] <= lowest:
        return None
    return (
        f"your pick (scaling {row['scaling']:g}) reaches accuracy {row['accuracy']:.2f}, but "
        f"another setting reaches {top:.2f}; pick the best held-out accuracy (or lowest loss)"
    )


@functools.lru_cache(maxsize=1)
def _base_model():
    from transformers.utils import logging as hf_logging

    from lora_course.models import load_model

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a check report should not carry a loading bar
    try:
        return load_model(device="cpu")
    finally:
        if shown:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a 2-million-parameter model: one thread beats two that contend
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rerun(row) -> dict:
    """Re-run one results row with :func:`lora_course.sweep.lora_run`; final_loss and accuracy."""
    from lora_course.data import load_task
    from lora_course.sweep import lora_run

    base, tokenizer = _base_model()
    setting = {
        "rank": int(row["rank"]),
        "alpha": float(row["alpha"]),
        "use_rslora": bool(row["use_rslora"]),
        "lr": float(row["lr"]),
        "init_scale": float(row["init_scale"]),
    }
    with _one_thread():
        history, _ = lora_run(
            base,
            tokenizer,
            load_task("train"),
            load_task("test")[: int(row["eval_size"])],
            setting,
            steps=int(row["steps"]),
            lr=float(row["lr"]),
            seed=int(row["seed"]),
            batch_size=int(row["batch_size"]),
        )
    return {
        "final_loss": float(history["final_loss"].iloc[0]),
        "accuracy": float(history["accuracy"].iloc[0]),
    }


@EXERCISE.item("the numbers were measured: the checker re-runs your best setting", points=2)
def _check_rerun(answers):
    _, row = _best_row(answers)
    for key, limit in LIMITS.items():
        if row[key] > limit or row[key] != int(row[key]):
            return (
                f"the checker re-runs your best setting and allows {key} up to {limit} (a whole "
                f"number); yours is {row[key]:g}"
            )
    got = rerun(row)
    loss, accuracy = float(row["final_loss"]), float(row["accuracy"])
    loss_ok = abs(got["final_loss"] - loss) <= LOSS_ATOL + LOSS_RTOL * abs(loss)
    accuracy_ok = abs(got["accuracy"] - accuracy) <= ACCURACY_TOL
    if loss_ok and accuracy_ok:
        return None
    return (
        f"re-running your best setting (rank {row['rank']:g}, alpha {row['alpha']:g}, lr "
        f"{row['lr']:g}, {row['steps']:g} steps, seed {row['seed']:g}) gave final loss "
        f"{got['final_loss']:.3f} and accuracy {got['accuracy']:.2f}; your table says "
        f"{loss:.3f} and {accuracy:.2f}. Put the numbers your own sweep measured in the table "
        "(results = summarize(history))"
    )


@EXERCISE.item("written conclusions (markdown cell in section 5)", review=True)
def _review_conclusions(answers):
    return (
        "an instructor reads your conclusions: too low, too high, rank dependence, your pick "
        "and why, each backed by a number from your table"
    )
