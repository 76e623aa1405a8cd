"""Platform files against their documented formats (no platform is reachable from the tests).

Canvas: a ``Student, ID, SIS User ID, SIS Login ID, Section`` header, then assignment columns;
a ``Points Possible`` second row. Moodle: one identifier column and one column per grade item.
Gradescope: ``results.json`` with top-level ``score`` and ``tests``, each test with ``name``,
``score``, ``max_score``, ``output`` and an optional ``visibility``; a zip whose root holds
``setup.sh`` and ``run_autograder``.
"""

import csv
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from class_results import small_class
from grading_notebooks import MASTER_NAME, SOLUTION, answer, write_master

from lora_course.classroom.gradebook import gradebook
from lora_course.classroom.gradescope import build_bundle
from lora_course.classroom.lms import canvas_csv, gradescope_results, moodle_csv, read_roster
from lora_course.classroom.release import release_all

EXERCISES = ["exercise_1"]
CANVAS_HEAD = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@pytest.fixture
def book():
    return gradebook(small_class(), EXERCISES)


def test_canvas_header_points_row_and_scores(book):
    rows = _rows(canvas_csv(book, EXERCISES))
    assert rows[0] == [*CANVAS_HEAD, "LoRA exercise_1"]
    assert rows[1][0] == "Points Possible" and rows[1][-1] == "5"
    scores = {r[0]: r for r in rows[2:]}
    assert set(scores) == {"ada", "bob", "cy", "dee", "eve"}
    assert scores["ada"][-1] == "5" and scores["bob"][-1] == "4"  # "only A" costs once
    assert scores["ada"][3] == "ada"  # without a roster the folder name is the SIS Login ID


def test_canvas_and_moodle_use_the_roster(tmp_path, book):
    roster = tmp_path / "roster.csv"
    lines = ["submission,name,canvas_id,sis_login_id,section,email"]
    lines += [f"{n},Learner {n},{100 + k},{n}@uni,S1,{n}@uni.example" for k, n in
              enumerate(["ada", "bob", "cy", "dee", "eve"])]  # fmt: skip
    roster.write_text("\n".join(lines) + "\n")
    table = read_roster(roster)
    canvas = {r[0]: r for r in _rows(canvas_csv(book, EXERCISES, table))[2:]}
    assert canvas["Learner ada"][:5] == ["Learner ada", "100", "", "ada@uni", "S1"]
    moodle = _rows(moodle_csv(book, EXERCISES, table))
    assert moodle[0] == ["Email address", "LoRA exercise_1"]
    assert ["bob@uni.example", "4"] in moodle


def test_roster_must_cover_every_submission(tmp_path, book):
    roster = tmp_path / "roster.csv"
    roster.write_text("submission,email\nada,a@x\n")
    with pytest.raises(ValueError, match="no row for"):
        canvas_csv(book, EXERCISES, read_roster(roster))
    roster.write_text("learner,email\nada,a@x\n")
    with pytest.raises(ValueError, match="'submission'"):
        read_roster(roster)


def test_moodle_without_roster_identifies_by_username(book):
    rows = _rows(moodle_csv(book, EXERCISES))
    assert rows[0] == ["Username", "LoRA exercise_1"]
    assert len(rows) == 1 + len(book)  # no points row: Moodle takes maxima from the grade item


def _check_results_schema(data: dict) -> None:
    assert isinstance(data["score"], float)
    assert isinstance(data["tests"], list) and data["tests"]
    for test in data["tests"]:
        assert set(test) <= {"name", "score", "max_score", "output", "visibility"}
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        assert isinstance(test["score"], float) and isinstance(test["max_score"], float)
        assert test["visibility"] in VISIBILITY
    json.dumps(data)  # plain JSON


def test_gradescope_results_one_test_per_item_with_its_hint():
    subs = {s.name: s for s in small_class()}
    data = gradescope_results(subs["bob"], EXERCISES, seconds=12.5)
    _check_results_schema(data)
    items = subs["bob"].results["exercise_1"].items
    assert [t["name"] for t in data["tests"]] == [f"exercise_1: {i.name}" for i in items]
    assert data["score"] == sum(t["score"] for t in data["tests"]) == 4
    failed = [t for t, i in zip(data["tests"], items, strict=True) if not i.passed]
    assert [t["output"] for t in failed] == [i.hint for i in items if not i.passed]
    empty = gradescope_results(None, EXERCISES)
    _check_results_schema(empty)
    assert empty["score"] == 0 and "No exercise notebook" in empty["output"]


@pytest.mark.slow
def test_gradescope_bundle_runs_as_gradescope_would(tmp_path):
    """Unzip as /autograder/source, run run_autograder on a submission, read results.json."""
    masters = write_master(tmp_path / "masters").parent
    bundle = build_bundle(tmp_path / "autograder.zip", [masters / MASTER_NAME])
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
        assert {"setup.sh", "run_autograder"} <= set(names)
        mode = zf.getinfo("run_autograder").external_attr >> 16
        assert mode & stat.S_IXUSR
        zf.extractall(root / "source")
    assert f"notebooks/{MASTER_NAME}" in names and "lora_course/classroom/grading.py" in names
    assert any(n.startswith("data/tiny-llama/") for n in names)
    (released,) = release_all([masters / MASTER_NAME], tmp_path / "release")
    (root / "submission").mkdir()
    nb = answer(nbformat.read(released, as_version=4), SOLUTION)
    nbformat.write(nb, root / "submission" / MASTER_NAME)
    script = root / "source" / "run_autograder"
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)  # the bundle's own copy of the package must do
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((root / "results" / "results.json").read_text())
    _check_results_schema(data)
    assert data["score"] == 5 and all(t["output"] == "passed" for t in data["tests"])
    assert Path(root / "source" / "lora_course").is_dir()
