"""Shared fixtures.

``make test`` runs the test files and notebooks in parallel (pytest-xdist, ``--dist loadfile``:
each file or notebook stays in one worker, in its order). Session fixtures then run once per
worker, so an expensive one that several files need (``course_grading``) is computed once per
run by whichever worker asks first and read from disk by the others.
"""

import os
import pickle
from pathlib import Path

import pytest
import torch
from grading_notebooks import TYPED, WRITTEN

ROOT = Path(__file__).resolve().parent.parent
# tests/real_path runs notebooks on a shape-true model for minutes: `make test-real-path`
# (which sets LORA_COURSE_REAL_PATH=1) runs it; `make test` leaves it out.
collect_ignore = [] if os.environ.get("LORA_COURSE_REAL_PATH") else ["real_path"]


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on a shared 2-core machine, two threads that wait on each
    other made a 60-step fine-tune take 89 s instead of 3 s. Tests check results, not speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def once_per_run(tmp_path_factory, name: str, compute):
    """``compute()`` once per test run, shared by every xdist worker through a pickle.

    The first worker to ask computes under a file lock and writes the pickle into the run's
    shared temporary folder; a worker that asks later waits for the lock and reads it. Without
    xdist it simply computes.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return compute()
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # one folder per run, above every worker's
    path = shared / f"{name}.pickle"
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            return pickle.loads(path.read_bytes())
        value = compute()
        path.write_bytes(pickle.dumps(value))
        return value


def _typed_release(release: Path, out: Path) -> None:
    """The student release with code typed at every marker and one written answer."""
    import nbformat

    out.mkdir()
    for path in sorted(release.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.get("id") in TYPED:
                assert "# YOUR CODE HERE" in cell.source, cell.get("id")
                cell.source = cell.source.replace("# YOUR CODE HERE", TYPED[cell["id"]])
            elif cell.cell_type == "markdown" and "*Write your answer here.*" in cell.source:
                if path.name.startswith("07"):
                    cell.source = cell.source.replace("*Write your answer here.*", WRITTEN)
        nbformat.write(nb, out / path.name)


def _grade_course_masters(root: Path) -> dict:
    from lora_course.classroom.grading import grade
    from lora_course.classroom.release import release_all
    from lora_course.classroom.submissions import load_masters

    masters = load_masters(ROOT / "notebooks")
    subs = root / "subs"
    (subs / "master").mkdir(parents=True)
    (subs / "release").mkdir()
    for master in masters:
        (subs / "master" / master.path.name).write_bytes(master.path.read_bytes())
    release_all([m.path for m in masters], subs / "release")
    _typed_release(subs / "release", subs / "typed")
    graded = grade(subs, masters, jobs=2, cell_timeout=120, timeout=300)
    return {
        "exercises": sorted({ex for m in masters for ex in m.exercises}),
        "submissions": {s.name: s for s in graded},
    }


@pytest.fixture(scope="session")
def course_grading(tmp_path_factory):
    """The real exercise masters (``notebooks/*.ipynb`` with solution markers) and their student
    releases, graded once per test run: ``{"exercises": [...], "submissions": {"master": ...,
    "release": ...}}`` (``lora_course.classroom.results.Submission`` each)."""
    root = tmp_path_factory.mktemp("course-grading")
    return once_per_run(tmp_path_factory, "course-grading", lambda: _grade_course_masters(root))


# Seconds each of the slowest files took in a parallel `make test` (3 workers on 2 cores, a fresh
# clone, 2026-12-03 14:00 UTC: the sum of its tests' times in --junitxml, so under the contention
# of the other workers: notebook 10 ran 65 s alone). pytest-xdist hands out whole files in
# collection order (the Makefile turns off its own reordering by test count), so the longest
# start first and the run does not end waiting on one of them started late. A file missing here
# only runs later; nothing is skipped.
SLOWEST_FIRST = {
    "notebooks/10_lora_family.ipynb": 185,
    "notebooks/08_adapters.ipynb": 124,
    "tests/test_grading_course.py": 82,
    "notebooks/02b_rank_and_alpha_in_training.ipynb": 78,
    "notebooks/09_training_memory.ipynb": 67,
    "tests/test_grading.py": 66,
    "notebooks/07_exercise_3.ipynb": 52,
    "tests/test_distributed.py": 44,
    "tests/browser/test_decks.py": 44,
    "tests/test_hostile_class.py": 44,
    "notebooks/03_qlora.ipynb": 36,
    "tests/test_lms.py": 25,
    "tests/test_shards.py": 24,
    "tests/test_sandbox.py": 19,
    "tests/test_training_memory.py": 17,
    "tests/test_report.py": 17,
    "tests/browser/test_lab.py": 16,
    "tests/test_check_exercise_3.py": 12,
    "tests/test_train.py": 11,
    "tests/test_adapters.py": 10,
}


def pytest_collection_modifyitems(config, items):
    """The slowest files first (``SLOWEST_FIRST``); a stable sort keeps each file's order."""
    items.sort(key=lambda item: -SLOWEST_FIRST.get(item.nodeid.split("::")[0], 0))
