"""The check API and exercise 1: full marks for the reference, a hint per mistake, no crashes."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from torch import nn

from lora_course import LoRALayer, checks, count_parameters
from lora_course.checks import (
    CheckResult,
    Exercise,
    Feedback,
    check,
    exercise_ids,
    expected_answers,
    run_checks,
)
from lora_course.checks.exercise_1 import RANKS


@pytest.fixture(scope="module")
def solution() -> pd.DataFrame:
    """The notebook's reference solution, built with the package's LoRALayer."""
    rows = []
    for rank in RANKS:
        layer = LoRALayer(nn.Linear(4096, 4096), rank=rank, alpha=2 * rank)
        trainable, total = count_parameters(layer)
        rows.append(
            {"rank": rank, "trainable": trainable, "total": total, "ratio": trainable / total}
        )
    return pd.DataFrame(rows)


def test_reference_solution_gets_full_marks(solution):
    result = check("exercise_1", table=solution)
    assert (result.score, result.max_score) == (5, 5)
    assert result.passed and result.attempted and not result.needs_review
    assert str(result).splitlines()[0].startswith("exercise_1: 5/5")


def _formula_row(r: int) -> dict:
    trainable, total = 2 * 4096 * r, 4096 * 4096 + 4096 + 2 * 4096 * r
    return {"rank": r, "trainable": trainable, "total": total, "ratio": trainable / total}


def test_the_formulas_agree_with_the_package(solution):
    assert solution.to_dict("records") == [_formula_row(r) for r in RANKS]


def test_no_answer_is_importable():
    import lora_course.checks.exercise_1 as e1
    import lora_course.checks.exercise_2 as e2

    assert not hasattr(e1, "expected_row") and not hasattr(e2, "expected_values")
    for module in (e1, e2):
        assert not any("expected" in name for name in module.__all__)


def test_data_forms_a_grader_may_extract(solution):
    for form in (solution.to_dict("list"), solution.to_dict("records"), solution.set_index("rank")):
        assert run_checks("exercise_1", {"table": form}).score == 5


def _with(solution, **columns):
    frame = solution.copy()
    for name, fn in columns.items():
        frame[name] = fn(frame)
    return frame


MISTAKES = {
    "only A": (
        {"trainable": lambda f: f["rank"] * 4096, "ratio": lambda f: f["trainable"] / f["total"]},
        "only one of the two adapter matrices",
        "trainable parameters for each rank",
    ),
    "bias trainable": (
        {
            "trainable": lambda f: f["trainable"] + 4096,
            "ratio": lambda f: f["trainable"] / f["total"],
        },
        "bias as trainable",
        "trainable parameters for each rank",
    ),
    "bias forgotten": (
        {"total": lambda f: f["total"] - 4096, "ratio": lambda f: f["trainable"] / f["total"]},
        "leaves out the bias",
        "total parameters for each rank",
    ),
    "percent": ({"ratio": lambda f: 100 * f["ratio"]}, "percentage", "ratio"),
    "total without adapter": (
        {
            "total": lambda f: f["total"] - f["trainable"],
            "ratio": lambda f: f["trainable"] / f["total"],
        },
        "leaves out the adapter",
        "total parameters for each rank",
    ),
    "rounded ratio": ({"ratio": lambda f: f["ratio"].round(3)}, "unrounded", "ratio"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_gets_its_own_hint_and_a_lower_score(solution, mistake):
    columns, words, item = MISTAKES[mistake]
    result = check("exercise_1", table=_with(solution, **columns))
    assert result.score < result.max_score
    failed = {i.name: i.hint for i in result.items if not i.passed}
    hint = next(h for name, h in failed.items() if name.startswith(item))
    assert words in hint, (mistake, failed)


def test_a_counting_mistake_costs_once_and_the_ratio_depends_on_it(solution):
    """The ratio of the learner's own (wrong) columns keeps its point and says why."""
    wrong = _with(solution, **MISTAKES["only A"][0])
    result = check("exercise_1", table=wrong)
    assert result.score == 4, str(result)
    ratio = result.items[-1]
    assert ratio.status == "depends" and ratio.points == 1
    assert "[depends]" in str(result) and "depends on the item above" in ratio.hint


def test_no_hint_states_the_answer(solution):
    for columns, _, _ in MISTAKES.values():
        text = str(check("exercise_1", table=_with(solution, **columns)))
        assert "0.0039" not in text and "4096*r" not in text and "0.39" not in text


def test_hints_differ_between_mistakes(solution):
    hints = set()
    for columns, _, _ in MISTAKES.values():
        result = check("exercise_1", table=_with(solution, **columns))
        hints.add(tuple(i.hint for i in result.items))
    assert len(hints) == len(MISTAKES)


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        "a table",
        42,
        [],
        {},
        pd.DataFrame(),
        [1, 2],
        {"a": [1]},
        pd.DataFrame({"rank": ["x"]}),
    ],
    ids=repr,
)
def test_garbage_gets_feedback_not_an_exception(garbage):
    result = check("exercise_1", table=garbage)
    assert result.score == 0 and result.max_score == 5
    assert result.items[0].hint
    assert "\n" in str(result) and "<table>" in result._repr_html_()


def test_none_means_not_attempted():
    result = check("exercise_1", table=None)
    assert not result.attempted
    assert "not attempted" in str(result).splitlines()[0]
    assert check("exercise_1").to_dict() == result.to_dict()


def test_missing_column_keeps_credit_for_the_others(solution):
    result = check("exercise_1", table=solution.drop(columns="total"))
    assert result.score == 3
    assert "total" in result.items[0].hint


def test_misspelled_answer_name_is_a_note_not_an_error(solution):
    result = check("exercise_1", tabel=solution)
    assert not result.attempted and "tabel" in result.notes[0]


def test_unknown_exercise_lists_the_valid_ids():
    with pytest.raises(ValueError, match="exercise_1"):
        check("exercise_9", table=None)


def test_registry_and_declared_answers():
    assert "exercise_1" in exercise_ids()
    assert list(expected_answers("exercise_1")) == ["table"]


def test_result_round_trips_as_json(solution):
    result = check("exercise_1", table=_with(solution, ratio=lambda f: 100 * f["ratio"]))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["score"] == 4 and data["max_score"] == 5
    assert {"name", "passed", "points", "hint"} <= set(data["items"][0])
    back = CheckResult.from_dict(data)
    assert str(back) == str(result) and back.score == result.score


def test_a_crashing_check_is_reported_for_review_not_raised():
    ex = Exercise("exercise_test", title="t", answers={"x": "anything"})

    @ex.item("divides", points=2)
    def _(answers):
        return 1 / answers["x"] and None

    @ex.item("wants a positive x")
    def _(answers):
        if answers["x"] <= 0:
            raise Feedback("x must be positive")

    @ex.item("essay", points=3, review=True)
    def _(answers):
        return "3 words"

    result = ex.run({"x": 0})
    assert [i.passed for i in result.items] == [False, False, False]
    assert result.items[0].needs_review and "ZeroDivisionError" in result.items[0].hint
    assert result.items[1].hint == "x must be positive"
    # the maximum holds the 3 points a person gives; the score only what the checks gave
    assert (result.score, result.max_score, result.needs_review) == (0, 6, True)
    assert [i.scored for i in result.items] == [True, True, False]
    assert "review" in str(result)
    assert ex.run({"x": 2}).score == 3
    not_attempted = ex.run({})
    assert (not_attempted.max_score, not_attempted.needs_review) == (6, False)
    assert ex.run({"x": "text"}).max_score == 6  # a crash keeps the same maximum
    reviewed = ex.run({"x": 2}).with_review({"essay": 2}, {"essay": "one claim without a number"})
    assert (reviewed.score, reviewed.max_score, reviewed.needs_review) == (5, 6, False)
    assert "one claim without a number" in str(reviewed)
    with pytest.raises(ValueError, match="between 0 and 3"):
        ex.run({"x": 2}).with_review({"essay": 4})
    with pytest.raises(ValueError, match="no review item"):
        ex.run({"x": 2}).with_review({"divides": 1})


# What must not show above a learner's first cell in the student release (the check's formulas,
# the measured bytes, the loading call, the reference sweep's findings).
GIVEAWAYS = {
    "05_exercise_1": ["2·4096", "2 * 4096", "4096 * r", "r × 4096", "(r x 4096)", "32768",
                      "65,536"],
    "06_exercise_2": ["2916224", "2,916,224", "2129792", "2,129,792", "1.37", "1.62",
                      "quantization_config=BitsAndBytesConfig(load_in"],
    "07_exercise_3": ["at chance", "plateau", "larger than w", "s = 5", "best = 5"],
}  # fmt: skip


@pytest.mark.parametrize("stem", sorted(GIVEAWAYS))
def test_the_student_release_shows_no_answer_before_the_learners_cells(tmp_path, stem):
    import nbformat

    from lora_course.classroom.release import CODE_PLACEHOLDER, release_all

    master = Path(__file__).resolve().parents[1] / "notebooks" / f"{stem}.ipynb"
    (released,) = release_all([master], tmp_path)
    cells = nbformat.read(released, as_version=4).cells
    first = next(i for i, c in enumerate(cells) if CODE_PLACEHOLDER in c.source)
    before = "\n".join(c.source for c in cells[:first]).lower()
    shown = [g for g in GIVEAWAYS[stem] if g.lower() in before]
    assert not shown, f"{stem}: {shown} visible above the learner's first cell"
    assert not any(c.get("outputs") for c in cells if c.cell_type == "code")


def test_after_check_shows_the_reference_only_once_the_check_passes(solution):
    from lora_course.checks import NotYet, after_check, check

    checks._LAST.clear()  # a fresh kernel: no check has run
    assert isinstance(after_check("exercise_1", solution), NotYet)
    assert "has not run yet" in str(after_check("exercise_1", solution))
    check("exercise_1", table=None)
    assert "not attempted" in str(after_check("exercise_1", solution))
    partial = check("exercise_1", table=solution.drop(columns="ratio"))
    note = str(after_check("exercise_1", solution))
    assert f"{partial.score:g}/5" in note and "run this cell again" in note
    assert not re.search(r"\d{5,}", note), "the note gives a number away"
    check("exercise_1", table=solution)
    assert after_check("exercise_1", solution) is solution
    assert repr(after_check("exercise_1", "a sentence")) == "a sentence"  # shown without quotes
    with pytest.raises(ValueError, match="unknown exercise"):
        after_check("exercise_9", solution)
