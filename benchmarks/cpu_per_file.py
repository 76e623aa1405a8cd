"""Where `make test`'s CPU goes, per test file and notebook: a pytest plugin and its summary.

`make test` on the project's 2-core machine is bound by CPU, not by waiting: its wall time is
about its CPU time over two. Seconds per test (``--durations``, ``--junitxml``) mix both and
grow with what the other workers do at the same time; CPU-seconds say what a file costs. Run the
suite with this plugin, then summarise (``make cpu-per-file`` does both)::

    PYTHONPATH=benchmarks python -m pytest -p cpu_per_file ... tests --nbval-lax notebooks
    python benchmarks/cpu_per_file.py build/cpu

Each test's CPU is what the process that runs it (an xdist worker) and every process under it
used meanwhile: ``getrusage`` of the worker and of its reaped children, plus each live child's
own and reaped children's CPU (``psutil``, which accelerate already requires). A child counts
once whether it is still running or already reaped, so a notebook's kernel, which lives from
its first cell to after its last, is charged to the cells that ran while it worked, not to
whichever later test happens to reap it. A process that starts and ends within
one test counts through ``getrusage`` once reaped, and the grading sandbox's kernels never reach
it (measured: ``tests/test_grading.py`` alone, 2.4 CPU-s counted here while the machine was busy
for 27): measure such files alone with the machine's busy time (``/proc/stat``). Records go
to ``$LORA_COURSE_CPU_DIR`` (default ``build/cpu``), one JSON line per test in one file per
worker.
"""

from __future__ import annotations

import collections
import json
import os
import resource
import sys
import time
from pathlib import Path

import pytest

_OUT: dict = {}


def cpu_seconds() -> tuple[float, float]:
    """(this process's user + system CPU-s, its children's: reaped, or running with what they
    have reaped)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime + _running_descendants()


def _running_descendants() -> float:
    """CPU-s of this process's live children, each with what it has reaped.

    Children only, not every descendant: a child is reaped by this process, so what it has used
    moves into ``RUSAGE_CHILDREN`` whole when it ends. A grandchild can leave the tree (re-parented
    when its parent dies first, or inside a sandbox's PID namespace): counted live, its CPU would
    vanish when it ends and make a later test's figure negative (measured: -16.6 CPU-s)."""
    import psutil

    total = 0.0
    for process in psutil.Process().children(recursive=False):
        try:
            t = process.cpu_times()
        except psutil.Error:  # gone since it was listed: its parent's rusage has it
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _record_file():
    if "file" not in _OUT:
        folder = Path(os.environ.get("LORA_COURSE_CPU_DIR", "build/cpu"))
        folder.mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        _OUT["file"] = open(folder / f"{worker}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
    return _OUT["file"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    own0, kids0 = cpu_seconds()
    start = time.perf_counter()
    yield
    own1, kids1 = cpu_seconds()
    record = {
        "id": item.nodeid,
        "own": round(own1 - own0, 3),
        "children": round(kids1 - kids0, 3),
        "wall": round(time.perf_counter() - start, 3),
    }
    out = _record_file()
    out.write(json.dumps(record) + "\n")
    out.flush()


def per_file(folder: Path) -> list[dict]:
    """One row per test file or notebook, most CPU first: file, cpu, own, children, wall, tests."""
    rows: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            row = rows[record["id"].split("::")[0]]
            row.update(own=record["own"], children=record["children"], wall=record["wall"])
            row["tests"] += 1
    table = [
        {"file": name, "cpu": row["own"] + row["children"], **row} for name, row in rows.items()
    ]
    return sorted(table, key=lambda r: -r["cpu"])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0] if argv else os.environ.get("LORA_COURSE_CPU_DIR", "build/cpu"))
    table = per_file(folder)
    if not table:
        print(f"no records in {folder}: run pytest with -p cpu_per_file first", file=sys.stderr)
        return 1
    print(f"{'CPU-s':>8} {'own':>7} {'children':>8} {'wall-s':>7} {'tests':>5}  file")
    for r in table:
        print(
            f"{r['cpu']:8.1f} {r['own']:7.1f} {r['children']:8.1f} {r['wall']:7.1f} "
            f"{r['tests']:5d}  {r['file']}"
        )
    print(f"{sum(r['cpu'] for r in table):8.1f} in all ({len(table)} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
