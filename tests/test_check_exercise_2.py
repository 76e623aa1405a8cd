"""Exercise 2's check: the measured solution passes, each common slip gets its own hint."""

import pytest
import torch

from lora_course.checks import check, expected_answers, run_checks
from lora_course.checks.exercise_2 import _bytes_of
from lora_course.memory import weight_footprint
from lora_course.models import TINY_MODEL_DIR

REF = _bytes_of()
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
    assert (result.score, result.max_score) == (3, 5)  # 2 more after a person reads it
    assert result.attempted and result.needs_review and result.passed
    assert expected_answers("exercise_2").keys() == {"model", *SOLUTION}


def test_the_tiny_model_by_path_is_priced_like_the_default():
    assert _bytes_of(str(TINY_MODEL_DIR)) == REF
    assert check("exercise_2", model=str(TINY_MODEL_DIR), **SOLUTION).score == 3
    assert check("exercise_2", model="/elsewhere/data/tiny-llama", **SOLUTION).score == 3


def test_a_gpu_learner_measuring_the_lessons_model_is_priced_for_its_architecture():
    """LORA_COURSE_MODEL=meta-llama/Llama-3.1-8B-Instruct: the shipped Llama-3.1-8B config,
    non-quantized layers in the checkpoint's bf16 (what from_pretrained keeps without dtype=)."""
    model = "meta-llama/Llama-3.1-8B-Instruct"
    int8 = weight_footprint("Llama-3.1-8B", "int8", keep_dtype=torch.bfloat16).footprint_bytes
    nf4 = weight_footprint("Llama-3.1-8B", "nf4", keep_dtype=torch.bfloat16).footprint_bytes
    answers = {"footprint_8bit": int8, "footprint_4bit": nf4, "ratio": int8 / nf4}
    result = check("exercise_2", model=model, **answers)
    assert (result.score, result.max_score) == (3, 5), str(result)
    assert round(int8 / nf4, 2) == 1.62
    tiny_answers = check("exercise_2", model=model, **SOLUTION)
    # the tiny model's bytes are not the 8B model's; their ratio depends on them (counted once)
    assert tiny_answers.score == 1 and item(tiny_answers, "ratio").status == "depends"
    slip = check("exercise_2", model=model, **{**answers, "footprint_8bit": int8 / 1e9})
    assert "decimal MB" not in str(slip) and "GB (bytes / 1e9)" in str(slip)


def test_a_model_the_checker_cannot_price_gets_feedback():
    result = check("exercise_2", model="someone/unknown-model", **SOLUTION)
    assert result.score == 0 and "cannot price 'someone/unknown-model'" in str(result)


def test_the_model_alone_is_not_an_attempt():
    """The release sets MODEL in its setup cell; the learner's answers are still None."""
    result = check(
        "exercise_2", model=str(TINY_MODEL_DIR), footprint_8bit=None, footprint_4bit=None,
        ratio=None,
    )  # fmt: skip
    assert not result.attempted and "not attempted" in str(result)


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
    ratio = item(result, "ratio")  # one mistake, counted once: the ratio keeps its point
    assert ratio.status == "depends" and ratio.points == 1
    assert "depends on the item above" in ratio.hint and result.score == 1
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
