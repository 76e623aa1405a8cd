"""Files a learning platform imports: Canvas and Moodle gradebook CSVs, Gradescope results.

No platform is reachable from here: the formats follow each platform's documentation and the
tests check the files against it, not against a live import.

**Identifiers.** A submission's name (its folder or file stem) is the learner's id unless a
roster (``--roster roster.csv``) maps it. The roster's columns: ``submission`` (required: the
folder name) and any of ``name``, ``canvas_id``, ``sis_user_id``, ``sis_login_id``,
``section``, ``email``, ``username``, ``idnumber``. Every graded submission must have a row.

**Canvas** (:func:`canvas_csv`; Gradebook > Import): columns ``Student``, ``ID``,
``SIS User ID``, ``SIS Login ID``, ``Section``, then one column per exercise named
``LoRA <exercise id>``; the second row is ``Points Possible`` with each exercise's maximum.
Canvas matches a row by ``ID`` (its user id), else ``SIS User ID``, else ``SIS Login ID``;
without a roster ``SIS Login ID`` is the submission name. A column that names no existing
assignment makes Canvas offer to create it.

**Moodle** (:func:`moodle_csv`; Grades > Import > CSV file): one identifier column and one
column per exercise; the import page maps the identifier to a user field and each exercise
column to a grade item (or a new one). The identifier is ``Email address`` when the roster has
``email``, else ``ID number`` when it has ``idnumber``, else ``Username`` (the roster's
``username`` or the submission name).

**Inert cells.** Identifier cells (names, ids, emails) that start with ``=``, ``+``, ``-``,
``@``, tab or CR get a leading ``'`` (:func:`lora_course.classroom.safety.csv_cell`): a
learner named ``=HYPERLINK(...)`` is text in the platform's spreadsheet, not a formula.

**Gradescope** (:func:`gradescope_results`): ``results.json`` with top-level ``score``,
``execution_time``, ``output`` and ``tests``; one test per check item with ``name``, ``score``,
``max_score``, ``output`` (its hint) and ``visibility``. The bundle is in
:mod:`lora_course.classroom.gradescope`.

**Points a person gives** (a written answer; :mod:`lora_course.classroom.review`) are in every
maximum: Canvas' ``Points Possible`` row and each exercise's column on Moodle hold them, and the
score columns hold them once recorded in ``NAME-review.csv`` (re-export after ``python -m
lora_course review``). On Gradescope, which runs the autograder per submission and never sees
that file, each written answer is a test worth its points, scored 0 and marked "an instructor
will read this answer": the instructor gives those points on Gradescope itself.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lora_course.classroom.results import Submission, feedback_text
from lora_course.classroom.safety import csv_text, printable

__all__ = ["ROSTER_COLUMNS", "read_roster", "canvas_csv", "moodle_csv", "gradescope_results"]

ROSTER_COLUMNS = ("submission", "name", "canvas_id", "sis_user_id", "sis_login_id", "section",
                  "email", "username", "idnumber")  # fmt: skip
_PREFIX = "LoRA "


def read_roster(path: str | Path | None) -> pd.DataFrame | None:
    """The roster as a table indexed by submission name (``None`` without a path)."""
    if path is None:
        return None
    roster = pd.read_csv(path, dtype=str, keep_default_na=False)
    unknown = sorted(set(roster.columns) - set(ROSTER_COLUMNS))
    if "submission" not in roster.columns or unknown:
        raise ValueError(
            f"roster {path}: columns must include 'submission' and come from "
            f"{', '.join(ROSTER_COLUMNS)} (unknown: {', '.join(unknown) or 'none'})"
        )
    if roster["submission"].duplicated().any():
        dupes = sorted(set(roster["submission"][roster["submission"].duplicated()]))
        raise ValueError(f"roster {path}: submission names repeated: {dupes}")
    return roster.set_index("submission")


def _who(book: pd.DataFrame, roster: pd.DataFrame | None) -> pd.DataFrame:
    """Per gradebook row, the roster's columns (submission name where a column is absent)."""
    names = book["submission"].astype(str)
    if roster is None:
        return pd.DataFrame({"submission": names, "name": names}).set_index("submission")
    missing = sorted(set(names) - set(roster.index))
    if missing:
        raise ValueError(f"the roster has no row for {len(missing)} submission(s): {missing[:5]}")
    return roster.loc[names]


def _col(who: pd.DataFrame, column: str, default) -> list:
    return list(who[column]) if column in who.columns else list(default)


def canvas_csv(book: pd.DataFrame, exercise_ids: list[str], roster=None) -> str:
    """The gradebook in Canvas' import format (see the module docstring)."""
    who = _who(book, roster)
    names = list(book["submission"].astype(str))
    blank = [""] * len(book)
    table = pd.DataFrame(
        {
            "Student": _col(who, "name", names),
            "ID": _col(who, "canvas_id", blank),
            "SIS User ID": _col(who, "sis_user_id", blank),
            "SIS Login ID": _col(who, "sis_login_id", names if roster is None else blank),
            "Section": _col(who, "section", blank),
        }
    )
    for ex in exercise_ids:
        table[_PREFIX + ex] = [f"{x:g}" for x in book[ex]]
    points = {"Student": "Points Possible", "ID": "", "SIS User ID": "", "SIS Login ID": "",
              "Section": ""}  # fmt: skip
    points.update({_PREFIX + ex: f"{book[f'{ex}_max'].max():g}" for ex in exercise_ids})
    table = pd.concat([pd.DataFrame([points]), table], ignore_index=True)
    return csv_text(table, list(points)[:5])


def moodle_csv(book: pd.DataFrame, exercise_ids: list[str], roster=None) -> str:
    """The gradebook in Moodle's CSV grade import format (see the module docstring)."""
    who = _who(book, roster)
    names = list(book["submission"].astype(str))
    if roster is not None and "email" in who.columns:
        ident = {"Email address": list(who["email"])}
    elif roster is not None and "idnumber" in who.columns:
        ident = {"ID number": list(who["idnumber"])}
    else:
        ident = {"Username": _col(who, "username", names)}
    table = pd.DataFrame(ident)
    for ex in exercise_ids:
        table[_PREFIX + ex] = [f"{x:g}" for x in book[ex]]
    return csv_text(table, list(ident))


def gradescope_results(sub: Submission | None, exercise_ids: list[str], seconds: float = 0):
    """Gradescope's ``results.json`` content for one submission (``None``: nothing was found)."""
    from lora_course.checks import run_checks

    tests = []
    results = sub.results if sub is not None else {}
    for ex in exercise_ids:
        result = results.get(ex) or run_checks(ex, {})
        for item in result.items:
            if not result.attempted:
                output = item.hint or "not attempted"
            elif item.needs_review:
                output = "An instructor will read this answer."
            elif item.passed:
                output = "passed"
            else:
                output = item.hint or "not correct yet"
            tests.append(
                {
                    "name": f"{ex}: {item.name}",
                    "score": float(item.points) if item.scored else 0.0,
                    "max_score": float(item.max_points),  # a written answer's points included
                    "output": output,
                    "visibility": "visible",
                }
            )
    if sub is None:
        message = "No exercise notebook was found in this submission: upload the .ipynb files."
    else:
        message = printable(feedback_text(sub, exercise_ids))
    return {
        "score": float(sum(t["score"] for t in tests)),
        "execution_time": int(seconds),
        "output": message,
        "tests": tests,
    }
