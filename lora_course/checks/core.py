"""The machinery behind ``check``: results as plain data, exercises as declarations.

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

Nothing here raises on a learner's answer: a check that crashes is reported as a failed item
that needs review, so a batch grader always gets a result.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CheckItem", "CheckResult", "Depends", "Exercise", "Feedback", "as_table"]
__all__ += ["DEPENDS", "NOT_ATTEMPTED"]

NOT_ATTEMPTED = "not attempted"
DEPENDS = "depends on the item above"


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
class CheckItem:
    """One line of a check report. ``points`` are earned, ``max_points`` available.

    ``scored`` is False for an item left to an instructor (a written answer): it does not count
    in ``score``/``max_score``. ``needs_review`` asks a human to look (a written answer, or a
    check that could not run on this answer). ``depends``: the outcome follows from an item
    above (:class:`Depends`); it is not a mistake of its own.
    """

    name: str
    passed: bool
    points: float
    max_points: float
    hint: str = ""
    needs_review: bool = False
    scored: bool = True
    depends: bool = False

    @property
    def status(self) -> str:
        if self.needs_review:
            return "review"
        if self.depends:
            return "depends"
        return "pass" if self.passed else "FAIL"


def _fmt(x: float) -> str:
    return f"{x:g}"


def _points(item: CheckItem) -> str:
    earned = _fmt(item.points) if item.scored else "?"  # an instructor decides
    return f"{earned}/{_fmt(item.max_points)}"


def _reviewed(item: CheckItem, points: float, comment: str = "") -> CheckItem:
    if not 0 <= points <= item.max_points:
        raise ValueError(
            f"{item.name!r}: review points must lie between 0 and {_fmt(item.max_points)}, "
            f"got {points:g}"
        )
    hint = f"reviewed: {comment}" if comment else "reviewed"
    return CheckItem(item.name, points == item.max_points, points, item.max_points, hint,
                     needs_review=False, scored=True)  # fmt: skip


@dataclass(frozen=True)
class CheckResult:
    """What ``check`` returns: a report in Jupyter, plain data for a grader.

    ``score`` counts the automatically scored items and the review points a person recorded
    (:meth:`with_review`); ``max_score`` counts every item, those left to a person included, so
    it is the same for every submission. ``auto_score``/``auto_max`` count the automatic items
    only (what ``check`` can say before a person reads the written answers).
    """

    exercise_id: str
    title: str
    items: tuple[CheckItem, ...]
    attempted: bool = True
    notes: tuple[str, ...] = field(default=())

    @property
    def score(self) -> float:
        return sum(i.points for i in self.items if i.scored)

    @property
    def max_score(self) -> float:
        return sum(i.max_points for i in self.items)

    @property
    def auto_max(self) -> float:
        """The points the automatic items can give (the written answers' left out)."""
        return sum(i.max_points for i in self.items if not (i.needs_review and not i.scored))

    def with_review(self, points: Mapping[str, float], comments: Mapping[str, str] = ()):
        """A copy with the items that wait for a person (written answers, items a timed-out run
        lost), named in ``points`` (item name -> points), scored."""
        comments = dict(comments or {})
        names = {i.name for i in self.items if not i.scored or i.needs_review}
        unknown = sorted(set(points) - names)
        if unknown:
            raise ValueError(
                f"{self.exercise_id}: no review item named {unknown}; review items: {sorted(names)}"
            )
        items = tuple(
            _reviewed(i, float(points[i.name]), comments.get(i.name, "")) if i.name in points else i
            for i in self.items
        )
        return CheckResult(self.exercise_id, self.title, items, self.attempted, self.notes)

    @property
    def needs_review(self) -> bool:
        return any(i.needs_review for i in self.items)

    @property
    def passed(self) -> bool:
        """Full marks on every automatically checked item."""
        auto = [i for i in self.items if i.scored]
        return self.attempted and all(i.points == i.max_points for i in auto)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: exercise_id, title, score, max_score, attempted, needs_review, items."""
        return {
            "exercise_id": self.exercise_id,
            "title": self.title,
            "score": self.score,
            "max_score": self.max_score,
            "attempted": self.attempted,
            "needs_review": self.needs_review,
            "notes": list(self.notes),
            "items": [asdict(i) for i in self.items],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        """The inverse of ``to_dict`` (score and flags are recomputed from the items)."""
        return cls(
            exercise_id=data["exercise_id"],
            title=data["title"],
            items=tuple(CheckItem(**i) for i in data["items"]),
            attempted=data.get("attempted", True),
            notes=tuple(data.get("notes", ())),
        )

    def _headline(self) -> str:
        score = f"{_fmt(self.score)}/{_fmt(self.max_score)}"
        if not self.attempted:
            return f"{self.exercise_id}: {NOT_ATTEMPTED} ({score})"
        waiting = sum(i.max_points for i in self.items if not i.scored)
        extra = f", {_fmt(waiting)} more points after a person's review" if waiting else ""
        extra += ", needs an instructor's review" if self.needs_review and not waiting else ""
        return f"{self.exercise_id}: {score}{extra}"

    def _status(self, item: CheckItem) -> str:
        return item.status if self.attempted else "todo"

    def __str__(self) -> str:
        lines = [self._headline() + f"  -- {self.title}"]
        for i in self.items:
            lines.append(f"  [{self._status(i):>6}] {i.name} ({_points(i)})")
            if i.hint:
                lines.extend(f"           hint: {h}" for h in i.hint.splitlines())
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = {"pass": "#1a7f37", "FAIL": "#cf222e", "review": "#9a6700", "depends": "#57606a"}
        rows = []
        for i in self.items:
            status = f'<b style="color:{colour[i.status]}">{self._status(i)}</b>'
            hint = html.escape(i.hint).replace("\n", "<br>")
            rows.append(
                f"<tr><td>{status}</td><td>{html.escape(i.name)}</td><td>{_points(i)}</td>"
                f'<td style="text-align:left">{hint}</td></tr>'
            )
        notes = "".join(f"<p><i>note:</i> {html.escape(n)}</p>" for n in self.notes)
        return (
            f"<div><p><b>{html.escape(self._headline())}</b> &mdash; "
            f"{html.escape(self.title)}</p>"
            "<table><thead><tr><th></th><th>check</th><th>points</th><th>hint</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{notes}</div>"
        )


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
