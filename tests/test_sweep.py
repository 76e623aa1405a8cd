"""The scaling sweep: tidy columns, one fresh base per run, divergence reported, not raised."""

import math
import os

import pandas as pd
import pytest
import torch

from lora_course import add_lora, load_model, load_task
from lora_course.machinery.parallel import run_all
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


def test_seeds_run_every_setting_once_per_seed_and_spread_pools_them(tiny):
    from lora_course.sweep import seed_spread

    history = sweep([(2, 2.0), (4, 4.0)], steps=2, eval_size=4, model=tiny, seeds=(0, 1))
    summary = summarize(history)
    assert summary[["rank", "seed"]].values.tolist() == [[2, 0], [2, 1], [4, 0], [4, 1]]
    assert summary["run"].str.endswith(" seed=1").sum() == 2
    # another seed is another adapter initialisation and batch order: another loss
    assert summary["final_loss"].iloc[0] != summary["final_loss"].iloc[1]
    spread = seed_spread(summary)
    assert spread["rank"].tolist() == [2, 4] and spread["seeds"].tolist() == [2, 2]
    first = summary[summary["rank"] == 2]["mean_loss"]
    row = spread.iloc[0]
    assert row["mean_loss_mean"] == pytest.approx(first.mean())
    assert row["mean_loss_std"] == pytest.approx(first.std())
    assert (row["mean_loss_min"], row["mean_loss_max"]) == (first.min(), first.max())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seeds": (0, 1), "seed": 3}, "seed or seeds"),
        ({"seeds": 3}, "list of integers"),
        ({"seeds": ()}, "non-empty"),
        ({"seeds": (1, 1)}, "must not repeat"),
    ],
)
def test_bad_seeds_name_the_problem(tiny, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sweep([(2, 2.0)], steps=1, eval_size=2, model=tiny, **kwargs)


def test_seed_spread_wants_a_summary():
    import pandas as pd

    from lora_course.sweep import seed_spread

    with pytest.raises(ValueError, match="summarize"):
        seed_spread(pd.DataFrame({"rank": [1], "mean_loss": [1.0]}))


def test_chance_accuracy_is_the_most_common_answers_share():
    from collections import Counter

    from lora_course.sweep import chance_accuracy

    answers = [ex["answer"] for ex in load_task("test")[:100]]
    assert chance_accuracy(100) == max(Counter(answers).values()) / 100
    assert 0.5 <= chance_accuracy(None) < 1.0  # two answers: the larger share is at least half
    with pytest.raises(ValueError, match="eval_size"):
        chance_accuracy(0)


def test_sweep_and_rank_plots_read_at_a_glance():
    import pandas as pd

    from lora_course.plots import plot_rank_sweep, plot_sweep

    summary = pd.DataFrame(
        {
            "scaling": [0.1, 1.0, 10.0],
            "final_loss": [2.0, 0.3, 0.5],
            "accuracy": [0.0, 1.0, 0.5],
            "diverged": [False, False, True],
        }
    )
    fig = plot_sweep(summary, chance=0.54)
    left, right = fig.axes
    assert left.get_xscale() == "log" and right.get_ylim() == (-0.05, 1.05)
    legend = left.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "final loss", "diverged", "held-out accuracy", "chance (0.54)"
    ]  # fmt: skip
    assert legend.get_bbox_to_anchor().y0 >= left.bbox.y1 - 1  # above the data, not over it
    ranks = pd.DataFrame(
        {
            "rank": [4, 4, 64, 64],
            "seed": [0, 1, 0, 1],
            "mean_loss": [1.0, 1.2, 0.8, 1.0],
            "what": ["fixed s"] * 4,
        }
    )
    ax = plot_rank_sweep(ranks, y="mean_loss", group="what").axes[0]
    assert ax.get_xscale() == "log" and ax.get_ylim()[0] == 0
    line = ax.lines[0]
    assert line.get_ydata().tolist() == pytest.approx([1.1, 0.9])  # the mean over seeds
    assert line.get_linestyle() == "None"  # no line over rank 16, where nothing was run
    assert ax.get_xticks().tolist() == [4, 64]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["fixed s"]


def test_the_sweep_plot_shows_seed_means_and_keeps_chance_behind_the_points():
    import pandas as pd

    from lora_course.plots import plot_sweep

    summary = pd.DataFrame(
        {
            "scaling": [1.0, 1.0, 1.0, 10.0, 10.0, 10.0],
            "final_loss": [0.3, 0.4, 0.5, 0.4, 0.4, 0.4],
            "accuracy": [0.9, 1.0, 0.8, 0.54, 0.54, 0.54],
            "diverged": [False] * 6,
        }
    )
    left, right = plot_sweep(summary, chance=0.54).axes
    loss, accuracy = left.lines[0], next(ln for ln in right.lines if ln.get_marker() == "s")
    assert loss.get_ydata().tolist() == pytest.approx([0.4, 0.4])  # one point per scaling
    assert loss.get_linestyle() == accuracy.get_linestyle() == "None"  # no line between points
    assert accuracy.get_ydata().tolist() == pytest.approx([0.9, 0.54])
    chance = next(ln for ln in right.lines if ln.get_label().startswith("chance"))
    assert chance.get_zorder() < accuracy.get_zorder()  # a point at chance is drawn over it
    assert chance.get_color() != accuracy.get_color()


def test_coinciding_loss_lines_stay_apart_and_seeds_average():
    import pandas as pd

    from lora_course.plots import plot_loss

    steps = [1, 2, 3]
    same = pd.DataFrame(
        {"step": steps * 2, "loss": [3.0, 2.0, 1.0] * 2, "run": ["a"] * 3 + ["b"] * 3}
    )
    ax = plot_loss(same, label_column="run").axes[0]
    first, second = ax.lines
    assert first.get_ydata().tolist() == second.get_ydata().tolist()  # the same run twice
    assert first.get_linestyle() != second.get_linestyle()  # yet both lines show:
    assert first.get_linewidth() > second.get_linewidth()  # a thinner dashed one on a wider one
    seeds = pd.DataFrame(
        {"step": steps * 2, "loss": [3.0, 2.0, 1.0, 5.0, 4.0, 3.0], "seed": [0] * 3 + [1] * 3,
         "scaling": [2.0] * 6}
    )  # fmt: skip
    ax = plot_loss(seeds, label_column="scaling").axes[0]
    assert ax.lines[0].get_ydata().tolist() == pytest.approx([4.0, 3.0, 2.0])  # mean per step
    assert len(ax.collections) == 1  # the band from the lowest to the highest seed


def test_runs_table_writes_lr_exactly():
    import pandas as pd

    from lora_course.sweep import runs_table

    summary = pd.DataFrame({"lr": [0.00075, 0.0015, 3e-3], "final_loss": [0.12345, 1.0, 2.0]})
    table = runs_table(summary, columns=("lr", "final_loss"))
    assert table["lr"].tolist() == ["0.00075", "0.0015", "0.003"]
    assert table["final_loss"].tolist() == [0.123, 1.0, 2.0]
    with pytest.raises(ValueError, match="not in the summary"):
        runs_table(summary, columns=("lr", "accuracy"))


def test_runs_side_by_side_equal_runs_one_at_a_time(tiny, one_torch_thread):
    """jobs=2 forks one process per run pair: the same numbers, in the same order, and on_run
    sees each run in order."""
    settings = [(2, 4), (4, 8), (8, 16)]
    seen = []
    one = sweep(settings, steps=3, eval_size=8, model=tiny, jobs=1)
    two = sweep(settings, steps=3, eval_size=8, model=tiny, jobs=2, on_run=seen.append)
    timing = ["seconds", "run_seconds"]
    pd.testing.assert_frame_equal(one.drop(columns=timing), two.drop(columns=timing))
    assert [h["run"].iloc[0] for h in seen] == list(one["run"].unique())


def test_run_all_keeps_the_order_and_raises_a_runs_own_error():
    assert run_all(lambda i: (i, os.getpid()), 1, jobs=2)[0][1] == os.getpid()  # one run: here
    results = run_all(lambda i: (i * 10, os.getpid()), 5, jobs=2)
    assert [value for value, _ in results] == [0, 10, 20, 30, 40]
    assert os.getpid() not in {pid for _, pid in results}  # each ran in a forked process

    def task(index):
        if index == 1:
            raise ValueError(f"run {index} failed")
        return index

    with pytest.raises(ValueError, match="run 1 failed"):
        run_all(task, 3, jobs=2)


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True, "2"])
def test_bad_jobs_name_the_argument(jobs):
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        run_all(lambda i: i, 2, jobs=jobs)


def test_without_a_process_pool_the_runs_go_one_at_a_time(monkeypatch):
    import lora_course.machinery.parallel as parallel

    def no_pool(*args, **kwargs):
        raise OSError("no /dev/shm")

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", no_pool)
    results = run_all(lambda i: (i, os.getpid()), 3, jobs=2)
    assert results == [(0, os.getpid()), (1, os.getpid()), (2, os.getpid())]


def test_a_run_whose_process_dies_is_named_with_the_fix():
    with pytest.raises(RuntimeError, match="jobs=1 runs them one at a time"):
        run_all(lambda i: os._exit(1), 2, jobs=2)
