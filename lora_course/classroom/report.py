"""The class report: one offline HTML page of what a class got right and wrong.

:func:`item_table` counts, for every check item of every exercise, the submissions that passed,
failed or did not attempt it (an exercise notebook missing or left as released counts as not
attempted), and keeps the hints of the most common failures: the misconceptions to address in
the next class. :func:`report_html` puts that on one page with the score distribution per
exercise, the learners whose answers wait for review and the submissions that did not run
cleanly. Plots are PNG images inside the page (base64), so the file works offline and by mail.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter

import pandas as pd

from lora_course.classroom.results import Submission
from lora_course.classroom.safety import clean_name, printable

__all__ = ["item_table", "review_table", "score_figure", "report_html"]

_TOP_HINTS = 3


def _items(exercise_id: str):
    from lora_course.checks import run_checks

    return run_checks(exercise_id, {}).items  # names and points, in order


def item_table(subs: list[Submission], exercise_ids: list[str]) -> pd.DataFrame:
    """Per check item: passed, failed, not attempted, review, and the commonest failing hints."""
    rows = []
    for ex in exercise_ids:
        for k, item in enumerate(_items(ex)):
            counts, hints = Counter(), Counter()
            for sub in subs:
                result = sub.results.get(ex)
                if result is None or not result.attempted:
                    counts["not attempted"] += 1
                    continue
                mine = result.items[k] if k < len(result.items) else None
                if mine is None:
                    counts["not attempted"] += 1
                elif mine.needs_review:
                    counts["review"] += 1
                elif mine.depends:  # a follow-on of the item above: not a mistake of its own
                    counts["depends on the item above"] += 1
                elif mine.passed:
                    counts["passed"] += 1
                else:
                    counts["failed"] += 1
                    hints[mine.hint or "(no hint)"] += 1
            rows.append(
                {
                    "exercise": ex,
                    "item": item.name,
                    "points": item.max_points,
                    "passed": counts["passed"],
                    "failed": counts["failed"],
                    "depends on the item above": counts["depends on the item above"],
                    "not attempted": counts["not attempted"],
                    "review": counts["review"],
                    "common failures": hints.most_common(_TOP_HINTS),
                }
            )
    return pd.DataFrame(rows)


def review_table(subs: list[Submission]) -> pd.DataFrame:
    """The answers an instructor must read: name, exercise, items, and what the learner wrote
    (``(empty)`` when the answer cell was left as released)."""
    from lora_course.classroom.review import EMPTY

    rows = []
    for sub in subs:
        for ex, result in sorted(sub.results.items()):
            waiting = [i.name for i in result.items if i.needs_review]
            if waiting:
                written = next((r.written.get(ex) for r in sub.runs if r.written.get(ex)), "")
                rows.append(
                    {
                        "submission": clean_name(sub.name),
                        "exercise": ex,
                        "items": "; ".join(waiting),
                        "written answer": printable(written) or EMPTY,
                    }
                )
    return pd.DataFrame(rows, columns=["submission", "exercise", "items", "written answer"])


def score_figure(subs: list[Submission], exercise_ids: list[str]):
    """One histogram of scores per exercise (a matplotlib Figure)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(3.6 * max(len(exercise_ids), 1), 3.4), layout="constrained")
    axes = fig.subplots(1, max(len(exercise_ids), 1), squeeze=False)[0]
    for ax, ex in zip(axes, exercise_ids, strict=False):
        top = sum(i.max_points for i in _items(ex))  # a person's points included
        scores = [sub.results[ex].score if ex in sub.results else 0.0 for sub in subs]
        bins = [x - 0.5 for x in range(int(top) + 2)] if top <= 40 else 20
        ax.hist(scores, bins=bins, color="#4c72b0", edgecolor="white")
        ax.set_title(ex)
        ax.set_xlabel(f"score (out of {top:g})")
        ax.set_ylabel("submissions")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of learners
    return fig


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(frame: pd.DataFrame, empty: str) -> str:
    if frame.empty:
        return f"<p><i>{html.escape(empty)}</i></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            if isinstance(value, list):  # (hint, count) pairs
                text = "<br>".join(
                    f"<b>{n}&times;</b> {html.escape(str(h)).replace(chr(10), '<br>')}"
                    for h, n in value
                )
            else:
                text = html.escape(f"{value:g}" if isinstance(value, float) else str(value))
            cells.append(f"<td>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_STYLE = """body{font-family:sans-serif;max-width:72em;margin:1em auto;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;
vertical-align:top;text-align:left}th{background:#f3f3f3}img{max-width:100%}"""


def report_html(subs: list[Submission], exercise_ids: list[str], title: str = "") -> str:
    """The whole class report as one self-contained HTML page."""
    statuses = Counter(s.status for s in subs)
    status_line = ", ".join(f"{n} {k}" for k, n in sorted(statuses.items()))
    problems = pd.DataFrame(
        [{"submission": clean_name(s.name), "status": s.status, "message": printable(s.message)}
         for s in subs if s.status != "ok"],
        columns=["submission", "status", "message"],
    )  # fmt: skip
    items = item_table(subs, exercise_ids)
    parts = [
        f"<h1>{html.escape(title or 'Class report')}</h1>",
        f"<p>{len(subs)} submissions: {html.escape(status_line or 'none')}.</p>",
        "<h2>Scores per exercise</h2>",
        f'<img alt="score histograms" src="data:image/png;base64,'
        f'{_png(score_figure(subs, exercise_ids))}">',
        "<h2>Each check item</h2>",
        "<p>Not attempted: the exercise notebook was missing, did not run, or its answer "
        "was left empty. Depends on the item above: the item follows from a mistake counted "
        "above it, not a failure of its own. The hints are those of the most common failures, "
        "with counts.</p>",
        _table(items, "no exercises"),
        "<h2>Waiting for review</h2>",
        "<p>Record the points in the gradebook's <code>-review.csv</code>, then run "
        "<code>python -m lora_course review GRADEBOOK.csv</code>.</p>",
        _table(review_table(subs), "no answer waits for an instructor"),
        "<h2>Submissions that did not run cleanly</h2>",
        _table(problems, "every submission ran to the end"),
    ]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title or 'Class report')}</title><style>{_STYLE}</style>"
        f"</head><body>\n{body}\n</body></html>\n"
    )
