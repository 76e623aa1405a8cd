"""Exercise 2's check: the measured solution passes, each common slip gets its own hint."""

import pytest

from lora_course.checks import check, expected_answers, run_checks
from lora_course.checks.exercise_2 import expected_values

REF = expected_values()
SOLUTION = {
    "footprint_8bit": REF["footprint_8bit"],
    "footprint_4bit": REF["footprint_4bit"],
    "ratio": REF["footprint_8bit"] / REF["footprint_4bit"],
}


def item(result, start):
    (found,) = [i for i in result.items if i.name.startswith(start)]
    return found


def test_the_calculator_values_are_the_measured_ones():
    # measured with transformers 5.24 / bitsandbytes 0.50.2 on CPU; tests/test_memory.py
    # loads the model and compares, this pins the figures the notebook quotes
    assert (REF["footprint_8bit"], REF["footprint_4bit"]) == (2_916_224, 2_129_792)
    assert REF["fp32"] == 7_634_816


def test_the_solution_gets_full_marks_and_asks_for_review():
    result = check("exercise_2", **SOLUTION)
    assert (result.score, result.max_score) == (3, 3)
    assert result.attempted and result.needs_review
    assert expected_answers("exercise_2").keys() == SOLUTION.keys()


def test_a_ratio_rounded_to_two_decimals_passes():
    assert check("exercise_2", **{**SOLUTION, "ratio": 1.37}).score == 3


def test_json_forms_a_grader_extracts():
    assert run_checks("exercise_2", {**SOLUTION, "footprint_8bit": "2916224"}).score == 3


SLIPS = {
    "MB": ({"footprint_8bit": REF["footprint_8bit"] / 1e6}, "footprint_8bit", "decimal MB"),
    "MiB": ({"footprint_4bit": round(REF["footprint_4bit"] / 2**20, 2)}, "footprint_4bit", "MiB"),
    "16-bit kept layers": (
        {"footprint_8bit": REF["int8_16bit"], "footprint_4bit": REF["nf4_16bit"]},
        "footprint_8bit",
        "non-quantized layers in 16-bit",
    ),
    "16-bit ratio": (
        {"ratio": REF["int8_16bit"] / REF["nf4_16bit"]},
        "ratio",
        "non-quantized layers in 16-bit",
    ),
    "half of 8-bit": ({"ratio": 2.0}, "ratio", "not 2 for this model"),
    "4-bit as half": ({"footprint_4bit": REF["footprint_8bit"] / 2}, "footprint_4bit", "half"),
    "upside down": ({"ratio": REF["footprint_4bit"] / REF["footprint_8bit"]}, "ratio", "upside"),
    "percentage": ({"ratio": 100 * SOLUTION["ratio"]}, "ratio", "percentage"),
    "fp32 vs 4-bit": ({"ratio": REF["fp32"] / REF["footprint_4bit"]}, "ratio", "fp32 model"),
    "fp16 vs 4-bit": ({"ratio": REF["bf16"] / REF["footprint_4bit"]}, "ratio", "16-bit model"),
    "unquantized": ({"footprint_8bit": REF["fp32"]}, "footprint_8bit", "unquantized"),
    "swapped": (
        {"footprint_8bit": REF["footprint_4bit"], "footprint_4bit": REF["footprint_8bit"]},
        "footprint_8bit",
        "swapped",
    ),
    "lesson arithmetic": (
        {"footprint_8bit": REF["parameters"]},
        "footprint_8bit",
        "lesson's arithmetic",
    ),
}


@pytest.mark.parametrize("slip", SLIPS)
def test_each_slip_gets_its_hint(slip):
    change, name, hint = SLIPS[slip]
    result = check("exercise_2", **{**SOLUTION, **change})
    failed = item(result, name)
    assert not failed.passed and hint in failed.hint, failed.hint
    assert result.score < 3


def test_a_ratio_from_wrong_footprints_points_back_at_them():
    wrong = {"footprint_8bit": 3_000_000, "footprint_4bit": 2_000_000, "ratio": 1.5}
    result = check("exercise_2", **wrong)
    assert "follows your footprints" in item(result, "ratio").hint
    assert "should be model.get_memory_footprint()" in item(result, "footprint_8bit").hint


@pytest.mark.parametrize(
    "garbage",
    [
        {"footprint_8bit": "a lot", "footprint_4bit": [1, 2], "ratio": {"x": 1}},
        {"footprint_8bit": float("nan"), "footprint_4bit": -1, "ratio": 0},
        {"footprint_8bit": True, "footprint_4bit": None, "ratio": "1.37x"},
    ],
)
def test_garbage_gets_feedback_not_an_exception(garbage):
    result = check("exercise_2", **garbage)
    assert result.score == 0 and result.attempted
    assert all(i.hint for i in result.items if i.scored and not i.passed)
    assert not any("checker could not" in i.hint for i in result.items)


def test_nothing_set_is_not_attempted():
    result = check("exercise_2", footprint_8bit=None, footprint_4bit=None, ratio=None)
    assert not result.attempted and result.score == 0
    assert "not attempted" in str(result)
