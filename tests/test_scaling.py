"""alpha / rank vs rsLoRA's alpha / sqrt(rank)."""

import math

import pytest
from torch import nn

from lora_course import LoRALayer
from lora_course.plots import plot_scaling
from lora_course.scaling import lora_scaling, scaling_table


def test_scaling_matches_lora_layer():
    for rank, alpha, rslora in [(8, 16, False), (64, 16, True), (3, 7.5, True)]:
        layer = LoRALayer(nn.Linear(80, 80), rank=rank, alpha=alpha, use_rslora=rslora)
        assert lora_scaling(alpha, rank, use_rslora=rslora) == layer.scaling


def test_fixed_alpha_table():
    table = scaling_table(ranks=(1, 4, 16, 64), alpha=16)
    assert table["alpha/r"].tolist() == [16.0, 4.0, 1.0, 0.25]
    assert table["alpha/sqrt(r)"].tolist() == [16.0, 8.0, 4.0, 2.0]


def test_alpha_twice_rank_keeps_alpha_over_r_constant():
    ranks = [4, 8, 16, 64]
    table = scaling_table(ranks, alpha=[2 * r for r in ranks])
    assert table["alpha/r"].tolist() == [2.0] * 4
    assert table["alpha/sqrt(r)"].tolist() == pytest.approx([2 * math.sqrt(r) for r in ranks])


@pytest.mark.parametrize(
    "alpha, rank, match", [(16, 0, "rank"), (0, 8, "alpha"), (16, 2.5, "rank")]
)
def test_bad_input_names_the_argument(alpha, rank, match):
    with pytest.raises(ValueError, match=match):
        lora_scaling(alpha, rank)


def test_alpha_list_must_match_ranks():
    with pytest.raises(ValueError, match="one per rank"):
        scaling_table(ranks=(1, 2), alpha=[1, 2, 3])


def test_plot_has_both_lines_and_log_axes():
    fig = plot_scaling(scaling_table())
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None


def test_widget_summary_and_explorer():
    from lora_course.widgets import rank_alpha_explorer, rank_alpha_summary

    row = rank_alpha_summary(8, 16, d=4096)
    assert (row["alpha/r"], row["lora_params"], row["percent_of_weight"]) == (2.0, 65_536, 0.390625)
    box = rank_alpha_explorer(d=4096, rank=8, alpha=16)
    rank_slider, alpha_slider = box.children[0].children
    rank_slider.value = 64  # moving a slider re-renders without error
    assert (rank_slider.value, alpha_slider.value) == (64, 16)


def test_trainable_percent_plot_has_a_bar_per_target_and_rank():
    import pandas as pd

    from lora_course.plots import plot_trainable_percent

    table = pd.DataFrame(
        {
            "model": ["m"] * 4,
            "targets": ["q+v", "q+v", "all", "all"],
            "rank": [8, 64, 8, 64],
            "percent": [0.04, 0.3, 0.26, 2.0],
        }
    )
    ax = plot_trainable_percent(table).axes[0]
    assert len(ax.patches) == 4 and ax.get_legend() is not None
    # a linear axis from 0: the r = 64 bar is 50x the q+v r = 8 bar, as the numbers are
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights[-1] / heights[0] == pytest.approx(2.0 / 0.04)
