"""Row 8: what grading costs an instructor, in seconds.

One row per exercise: its master notebook (the reference solutions, full marks) and its blank
student release (nothing attempted) graded side by side, each as a one-notebook submission by
the course's grader (``lora_course.classroom.grading.grade``: a copy, a fresh kernel, the
answers out as JSON, the checks in the grader's process, exercise 3's re-runs included).
Seconds are wall time for the whole submission. A last row grades two learners' folders, each
holding the three master solutions, with ``jobs=2`` (``grade --jobs 2``) and divides the wall
time by the number of learners: target 30 s per learner on a 2-core machine.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PER_LEARNER_TARGET_S = 30.0


def _graded(folder: Path, masters, jobs: int = 1) -> tuple[float, list]:
    from lora_course.classroom.grading import grade

    start = time.perf_counter()
    subs = grade(folder, masters, jobs=jobs)
    return time.perf_counter() - start, subs


def _score(subs) -> str:
    results = [r for s in subs for r in s.results.values()]
    got = sum(r.score for r in results)
    return f"{got:g}/{sum(r.max_score for r in results):g}"


def rows(learners: int = 2) -> list[dict]:
    from lora_course.classroom.release import release_all
    from lora_course.classroom.submissions import load_masters

    masters = load_masters(NOTEBOOKS)
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        root = Path(tmp)
        released = {p.name: p for p in release_all([m.path for m in masters], root / "release")}
        for master in masters:
            seconds = {}
            for kind, source in (("master", master.path), ("blank", released[master.path.name])):
                folder = root / f"{master.stem}-{kind}"
                folder.mkdir()
                shutil.copy(source, folder / master.path.name)
                seconds[kind], subs = _graded(folder, [master])
                seconds[kind + "_score"] = _score(subs)
                seconds[kind + "_status"] = subs[0].status
            detail = (
                f"{seconds['master_score']} {seconds['master_status']}; blank release "
                f"{seconds['blank']:.1f} s, {seconds['blank_score']} {seconds['blank_status']}"
            )
            out.append(
                {
                    "row": 8,
                    "what": f"grading {master.stem}: master solution (s)",
                    "value": seconds["master"],
                    "target": "none",
                    "met": None,
                    "detail": detail,
                }
            )
        classroom = root / "class"
        for k in range(learners):
            folder = classroom / f"learner{k}"
            folder.mkdir(parents=True)
            for master in masters:
                shutil.copy(master.path, folder / master.path.name)
        wall, subs = _graded(classroom, masters, jobs=2)
    per_learner = wall / learners
    out.append(
        {
            "row": 8,
            "what": f"grading {learners} learners' three master solutions, --jobs 2: s per learner",
            "value": per_learner,
            "target": f"<= {PER_LEARNER_TARGET_S:.0f} s",
            "met": per_learner <= PER_LEARNER_TARGET_S and all(s.status == "ok" for s in subs),
            "detail": f"{wall:.0f} s wall; {_score(subs)}",
        }
    )
    return out
