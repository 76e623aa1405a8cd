"""Every figure the notebooks draw, in one shared style that reads on a projector.

Each function takes data (DataFrames, tensors) and returns a matplotlib ``Figure``; the notebook
displays it. Nothing here computes a claim: the numbers come from the other modules.
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import torch

__all__ = [
    "COURSE_STYLE",
    "use_course_style",
    "plot_loss",
    "plot_singular_values",
    "plot_scaling",
    "plot_trainable_percent",
    "plot_nf4_code_book",
    "plot_memory_comparison",
    "plot_sweep",
    "plot_rank_sweep",
    "plot_training_memory",
]

COURSE_STYLE = {
    "figure.figsize": (8.0, 4.5),  # 16:9, the shape of a slide
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 13,
    "axes.titlesize": 15,
    "axes.labelsize": 13,
    "legend.fontsize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 2.2,
}


def use_course_style() -> None:
    """Apply the course's matplotlib style (large fonts, 16:9 figures, light grid)."""
    mpl.rcParams.update(COURSE_STYLE)


def _new_axes(title: str, xlabel: str, ylabel: str):
    with mpl.rc_context(COURSE_STYLE):
        fig, ax = plt.subplots()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig, ax


def plot_loss(history, title: str = "Training loss", log: bool = True, label_column=None):
    """Loss against step from a DataFrame with ``step`` and ``loss`` columns.

    With ``label_column``, one line per value of that column (e.g. one per run).
    """
    fig, ax = _new_axes(title, "step", "loss")
    if label_column is None:
        ax.plot(history["step"], history["loss"])
    else:
        for label, part in history.groupby(label_column, sort=False):
            name = label if label_column == "run" else f"{label_column}={label}"
            ax.plot(part["step"], part["loss"], label=name)
        ax.legend()
    if log:
        ax.set_yscale("log")
    fig.tight_layout()
    plt.close(fig)  # the notebook shows the returned figure once, not twice
    return fig


def plot_singular_values(weights: dict[str, torch.Tensor], rank: int | None = None, top: int = 16):
    """The largest singular values of each matrix in ``weights`` (name -> 2-D tensor).

    A product B @ A with inner dimension r has at most r non-zero singular values; ``rank``
    draws that boundary.
    """
    fig, ax = _new_axes("Singular values", "index", "singular value")
    for i, (name, w) in enumerate(weights.items()):
        s = torch.linalg.svdvals(w.detach().float().cpu())[:top]
        ax.bar(
            torch.arange(len(s)) + 0.8 * i / len(weights), s, width=0.8 / len(weights), label=name
        )
    if rank is not None:
        # the gap after bar group ``rank - 1``: groups span [i - w/2, i + 0.8 - w/2]
        gap = rank - 1 + 0.9 - 0.4 / len(weights)
        ax.axvline(gap, color="black", linestyle="--", label=f"at most r = {rank} non-zero")
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_scaling(table, title: str | None = None):
    """``alpha/r`` and ``alpha/sqrt(r)`` against rank, log-log, from ``scaling.scaling_table``."""
    alphas = sorted(set(table["alpha"]))
    if title is None:
        title = f"Scaling at alpha = {alphas[0]:g}" if len(alphas) == 1 else "Scaling by rank"
    fig, ax = _new_axes(title, "rank r", "scaling factor")
    ax.plot(table["rank"], table["alpha/r"], marker="o", label="alpha / r (LoRA)")
    ax.plot(table["rank"], table["alpha/sqrt(r)"], marker="s", label="alpha / sqrt(r) (rsLoRA)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    plain = mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}")  # 16, not 2^4
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_formatter(plain)
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_trainable_percent(table, title: str | None = None):
    """Grouped bars: percent of the model trained per target set (x) and rank (one bar each),
    from ``params.lora_target_table``; log scale, each bar labelled with its percentage."""
    model = table["model"].iloc[0]
    fig, ax = _new_axes(title or f"{model}: share of parameters LoRA trains", "", "percent")
    targets = list(dict.fromkeys(table["targets"]))
    ranks = list(dict.fromkeys(table["rank"]))
    width = 0.8 / len(ranks)
    for k, rank in enumerate(ranks):
        part = table[table["rank"] == rank].set_index("targets").loc[targets]
        xs = [i + (k - (len(ranks) - 1) / 2) * width for i in range(len(targets))]
        bars = ax.bar(xs, part["percent"], width=width, label=f"r = {rank}")
        ax.bar_label(bars, labels=[f"{v:.3g} %" for v in part["percent"]], fontsize=9)
    ax.set_xticks(range(len(targets)), targets)
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_nf4_code_book(code: torch.Tensor, sigma: float | None = None):
    """The 16 NF4 values as vertical lines over the standard normal density.

    The code values live on [-1, 1]; ``sigma`` maps 1.0 back to standard deviations (NF4's
    largest quantile, about 1.85 for the QLoRA code book) so the lines sit where the weights
    of a normally distributed block fall.
    """
    if sigma is None:
        sigma = float(torch.special.ndtri(torch.tensor(0.9677083, dtype=torch.float64)))
    fig, ax = _new_axes("NF4 code book over N(0, 1)", "value (standard deviations)", "density")
    x = torch.linspace(-3.5, 3.5, 400)
    ax.plot(x, torch.exp(-(x**2) / 2) / (2 * torch.pi) ** 0.5, color="gray", label="N(0, 1)")
    for i, v in enumerate(code.tolist()):
        ax.axvline(v * sigma, color="C0", alpha=0.8, label="NF4 values" if i == 0 else None)
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_memory_comparison(table, model: str):
    """Lesson GB (nominal parameters x bytes) beside real GB for one model of
    ``lora_course.memory.real_memory_table``; the real bar is split into what
    ``get_memory_footprint`` counts and the quantization state it misses."""
    part = table[table["model"] == model]
    fig, ax = _new_axes(f"{model}: lesson vs real", "", "GB (decimal)")
    pos = torch.arange(len(part)).float()
    ax.bar(pos - 0.2, part["lesson_gb"], width=0.4, label="lesson (nominal x bytes)")
    ax.bar(pos + 0.2, part["footprint_gb"], width=0.4, label="get_memory_footprint")
    ax.bar(
        pos + 0.2,
        part["quant_state_gb"],
        width=0.4,
        bottom=part["footprint_gb"],
        label="quant state (not counted)",
    )
    ax.set_xticks(pos.tolist(), [p.replace(", ", "\n") for p in part["precision"]], fontsize=10)
    for container in ax.containers[:2]:
        ax.bar_label(container, fmt="%.1f", fontsize=9)
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_sweep(summary, x: str = "scaling", title: str | None = None):
    """Final loss (left axis, log) and held-out accuracy (right axis) against ``x`` (log), one
    point per run of ``lora_course.sweep.summarize``; diverged runs drawn as red crosses."""
    fig, ax = _new_axes(title or f"Final loss and accuracy by {x}", x, "final loss")
    part = summary.sort_values(x)
    ax.plot(part[x], part["final_loss"], marker="o", color="C0", label="final loss")
    bad = part[part["diverged"].astype(bool)]
    if len(bad):
        ax.plot(bad[x], bad["final_loss"].fillna(part["final_loss"].max()), "x", color="red",
                markersize=12, mew=3, label="diverged")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    right = ax.twinx()
    right.plot(part[x], part["accuracy"], marker="s", color="C1", label="held-out accuracy")
    right.set_ylabel("held-out accuracy")
    right.set_ylim(-0.05, 1.05)
    right.grid(False)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="best")
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_rank_sweep(summary, y: str = "final_loss", title: str | None = None):
    """``y`` against rank (log 2), one line for alpha/r and one for alpha/sqrt(r) (rsLoRA)."""
    fig, ax = _new_axes(title or f"{y.replace('_', ' ')} by rank at fixed alpha", "rank r", y)
    for rslora, part in summary.groupby("use_rslora"):
        name = "alpha / sqrt(r) (rsLoRA)" if rslora else "alpha / r (LoRA)"
        part = part.sort_values("rank")
        ax.plot(part["rank"], part[y], marker="s" if rslora else "o", label=name)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    if y == "final_loss":
        ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


_MEMORY_PARTS = {  # legend label: columns of lora_course.training_memory.scenario_table
    "weights (+ quant state)": ("base weights", "quantization state"),
    "trainable + gradients + optimizer": ("trainable parameters", "gradients", "optimizer state"),
    "activations": ("activations",),
    "logits and loss": ("logits and loss",),
    "other (dequantized weight, overhead)": ("dequantized weight", "runtime overhead"),
}


def plot_training_memory(scenarios, model: str = "Llama-3.1-8B", gpus=(12, 16, 24, 40, 80)):
    """Stacked parts of the peak (GiB, as GPUs are sized) for each row of
    ``lora_course.training_memory.scenario_table``: one panel per method, one bar per batch x
    tokens with checkpointing off/on, the smallest GPU that holds it above each bar, and a
    dashed line per GPU size."""
    methods = list(dict.fromkeys(scenarios["method"]))
    with mpl.rc_context(COURSE_STYLE):
        fig, axes = plt.subplots(1, len(methods), figsize=(13, 5.5), sharey=True)
    gib = 2**30 / 1e9
    top = scenarios["peak_gb"].max() / gib
    for ax, method in zip(axes, methods, strict=True):
        part = scenarios[scenarios["method"] == method].reset_index(drop=True)
        pos = torch.arange(len(part)).float().tolist()
        bottom = [0.0] * len(part)
        for i, (label, columns) in enumerate(_MEMORY_PARTS.items()):
            cols = [c for c in columns if c in part]
            values = (part[cols].sum(axis=1) / gib).tolist() if cols else [0.0] * len(part)
            ax.bar(pos, values, bottom=bottom, color=f"C{i}", label=label, width=0.75)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for x, height, gpu in zip(pos, bottom, part["smallest_gpu"], strict=True):
            text = f"{gpu}" if str(gpu).isdigit() else "none"
            ax.text(x, height + top * 0.01, text, ha="center", va="bottom", fontsize=9)
        for size in gpus:
            ax.axhline(size, color="grey", linestyle="--", linewidth=0.8)
        rows = part[["batch_size", "seq_len", "checkpointing"]].itertuples(index=False)
        labels = [f"{b}x{s}\n{'ckpt' if gc else 'no ckpt'}" for b, s, gc in rows]
        ax.set_xticks(pos, labels, fontsize=8)
        ax.set_title({"full": "full fine-tuning (bf16, AdamW)", "lora": "LoRA (bf16 base)",
                      "qlora": "QLoRA (nf4 + DQ)"}.get(method, method), fontsize=12)  # fmt: skip
        ax.grid(axis="x", visible=False)
    axes[0].set_ylabel("peak memory (GiB)")
    axes[0].set_yticks(list(gpus) + list(range(120, int(top) + 1, 40)))
    axes[0].set_ylim(0, top * 1.1)
    fig.suptitle(f"{model}: training memory by part; number on a bar = smallest GPU (GB) it fits")
    fig.supxlabel("batch x tokens, gradient checkpointing", fontsize=12)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=10, bbox_to_anchor=(0.5, -0.13))
    fig.tight_layout()
    plt.close(fig)
    return fig
