"""Exercise 3: what the LoRA scaling alpha/rank does to training, researched by the learner.

The lesson: "Research how the alpha/rank ratio (scaling) in LoRA affects training, and document
what problems occur when scaling is too high or too low." The learner measures it (notebook 07):

- ``results``: one row per run of their own sweep, as ``summarize(sweep(...))`` returns it, the
  sweeps of every seed concatenated. Needed columns: ``rank``, ``alpha``, ``scaling``, ``lr``,
  ``steps``, ``seed``, ``final_loss``, ``accuracy``; ``use_rslora``, ``init_scale``,
  ``batch_size`` and ``eval_size`` default to the sweep's defaults when absent. At least 4
  settings whose scalings span at least two decades, each run with at least 2 seeds.
- ``best``: the setting they would pick: its scaling (a number) or a dict such as
  ``{"rank": 4, "alpha": 8}``. It must agree with the table, judged on the mean over its seeds:
  it did not diverge, and it has the best mean held-out accuracy (within ``ACCURACY_SLACK``) or
  the lowest mean final loss.
- the written conclusions live in a markdown cell; an instructor reviews them (rubric in the
  master notebook's instructor cell).

To confirm that the numbers were measured, not typed, the check re-runs **every row** itself with
``lora_course.sweep.lora_run`` on the tiny model (same rank, alpha, lr, steps, batch size, seed and
held-out subset; on the CPU, one thread), so there is no pick to predict or steer. Why every row and
this tight: the grader executes the notebook itself, so the table it checks was computed on the
grader's own CPU, and on one CPU and one thread a re-run is bit-for-bit the run (measured: all four
settings of the reference sweep, spiking ones included). The tolerances (``ACCURACY_TOL``,
``LOSS_ATOL + LOSS_RTOL * loss``) only absorb another thread count on a stable run
(docs/instructors.md: within 0.0002 of loss and 0.02 of accuracy). A row whose loss spiked
(``spike`` >= ``UNSTABLE_SPIKE``) must spike again **and** match within the same tolerances: on the
grader's CPU it is bit-for-bit too, so a spiking row cannot be typed "better" (across thread counts
such a run is chaotic, which is why the notebook keeps one thread). A row that diverged matches a
re-run that diverged. ``best`` is judged on the re-run numbers where a row did not match, so a
fabricated row never turns the conclusion around. Re-runs are cached by setting and seed (the same
run gives the same numbers), and the table is limited to ``MAX_RUNS`` runs within ``LIMITS`` so that
the grader's re-runs fit its budget. In the grader's own kernel (the environment variable
``IN_GRADER``) the notebook's ``check`` skips the re-runs: the grader does them in its own process,
where the learner's code cannot reach. The re-run and the tolerances are
:mod:`lora_course.checks.rerun`; this module scores the table."""

from __future__ import annotations

import math
import os

from lora_course.checks.core import Exercise, Feedback, as_table
from lora_course.checks.rerun import matches, rerun

__all__ = [
    "EXERCISE",
    "REQUIRED",
    "DEFAULTS",
    "SETTING",
    "MIN_SETTINGS",
    "MIN_SEEDS",
    "MIN_SPAN",
    "LIMITS",
    "MAX_RUNS",
    "BUDGET",
    "IN_GRADER",
    "by_setting",
]

REQUIRED = ("rank", "alpha", "scaling", "lr", "steps", "seed", "final_loss", "accuracy")
DEFAULTS = {"use_rslora": False, "init_scale": 1.0, "batch_size": 8, "eval_size": 100}
# what makes two rows the same setting (the seed is what may differ between them)
SETTING = ("rank", "alpha", "use_rslora", "lr", "init_scale", "steps", "batch_size", "eval_size")
MIN_SETTINGS = 4
MIN_SEEDS = 2
MIN_SPAN = 100.0  # two decades of scaling
LIMITS = {"rank": 64, "steps": 60, "batch_size": 32, "eval_size": 200}  # keeps a re-run cheap
MAX_RUNS = 18  # 6 settings x 3 seeds (or 9 x 2): the grader re-runs every row
# training examples in the whole table (steps x batch_size summed): 18 runs of 60 steps at batch 8
BUDGET = MAX_RUNS * LIMITS["steps"] * DEFAULTS["batch_size"]
ACCURACY_SLACK = 0.05
IN_GRADER = "LORA_COURSE_IN_GRADER"  # set in the kernels the grader runs (re-runs happen outside)

EXERCISE = Exercise(
    "exercise_3",
    title="What the scaling alpha/rank does to training, measured",
    answers={
        "results": "a DataFrame, one row per run: summarize(sweep(...)) of your sweeps, every seed",
        "best": "the setting you would pick: its scaling, a (rank, alpha) pair, or a dict such "
        'as {"rank": 4, "alpha": 8}',
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
        raise Feedback("`results` is not set: results = summarize(history) after your sweeps")
    frame = as_table(
        table,
        "results",
        how="use results = pd.concat([summarize(sweep(settings, seed=s)) for s in seeds])",
        when_empty="run your sweeps and pass what summarize(...) returned",
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
        frame[column] = values.astype(float)
    for column in ("final_loss", "accuracy", "spike"):
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame["use_rslora"] = frame["use_rslora"].astype(bool)
    if "diverged" in frame.columns:
        frame["diverged"] = frame["diverged"].astype(bool)
    else:
        frame["diverged"] = ~frame["final_loss"].map(math.isfinite)
    return {"results": frame.reset_index(drop=True), "best": answers["best"]}


def by_setting(frame):
    """Mean final loss and accuracy per setting, with the number of seeds and any divergence."""
    return frame.groupby(list(SETTING), sort=False, dropna=False).agg(
        scaling=("scaling", "first"),
        seeds=("seed", "nunique"),
        runs=("seed", "size"),
        final_loss=("final_loss", "mean"),
        accuracy=("accuracy", "mean"),
        diverged=("diverged", "any"),
    )


@EXERCISE.item(
    f"at least {MIN_SETTINGS} settings, each run with {MIN_SEEDS} or more seeds, within "
    f"{MAX_RUNS} runs"
)
def _check_count(answers):
    settings = by_setting(answers["results"])
    if len(answers["results"]) > MAX_RUNS:
        return (
            f"the table has {len(answers['results'])} runs; the grader re-runs every run, so "
            f"keep at most {MAX_RUNS} (for example 6 settings x 3 seeds)"
        )
    frame = answers["results"]
    used = float((frame["steps"] * frame["batch_size"]).sum())
    if used > BUDGET:
        return (
            f"the table trains on {used:,.0f} examples (steps x batch_size, summed over runs); "
            f"the grader re-runs every run and allows {BUDGET:,}: for example {MAX_RUNS} runs "
            f"of {LIMITS['steps']} steps at batch size {DEFAULTS['batch_size']}"
        )
    if len(settings) < MIN_SETTINGS:
        return (
            f"the table has {len(settings)} setting(s); sweep at least {MIN_SETTINGS} scaling "
            "values (a setting is a rank, alpha, lr, steps ... combination)"
        )
    repeated = settings[settings["runs"] > settings["seeds"]]
    if len(repeated):
        return "some setting has the same seed twice: run each setting once per seed"
    few = settings[settings["seeds"] < MIN_SEEDS]
    if len(few):
        scalings = ", ".join(f"{s:g}" for s in few["scaling"])
        return (
            f"scaling {scalings}: {few['seeds'].min()} seed(s); run every setting with at least "
            f"{MIN_SEEDS} seeds (sweep(..., seed=0) and sweep(..., seed=1)), so that your table "
            "shows how much a result moves from one seed to the next"
        )
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
            f"{MIN_SPAN:g} times the smallest"
        )
    return None


@EXERCISE.item("a final loss and a held-out accuracy for every run")
def _check_results(answers):
    frame = answers["results"]
    accuracy = frame["accuracy"]
    if accuracy.isna().any():
        return "every row needs an accuracy (a number between 0 and 1)"
    if (accuracy > 1).any() and (accuracy <= 100).all():
        return "accuracy is a fraction between 0 and 1 (0.96), not a percentage (96)"
    if ((accuracy < 0) | (accuracy > 1)).any():
        return "accuracy must lie between 0 and 1"
    loss = frame["final_loss"]
    if (loss.isna() & ~frame["diverged"]).any():
        return "every run that did not diverge needs a final loss (a number)"
    if (loss < 0).any():
        return "a cross-entropy loss cannot be negative; copy final_loss from summarize(...)"
    return None


def _best_rows(answers):
    """The index labels of the rows of the setting that ``best`` names; Feedback if unclear."""
    frame, best = answers["results"], answers["best"]
    if best is None:
        raise Feedback(
            'set `best` to the scaling of your pick, (rank, alpha), or {"rank": ..., "alpha": ...}'
        )
    if isinstance(best, dict) or hasattr(best, "to_dict"):
        keys = dict(best.to_dict() if hasattr(best, "to_dict") else best)
        keys = {str(k).lower(): v for k, v in keys.items()}
        keys = {k: v for k, v in keys.items() if k in ("rank", "alpha", "scaling", "lr")}
        if not keys:
            raise Feedback('`best` should name the setting: {"rank": 4, "alpha": 8}')
    elif isinstance(best, tuple | list) and len(best) == 2:  # (rank, alpha), as sweep takes it
        keys = {"rank": best[0], "alpha": best[1]}
    else:
        keys = {"scaling": _number(best, "`best`")}
    mask = None
    for key, value in keys.items():
        match = (frame[key] - _number(value, f"best[{key!r}]")).abs() <= 1e-6 * frame[key].abs()
        mask = match if mask is None else mask & match
    rows = frame[mask]
    if rows.empty:
        raise Feedback(f"`best` = {best!r} matches no row of `results`; pick one of your settings")
    settings = rows.groupby(list(SETTING), sort=False, dropna=False)
    if settings.ngroups > 1:
        raise Feedback(
            f"`best` = {best!r} matches {settings.ngroups} settings of your table (they differ "
            'in rank, lr or steps); name one: {"rank": 4, "alpha": 8, "lr": 0.003}'
        )
    return list(rows.index)


def _measured(answers) -> dict:
    """{row index: (re-run numbers or None when the row is out of LIMITS, matches?)}, once."""
    if "_measured" in answers:
        return answers["_measured"]
    frame, out = answers["results"], {}
    for index, row in frame.iterrows():
        if any(row[k] > limit or row[k] != int(row[k]) for k, limit in LIMITS.items()):
            out[index] = (None, False)
            continue
        got = rerun(row)
        reported = {k: float(row[k]) for k in ("final_loss", "accuracy")}
        reported["diverged"] = bool(row["diverged"])
        if "spike" in row.index and math.isfinite(row["spike"]):
            reported["spike"] = float(row["spike"])
        out[index] = (got, matches(reported, got))
    answers["_measured"] = out
    return out


def _describe(row, index) -> str:
    return (
        f"row {index} (rank {row['rank']:g}, alpha {row['alpha']:g}, lr {row['lr']:g}, "
        f"{row['steps']:g} steps, seed {row['seed']:g})"
    )


@EXERCISE.item("measured, not typed: the checker re-runs every row of your table", points=2)
def _check_measured(answers):
    if os.environ.get(IN_GRADER):
        return "not re-run in the grader's kernel: the grader re-runs every row itself"
    frame = answers["results"]
    problems = []
    for index, (got, ok) in _measured(answers).items():
        if ok:
            continue
        row = frame.loc[index]
        if got is None:
            bad = [k for k, limit in LIMITS.items() if row[k] > limit or row[k] != int(row[k])]
            limits = ", ".join(f"{k} up to {LIMITS[k]}" for k in bad)
            problems.append(
                f"{_describe(row, index)} is outside what the checker re-runs ({limits}, "
                "whole numbers)"
            )
        else:
            problems.append(
                f"re-running {_describe(row, index)} gave final loss {got['final_loss']:.3f}, "
                f"accuracy {got['accuracy']:.2f} and spike {got['spike']:.2f}; your table says "
                f"{row['final_loss']:.3f}, {row['accuracy']:.2f}"
                + (f" and {row['spike']:.2f}" if "spike" in row.index else "")
            )
    if not problems:
        return None
    more = f" (and {len(problems) - 3} more rows)" if len(problems) > 3 else ""
    return (
        "\n".join(problems[:3])
        + more
        + "\nPut the numbers your own sweeps measured in the table (results = summarize(...)), "
        "and keep torch.set_num_threads(1) from the setup cell"
    )


@EXERCISE.item("the best setting agrees with the table (mean over its seeds)")
def _check_best(answers):
    frame = answers["results"]
    if not os.environ.get(IN_GRADER):  # judge on what was measured, not on what was typed
        frame = frame.copy()
        for index, (got, ok) in _measured(answers).items():
            if got is not None and not ok:
                for key in ("final_loss", "accuracy"):
                    frame.at[index, key] = got[key]
                frame.at[index, "diverged"] = got["diverged"] or not math.isfinite(
                    got["final_loss"]
                )
    settings = by_setting(frame)
    rows = frame.loc[_best_rows(answers)]
    mine = settings.loc[tuple(rows.iloc[0][list(SETTING)])]
    if mine["diverged"]:
        return "your pick diverged when it was run; pick a setting that trained"
    ok = settings[~settings["diverged"]]
    top, lowest = ok["accuracy"].max(), ok["final_loss"].min()
    if mine["accuracy"] >= top - ACCURACY_SLACK or mine["final_loss"] <= lowest:
        return None
    return (
        f"your pick (scaling {mine['scaling']:g}) reaches a mean accuracy of "
        f"{mine['accuracy']:.2f} over its seeds as measured, but another setting reaches "
        f"{top:.2f}; pick the best mean held-out accuracy (or the lowest mean final loss)"
    )


@EXERCISE.item("written conclusions (markdown cell in section 4)", points=4, review=True)
def _review_conclusions(answers):
    return (
        "an instructor reads your conclusions: too low, too high, the spread over seeds, your "
        "pick and why (a point each), each backed by a number from your table"
    )
