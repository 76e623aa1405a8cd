"""The points a person gives: in every maximum, recorded in NAME-review.csv, merged by `review`
and by a regrade, shown on Canvas, Moodle and Gradescope; feedback names what was not submitted."""

import csv
import io
from pathlib import Path

import pytest

from lora_course.__main__ import main
from lora_course.checks import run_checks
from lora_course.classroom.gradebook import write_outputs
from lora_course.classroom.lms import gradescope_results
from lora_course.classroom.record import read_record, record_path
from lora_course.classroom.report import item_table, report_html
from lora_course.classroom.results import NotebookRun, Submission, feedback_text
from lora_course.classroom.review import review_path

EXERCISES = ["exercise_1", "exercise_2"]
RIGHT = {"footprint_8bit": 2_916_224, "footprint_4bit": 2_129_792, "ratio": 2_916_224 / 2_129_792}
EXPLAINED = "Only the linear layers shrink; the fp32 embeddings stay."
REVIEW_ITEM = "your explanation of the ratio (read by a person)"


def _sub(name: str, written: str) -> Submission:
    run = NotebookRun(f"{name}-06_exercise_2.ipynb", "06_exercise_2")
    run.results = {"exercise_2": run_checks("exercise_2", RIGHT)}
    run.written = {"exercise_2": written}
    return Submission(name, Path(name), runs=[run], content_hash=f"hash-{name}")


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def _graded(tmp_path) -> Path:
    out = tmp_path / "gradebook.csv"
    write_outputs([_sub("ada", EXPLAINED), _sub("bob", "")], EXERCISES, out)
    return out


def test_the_maximum_holds_the_review_points_and_the_file_lists_each_answer(tmp_path):
    out = _graded(tmp_path)
    book = _rows(out)
    assert float(book[0]["exercise_2_max"]) == 5 and float(book[0]["max_total"]) == 10  # 5 + 3 + 2
    assert float(book[0]["exercise_2"]) == 3 and book[0]["needs_review"] == "True"
    rows = {r["submission"]: r for r in _rows(review_path(out))}
    assert rows["ada"]["answer"] == EXPLAINED and rows["bob"]["answer"] == "(empty)"
    assert rows["ada"]["item"] == REVIEW_ITEM and rows["ada"]["max_points"] == "2"
    page = report_html(read_record(record_path(out))[1], EXERCISES)
    assert EXPLAINED in page and "(empty)" in page  # the report shows what waits, empty marked


def test_review_points_round_trip_through_the_gradebook_and_the_platform_files(tmp_path, capsys):
    out = _graded(tmp_path)
    path = review_path(out)
    rows = _rows(path)
    for row in rows:
        row["points"], row["comment"] = ("2", "clear") if row["submission"] == "ada" else ("0", "")
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["review", str(out)]) == 0
    assert "0 submission(s) still wait" in capsys.readouterr().out
    book = {r["submission"]: r for r in _rows(out)}
    assert float(book["ada"]["exercise_2"]) == 5 and float(book["ada"]["total"]) == 5
    assert float(book["bob"]["exercise_2"]) == 3 and book["ada"]["needs_review"] == "False"
    canvas = list(csv.reader(io.StringIO((tmp_path / "gradebook-canvas.csv").read_text())))
    assert canvas[1][0] == "Points Possible" and canvas[1][-1] == "5"  # the person's points in
    assert canvas[2][-1] == "5"
    moodle = _rows(tmp_path / "gradebook-moodle.csv")
    assert moodle[0]["LoRA exercise_2"] == "5"
    feedback = (tmp_path / "gradebook-feedback" / "ada.txt").read_text()
    assert "Score: 5/10" in feedback and "Not submitted (0 points): exercise_1." in feedback
    assert "reviewed: clear" in feedback
    _, subs = read_record(record_path(out))
    data = gradescope_results(subs[0], EXERCISES)
    (test,) = [t for t in data["tests"] if t["name"].endswith(REVIEW_ITEM)]
    assert (test["score"], test["max_score"]) == (2.0, 2.0)
    # a regrade (fresh results, not reviewed) merges the same file: the points survive
    write_outputs([_sub("ada", EXPLAINED), _sub("bob", "")], EXERCISES, out)
    assert {r["submission"]: float(r["exercise_2"]) for r in _rows(out)} == {"ada": 5, "bob": 3}
    assert len(_rows(path)) == 2  # the filled rows are kept, none added twice


def test_review_points_outside_the_item_are_refused(tmp_path, capsys):
    out = _graded(tmp_path)
    path = review_path(out)
    text = path.read_text(encoding="utf-8").replace(",2,,,", ",2,3,,", 1)
    path.write_text(text, encoding="utf-8")
    assert main(["review", str(out)]) == 2
    assert "between 0 and 2" in capsys.readouterr().err


def test_on_gradescope_a_written_answer_counts_in_the_maximum_before_review():
    data = gradescope_results(_sub("ada", EXPLAINED), EXERCISES)
    assert sum(t["max_score"] for t in data["tests"]) == 10 and data["score"] == 3


def test_feedback_of_one_exercise_is_out_of_the_whole_course():
    text = feedback_text(_sub("ada", EXPLAINED), ["exercise_1", "exercise_2", "exercise_3"])
    assert "Score: 3/20" in text and "Not submitted (0 points): exercise_1, exercise_3." in text


@pytest.mark.parametrize("answer", ["=HYPERLINK(1)", "+1", "@SUM(A1)"])
def test_a_written_answer_is_not_a_spreadsheet_formula(tmp_path, answer):
    out = tmp_path / "gradebook.csv"
    write_outputs([_sub("ada", answer)], EXERCISES, out)
    assert _rows(review_path(out))[0]["answer"] == "'" + answer


def test_a_follow_on_item_is_not_counted_as_a_failure():
    wrong = {**RIGHT, "footprint_8bit": 3_000_000, "ratio": 3_000_000 / RIGHT["footprint_4bit"]}
    run = NotebookRun("x.ipynb", "06_exercise_2")
    run.results = {"exercise_2": run_checks("exercise_2", wrong)}
    items = item_table([Submission("x", Path("x"), runs=[run])], ["exercise_2"])
    ratio = items[items["item"].str.startswith("ratio")].iloc[0]
    assert (ratio["failed"], ratio["depends on the item above"]) == (0, 1)
