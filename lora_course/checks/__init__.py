"""Exercise checks: ``check("exercise_1", table=table)`` in a notebook, plain data for a grader.

Each exercise lives in its own module ``lora_course/checks/exercise_<n>.py`` that defines
``EXERCISE`` (an :class:`Exercise`); the module's name is the exercise's stable id, and adding a
module is all it takes to register one. The checks live here, in the package, so a learner who
edits or deletes notebook cells cannot change them.

In a notebook::

    check("exercise_1", table=table)          # shows a report: each item, hints, a score "5/5"

In a batch grader (another process, answers extracted from the learner's kernel as data)::

    names = expected_answers("exercise_1")     # ("table",): the variables to extract
    result = run_checks("exercise_1", {"table": table_as_data})
    result.score, result.max_score, result.needs_review, result.to_dict()

A learner's mistake (a wrong type, a missing column, ``None`` = not attempted) is feedback, never
an exception. An unknown exercise id is the notebook author's mistake and raises ``ValueError``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from lora_course.checks.core import Depends, Exercise, Feedback
from lora_course.checks.result import NOT_ATTEMPTED, CheckItem, CheckResult

__all__ = [
    "after_check",
    "check",
    "run_checks",
    "exercise_ids",
    "expected_answers",
    "get_exercise",
    "CheckItem",
    "CheckResult",
    "Depends",
    "Exercise",
    "Feedback",
    "NOT_ATTEMPTED",
    "NotYet",
]


def exercise_ids() -> list[str]:
    """The ids of every exercise module in this package, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("exercise_"))


def get_exercise(exercise_id: str) -> Exercise:
    """The :class:`Exercise` declared by ``lora_course.checks.<exercise_id>``."""
    valid = exercise_ids()
    if not isinstance(exercise_id, str) or exercise_id not in valid:
        raise ValueError(f"unknown exercise id {exercise_id!r}; valid ids are {valid}")
    module = importlib.import_module(f"{__name__}.{exercise_id}")
    exercise = getattr(module, "EXERCISE", None)
    if not isinstance(exercise, Exercise) or exercise.id != exercise_id:
        raise TypeError(f"{module.__name__} must define EXERCISE = Exercise({exercise_id!r}, ...)")
    return exercise


def expected_answers(exercise_id: str) -> dict[str, str]:
    """Answer name -> description, for the variables a grader extracts from a notebook."""
    return dict(get_exercise(exercise_id).answers)


def run_checks(exercise_id: str, answers: Mapping[str, Any]) -> CheckResult:
    """Run an exercise's checks on a plain dict of answers (what a grader calls)."""
    if not isinstance(answers, Mapping):
        raise TypeError(
            f"answers must be a dict of answer name -> value, got {type(answers).__name__}"
        )
    return get_exercise(exercise_id).run(answers)


# The last result of ``check`` per exercise in this process (a learner's kernel): what
# ``after_check`` asks before it shows a reference answer.
_LAST: dict[str, CheckResult] = {}


def check(exercise_id: str, **answers: Any) -> CheckResult:
    """Check a learner's answers, e.g. ``check("exercise_1", table=table)``.

    Returns a :class:`CheckResult`, which Jupyter shows as a report with a score and hints.
    """
    result = run_checks(exercise_id, answers)
    _LAST[exercise_id] = result
    return result


class NotYet:
    """What ``after_check`` shows in place of a reference answer: what to do first."""

    def __init__(self, exercise_id: str, last: CheckResult | None):
        self.exercise_id, self.last = exercise_id, last

    def __str__(self) -> str:
        if self.last is None:
            status = "it has not run yet"
        elif not self.last.attempted:
            status = "it says: not attempted"
        else:
            status = f"it says: {self.last.score:g}/{self.last.max_score:g}"
        return (
            f"The reference answer shows here once check({self.exercise_id!r}, ...) above passes "
            f"({status}). Work through the exercise, run the check until every item passes, "
            "then run this cell again."
        )

    __repr__ = __str__


class _Text(str):
    """A string Jupyter shows as its text (no quotes)."""

    def __repr__(self) -> str:
        return str(self)


def after_check(exercise_id: str, shown: Any) -> Any:
    """``shown`` (a reference table, a sentence) once this kernel's last ``check(exercise_id,
    ...)`` passed every automatically checked item; until then a :class:`NotYet` note saying
    what to do first. Learners press Run All before they work: the answers stay hidden.

    A string comes back as text that Jupyter shows without quotes.
    """
    get_exercise(exercise_id)  # an unknown id is the notebook author's mistake
    last = _LAST.get(exercise_id)
    if last is None or not last.passed:
        return NotYet(exercise_id, last)
    return _Text(shown) if isinstance(shown, str) else shown
