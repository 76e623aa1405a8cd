"""What grading found, below everything that reads it: one notebook's run, one submission.

:class:`NotebookRun` (one notebook: status, timings, cell errors, check results) and
:class:`Submission` (one gradebook row: a learner's notebook or folder and its runs) are made by
:mod:`lora_course.classroom.grading`, kept by :mod:`lora_course.classroom.record`, and read by
the gradebook, the review, the report and the platform files; :func:`feedback_text` is what a
learner reads of them. This module imports none of those, so each of them can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lora_course.checks import CheckResult

__all__ = ["STATUSES", "NotebookRun", "Submission", "feedback_text", "fmt_points"]

STATUSES = ("ok", "timeout", "kernel died", "not a notebook", "error", "refused", "too large",
            "memory limit", "process limit", "disk limit", "output limit")  # fmt: skip


def fmt_points(x: float) -> str:
    """Points as a person writes them: ``2``, ``1.5``."""
    return f"{x:g}"


@dataclass
class NotebookRun:
    """The outcome of running and checking one submitted notebook."""

    notebook: str
    master: str | None
    status: str = "ok"
    message: str = ""
    seconds: float = 0.0
    cell_errors: list[tuple[int, str, str]] = field(default_factory=list)  # (cell, name, value)
    notes: list[str] = field(default_factory=list)
    results: dict[str, CheckResult] = field(default_factory=dict)
    output_dropped: bool = field(default=False, repr=False, compare=False)
    # The text the run's cells showed (streams, plain text, HTML; no images), for a person or a
    # test looking into a run; not written to the results record, which keeps scores only.
    shown: str = field(default="", repr=False)
    written: dict[str, str] = field(default_factory=dict)  # exercise -> written answer ("" empty)


@dataclass
class Submission:
    """One gradebook row: a learner's notebook or folder, and the runs of its notebooks."""

    name: str
    path: Path
    runs: list[NotebookRun] = field(default_factory=list)
    status: str = "ok"
    message: str = ""
    content_hash: str = ""  # of the submitted files (lora_course.classroom.record)
    reused: bool = False  # copied from the previous gradebook: same files, same grader

    @property
    def results(self) -> dict[str, CheckResult]:
        merged: dict[str, CheckResult] = {}
        for run in self.runs:  # an exercise answered twice counts its better attempt
            for ex, res in run.results.items():
                if ex not in merged or res.score > merged[ex].score:
                    merged[ex] = res
        return merged


def feedback_text(sub: Submission, exercise_ids: list[str] | None = None) -> str:
    """The feedback a learner reads: status, each notebook's run, each check with its hints.

    With ``exercise_ids`` the total is out of every exercise, and those not submitted are named.
    """
    from lora_course.checks import run_checks

    results = sub.results
    ids = list(exercise_ids) if exercise_ids is not None else sorted(results)
    total = sum(results[ex].score for ex in ids if ex in results)
    most = sum((results[ex] if ex in results else run_checks(ex, {})).max_score for ex in ids)
    lines = [f"Feedback for {sub.name}", f"Score: {fmt_points(total)}/{fmt_points(most)}"]
    missing = [ex for ex in ids if ex not in results]
    if missing:
        lines.append(f"Not submitted (0 points): {', '.join(missing)}.")
    waiting = sum(i.max_points for r in results.values() for i in r.items if not i.scored)
    if waiting:
        lines.append(f"{fmt_points(waiting)} of the points wait for a person to read your answers.")
    if sub.status != "ok" or not sub.runs:
        lines.append(f"Status: {sub.status}. {sub.message}".rstrip())
    for run in sub.runs:
        lines += ["", f"== {run.notebook} =="]
        if run.status == "ok":
            lines.append(f"Ran to the end in {run.seconds:.1f} s.")
        else:
            lines.append(f"{run.status}: {run.message}")
        for index, name, value in run.cell_errors:
            lines.append(f"Cell {index} raised {name}: {value}")
        lines += [f"Note: {n}" for n in run.notes]
        for result in run.results.values():
            lines += ["", str(result)]
    if any(r.needs_review for r in results.values()):
        lines += ["", "Some answers will be read by an instructor; the score may change."]
    return "\n".join(lines) + "\n"
