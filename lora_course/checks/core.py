"""The machinery behind ``check``: exercises as declarations, run into a result.

An exercise module declares what it expects and how each item is checked::

    EXERCISE = Exercise(
        "exercise_1",
        title="Trainable parameters for ranks 4, 8, 16 and 32",
        answers={"table": "a DataFrame with columns rank, trainable, total, ratio"},
    )

    @EXERCISE.item("one row per rank 4, 8, 16, 32", points=1)
    def _ranks(answers):
        ...  # return None (or True) to pass; return a hint string, or raise Feedback, to fail

Items run in order with the same ``answers`` dict (every declared name is present; a missing one
is ``None``). ``EXERCISE.prepare`` may turn the raw answers into something easier to check (or
raise ``Feedback`` once for the whole exercise). An item declared with ``review=True`` is not
scored automatically: it is listed for an instructor, and the result's ``needs_review`` is set;
its points count in ``max_score`` and are earned when a person records them
(:meth:`CheckResult.with_review`). An item whose outcome follows from an item above returns (or
raises) :class:`Depends`: it shows as "depends on the item above", not as a failure, and with
``credit=True`` (consistent with the learner's own earlier answer) it keeps its points, so one
mistake costs once.

What a run gives back, :class:`CheckResult`, is :mod:`lora_course.checks.result`.
Nothing here raises on a learner's answer: a check that crashes is reported as a failed item
that needs review, so a batch grader always gets a result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lora_course.checks.result import DEPENDS, NOT_ATTEMPTED, CheckItem, CheckResult

__all__ = ["Depends", "Exercise", "Feedback", "as_table"]


class Feedback(Exception):  # noqa: N818 - it is a message for the learner, not an error
    """Raised inside a check to fail the item with ``hint`` (the learner-facing message)."""

    def __init__(self, hint: str):
        super().__init__(hint)
        self.hint = hint


class Depends(Feedback):
    """An item's outcome follows from an item above: shown as such, not as a failure.

    ``credit``: the answer is right given the learner's own earlier (wrong) values, so the item
    keeps its points; otherwise it scores 0 but is not counted as a mistake of its own.
    """

    def __init__(self, hint: str = "", credit: bool = False):
        super().__init__(hint)
        self.credit = credit


@dataclass(frozen=True)
class _ItemSpec:
    name: str
    points: float
    fn: Callable[[dict], Any]
    review: bool


class Exercise:
    """An exercise: its id, the answer names it expects, and its checks in order."""

    def __init__(
        self,
        exercise_id: str,
        title: str,
        answers: Mapping[str, str],
        context: tuple[str, ...] = (),
    ):
        if not answers:
            raise ValueError(f"{exercise_id}: declare at least one answer name in answers=")
        unknown = sorted(set(context) - set(answers))
        if unknown:
            raise ValueError(f"{exercise_id}: context names {unknown} must also be in answers=")
        self.id = exercise_id
        self.title = title
        self.answers = dict(answers)  # name -> what the learner should put there
        # answers that describe the setting (which model was measured), set before the learner
        # works: extracted and checked like the others, but they alone are not an attempt
        self.context = tuple(context)
        self._items: list[_ItemSpec] = []
        self._prepare: Callable[[dict], dict] | None = None

    @property
    def answer_names(self) -> tuple[str, ...]:
        return tuple(self.answers)

    def item(self, name: str, points: float = 1, review: bool = False):
        """Decorator: register ``fn(answers) -> None | True | hint`` as the next item."""

        def register(fn):
            self._items.append(_ItemSpec(name, points, fn, review))
            return fn

        return register

    def prepare(self, fn: Callable[[dict], dict]):
        """Decorator: ``fn(answers) -> answers`` runs once before the items (may raise Feedback)."""
        self._prepare = fn
        return fn

    def _all_failed(self, first_hint: str, rest_hint: str, attempted: bool) -> tuple:
        return tuple(
            CheckItem(
                s.name,
                False,
                0,
                s.points,
                first_hint if k == 0 else rest_hint,
                needs_review=s.review and attempted,  # nothing to review in a missing answer
                scored=not s.review,
                depends=attempted and k > 0 and not s.review,  # one mistake, counted once
            )
            for k, s in enumerate(self._items)
        )

    def run(self, answers: Mapping[str, Any]) -> CheckResult:
        """Run every item on ``answers`` (a dict: answer name -> value). Never raises."""
        given = dict(answers)
        unknown = sorted(set(given) - set(self.answers))
        notes = []
        if unknown:
            notes.append(
                f"ignored {', '.join(map(repr, unknown))}: this exercise expects "
                f"{', '.join(self.answers)}"
            )
        values = {name: given.get(name) for name in self.answers}
        if all(v is None for k, v in values.items() if k not in self.context):
            expected = "; ".join(
                f"`{k}`: {v}" for k, v in self.answers.items() if k not in self.context
            )
            items = self._all_failed(f"{NOT_ATTEMPTED}: set {expected}", "", attempted=False)
            return CheckResult(self.id, self.title, items, attempted=False, notes=tuple(notes))
        if self._prepare is not None:
            try:
                values = self._prepare(values)
            except Feedback as fb:
                items = self._all_failed(fb.hint, DEPENDS, attempted=True)
                return CheckResult(self.id, self.title, items, notes=tuple(notes))
            except Exception as exc:  # a checker bug must not cost the learner a result
                hint = f"the checker could not read this answer ({type(exc).__name__}: {exc})"
                items = tuple(
                    CheckItem(
                        s.name, False, 0, s.points, hint if k == 0 else "", True, not s.review
                    )
                    for k, s in enumerate(self._items)
                )
                return CheckResult(self.id, self.title, items, notes=tuple(notes))
        return CheckResult(
            self.id,
            self.title,
            tuple(self._run_item(s, values) for s in self._items),
            True,
            tuple(notes),
        )

    @staticmethod
    def _run_item(spec: _ItemSpec, values: dict) -> CheckItem:
        try:
            outcome = spec.fn(values)
        except Feedback as fb:
            outcome = fb if isinstance(fb, Depends) else fb.hint
        except Exception as exc:  # a checker bug: fail, and ask a human to look
            hint = f"the checker could not check this ({type(exc).__name__}: {exc})"
            return CheckItem(spec.name, False, 0, spec.points, hint, True, not spec.review)
        if spec.review:
            note = outcome if isinstance(outcome, str) else ""
            return CheckItem(spec.name, False, 0, spec.points, note, True, scored=False)
        if isinstance(outcome, Depends):
            hint = f"{DEPENDS}: {outcome.hint}" if outcome.hint else DEPENDS
            earned = spec.points if outcome.credit else 0
            return CheckItem(spec.name, outcome.credit, earned, spec.points, hint, depends=True)
        if outcome is None or outcome is True:
            return CheckItem(spec.name, True, spec.points, spec.points)
        hint = outcome if isinstance(outcome, str) and outcome else "not correct yet"
        return CheckItem(spec.name, False, 0, spec.points, hint)


def as_table(value: Any, name: str, how: str, when_empty: str):
    """A learner's table answer as a DataFrame with lower-case column names, or ``Feedback``.

    Accepts a DataFrame, a dict of lists or a list of records (what a grader's JSON gives
    back). ``how`` tells the learner how to build it; ``when_empty`` what an empty one lacks.
    """
    import pandas as pd

    if isinstance(value, str | bytes | int | float) or not hasattr(value, "__len__"):
        raise Feedback(f"`{name}` should be a pandas DataFrame, got {type(value).__name__}; {how}")
    try:
        frame = value.copy() if isinstance(value, pd.DataFrame) else pd.DataFrame(value)
    except Exception as exc:
        raise Feedback(
            f"`{name}` could not be read as a table ({type(exc).__name__}); {how}"
        ) from None
    if frame.empty:
        raise Feedback(f"`{name}` is empty: {when_empty}")
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame
