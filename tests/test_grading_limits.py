"""The largest sweep exercise 3 allows grades without a timeout under the grader's defaults.

Slow by nature (about 3 minutes on an idle 2-core machine: the learner's 18 runs of 60 steps in
the kernel, then the grader's 18 re-runs), so it is not part of `make test`: run it with
`make test-limits` (LORA_COURSE_LONG_TESTS=1) after changing the limits or the sweep's speed.
"""

import os

import nbformat
import pytest
from conftest import ROOT

from lora_course.checks.exercise_3 import BUDGET, LIMITS, MAX_RUNS
from lora_course.classroom.grading import grade
from lora_course.classroom.release import release_all
from lora_course.classroom.submissions import load_masters

pytestmark = pytest.mark.skipif(
    not os.environ.get("LORA_COURSE_LONG_TESTS"), reason="slow: make test-limits"
)

SETTINGS = "[(4, a) for a in (0.2, 0.6, 2, 6, 20, 200)]"  # 6 settings x 3 seeds = 18 runs
TYPED = {
    "6a61fdbb": f"settings = {SETTINGS}\n"
    "for seed in (0, 1, 2):\n"
    f"    runs.append(summarize(sweep(settings, steps={LIMITS['steps']}, seed=seed, model=tiny)))",
    "386d8a85": "results = pd.concat(runs, ignore_index=True)",
    "9abf276d": "means = results.groupby('scaling')[['accuracy', 'final_loss']].mean()\n"
    "best = float(means.sort_values(['accuracy', 'final_loss'], ascending=[False, True])"
    ".index[0])",
}


def test_the_largest_allowed_sweep_grades_without_a_timeout(tmp_path):
    assert 6 * 3 == MAX_RUNS and MAX_RUNS * LIMITS["steps"] * 8 == BUDGET
    (master,) = [m for m in load_masters(ROOT / "notebooks") if m.stem == "07_exercise_3"]
    (released,) = release_all([master.path], tmp_path / "release")
    nb = nbformat.read(released, as_version=4)
    for cell in nb.cells:
        if cell.get("id") in TYPED:  # one cell holds the whole sweep: the longest cell allowed
            cell.source = cell.source.replace("# YOUR CODE HERE", TYPED[cell["id"]])
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(nb, subs / master.path.name)
    (sub,) = grade(subs, [master], jobs=1)  # the defaults: --cell-timeout 300, --timeout 600
    (run,) = sub.runs
    result = sub.results["exercise_3"]
    assert sub.status == "ok" and not run.cell_errors, (sub.message, run.cell_errors)
    assert result.score == 6, str(result)
    print(f"graded in {run.seconds:.0f} s in the kernel (the grader's re-runs come after)")
