"""Row 6: the learner's own cost, seconds per notebook under nbval and for the whole course.

Each notebook runs in its own ``pytest --nbval-lax`` process, as ``make test`` runs it, so the
time includes the kernel start and every import the learner waits for.
Target: the whole course under 5 minutes on a 2-core machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
COURSE_TARGET_S = 300.0


def rows() -> list[dict]:
    out, total = [], 0.0
    for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        start = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--nbval-lax",
                "--nbval-current-env",
                str(nb),
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        total += seconds
        status = "passed" if proc.returncode == 0 else "FAILED"
        out.append(
            {
                "row": 6,
                "what": f"notebook {nb.stem} under nbval (s)",
                "value": seconds,
                "target": "~60 s",
                "met": seconds <= 60 and proc.returncode == 0,
                "detail": status,
            }
        )
    out.append(
        {
            "row": 6,
            "what": "whole course under nbval (s)",
            "value": total,
            "target": f"< {COURSE_TARGET_S:.0f} s",
            "met": total < COURSE_TARGET_S,
            "detail": f"{len(out)} notebooks",
        }
    )
    return out
