"""The course's own exercise masters graded as a class would be: full marks for each master,
nothing for its untouched student release.

Its own file (not in test_grading.py) so that pytest-xdist's ``--dist loadfile`` can run it on
another worker than test_grading.py's fault fixtures, whose timeouts are mostly idle waiting.
"""

import pytest

pytestmark = pytest.mark.slow


def test_the_course_exercise_masters_grade_full_and_their_release_zero(course_grading):
    """The real notebooks/NN_exercise_*.ipynb: the master earns full marks, its release none."""
    assert course_grading["exercises"] == ["exercise_1", "exercise_2", "exercise_3"]
    result = course_grading["submissions"]
    for exercise, check in result["master"].results.items():
        assert check.passed and check.score == check.auto_max, (exercise, str(check))
    assert result["master"].status == "ok"
    assert all(not r.attempted for r in result["release"].results.values())


def test_code_typed_at_each_marker_is_kept_and_graded(course_grading):
    """The release with code typed at every `# YOUR CODE HERE` (tests/conftest.py: TYPED)."""
    from conftest import WRITTEN

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
