"""Where `make test`'s CPU goes, per test file and notebook: a pytest plugin and its summary.

`make test` on the project's 2-core machine is bound by CPU, not by waiting: its wall time is
about its CPU time over two. Seconds per test (``--durations``, ``--junitxml``) mix both and
grow with what the other workers do at the same time; CPU-seconds say what a file costs. Run the
suite with this plugin, then summarise (``make cpu-per-file`` does both)::

    PYTHONPATH=benchmarks python -m pytest -p cpu_per_file ... tests --nbval-lax notebooks
    python benchmarks/cpu_per_file.py build/cpu

Each test's CPU is ``getrusage`` of the process that runs it (an xdist worker) plus that of its
children reaped meanwhile: a notebook's kernel, its forked training runs and its measurement
subprocesses count once the kernel ends, so per file, not per cell. The grading sandbox's kernels
(bubblewrap) mostly escape ``getrusage``: measure those files alone with the machine's busy time
(``/proc/stat``). Records go to ``$LORA_COURSE_CPU_DIR`` (default ``build/cpu``), one JSON line
per test in one file per worker.
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
    """(this process's user + system CPU-s, its reaped children's)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


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
