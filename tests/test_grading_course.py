"""The course's own exercise masters graded as a class would be: full marks for each master,
nothing for its untouched student release, and no answer in what that release shows when it
runs top to bottom (a learner's first Run All).

Its own file (not in test_grading.py) so that pytest-xdist's ``--dist loadfile`` can run it on
another worker than test_grading.py's fault fixtures, whose timeouts are mostly idle waiting.
"""

import re
from pathlib import Path

import nbformat
import pytest

from lora_course.checks import exercise_1, exercise_2
from lora_course.classroom.release import BEGIN, INSTRUCTOR_TAG, SOLUTION_TAG, release_notebook

ROOT = Path(__file__).resolve().parents[1]
# Numbers specific enough to be an answer: three or more decimals, thousands separators, or five
# or more digits (4096 or 0.25 appear in any notebook about LoRA).
_NUMBER = re.compile(r"\d+\.\d{3,}|\d{1,3}(?:,\d{3})+|\d{5,}")

pytestmark = pytest.mark.slow


def test_the_course_exercise_masters_grade_full_and_their_release_zero(course_grading):
    """The real notebooks/NN_exercise_*.ipynb: the master earns full marks, its release none."""
    assert course_grading["exercises"] == ["exercise_1", "exercise_2", "exercise_3"]
    result = course_grading["submissions"]
    for exercise, check in result["master"].results.items():
        assert check.passed and check.score == check.auto_max, (exercise, str(check))
    assert result["master"].status == "ok"
    assert all(not r.attempted for r in result["release"].results.values())


def _package_answers() -> set[str]:
    """The reference answers of exercises 1 and 2 as a notebook would print them."""
    values = set()
    for rank in exercise_1.RANKS:
        trainable, total = exercise_1._trainable_of(rank), exercise_1._total_of(rank)
        values |= {f"{trainable:,}", f"{total:,}", str(total)}
        values.add(f"{trainable / total:.6f}")
    reference = exercise_2._bytes_of()
    for name in ("footprint_8bit", "footprint_4bit"):
        values |= {f"{reference[name]:,}", str(int(reference[name]))}
    values.add(f"{reference['ratio']:.3f}")
    return values


def _solution_numbers(master) -> set[str]:
    """Numbers the master prints from cells its release removes or replaces (exercise 3's
    measured sweep too), less those that cells the learner gets print before the check."""
    from lora_course.classroom.execution import shown_text

    numbers, given, checked = set(), set(), False
    for cell in master.cells:
        tags = cell.metadata.get("tags", [])
        shown = set(_NUMBER.findall(shown_text([cell])))
        if BEGIN in cell.source or SOLUTION_TAG in tags or INSTRUCTOR_TAG in tags:
            numbers |= shown
        elif not checked:
            given |= shown
        checked = checked or (cell.cell_type == "code" and "check(" in cell.source)
    return numbers - given


def test_run_all_on_an_untouched_release_shows_no_answer(course_grading):
    """Each exercise's release, run top to bottom by the grader, ends without an error and shows
    no answer value: "What to notice" waits for a passing check."""
    runs = course_grading["submissions"]["release"].runs
    assert len(runs) == 3, [run.notebook for run in runs]
    for run in runs:
        master = nbformat.read(ROOT / "notebooks" / run.notebook, as_version=4)
        student, _ = release_notebook(master, run.notebook)
        sources = set(_NUMBER.findall("\n".join(cell.source for cell in student.cells)))
        answers = _package_answers() | (_solution_numbers(master) - sources)
        assert run.status == "ok" and not run.cell_errors, (run.notebook, run.cell_errors)
        assert run.shown, f"{run.notebook}: the run showed nothing"
        shown = sorted(value for value in answers if value in run.shown)
        assert not shown, f"{run.notebook}: Run All shows answer values {shown}"


def test_code_typed_at_each_marker_is_kept_and_graded(course_grading):
    """The release with code typed at every `# YOUR CODE HERE` (tests/conftest.py: TYPED)."""
    from grading_notebooks import WRITTEN

    typed = course_grading["submissions"]["typed"]
    results = typed.results
    assert results["exercise_1"].score == 5, str(results["exercise_1"])
    assert results["exercise_2"].attempted and results["exercise_2"].score == 1  # the ratio only
    assert results["exercise_3"].score == 6, str(results["exercise_3"])
    assert results["exercise_3"].max_score == 10 and results["exercise_3"].needs_review
    (run,) = [r for r in typed.runs if r.master == "07_exercise_3"]
    assert run.written["exercise_3"] == WRITTEN  # what the report and the review file show
    (run,) = [r for r in typed.runs if r.master == "06_exercise_2"]
    assert run.written["exercise_2"] == ""  # left as released: shown as (empty)
