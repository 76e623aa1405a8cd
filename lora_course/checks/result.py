"""What a check found, as plain data: one :class:`CheckItem` per line of the report, and the
:class:`CheckResult` of an exercise (score, maximum, the points waiting for a person, JSON, text
and HTML). :mod:`lora_course.checks.core` makes them; the grader, its record and its reports read
them.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CheckItem", "CheckResult", "DEPENDS", "NOT_ATTEMPTED"]

NOT_ATTEMPTED = "not attempted"
DEPENDS = "depends on the item above"


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
