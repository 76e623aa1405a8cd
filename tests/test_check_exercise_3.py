"""Exercise 3: the reference gets full marks, typed numbers are caught, garbage gets feedback."""

import pandas as pd
import pytest

from lora_course import load_model
from lora_course.checks import check
from lora_course.sweep import summarize, sweep

SETTINGS = [(4, a) for a in (0.2, 2.0, 20.0, 200.0)]  # scaling 0.05 ... 50: three decades


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    """A real, short sweep (5 steps, 16 held-out examples): cheap to re-run in the check."""
    return summarize(sweep(SETTINGS, steps=5, eval_size=16, model=load_model(device="cpu")))


def _best(results):
    return results.sort_values(["accuracy", "final_loss"], ascending=[False, True]).iloc[0]


def test_measured_table_gets_full_marks(results):
    result = check("exercise_3", results=results, best=float(_best(results)["scaling"]))
    assert (result.score, result.max_score) == (6, 6), str(result)
    assert result.passed and result.needs_review  # the written answer waits for an instructor


def test_best_as_a_dict(results):
    best = _best(results)
    result = check("exercise_3", results=results, best={"rank": 4, "alpha": best["alpha"]})
    assert result.score == 6, str(result)


def test_made_up_numbers_are_caught(results):
    fake = results.copy()
    index = _best(results).name
    fake.loc[index, "final_loss"] = fake.loc[index, "final_loss"] / 10
    result = check("exercise_3", results=fake, best=float(fake.loc[index, "scaling"]))
    item = {i.name: i for i in result.items}
    rerun = next(i for name, i in item.items() if name.startswith("the numbers were measured"))
    assert not rerun.passed and "re-running your best setting" in rerun.hint
    assert result.score == 4


def test_narrow_span_and_too_few_settings(results):
    result = check("exercise_3", results=results.iloc[:2], best=0.05)
    hints = " ".join(i.hint for i in result.items)
    assert "2 setting(s)" in hints and "span a factor of 10" in hints


def test_best_inconsistent_with_table(results):
    worst = results.sort_values(["accuracy", "final_loss"]).iloc[-1]
    fake = results.copy()
    fake["accuracy"] = [0.5, 0.5, 0.5, 0.5]
    fake.loc[worst.name, "accuracy"] = 0.9
    other = fake.drop(index=worst.name).sort_values("final_loss").iloc[-1]
    result = check("exercise_3", results=fake, best=float(other["scaling"]))
    item = next(i for i in result.items if i.name.startswith("the best setting"))
    assert not item.passed and "another setting reaches 0.90" in item.hint


@pytest.mark.parametrize(
    ("results", "hint"),
    [
        ("a table", "should be a pandas DataFrame"),
        (42, "should be a pandas DataFrame"),
        (pd.DataFrame(), "is empty"),
        (pd.DataFrame({"rank": [4], "alpha": [8]}), "missing column(s) scaling"),
        (None, "`results` is not set"),
    ],
)
def test_garbage_gets_feedback(results, hint):
    result = check("exercise_3", results=results, best=1.0)
    assert result.score == 0 and result.attempted
    assert hint in result.items[0].hint


def test_nothing_set_is_not_attempted():
    result = check("exercise_3", results=None, best=None)
    assert not result.attempted and result.score == 0 and not result.needs_review


def test_percentages_and_expensive_reruns_get_hints(results):
    pct = results.assign(accuracy=results["accuracy"] * 100 + 1)
    result = check("exercise_3", results=pct, best=float(_best(results)["scaling"]))
    assert any("not a percentage" in i.hint for i in result.items)
    long = results.assign(steps=1000)
    result = check("exercise_3", results=long, best=float(_best(results)["scaling"]))
    assert any("allows steps up to 100" in i.hint for i in result.items)
