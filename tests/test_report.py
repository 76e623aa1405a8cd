"""The class report (one offline page) and the generated demo class it is shown on."""

import base64
import re

import pandas as pd
import pytest
from class_results import small_class, submission, table
from grading_notebooks import write_master

from lora_course.__main__ import main
from lora_course.checks import CheckItem, CheckResult, run_checks
from lora_course.classroom.classgen import KINDS, generate_class
from lora_course.classroom.report import item_table, report_html, review_table

EXERCISES = ["exercise_1"]


def test_item_table_counts_each_outcome_and_the_commonest_hint():
    subs = small_class()  # ada right, bob and cy "only A", dee blank, eve's kernel died
    items = item_table(subs, EXERCISES)
    wrong = run_checks("exercise_1", {"table": table(only_a=True)}).items
    assert len(items) == len(wrong)
    for row, item in zip(items.to_dict("records"), wrong, strict=True):
        counts = (row["passed"], row["failed"], row["not attempted"], row["review"])
        if item.depends:  # the ratio of their own wrong columns: counted once, not as a failure
            assert counts == (1, 0, 2, 0) and row["depends on the item above"] == 2
        elif item.passed:
            assert counts == (3, 0, 2, 0) and row["common failures"] == []
        else:
            assert counts == (1, 2, 2, 0)
            assert row["common failures"] == [(item.hint, 2)]  # the misconception, counted


def test_review_table_lists_the_answers_waiting_for_an_instructor():
    waiting = submission("fay", table())
    result = waiting.runs[0].results["exercise_1"]
    item = CheckItem("why is the ratio small?", False, 0, 1, "", True, scored=False)
    waiting.runs[0].results["exercise_1"] = CheckResult(
        result.exercise_id, result.title, (*result.items, item)
    )
    frame = review_table([*small_class(), waiting])
    assert frame.to_dict("records") == [
        {
            "submission": "fay",
            "exercise": "exercise_1",
            "items": "why is the ratio small?",
            "written answer": "(empty)",  # nothing written: marked, not shown as an answer
        }
    ]


def test_report_is_one_offline_page_with_its_plot_inside():
    page = report_html(small_class(), EXERCISES, title="Week 19")
    assert page.startswith("<!DOCTYPE html>") and "<title>Week 19</title>" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 1 and base64.b64decode(images[0])[:4] == b"\x89PNG"
    assert "5 submissions: 1 kernel died, 4 ok." in page
    assert "eve" in page.split("did not run cleanly")[1]
    hint = run_checks("exercise_1", {"table": table(only_a=True)}).items[2].hint
    assert f"<b>2&times;</b> {hint.split('(')[0]}" in page


@pytest.mark.slow
def test_demo_class_grades_as_its_kinds_say(tmp_path):
    """Every kind of the generator on one synthetic master, graded in the sandbox."""
    masters = write_master(tmp_path / "masters").parent
    kinds = generate_class(masters, tmp_path / "class", size=len(KINDS))
    assert sorted(kinds.values()) == sorted(KINDS)
    out = tmp_path / "out" / "gradebook.csv"
    args = ["grade", str(tmp_path / "class"), "--out", str(out), "--masters", str(masters)]
    assert main([*args, "--jobs", "2", "--timeout", "60"]) == 0
    book = pd.read_csv(out).set_index("submission")
    got = {kinds[name]: (row.status, row.total) for name, row in book.iterrows()}
    assert got["full"] == got["mixed"] == ("ok", 5)  # one master: mixed is its full answer
    assert got["blank"] == got["missing"] == ("ok", 0)
    assert got["partial"][0] == "ok" and 0 < got["partial"][1] < 5
    assert got["corrupt"] == ("not a notebook", 0)
    assert got["crash"] == ("kernel died", 0)
    page = (out.parent / "gradebook-report.html").read_text()
    assert f"{len(KINDS)} submissions" in page
    assert (out.parent / "gradebook-canvas.csv").read_text().count("\n") == len(KINDS) + 2
