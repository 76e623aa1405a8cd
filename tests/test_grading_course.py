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
        assert check.score == check.max_score, (exercise, str(check))
    assert result["master"].status == "ok"
    assert all(not r.attempted for r in result["release"].results.values())
