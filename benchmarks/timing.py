"""Side-by-side timing: interleaved repetitions, median of several, one process.

Comparing two implementations by timing them in separate runs lets a busy machine, a warm
cache or CPU frequency drift favour one of them. Here every repetition runs each candidate
once, in turn, and the median over repetitions is reported, so the ratio is measured under the
same conditions for both.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch


def interleaved_medians(
    candidates: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each candidate, measured in interleaved repetitions."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def machine() -> str:
    """One line naming the machine the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {cpu}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )
