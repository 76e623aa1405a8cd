"""The scaling sweep: tidy columns, one fresh base per run, divergence reported, not raised."""

import math

import pytest
import torch

from lora_course import add_lora, load_model, load_task
from lora_course.sweep import (
    HISTORY_COLUMNS,
    SUMMARY_COLUMNS,
    lora_run,
    loss_spike,
    normalise_settings,
    relative_update,
    summarize,
    sweep,
)


@pytest.fixture(scope="module")
def tiny():
    return load_model(device="cpu")


@pytest.fixture(scope="module")
def history(tiny):
    settings = [(2, 1.0), {"rank": 1, "alpha": 3e38}]  # the second overflows float32
    return sweep(settings, steps=3, eval_size=8, model=tiny)


def test_sweep_has_the_documented_columns(history):
    assert list(history.columns) == ["run", *HISTORY_COLUMNS, "seconds", "run_seconds"]
    summary = summarize(history)
    assert list(summary.columns) == ["run", *SUMMARY_COLUMNS]
    assert len(summary) == 2
    first = summary.iloc[0]
    assert (first["rank"], first["alpha"], first["scaling"]) == (2, 1.0, 0.5)
    assert (first["steps"], first["batch_size"], first["eval_size"]) == (3, 8, 8)
    assert 0.0 <= first["accuracy"] <= 1.0
    assert not first["diverged"] and math.isfinite(first["final_loss"])


def test_huge_scaling_is_reported_as_diverged_not_raised(history):
    last = summarize(history).iloc[1]
    assert bool(last["diverged"]) and last["accuracy"] == 0.0
    assert math.isinf(last["spike"])


def test_base_model_is_not_changed(tiny):
    base, tokenizer = tiny
    before = {k: v.clone() for k, v in base.state_dict().items()}
    lora_run(base, tokenizer, load_task("train"), load_task("test")[:4], (2, 4), steps=1)
    after = base.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_scaled_init_and_lr_train_exactly_like_the_original(tiny):
    """LoRA section 4.1 under Adam: (s, lr, A) == (4 s, lr / 2, A / 2) up to rounding."""
    base, tokenizer = tiny
    train, test = load_task("train"), load_task("test")[:4]
    h1, _ = lora_run(base, tokenizer, train, test, {"rank": 2, "alpha": 4}, steps=4)
    setting = {"rank": 2, "alpha": 16, "lr": 1.5e-3, "init_scale": 0.5}
    h2, _ = lora_run(base, tokenizer, train, test, setting, steps=4)
    torch.testing.assert_close(
        torch.tensor(h1["loss"].tolist()), torch.tensor(h2["loss"].tolist()), rtol=1e-4, atol=1e-4
    )


def test_relative_update_is_zero_before_training(tiny):
    import copy

    model = add_lora(copy.deepcopy(tiny[0]), "all-linear", rank=2, alpha=4)
    assert relative_update(model) == 0.0
    with pytest.raises(ValueError, match="no LoRA layers"):
        relative_update(tiny[0])


def test_loss_spike():
    assert loss_spike([3.0, 2.0, 1.0]) == 1.0
    assert loss_spike([3.0, 1.0, 2.5, 0.5]) == 2.5
    assert math.isinf(loss_spike([1.0, float("nan")]))


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ([(8,)], "pair or a dict"),
        ([{"rank": 8}], "needs a rank and an alpha"),
        ([{"rank": 8, "alpha": 16, "beta": 1}], "unknown key"),
        ([(0, 16)], "rank must be a positive integer"),
        ([(8, -1)], "alpha must be a positive number"),
        ([{"rank": 8, "alpha": 16, "lr": 0}], "lr must be a positive number"),
        ([], "settings is empty"),
        ((8, 16), "pair or a dict"),
        ("8,16", "list of"),
    ],
)
def test_bad_settings_name_the_problem(settings, match):
    with pytest.raises(ValueError, match=match):
        normalise_settings(settings)


def test_summarize_wants_a_sweep_history():
    import pandas as pd

    with pytest.raises(ValueError, match="sweep"):
        summarize(pd.DataFrame({"step": [1], "loss": [1.0]}))
