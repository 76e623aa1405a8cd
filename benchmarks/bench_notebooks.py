"""Row 6: the learner's own cost, seconds per notebook under nbval and for the whole course.

Each notebook runs in its own ``pytest --nbval-lax`` process, as ``make test`` runs it, so the
time includes the kernel start and every import the learner waits for.
Targets (issue 14), on a 2-core machine with or without native bf16: each lesson notebook about a
minute or less, each exercise under two minutes, the whole course under three minutes.

The ``bf16`` column says whether the CPU computes bf16 natively (``lora_course.machinery.hardware``,
measured in the same environment): it decides the compute dtype of notebook 03's QLoRA
training, so the same notebook can take several times longer on a CPU that emulates bf16.
``env`` (e.g. ``bench_dtype.EMULATE``, torch's AVX2 code paths) runs every notebook in that
environment, to time the course as a CPU without native bf16 would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lora_course.classroom.release import master_notebooks

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LESSON_TARGET_S = 60.0
EXERCISE_TARGET_S = 120.0
COURSE_TARGET_S = 180.0


def bf16_support(env: dict | None = None) -> str:
    """ "native" or "emulated", measured in a fresh process with ``env`` added."""
    code = "from lora_course.machinery.hardware import native_bf16; print(native_bf16())"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return "native" if proc.stdout.strip().splitlines()[-1] == "True" else "emulated"


def rows(env: dict | None = None, label: str | None = None) -> list[dict]:
    """Row 6, each notebook with ``env`` added to the environment; ``label`` names ``env`` in
    the rows (default: the variables themselves)."""
    out, total = [], 0.0
    bf16 = bf16_support(env)
    where = f", {label}" if label else "".join(f", {k}={v}" for k, v in (env or {}).items())
    for nb in master_notebooks(NOTEBOOKS):  # NN_*.ipynb and NNx_*.ipynb (02b), in course order
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
            env={**os.environ, **(env or {})},
        )
        seconds = time.perf_counter() - start
        total += seconds
        status = "passed" if proc.returncode == 0 else "FAILED"
        target = EXERCISE_TARGET_S if "_exercise_" in nb.stem else LESSON_TARGET_S
        out.append(
            {
                "row": 6,
                "what": f"notebook {nb.stem} under nbval (s{where})",
                "value": seconds,
                "target": f"< {target:.0f} s",
                "met": seconds < target and proc.returncode == 0,
                "detail": status,
                "bf16": bf16,
            }
        )
    out.append(
        {
            "row": 6,
            "what": f"whole course under nbval (s{where})",
            "value": total,
            "target": f"< {COURSE_TARGET_S:.0f} s",
            "met": total < COURSE_TARGET_S,
            "detail": f"{len(out)} notebooks",
            "bf16": bf16,
        }
    )
    return out
