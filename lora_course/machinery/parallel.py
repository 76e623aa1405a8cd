"""Independent training runs side by side: one forked process per core (Linux), results in order.

The runs of a sweep share nothing: each seeds itself, trains its own deep copy of the frozen
base model, and computes on one torch thread. On Linux they can run in forked processes, which
inherit the loaded model and every import (a fresh Python process would first spend seconds
importing torch, transformers and peft); each result comes back in the order the runs were
given, equal bit for bit to running them one after the other on one thread
(``tests/test_sweep.py`` checks). Elsewhere (macOS and Windows have no safe ``fork``) the runs
go one after the other, as they do with ``jobs=1``.
"""

from __future__ import annotations

import multiprocessing
import numbers
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

__all__ = ["default_jobs", "run_all"]

_TASK: Callable | None = None  # what the forked workers run; set only while a pool is open
_FORK_IS_SAFE = sys.platform.startswith("linux")


def default_jobs(count: int) -> int:
    """How many processes ``count`` runs get by default: one per core this process may use, at
    most ``count``, on Linux; 1 elsewhere."""
    if not _FORK_IS_SAFE or count <= 1:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), count))


def _check_jobs(jobs) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer (1: one run at a time), got {jobs!r}")
    return int(jobs)


def _call(index: int):
    torch.set_num_threads(1)  # one core per process: the processes fill the cores
    return _TASK(index)


def run_all(task: Callable, count: int, jobs: int | None = None, on_result=None) -> list:
    """``[task(0), ..., task(count - 1)]``, in up to ``jobs`` forked processes at once.

    jobs: None for :func:`default_jobs`; 1 runs every task here, one after the other (also
        what happens where fork is unsafe). The tasks run on one torch thread each.
    on_result: called here with each result, in order, as soon as it and those before it are
        done (a progress display).
    A task's exception is raised here, with its own type and message. Where no process pool
    can be made (no working semaphores), the tasks run here one after the other.
    """
    jobs = default_jobs(count) if jobs is None else _check_jobs(jobs)
    results = []
    if jobs == 1 or count <= 1 or not _FORK_IS_SAFE:
        for index in range(count):
            results.append(task(index))
            if on_result is not None:
                on_result(results[-1])
        return results
    try:
        pool = ProcessPoolExecutor(min(jobs, count), mp_context=multiprocessing.get_context("fork"))
    except (OSError, ImportError):  # no working semaphores here (e.g. no /dev/shm): one at a time
        return run_all(task, count, jobs=1, on_result=on_result)
    global _TASK
    _TASK = task
    try:
        with pool:
            for future in [pool.submit(_call, index) for index in range(count)]:
                results.append(future.result())
                if on_result is not None:
                    on_result(results[-1])
    except BrokenProcessPool as exc:
        raise RuntimeError(
            "a run's process died (out of memory?); jobs=1 runs them one at a time, here"
        ) from exc
    finally:
        _TASK = None
    return results
