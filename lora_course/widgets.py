"""Interactive views for the notebooks (ipywidgets). Each returns a widget; the notebook shows
it. Every number comes from ``params`` and ``scaling``, and a static table sits beside each
widget in the notebook, so nothing is lost in a static render."""

from __future__ import annotations

from lora_course.params import lora_parameter_count
from lora_course.scaling import lora_scaling

__all__ = ["rank_alpha_summary", "rank_alpha_explorer"]


def rank_alpha_summary(rank: int, alpha: float, d: int = 4096) -> dict[str, float]:
    """What a (rank, alpha) choice means for a d x d layer: both scalings and the size."""
    params = lora_parameter_count(d, d, rank)
    return {
        "rank": rank,
        "alpha": alpha,
        "alpha/r": lora_scaling(alpha, rank),
        "alpha/sqrt(r)": lora_scaling(alpha, rank, use_rslora=True),
        "lora_params": params,
        "percent_of_weight": 100 * params / (d * d),
    }


def rank_alpha_explorer(d: int = 4096, rank: int = 8, alpha: float = 16):
    """Sliders for rank (1..256, powers of two) and alpha, with the summary as a table."""
    import ipywidgets as w
    import pandas as pd

    rank_slider = w.SelectionSlider(
        options=[2**k for k in range(9)], value=rank, description="rank r"
    )
    alpha_slider = w.IntSlider(value=alpha, min=1, max=512, description="alpha")
    out = w.Output()

    def update(_=None):
        row = rank_alpha_summary(rank_slider.value, alpha_slider.value, d)
        out.clear_output(wait=True)
        with out:
            from IPython.display import display

            display(pd.DataFrame([row]).style.hide(axis="index").format(precision=4))

    rank_slider.observe(update, names="value")
    alpha_slider.observe(update, names="value")
    update()
    return w.VBox([w.HBox([rank_slider, alpha_slider]), out])
