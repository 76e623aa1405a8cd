"""Graded submissions built without kernels: the real exercise_1 checks on answers given here."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lora_course.checks import run_checks
from lora_course.classroom.results import NotebookRun, Submission


def table(only_a: bool = False) -> pd.DataFrame:
    """Exercise 1's answer, computed as the reference does; ``only_a``: the "only A" mistake."""
    from torch import nn

    from lora_course import LoRALayer, count_parameters

    rows = []
    for rank in (4, 8, 16, 32):
        layer = LoRALayer(nn.Linear(4096, 4096), rank=rank, alpha=2 * rank)
        trainable, total = count_parameters(layer)
        if only_a:
            trainable = 4096 * rank
        rows.append({"rank": rank, "trainable": trainable, "total": total,
                     "ratio": trainable / total})  # fmt: skip
    return pd.DataFrame(rows)


def submission(name: str, answer, status: str = "ok") -> Submission:
    """A graded submission whose exercise_1 answer is ``answer`` (None: not attempted)."""
    run = NotebookRun(f"{name}.ipynb", "05_exercise_1", status=status)
    run.results = {"exercise_1": run_checks("exercise_1", {"table": answer})}
    return Submission(name, Path(name), runs=[run], status=status, content_hash=f"hash-{name}")


def small_class() -> list[Submission]:
    return [
        submission("ada", table()),
        submission("bob", table(only_a=True)),
        submission("cy", table(only_a=True)),
        submission("dee", None),
        submission("eve", None, status="kernel died"),
    ]
