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
    "plot_merge_ways",
    "plot_text_loss",
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


LINE_STYLES = ("-", "--", ":", "-.")  # cycled with the colours: a line on top of another shows both


def plot_loss(history, title: str = "Training loss", log: bool = True, label_column=None):
    """Loss against step from a DataFrame with ``step`` and ``loss`` columns.

    With ``label_column``, one line per value of that column (e.g. one per run); the legend sits
    to the right of the axes, never over a line. Each line has its own colour and dash pattern,
    so two runs that coincide show as a dashed line over a solid one, not as one line. Where a
    label has several seeds (a ``seed`` column with several values), the line is their mean at
    each step and a shaded band spans the lowest to the highest seed. ``log`` draws the loss on
    a log scale and says so on the axis.
    """
    fig, ax = _new_axes(title, "step", "loss (log scale)" if log else "loss")
    if label_column is None:
        ax.plot(history["step"], history["loss"])
    else:
        for k, (label, part) in enumerate(history.groupby(label_column, sort=False)):
            name = label if label_column == "run" else f"{label_column}={label}"
            stats = part.groupby("step")["loss"].agg(["mean", "min", "max", "count"])
            style = LINE_STYLES[k % len(LINE_STYLES)]
            width = max(1.5, 3.5 - 0.8 * k)  # later lines thinner: one on top of another shows both
            (line,) = ax.plot(stats.index, stats["mean"], linestyle=style, linewidth=width,
                              label=name)  # fmt: skip
            if stats["count"].max() > 1:  # several seeds: the band from lowest to highest
                ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(),
                                alpha=0.15, linewidth=0)  # fmt: skip
        _legend_outside(ax)
    if log:
        ax.set_yscale("log")
    fig.tight_layout()
    plt.close(fig)  # the notebook shows the returned figure once, not twice
    return fig


def _legend_outside(ax, below: bool = False, **kwargs) -> None:
    """The legend to the right of the axes (or below them), where it cannot cover data."""
    if below:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.36), ncols=3, **kwargs)
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def plot_singular_values(weights: dict[str, torch.Tensor], rank: int | None = None, top: int = 16):
    """The ``top`` largest singular values of each matrix in ``weights`` (name -> 2-D tensor),
    largest first, as side-by-side bars (one colour per matrix).

    A product B @ A with inner dimension r has at most r non-zero singular values; ``rank``
    draws that boundary. Bars too small to see are values near zero, not missing data.
    """
    fig, ax = _new_axes("Singular values, largest first", "index (0 = largest)", "singular value")
    width = 0.8 / len(weights)
    for i, (name, w) in enumerate(weights.items()):
        s = torch.linalg.svdvals(w.detach().float().cpu())[:top]
        ax.bar(torch.arange(len(s)) + width * (i - (len(weights) - 1) / 2), s, width=width,
               label=name)  # fmt: skip
    if rank is not None:
        ax.axvline(
            rank - 0.5, color="black", linestyle="--", label=f"index < r = {rank}: can be non-zero"
        )
    ax.set_xticks(range(top))
    ax.set_xlim(-0.6, top - 0.4)
    _legend_outside(ax)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_scaling(table, title: str | None = None):
    """``alpha/r`` and ``alpha/sqrt(r)`` against rank, log-log, from ``scaling.scaling_table``."""
    alphas = sorted(set(table["alpha"]))
    if title is None:
        title = f"Scaling at alpha = {alphas[0]:g}" if len(alphas) == 1 else "Scaling by rank"
    fig, ax = _new_axes(title, "rank r (log scale)", "scaling factor (log scale)")
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
    from ``params.lora_target_table``. A linear axis from 0, so bar lengths compare; each bar
    carries its percentage, so the short ones still read."""
    model = table["model"].iloc[0]
    fig, ax = _new_axes(title or f"{model}: share of parameters LoRA trains", "", "percent")
    targets = list(dict.fromkeys(table["targets"]))
    ranks = list(dict.fromkeys(table["rank"]))
    width = 0.8 / len(ranks)
    for k, rank in enumerate(ranks):
        part = table[table["rank"] == rank].set_index("targets").loc[targets]
        xs = [i + (k - (len(ranks) - 1) / 2) * width for i in range(len(targets))]
        bars = ax.bar(xs, part["percent"], width=width, label=f"r = {rank}")
        ax.bar_label(bars, labels=[f"{v:.2g} %" for v in part["percent"]], fontsize=9)
    ax.set_xticks(range(len(targets)), targets)
    ax.set_ylim(0, 1.15 * table["percent"].max())  # room for the labels
    ax.legend(loc="upper left")
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_nf4_code_book(code: torch.Tensor, sigma: float | None = None):
    """The 16 NF4 values as vertical lines over the standard normal density.

    The code values live on [-1, 1]; ``sigma`` maps 1.0 back to standard deviations (NF4's
    largest quantile, about 1.85 for the QLoRA code book) so the lines sit where the weights
    of a normally distributed block fall if its largest magnitude were ``sigma`` standard
    deviations. The x label says which ``sigma`` was used.
    """
    if sigma is None:
        from lora_course.nf4 import outer_quantile

        sigma = outer_quantile()
    fig, ax = _new_axes(
        "NF4 code book over N(0, 1)", f"code value × {sigma:.2f} (standard deviations)", "density"
    )
    x = torch.linspace(-3.5, 3.5, 400)
    ax.plot(x, torch.exp(-(x**2) / 2) / (2 * torch.pi) ** 0.5, color="gray", label="N(0, 1)")
    for i, v in enumerate(code.tolist()):
        ax.axvline(v * sigma, color="C0", alpha=0.8, label="NF4 values" if i == 0 else None)
    ax.set_ylim(0, None)
    _legend_outside(ax)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_memory_comparison(table, model: str):
    """Lesson GB (nominal parameters x bytes) beside real GB for one model of
    ``lora_course.memory.real_memory_table``; the real bar is split into what
    ``get_memory_footprint`` counts and the quantization state it misses.

    The quantization state is thin (about 2 % of a 4-bit model), so each real bar is labelled
    with both parts, ``footprint + state``, where the state is not zero.
    """
    part = table[table["model"] == model]
    fig, ax = _new_axes(f"{model}: lesson vs real", "precision", "GB (decimal)")
    pos = torch.arange(len(part)).float()
    lesson = ax.bar(pos - 0.2, part["lesson_gb"], width=0.4, label="lesson (nominal x bytes)")
    ax.bar(pos + 0.2, part["footprint_gb"], width=0.4, label="get_memory_footprint")
    state = ax.bar(
        pos + 0.2,
        part["quant_state_gb"],
        width=0.4,
        bottom=part["footprint_gb"],
        label="quant state, not counted\n(thin: labelled + GB)",
    )
    ticks = [p.replace(", ", "\n").replace(" (", "\n(") for p in part["precision"]]
    ax.set_xticks(pos.tolist(), ticks, fontsize=10)
    ax.bar_label(lesson, fmt="%.1f", fontsize=9)
    real_labels = [
        f"{fp:.1f}\n+ {qs:.2f}" if round(qs, 2) > 0 else f"{fp:.1f}"
        for fp, qs in zip(part["footprint_gb"], part["quant_state_gb"], strict=True)
    ]
    ax.bar_label(state, labels=real_labels, fontsize=9)
    ax.set_ylim(0, 1.12 * (part["footprint_gb"] + part["quant_state_gb"]).max())
    _legend_outside(ax, below=True, fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _legend_above(ax, handles, labels, ncol: int) -> None:
    # above the axes, under the title: never over a data point
    ax.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=ncol,
              frameon=False, fontsize=10)  # fmt: skip


def plot_sweep(summary, x: str = "scaling", title: str | None = None, chance: float | None = None):
    """Final loss (left axis, log) and held-out accuracy (right axis, 0 to 1) against ``x``
    (log), from ``lora_course.sweep.summarize``: one point per value of ``x``, the mean over its
    seeds, with a bar from the lowest to the highest seed where there are several, and no line
    between points (it would pass over values never run); diverged runs
    drawn as red crosses. ``chance``: the accuracy of always giving the most common answer
    (``sweep.chance_accuracy``), drawn as a thin grey line behind the points, so a point at
    chance stays visible on it."""
    fig, ax = _new_axes(
        title or f"Final loss and accuracy by {x}", f"{x} (log scale)", "final loss (log scale)"
    )
    part = summary.sort_values(x)
    stats = part.groupby(x)[["final_loss", "accuracy"]].agg(["mean", "min", "max"])

    def bars(column):
        mean = stats[column]["mean"]
        low, high = mean - stats[column]["min"], stats[column]["max"] - mean
        return mean, [low.clip(lower=0), high.clip(lower=0)]  # no -1e-17 from rounding

    mean, err = bars("final_loss")
    ax.errorbar(stats.index, mean, yerr=err, marker="o", color="C0", capsize=4, zorder=3,
                linestyle="none", markersize=8, label="final loss")  # fmt: skip
    bad = part[part["diverged"].astype(bool)]
    if len(bad):
        ax.plot(bad[x], bad["final_loss"].fillna(part["final_loss"].max()), "x", color="red",
                markersize=12, mew=3, label="diverged", zorder=4)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_locator(mpl.ticker.LogLocator(subs=(1, 2, 5)))  # 0.2, 0.5, 1, 2, 5
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    right = ax.twinx()
    if chance is not None:
        right.axhline(chance, color="0.55", linestyle="--", linewidth=1, zorder=1,
                      label=f"chance ({chance:g})")  # fmt: skip
    mean, err = bars("accuracy")
    right.errorbar(stats.index, mean, yerr=err, marker="s", color="C1", capsize=4, zorder=3,
                   linestyle="none", markeredgecolor="white", markersize=9,
                   label="held-out accuracy")  # fmt: skip
    right.set_ylabel("held-out accuracy")
    right.set_ylim(-0.05, 1.05)
    right.grid(False)
    right.spines["right"].set_visible(True)
    pairs = [p for a in (ax, right) for p in zip(*a.get_legend_handles_labels(), strict=True)]
    order = ["final loss", "diverged", "held-out accuracy"]  # then chance
    pairs.sort(key=lambda p: order.index(p[1]) if p[1] in order else len(order))
    _legend_above(ax, [h for h, _ in pairs], [lb for _, lb in pairs], ncol=4)
    ax.set_title(ax.get_title(), pad=34)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_rank_sweep(
    summary, y: str = "final_loss", title: str | None = None, group: str = "use_rslora"
):
    """``y`` against rank (log 2), one marker per rank and value of ``group``, at the mean over
    seeds, with a bar from the lowest to the highest seed. No line joins the markers: a line
    from rank 4 to rank 64 would pass over ranks that were never run. The groups sit slightly
    apart along x so that their bars do not overlap.

    ``group`` defaults to ``use_rslora`` (alpha/r vs alpha/sqrt(r)); any column works, e.g. a
    label column the notebook adds ("s = 1 at every rank", "alpha = 16, s = alpha/r").
    """
    fig, ax = _new_axes(
        title or f"{y.replace('_', ' ')} by rank", "rank r (log scale)", y.replace("_", " ")
    )
    names = {False: "alpha / r (LoRA)", True: "alpha / sqrt(r) (rsLoRA)"}
    ranks = set()
    for k, (value, part) in enumerate(summary.groupby(group, sort=False)):
        stats = part.groupby("rank")[y].agg(["mean", "min", "max"]).sort_index()
        name = names[value] if group == "use_rslora" else str(value)
        err = [
            (stats["mean"] - stats["min"]).clip(lower=0),
            (stats["max"] - stats["mean"]).clip(lower=0),
        ]
        nudge = 2 ** (0.08 * (k - (summary[group].nunique() - 1) / 2))  # apart on the log axis
        ax.errorbar(stats.index * nudge, stats["mean"], yerr=err, marker="os^D"[k % 4],
                    linestyle="none", markersize=9, capsize=5, label=name)  # fmt: skip
        ranks |= set(stats.index)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ranks))  # a tick at each rank that was run, none between
    ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
    ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylim(0, None)  # a loss axis from 0: the gaps read as proportions
    handles, labels = ax.get_legend_handles_labels()
    _legend_above(ax, handles, labels, ncol=2)
    ax.set_title(ax.get_title(), pad=30)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_merge_ways(table):
    """Two panels for ``adapters.merge_4bit``'s ways (rows of ``table``, indexed by way): the
    largest logit change against the unmerged QLoRA model, and the bytes of the weights (MB).
    A ``linear layers`` column (the merged layers' dtype) is written under each bar."""
    with mpl.rc_context(COURSE_STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    names = [str(way).split(" ", 1)[0] if str(way).startswith("(") else "unmerged"
             for way in table.index]  # fmt: skip
    if "linear layers" in table:
        names = [f"{n}\n{dtype}" for n, dtype in zip(names, table["linear layers"], strict=True)]
    colors = [f"C{i}" for i in range(len(names))]
    left.bar(names, table["max |Δ logit|"], color=colors)
    left.set_title("Distance from the unmerged model")
    left.set_ylabel("max |Δ logit|")
    right.bar(names, table["bytes"] / 1e6, color=colors)
    right.set_title("Size of the weights")
    right.set_ylabel("MB")
    for ax in (left, right):
        ax.bar_label(ax.containers[0], fmt="%.2f", fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_text_loss(losses: dict[str, float], title: str = "Loss on held-out pretraining text"):
    """One horizontal bar per model (name -> mean next-token loss), the first (the base) drawn
    as a dashed reference line: how far each training moved the model's own text."""
    fig, ax = _new_axes(title, "mean next-token loss", "")
    names, values = list(losses), list(losses.values())
    bars = ax.barh(names[::-1], values[::-1], color=[f"C{i}" for i in range(len(names))][::-1])
    ax.axvline(values[0], color="black", linestyle="--", label=f"{names[0]}: {values[0]:.2f}")
    ax.bar_label(bars, fmt="%.2f", fontsize=10, padding=8)  # clear of the dashed line
    ax.legend(loc="lower right")
    fig.tight_layout()
    plt.close(fig)
    return fig


_MEMORY_PARTS = {  # legend label: columns of lora_course.training_memory.scenario_table
    "weights (+ quant state, copies)": (
        "base weights",
        "quantization state",
        "weight copies for compute",
        "dequantized weight",
    ),
    "trainable + gradients + optimizer": ("trainable parameters", "gradients", "optimizer state"),
    "activations": ("activations",),
    "logits and loss": ("logits and loss",),
    "runtime overhead": ("runtime overhead",),
}


def plot_training_memory(scenarios, model: str = "Llama-3.1-8B", gpus=(12, 16, 24, 40, 80)):
    """Stacked parts of the peak (decimal GB) for each row of
    ``lora_course.training_memory.scenario_table``: one panel per method, one pair of bars
    per batch x tokens (checkpointing off, then on and hatched), the smallest GPU that holds
    it above each bar ("*" when borderline), and a dashed line per GPU at what it holds (a
    card sold as "24 GB" holds 24 GiB = 25.8 GB). A part that is zero in every bar gets no
    legend entry."""
    from lora_course.training_memory import gpu_bytes

    methods = list(dict.fromkeys(scenarios["method"]))
    with mpl.rc_context(COURSE_STYLE):
        fig, axes = plt.subplots(1, len(methods), figsize=(11.6, 4.15), sharey=True)
    top = scenarios["peak_gb"].max()
    shown = {
        label: [c for c in columns if c in scenarios]
        for label, columns in _MEMORY_PARTS.items()
        if any(c in scenarios and (scenarios[c] > 0).any() for c in columns)
    }
    for ax, method in zip(axes, methods, strict=True):
        part = scenarios[scenarios["method"] == method].reset_index(drop=True)
        settings = list(dict.fromkeys(zip(part["batch_size"], part["seq_len"], strict=True)))
        # one group per batch x tokens, checkpointing off (plain) then on (hatched) side by side
        pos = [
            settings.index((b, s)) * 2.9 + (1.15 if gc else 0.0)
            for b, s, gc in part[["batch_size", "seq_len", "checkpointing"]].itertuples(index=False)
        ]
        hatch = ["//" if gc else None for gc in part["checkpointing"]]
        bottom = [0.0] * len(part)
        for i, (label, cols) in enumerate(shown.items()):
            values = part[cols].sum(axis=1).tolist()
            ax.bar(pos, values, bottom=bottom, color=f"C{i}", label=label, width=0.85, hatch=hatch,
                   edgecolor="white", linewidth=0)  # fmt: skip
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        fits = part["fit"] if "fit" in part else ["fits"] * len(part)
        for x, height, gpu, fit in zip(pos, bottom, part["smallest_gpu"], fits, strict=True):
            text = (
                (f"{gpu}" + ("*" if fit == "borderline" else "")) if str(gpu).isdigit() else "none"
            )
            ax.text(x, height + top * 0.01, text, ha="center", va="bottom", fontsize=9)
        for size in gpus:
            ax.axhline(gpu_bytes(size) / 1e9, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xticks([g * 2.9 + 0.575 for g in range(len(settings))],
                      [f"{b}x{s}" for b, s in settings], fontsize=11)  # fmt: skip
        ax.set_title({"full": "full fine-tuning (mixed, AdamW)", "lora": "LoRA (bf16 base)",
                      "qlora": "QLoRA (nf4 + DQ)"}.get(method, method), fontsize=12)  # fmt: skip
        ax.grid(axis="x", visible=False)
    axes[0].set_ylabel("peak memory (GB)")
    axes[0].set_ylim(0, top * 1.1)
    groups: list[list[int]] = []  # sizes whose lines lie too close to label apart share a label
    for size in sorted(gpus):
        if groups and (gpu_bytes(size) - gpu_bytes(groups[-1][0])) / 1e9 < 0.06 * top * 1.1:
            groups[-1].append(size)
        else:
            groups.append([size])
    for group in groups:  # the dashed lines named at the right edge: cards as sold (GB held)
        held = "/".join(f"{gpu_bytes(size) / 1e9:.1f}" for size in group)
        axes[-1].annotate(
            f"{'/'.join(map(str, group))} GB cards ({held})",
            (1, sum(gpu_bytes(size) for size in group) / len(group) / 1e9),
            xycoords=("axes fraction", "data"),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=8,
            color="grey",
            va="center",
        )
    fig.suptitle(
        f"{model}: training memory by part, GB; on a bar: the smallest GPU (as sold) it fits, "
        "* borderline"
    )
    fig.supxlabel("batch x tokens: left bar without, hatched bar with gradient checkpointing",
                  fontsize=12)  # fmt: skip
    handles, names = axes[0].get_legend_handles_labels()
    handles = [mpl.patches.Patch(color=h.patches[0].get_facecolor()) for h in handles]
    fig.legend(handles, names, loc="lower center", ncol=4, fontsize=11, bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    plt.close(fig)
    return fig
