"""The grader's outputs: gradebook table, feedback in plain language, summary and plot.

:func:`write_outputs` writes, beside the gradebook path ``DIR/NAME.csv``:

- ``NAME.csv``: one row per submission: ``submission``, per exercise ``<id>`` (points) and
  ``<id>_max``, ``total``, ``max_total``, ``status`` (``ok``, ``timeout``, ``kernel died``,
  ``not a notebook``, ``error``), ``needs_review`` and ``message``;
- ``NAME-feedback/<submission>.txt``: what each check found, with hints, for the learner;
- ``NAME-summary.csv``: per exercise the mean, median, full-marks count and attempts;
- ``NAME-scores.png``: the distribution of totals;
- ``NAME-report.html``: the class report (:mod:`lora_course.classroom.report`);
- ``NAME-canvas.csv`` and ``NAME-moodle.csv``: for a learning platform
  (:mod:`lora_course.classroom.lms`);
- ``NAME-results.json``: the full record a regrade or a merge reads
  (:mod:`lora_course.classroom.record`);
- ``NAME-review.csv``: the items waiting for a person, with what the learner wrote; the points
  filled in there are merged into every file above (:mod:`lora_course.classroom.review`).

Each exercise's maximum includes the points a person gives (a written answer); until they are
recorded, the score holds what the checks gave.

Every file is written to a temporary name and moved into place with ``os.replace``, so a crash
leaves the previous version whole. Everything written comes from the grader's own results.
Learner text in them is inert (:mod:`lora_course.classroom.safety`): valid UTF-8, no control
characters, no CSV cell that a spreadsheet would run as a formula; feedback files never share a
name (``alice`` and ``alice!``: ``alice.txt``, ``alice-2.txt``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from lora_course.classroom.files import atomic_write
from lora_course.classroom.results import Submission, feedback_text, fmt_points
from lora_course.classroom.safety import clean_name, csv_text, printable, utf8

__all__ = ["gradebook", "summary", "plot_totals", "write_outputs"]


def gradebook(submissions: Iterable[Submission], exercise_ids: list[str]) -> pd.DataFrame:
    """One row per submission; an exercise a submission did not run scores 0 of its maximum."""
    from lora_course.checks import run_checks

    maxima = {ex: run_checks(ex, {}).max_score for ex in exercise_ids}
    rows = []
    for sub in submissions:
        results = sub.results
        row = {"submission": clean_name(sub.name)}  # valid text: pandas may store it in Arrow
        for ex in exercise_ids:
            row[ex] = results[ex].score if ex in results else 0.0
            row[f"{ex}_max"] = maxima[ex]
        row["total"] = sum(row[ex] for ex in exercise_ids)
        row["max_total"] = sum(maxima.values())
        row["status"] = sub.status
        row["needs_review"] = any(r.needs_review for r in results.values())
        row["message"] = printable(sub.message)
        rows.append(row)
    columns = ["submission"]
    for ex in exercise_ids:
        columns += [ex, f"{ex}_max"]
    columns += ["total", "max_total", "status", "needs_review", "message"]
    return pd.DataFrame(rows, columns=columns)


def summary(book: pd.DataFrame, exercise_ids: list[str]) -> pd.DataFrame:
    """Per exercise (and the total): max, mean, median, full marks and attempts."""
    rows = []
    for column in [*exercise_ids, "total"]:
        top = book[f"{column}_max" if column != "total" else "max_total"]
        scores = book[column]
        rows.append(
            {
                "exercise": column,
                "max": float(top.max()) if len(book) else 0.0,
                "mean": float(scores.mean()) if len(book) else 0.0,
                "median": float(scores.median()) if len(book) else 0.0,
                "full_marks": int((scores == top).sum()),
                "scored_above_zero": int((scores > 0).sum()),
                "submissions": len(book),
            }
        )
    return pd.DataFrame(rows)


def plot_totals(book: pd.DataFrame):
    """A histogram of total scores (a matplotlib Figure)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    top = float(book["max_total"].max()) if len(book) else 1.0
    bins = [x - 0.5 for x in range(int(top) + 2)] if top <= 40 else 20
    ax.hist(book["total"], bins=bins, color="#4c72b0", edgecolor="white")
    ax.set_xlabel(f"total score (out of {fmt_points(top)})")
    ax.set_ylabel("submissions")
    ax.set_title(f"Scores of {len(book)} submissions")
    return fig


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", clean_name(name)).strip("._") or "submission"


def feedback_names(names: list[str]) -> list[str]:
    """One feedback file name per submission, never shared: ``alice``, ``alice!`` and ``alice ``
    give ``alice.txt``, ``alice-2.txt``, ``alice-3.txt`` (suffixes in the order given)."""
    taken: set[str] = set()
    files = []
    for name in names:
        stem, k = _safe_name(name), 1
        while (f"{stem}-{k}" if k > 1 else stem).lower() in taken:
            k += 1
        stem = f"{stem}-{k}" if k > 1 else stem
        taken.add(stem.lower())  # one file on a case-insensitive disk too
        files.append(f"{stem}.txt")
    return files


def write_outputs(
    submissions: list[Submission],
    exercise_ids: list[str],
    out: str | Path,
    record: dict | None = None,
    roster=None,
) -> dict[str, Path]:
    """Write every output for ``out`` (the gradebook's path; see the module docstring).

    ``record``: the run's metadata for the results file (fingerprint, shard, listing);
    ``roster``: a table from :func:`lora_course.classroom.lms.read_roster`.
    """
    import io

    from lora_course.classroom.lms import canvas_csv, moodle_csv
    from lora_course.classroom.record import record_path, to_record, write_record
    from lora_course.classroom.report import report_html
    from lora_course.classroom.review import apply_reviews, read_reviews, review_csv, review_path

    out = Path(out).resolve()
    reviews = review_path(out)
    apply_reviews(submissions, read_reviews(reviews))  # the points a person recorded
    atomic_write(reviews, utf8(review_csv(submissions, reviews)))
    book = gradebook(submissions, exercise_ids)
    stem = out.with_suffix("")
    feedback_dir = stem.parent / f"{stem.name}-feedback"
    for sub, file in zip(submissions, feedback_names([s.name for s in submissions]), strict=True):
        try:
            text = feedback_text(sub, exercise_ids)
        except Exception as exc:  # noqa: BLE001 -- one learner's feedback, not the class's
            why = type(exc).__name__
            text = f"Feedback for {sub.name}\nThe grader could not write it ({why}).\n"
        atomic_write(feedback_dir / file, utf8(printable(text)))
    summary_path = stem.parent / f"{stem.name}-summary.csv"
    atomic_write(summary_path, utf8(csv_text(summary(book, exercise_ids))))
    png = stem.parent / f"{stem.name}-scores.png"
    buffer = io.BytesIO()
    plot_totals(book).savefig(buffer, format="png", dpi=100)
    atomic_write(png, buffer.getvalue())
    paths = {"feedback": feedback_dir, "summary": summary_path, "plot": png, "review": reviews}
    paths["report"] = stem.parent / f"{stem.name}-report.html"
    atomic_write(paths["report"], utf8(report_html(submissions, exercise_ids)))
    paths["canvas"] = stem.parent / f"{stem.name}-canvas.csv"
    atomic_write(paths["canvas"], utf8(canvas_csv(book, exercise_ids, roster)))
    paths["moodle"] = stem.parent / f"{stem.name}-moodle.csv"
    atomic_write(paths["moodle"], utf8(moodle_csv(book, exercise_ids, roster)))
    paths["results"] = record_path(out)
    write_record(paths["results"], to_record(submissions, exercise_ids, **(record or {})))
    atomic_write(out, utf8(csv_text(book)))  # last: it marks the run done
    return {"gradebook": out, **paths}
