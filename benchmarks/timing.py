"""Side-by-side timing: interleaved repetitions, median of several, one process.

Comparing two implementations by timing them in separate runs lets a busy machine, a warm
cache or CPU frequency drift favour one of them. Here every repetition runs each candidate
once, in turn, and the median over repetitions is reported, so the ratio is measured under the
same conditions for both.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable

import torch


def interleaved_medians(
    candidates: dict[str, Callable[[], object]],
    repeats: int = 7,
    warmup: int = 1,
    min_sample_s: float = 0.2,
) -> dict[str, float]:
    """Median seconds per call of each candidate, measured in interleaved repetitions.

    Each sample times ``number`` calls in a row, the same ``number`` for every candidate,
    chosen so that the fastest candidate's sample lasts at least ``min_sample_s``: one call of
    a few milliseconds is too short to time against the clock's and the scheduler's noise.
    """
    once = {}
    for name, fn in candidates.items():
        for _ in range(warmup):
            fn()
        start = time.perf_counter()
        fn()
        once[name] = time.perf_counter() - start
    number = max(1, math.ceil(min_sample_s / max(min(once.values()), 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: statistics.median(values) for name, values in samples.items()}


def ratio_row(
    row: int,
    what: str,
    times: dict[str, float],
    ours: str,
    reference: str,
    limit: float | None = None,
    target: str | None = None,
    digits: int = 1,
) -> dict:
    """One table row: ``times[ours] / times[reference]``, met when at most ``limit``.

    ``target`` is the text shown when there is no limit to meet; ``digits`` the milliseconds'
    decimals in the detail column.
    """
    value = times[ours] / times[reference]
    return {
        "row": row,
        "what": what,
        "value": value,
        "target": f"<= {limit}" if limit is not None else target,
        "met": value <= limit if limit is not None else None,
        "detail": f"{times[ours] * 1e3:.{digits}f} ms vs {times[reference] * 1e3:.{digits}f} ms",
    }


def machine() -> str:
    """One line naming the machine the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {cpu}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )
