"""Exercise 1: trainable parameters and their ratio to the total, for ranks 4, 8, 16 and 32.

The lesson: "Extend the LoRALayer class above to change rank to 4, 8, 16, and 32, then organize
the number of trainable parameters and the ratio to total parameters in a table."

What the answer means here (notebook 05 says the same, without the formulas: the learner
extends ``LoRALayer`` with a method that counts the layer's own parameters):
- the layer is ``LoRALayer(nn.Linear(4096, 4096), rank=r)`` from ``lora_course`` (or a subclass
  of it), which freezes the whole original layer, weight and bias;
- ``trainable`` = parameters with ``requires_grad``: A (r x 4096) + B (4096 x r) = 2 * 4096 * r;
- ``total`` = every parameter of the wrapped layer: the frozen weight (4096 x 4096), the frozen
  bias (4096) and the adapter;
- ``ratio`` = trainable / total, a fraction (0.0039), not a percentage (0.39).

The expected numbers come from the formulas above, not from ``LoRALayer``, so the check is also a
reference check on the package. A wrong value gets the hint for the mistake it matches; no hint
states a formula or a value. No function here returns the answer: the references live inside
the items, which return only a verdict and a hint (the grader runs them in its own process).
"""

from __future__ import annotations

import math

from lora_course.checks.core import Depends, Exercise, Feedback, as_table

__all__ = ["EXERCISE", "D", "RANKS", "COLUMNS"]

D = 4096
RANKS = (4, 8, 16, 32)
COLUMNS = ("rank", "trainable", "total", "ratio")
RATIO_RTOL = 1e-4  # four significant digits: tight enough to tell the adapter in or out of total

EXERCISE = Exercise(
    "exercise_1",
    title="Trainable parameters and their ratio to the total, ranks 4, 8, 16, 32",
    answers={
        "table": "a DataFrame with one row per rank and columns rank, trainable, total, ratio",
    },
)


def _trainable_of(rank: int) -> int:
    return 2 * D * rank  # A (rank x D) + B (D x rank)


def _total_of(rank: int) -> int:
    return D * D + D + _trainable_of(rank)  # frozen weight + frozen bias + adapter


@EXERCISE.prepare
def _as_frame(answers: dict) -> dict:

    frame = as_table(
        answers["table"],
        "table",
        how="build it with pd.DataFrame(rows) where rows is a list of dicts such as "
        '{"rank": 4, ...}',
        when_empty="add one row for each rank 4, 8, 16 and 32",
    )
    if "rank" not in frame.columns and frame.index.name and frame.index.name.lower() == "rank":
        frame = frame.reset_index()
        frame.columns = [str(c).strip().lower() for c in frame.columns]
    return {"table": frame}


@EXERCISE.item("table has the columns rank, trainable, total, ratio")
def _check_columns(answers):
    frame = answers["table"]
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        return (
            f"missing column(s) {', '.join(missing)}; the table has {list(frame.columns)}. "
            "Name the columns exactly rank, trainable, total, ratio"
        )
    return None


def _numbers(frame, column: str):
    import pandas as pd

    if column not in frame.columns:
        raise Depends(f"the table has no column {column!r}")
    values = pd.to_numeric(frame[column], errors="coerce")
    if values.isna().any():
        raise Feedback(
            f"column {column!r} must hold numbers for every row (write 65536, not '65,536' or '5%')"
        )
    return values


def _by_rank(answers, column: str) -> dict[int, float]:
    """{rank: value} for the rows whose rank is one of RANKS."""
    frame = answers["table"]
    ranks = _numbers(frame, "rank")
    values = _numbers(frame, column)
    rows = {int(r): float(v) for r, v in zip(ranks, values, strict=True) if r in RANKS}
    if not rows:
        raise Feedback("no row has a rank of 4, 8, 16 or 32; fix the rank column first")
    return rows


@EXERCISE.item("one row for each rank 4, 8, 16, 32")
def _check_ranks(answers):
    ranks = _numbers(answers["table"], "rank").tolist()
    if sorted(ranks) != list(RANKS):
        return f"the rank column should hold 4, 8, 16, 32 once each, got {ranks}"
    return None


def _diagnose(rows: dict[int, float], known: dict, generic: str, rtol: float = 0.0):
    """None if every value matches ``known["correct"]``; else the hints of the mistakes matched.

    ``known`` maps a hint to the formula (rank -> value) of the mistake it explains. Counts must
    match exactly (rtol=0, within 0.5); ratios within ``rtol``.
    """
    hints = []
    for rank, value in sorted(rows.items()):
        if _close(value, known["correct"](rank), rtol):
            continue
        matched = [h for h, f in known.items() if h != "correct" and _close(value, f(rank), rtol)]
        hint = matched[0] if matched else generic
        if hint not in hints:
            hints.append(hint)
    return "\n".join(hints) or None


def _close(value: float, target: float, rtol: float) -> bool:
    return math.isclose(value, target, rel_tol=rtol, abs_tol=0.0 if rtol else 0.5)


@EXERCISE.item("trainable parameters for each rank")
def _check_trainable(answers):
    return _diagnose(
        _by_rank(answers, "trainable"),
        {
            "correct": _trainable_of,
            "you counted only one of the two adapter matrices; LoRA trains both A and "
            "B": lambda r: D * r,
            "you counted the bias as trainable: the lesson's class freezes only original.weight, "
            "but lora_course.LoRALayer freezes the whole original layer (weight and bias). "
            "Count what requires_grad says, from the layer's own parameters": lambda r: (
                2 * D * r + D
            ),
            "trainable holds the total; trainable counts only parameters with "
            "requires_grad=True": lambda r: D * D + D + 2 * D * r,
        },
        "trainable should count only the parameters with requires_grad=True: sum p.numel() over "
        "the layer's parameters() whose requires_grad is True",
    )


@EXERCISE.item("total parameters for each rank")
def _check_total(answers):
    return _diagnose(
        _by_rank(answers, "total"),
        {
            "correct": _total_of,
            "your total leaves out the adapter: total counts every parameter of the wrapped "
            "layer, frozen base weight and bias plus A and B": lambda r: D * D + D,
            "your total is the base weight alone (4096 x 4096): add the bias (4,096) and the "
            "adapter": lambda r: D * D,
            "your total leaves out the bias: nn.Linear(4096, 4096) has a bias of 4,096 "
            "parameters (frozen, but still part of the layer)": lambda r: D * D + 2 * D * r,
            "total holds the trainable count; total counts every parameter of the wrapped "
            "layer": lambda r: 2 * D * r,
        },
        "total should count every parameter of the wrapped layer, frozen or trainable: sum "
        "p.numel() over all of the layer's parameters()",
    )


def _ratio_of(trainable, total):
    return lambda r: trainable(r) / total(r)


@EXERCISE.item("ratio = trainable / total for each rank")
def _check_ratio(answers):
    t, total = _trainable_of, _total_of
    frame_rows = {}
    try:  # a ratio that follows the learner's own (wrong) columns deserves a different hint
        mine_t, mine_total = _by_rank(answers, "trainable"), _by_rank(answers, "total")
        frame_rows = {r: mine_t[r] / mine_total[r] for r in mine_t if mine_total.get(r)}
    except Feedback:
        pass
    ratios = _by_rank(answers, "ratio")
    if frame_rows and any(
        not _close(v, _ratio_of(t, total)(r), RATIO_RTOL) for r, v in ratios.items()
    ):
        if all(_close(v, frame_rows.get(r, math.nan), RATIO_RTOL) for r, v in ratios.items()):
            raise Depends(
                "your ratio is your trainable / your total, as it should be; it will be right "
                "once those columns are",
                credit=True,
            )
    return _diagnose(
        ratios,
        {
            "correct": _ratio_of(t, total),
            "the ratio is a percentage; give it as a fraction (divide by 100)": lambda r: (
                100 * t(r) / total(r)
            ),
            "the ratio divides by the base layer without the adapter; divide by the total, "
            "which includes it": _ratio_of(t, lambda r: D * D + D),
            "the ratio divides by the base weight alone (the lesson's percentage for a d x d "
            "matrix); divide by the total of the wrapped layer": _ratio_of(t, lambda r: D * D),
            "the ratio is the lesson's percentage of the base weight alone; give trainable / "
            "total as a fraction": lambda r: 100 * t(r) / (D * D),
            "the ratio is upside down: trainable / total, not total / trainable": _ratio_of(
                total, t
            ),
        },
        "ratio should be trainable / total as a fraction, unrounded",
        rtol=RATIO_RTOL,
    )
