"""The training-memory estimate against published figures: the same settings, priced.

``PUBLISHED`` holds the figures (rows are data: add one with its source);
``published_comparison()`` prices each row's settings with ``training_memory`` and returns the
published figure beside the estimate. Notebook 09 shows it.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["PUBLISHED", "published_comparison"]

# Published peak-memory figures with their settings. ``settings`` are training_memory's
# arguments for the same run; ``part`` compares one part only (None: the whole peak).
PUBLISHED = [
    {
        "source": "QLoRA paper (Dettmers et al. 2023, arXiv 2305.14314)",
        "model": "Llama-2-7B",
        "what": "7B base model in 4 bit, alone (measured)",
        "published_gb": 5.048,
        "settings": {"method": "qlora", "prepared": False},
        "part": ("base weights", "quantization state"),
    },
    {
        "source": "LLaMA-Factory wiki: plain transformers + PEFT, measured",
        "model": "Llama-2-7B",
        "what": "QLoRA, batch 4 x 1,024 tokens, gradient checkpointing",
        "published_gb": 9.0,
        "settings": {"method": "qlora", "batch_size": 4, "seq_len": 1024},
        "part": None,
    },
    {
        "source": "LLaMA-Factory README, hardware table (an estimate, not a measurement)",
        "model": "Llama-2-7B",
        "what": "QLoRA 4-bit, 7B (no batch or length stated)",
        "published_gb": 6.0,
        "settings": {"method": "qlora", "batch_size": 1, "seq_len": 512},
        "part": None,
    },
]


def _priced_with(row: dict) -> str:
    """The settings ``training_memory`` priced a published row with, in words."""
    import inspect

    from lora_course.training_memory import training_memory

    defaults = {
        k: v.default
        for k, v in inspect.signature(training_memory).parameters.items()
        if v.default is not inspect.Parameter.empty
    }
    kw = {**defaults, **row["settings"]}
    if row["part"] is not None:
        return " + ".join(row["part"]) + (", prepared" if kw["prepared"] else ", not prepared")
    words = [
        kw["method"],
        f"batch {kw['batch_size']} x {kw['seq_len']:,}",
        "checkpointing" if kw["gradient_checkpointing"] else "no checkpointing",
        f"r={kw['rank']}, all linear" if kw["method"] != "full" else "",
        "prepared" if kw["prepared"] and kw["method"] == "qlora" else "",
        kw["optimizer"],
    ]
    return ", ".join(w for w in words if w)


def published_comparison(rows=PUBLISHED) -> pd.DataFrame:
    """Each published figure beside our estimate of the same settings.

    Columns: ``source``, ``model``, ``settings`` (what was measured), ``priced with`` (the
    estimate's settings, in words: a figure without stated settings shows which were assumed),
    ``published_gb``,
    ``estimated_gb``, ``ratio`` (estimated / published).
    """
    from lora_course.training_memory import training_memory

    out = []
    for row in rows:
        table = training_memory(row["model"], **row["settings"])
        if row["part"] is not None:
            table = table[table["part"].isin(row["part"])]
        estimate = table["bytes"].sum() / 1e9
        out.append(
            {
                "source": row["source"],
                "model": row["model"],
                "settings": row["what"],
                "priced with": _priced_with(row),
                "published_gb": row["published_gb"],
                "estimated_gb": estimate,
                "ratio": estimate / row["published_gb"],
            }
        )
    return pd.DataFrame(out)
