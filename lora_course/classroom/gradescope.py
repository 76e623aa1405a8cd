"""A Gradescope autograder bundle: ``python -m lora_course gradescope --out autograder.zip``.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once to build its
image, then per submission runs ``/autograder/run_autograder`` with the learner's files in
``/autograder/submission`` and reads ``/autograder/results/results.json``
(:func:`lora_course.classroom.lms.gradescope_results`). The bundle holds the course package,
``data/tiny-llama``, the exercise masters, ``pyproject.toml`` and ``constraints.txt``; setup
installs them with the pinned versions. ``run_autograder`` grades the submission with
:func:`run` (in bubblewrap where the image allows namespaces, else in Gradescope's own
per-submission container, with a warning in the output). ``AUTOGRADER_ROOT`` moves
``/autograder`` (for a test on this machine: no platform is reachable from here).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

__all__ = ["SETUP_SH", "RUN_AUTOGRADER", "build_bundle", "run"]

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image (Ubuntu, as root).
set -euo pipefail
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y python3 python3-pip python3-venv bubblewrap
python3 -m venv /opt/lora-course
/opt/lora-course/bin/pip install -c /autograder/source/constraints.txt -e /autograder/source
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this per submission; it writes results/results.json.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${AUTOGRADER_PYTHON:-/opt/lora-course/bin/python}"
mkdir -p "$ROOT/results"
cd "$ROOT/source" && "$PYTHON" -m lora_course gradescope \\
  --run "$ROOT/submission" --results "$ROOT/results/results.json" --masters "$ROOT/source/notebooks"
"""


def build_bundle(out: str | Path, masters: list[Path]) -> Path:
    """Write the autograder zip: setup.sh, run_autograder and the course at the zip's root."""
    import lora_course

    package = Path(lora_course.__file__).resolve().parent
    root = package.parent
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o100755 << 16  # executable
            zf.writestr(info, text)
        files = [p for p in package.rglob("*.py")]
        data = root / "data" / "tiny-llama"
        files += [p for p in data.rglob("*") if p.is_file()] if data.is_dir() else []
        files += [root / n for n in ("pyproject.toml", "constraints.txt", "README.md")]
        for path in sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts):
            zf.write(path, path.relative_to(root).as_posix())
        for master in masters:
            zf.write(master, f"notebooks/{Path(master).name}")
    return out


def run(submission: str | Path, results: str | Path, masters_folder: str | Path) -> dict:
    """Grade one Gradescope submission folder and write ``results.json``; returns its content."""
    from lora_course.classroom.grading import grade
    from lora_course.classroom.lms import gradescope_results
    from lora_course.classroom.sandbox import SANDBOX_WARNING, sandbox_problem
    from lora_course.classroom.submissions import load_masters

    masters = load_masters(masters_folder)
    exercise_ids = sorted({ex for m in masters for ex in m.exercises})
    problem = sandbox_problem()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lora-course-gradescope-") as tmp:
        folder = Path(tmp) / "class" / "learner"
        shutil.copytree(submission, folder, symlinks=True)  # a link stays a link: refused
        subs = grade(folder.parent, masters, sandbox=not problem)
    sub = subs[0] if subs and subs[0].runs else None
    data = gradescope_results(sub, exercise_ids, time.monotonic() - start)
    if problem:  # Gradescope's log, not the learner's page
        print(f"WARNING: no sandbox ({problem}): {SANDBOX_WARNING}", file=sys.stderr)
    Path(results).parent.mkdir(parents=True, exist_ok=True)
    Path(results).write_text(json.dumps(data, indent=1), encoding="utf-8")
    return data
