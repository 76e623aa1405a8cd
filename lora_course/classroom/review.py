"""The points a person gives: ``NAME-review.csv`` beside the gradebook, merged into every output.

Some items are not scored by a check (a written answer) or were lost to a time limit; their
points are part of each exercise's maximum from the start, and a person records them here. The
grader writes the file with one row per item waiting for a person::

    submission,exercise,item,max_points,points,comment,answer
    alice,exercise_3,written conclusions (markdown cell in section 4),4,,,"- Too low (s = 0.05) ..."

``answer`` is what the learner wrote (``(empty)`` when the cell was left as released). Fill in
``points`` (0 to ``max_points``) and, if you like, a ``comment`` the learner reads in the
feedback; then ``python -m lora_course review gradebook.csv`` rewrites the gradebook, feedback,
report and platform files from the last grading run, no notebook re-run. A regrade (``grade``)
merges the same file, so recorded points survive it; rows of a changed submission whose item no
longer waits are kept in the file and ignored.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lora_course.classroom.results import Submission
from lora_course.classroom.safety import csv_cell

__all__ = ["COLUMNS", "EMPTY", "review_path", "read_reviews", "apply_reviews", "review_csv"]

COLUMNS = ("submission", "exercise", "item", "max_points", "points", "comment", "answer")
EMPTY = "(empty)"


def review_path(gradebook: str | Path) -> Path:
    """``DIR/NAME.csv`` -> ``DIR/NAME-review.csv``."""
    stem = Path(gradebook).with_suffix("")
    return stem.parent / f"{stem.name}-review.csv"


def read_reviews(path: str | Path) -> dict[tuple[str, str], dict[str, tuple[float, str]]]:
    """{(submission, exercise): {item: (points, comment)}} for the rows whose points are filled."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    reviews: dict[tuple[str, str], dict[str, tuple[float, str]]] = {}
    for number, row in enumerate(rows, start=2):
        missing = [c for c in ("submission", "exercise", "item", "points") if c not in row]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r}; columns: {', '.join(COLUMNS)}")
        text = (row["points"] or "").strip()
        if not text:
            continue  # not reviewed yet
        try:
            points = float(text)
        except ValueError:
            raise ValueError(
                f"{path}, line {number}: points must be a number, got {text!r}"
            ) from None
        key = (_name(row["submission"]), row["exercise"])
        reviews.setdefault(key, {})[row["item"]] = (points, (row.get("comment") or "").strip())
    return reviews


def apply_reviews(subs: list[Submission], reviews) -> list[str]:
    """Score the items a person reviewed, in place; returns what could not be applied."""
    problems = []
    for sub in subs:
        for run in sub.runs:
            for ex, result in list(run.results.items()):
                given = reviews.get((sub.name, ex), {})
                waiting = {i.name for i in result.items if i.needs_review or not i.scored}
                mine = {k: v for k, v in given.items() if k in waiting}
                if not mine:
                    continue
                try:
                    run.results[ex] = result.with_review(
                        {k: p for k, (p, _) in mine.items()},
                        {k: c for k, (_, c) in mine.items()},
                    )
                except ValueError as exc:
                    problems.append(f"{sub.name}: {exc}")
    return problems


def _name(cell: str) -> str:
    """A submission's name as ``csv_cell`` wrote it, back as the grader knows it."""
    return cell[1:] if cell[:1] == "'" and csv_cell(cell[1:]) == cell else cell


def _written(sub: Submission, exercise: str) -> str:
    for run in sub.runs:
        text = run.written.get(exercise, "")
        if text:
            return text
    return ""


def review_csv(subs: list[Submission], previous: str | Path | None = None) -> str:
    """The review file: every item still waiting for a person, and every row already filled."""
    kept = []
    if previous is not None and Path(previous).is_file():
        with Path(previous).open(encoding="utf-8", newline="") as f:
            kept = [r for r in csv.DictReader(f) if (r.get("points") or "").strip()]
    done = {(_name(r["submission"]), r["exercise"], r["item"]) for r in kept}
    rows = list(kept)
    for sub in subs:
        for ex, result in sorted(sub.results.items()):
            if not result.attempted:
                continue
            for item in result.items:
                if not item.needs_review or (sub.name, ex, item.name) in done:
                    continue
                rows.append(
                    {
                        "submission": csv_cell(sub.name),
                        "exercise": ex,
                        "item": item.name,
                        "max_points": f"{item.max_points:g}",
                        "points": "",
                        "comment": "",
                        "answer": csv_cell(
                            (_written(sub, ex) or EMPTY) if not item.scored else item.hint
                        ),
                    }
                )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
