"""grade: real notebooks in real kernels; every bad submission costs only its own row.

One grading run (``--jobs 2``) over fixture submissions built from the released notebook; each
test reads its row. Time limits are small (a few seconds) so the module stays quick.
"""

import json
import time

import nbformat
import pandas as pd
import pytest
from grading_notebooks import MASTER_NAME, SOLUTION, WRONG, answer, class_folder, write_master

from lora_course.__main__ import main
from lora_course.classroom.answers import read_answers
from lora_course.classroom.release import release_all

pytestmark = pytest.mark.slow

# seconds; 10, 25 timed out every submission when xdist ran this beside notebooks on a 2-core
# machine loaded by other work (load average 17); each submission here takes a few seconds on a
# machine running only this suite. Both endless loops below wait idle (sleeping), which xdist
# overlaps with other work: a `while True: pass` would keep a core busy for all CELL_TIMEOUT
# seconds (15 CPU-seconds of a 2-core machine, measured), and the interrupt reaches a sleeping
# loop and a spinning one alike (KeyboardInterrupt between two bytecodes or out of the sleep).
CELL_TIMEOUT, TIMEOUT = 15, 40

SUBMISSIONS = {
    "reference": dict(code=SOLUTION),
    "untouched": None,
    "wrong": dict(code=WRONG),
    "loop": dict(code=SOLUTION, before="import time\nwhile True:\n    time.sleep(0.05)"),
    "stubborn": dict(
        code=SOLUTION,
        before="import time\nwhile True:\n    try:\n        time.sleep(0.1)\n"
        "    except KeyboardInterrupt:\n        pass",
    ),
    "exits": dict(code=SOLUTION, before="import os\nos._exit(1)"),
    "cheat": dict(
        code="table = None\n"
        "def check(*args, **kwargs):\n    print('all checks passed: 5/5')\n"
        "import lora_course.checks as checks\n"
        "checks.run_checks = lambda *a, **k: 'all checks passed'\n"
        "print('exercise_1: 5/5 all checks passed')"
    ),
    "vandal": dict(
        code=SOLUTION + "\n"
        "for target in ('gradebook.csv', '../gradebook.csv', '../escaped.txt', GRADEBOOK):\n"
        "    try:\n"
        "        open(target, 'w').write('submission,total\\nvandal,999\\n')\n"
        "    except OSError:\n"
        "        pass"
    ),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    masters, student, subs, out = class_folder(root)
    for name, spec in SUBMISSIONS.items():
        path = subs / f"{name}-{MASTER_NAME}"
        if spec is None:
            nbformat.write(student, path)
        else:
            code = spec["code"].replace("GRADEBOOK", repr(str(out)))
            nbformat.write(answer(student, code, spec.get("before", "")), path)
    (subs / f"corrupt-{MASTER_NAME}").write_text('{"cells": [ not json')
    # A learner folder: the exercise (renamed, found by its check call) and a lesson notebook
    # that would never finish if it were run.
    folder = subs / "folder-student"
    folder.mkdir()
    nbformat.write(answer(student, SOLUTION), folder / "my_exercise.ipynb")
    lesson = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("while True: pass")])
    nbformat.write(lesson, folder / "01_lora_layer.ipynb")

    start = time.monotonic()
    code = main(
        [
            "grade",
            str(subs),
            "--out",
            str(out),
            "--masters",
            str(masters),
            "--jobs",
            "2",
            "--timeout",
            str(TIMEOUT),
            "--cell-timeout",
            str(CELL_TIMEOUT),
        ]
    )
    seconds = time.monotonic() - start
    assert code == 0
    book = pd.read_csv(out).set_index("submission")
    return {"book": book, "out": out, "root": root, "seconds": seconds}


def _row(graded, name):
    return graded["book"].loc[f"{name}-{MASTER_NAME[:-6]}"]


def _feedback(graded, name):
    folder = graded["out"].parent / "gradebook-feedback"
    return (folder / f"{name}-{MASTER_NAME[:-6]}.txt").read_text()


def test_reference_solution_full_marks(graded):
    row = _row(graded, "reference")
    assert (row.status, row.exercise_1, row.exercise_1_max, row.total) == ("ok", 5, 5, 5)
    assert not row.needs_review


def test_untouched_release_scores_zero_not_attempted(graded):
    row = _row(graded, "untouched")
    assert (row.status, row.total) == ("ok", 0)
    assert "exercise_1: not attempted" in _feedback(graded, "untouched")


def test_wrong_answer_partial_marks_with_hint(graded):
    row = _row(graded, "wrong")
    assert row.status == "ok" and 0 < row.total < 5
    assert "you counted only one of the two adapter matrices" in _feedback(graded, "wrong")


def test_infinite_loop_is_interrupted_and_the_rest_graded(graded):
    row = _row(graded, "loop")
    assert row.status == "timeout" and row.total == 5
    assert "CellTimeoutError" in _feedback(graded, "loop")


def test_loop_that_ignores_interrupts_is_killed_at_the_wall_limit(graded):
    row = _row(graded, "stubborn")
    assert (row.status, row.total) == ("timeout", 0)
    assert row.needs_review  # a timeout is not a silent 0: its lost items wait for a person
    assert "a person decides" in _feedback(graded, "stubborn")
    assert f"within {TIMEOUT} s" in _feedback(graded, "stubborn")


def test_kernel_that_exits_is_reported_dead(graded):
    row = _row(graded, "exits")
    assert (row.status, row.total) == ("kernel died", 0)


def test_kernel_death_detected_in_seconds(tmp_path):
    from lora_course.classroom.grading import grade_submission
    from lora_course.classroom.submissions import load_masters

    masters = load_masters(write_master(tmp_path / "m").parent)
    (released,) = release_all([masters[0].path], tmp_path / "r")
    nb = answer(nbformat.read(released, as_version=4), SOLUTION, "import os\nos._exit(1)")
    path = tmp_path / MASTER_NAME
    nbformat.write(nb, path)
    start = time.monotonic()
    sub = grade_submission("x", path, [path], masters, cell_timeout=60, timeout=60)
    assert sub.status == "kernel died", sub.message
    assert time.monotonic() - start < 20  # kernel start + about 1 s to notice, far below 60


def test_corrupt_file_is_not_a_notebook(graded):
    row = _row(graded, "corrupt")
    assert (row.status, row.total) == ("not a notebook", 0)


def test_redefined_check_and_fake_pass_line_earn_nothing(graded):
    row = _row(graded, "cheat")
    assert (row.status, row.total) == ("ok", 0)
    assert "not attempted" in _feedback(graded, "cheat")


def test_writes_outside_the_copy_leave_the_gradebook_to_the_grader(graded):
    out, book = graded["out"], graded["book"]
    assert "vandal,999" not in out.read_text()
    assert len(book) == len(SUBMISSIONS) + 2  # + corrupt + folder-student
    assert set(book.status) <= {"ok", "timeout", "kernel died", "not a notebook", "error"}
    assert not (graded["root"] / "escaped.txt").exists()
    assert not list(graded["root"].rglob("escaped.txt"))
    assert _row(graded, "vandal").status == "ok"


def test_learner_folder_grades_its_exercise_and_skips_lessons(graded):
    row = graded["book"].loc["folder-student"]
    assert (row.status, row.total) == ("ok", 5)


def test_summary_and_plot_written(graded):
    parent = graded["out"].parent
    summary = pd.read_csv(parent / "gradebook-summary.csv").set_index("exercise")
    assert summary.loc["exercise_1", "submissions"] == len(graded["book"])
    assert (parent / "gradebook-scores.png").read_bytes()[:4] == b"\x89PNG"


def test_grading_time_is_reported(graded):
    per = graded["seconds"] / len(graded["book"])
    print(
        f"graded {len(graded['book'])} submissions in {graded['seconds']:.1f} s ({per:.1f} s each)"
    )
    assert graded["seconds"] < 300


def test_crash_while_writing_keeps_the_previous_gradebook(tmp_path, monkeypatch):
    from lora_course.classroom import gradebook
    from lora_course.classroom.results import Submission

    out = tmp_path / "gradebook.csv"
    out.write_text("previous\n")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(RuntimeError):
        gradebook.write_outputs([Submission("a", tmp_path)], ["exercise_1"], out)
    assert out.read_text() == "previous\n"
    assert not list(tmp_path.glob(".gradebook*.tmp"))


@pytest.mark.parametrize(
    "content, note",
    [
        ("[1, 2]", "could not be read"),
        ('{"exercise_1:table": {"value": {"__type__": "pickle", "x": 1}}}', "could not be read"),
        ('{"exercise_1:table": {"error": "ZeroDivisionError: x"}}', "could not be evaluated"),
        ("\x00garbage", "could not be read"),
    ],
)
def test_answer_file_is_parsed_defensively(tmp_path, content, note):
    path = tmp_path / "answers.json"
    path.write_text(content)
    values, notes = read_answers(path, ["exercise_1:table"])
    assert values == {"exercise_1:table": None}
    assert note in " ".join(notes)


def test_answer_file_round_trip(tmp_path):
    from lora_course.classroom.answers import to_plain

    frame = pd.DataFrame({"rank": [4, 8], "ratio": [0.5, 0.25]}).set_index("rank")
    path = tmp_path / "answers.json"
    path.write_text(json.dumps({"t": {"value": to_plain(frame)}}))
    values, notes = read_answers(path, ["t"])
    pd.testing.assert_frame_equal(values["t"], frame)
    assert notes == []


def test_grading_works_inside_a_running_event_loop(tmp_path):
    """As in a Jupyter cell, where asyncio.run() alone would refuse to start."""
    import asyncio
    import concurrent.futures

    from lora_course.classroom.grading import grade_submission
    from lora_course.classroom.submissions import load_masters

    masters = load_masters(write_master(tmp_path / "m").parent)
    (released,) = release_all([masters[0].path], tmp_path / "r")
    nb = answer(nbformat.read(released, as_version=4), SOLUTION)
    path = tmp_path / MASTER_NAME
    nbformat.write(nb, path)

    async def inside_a_loop():
        return grade_submission("x", path, [path], masters, cell_timeout=60, timeout=60)

    # in a thread of its own: this test session may itself hold a running loop (Playwright's)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        sub = pool.submit(asyncio.run, inside_a_loop()).result()
    assert sub.status == "ok", sub.message
    (result,) = sub.results.values()
    assert result.score == result.max_score > 0
