"""Batch grading: run each submission in its own kernel, score its answers in this process.

``python -m lora_course grade SUBMISSIONS`` calls :func:`grade`. For each submission:

1. **Find it.** ``SUBMISSIONS`` holds ``.ipynb`` files (one submission each) or one folder per
   learner (all the notebooks in it form one submission; the folder name is the learner's).
2. **Match it to a master.** Exercise notebooks are the masters (``notebooks/NN_*.ipynb``) that
   call ``check("exercise_N", ...)``. A submitted notebook belongs to the master whose file
   stem its own name contains (``05_exercise_1.ipynb``, ``alice-05_exercise_1 (2).ipynb``);
   failing that, to the master whose exercises the notebook's own ``check`` calls name. What is
   graded, and which variables hold the answers, always comes from the master, never from the
   submission. In a learner folder, notebooks that match no exercise master are ignored.
3. **Run it sandboxed.** The submission is copied into a fresh temporary folder
   (``<tmp>/work``; ``..`` is still the grader's temporary folder) and executed there by nbclient
   in a fresh ``python3`` kernel whose working directory is that copy. Errors in learner cells do
   not stop the run; a cell that runs past the per-cell limit is interrupted and the run goes
   on; past the per-submission wall limit the kernel is killed. A kernel that dies is noticed
   within about a second.
4. **Extract answers as data.** One more cell evaluates the master's answer expressions and
   writes them as JSON (:mod:`lora_course.classroom.answers`); the grader parses it defensively.
5. **Check in the grader.** :func:`lora_course.checks.run_checks` runs here, in the grader's
   process, so a learner who redefines ``check``, patches ``lora_course`` or prints a fake pass
   line changes nothing.

Each kernel runs in bubblewrap (:mod:`lora_course.classroom.sandbox`): it writes only its own
temporary folder, reads the course read-only, sees no other submission, no gradebook, no grader
process and no network, holds no capability and runs within limits (memory, processes, disk,
output: statuses ``memory limit``, ``process limit``, ``disk limit``, ``output limit``).
Before anything is copied or opened, a submission holding a link, a device or a fifo is
``refused``, and one over the size limit is ``too large``; each step's failure costs only its
own row (status ``error``). The checks run under a time limit (``CHECK_TIMEOUT``).
``sandbox=False`` (``--no-sandbox``) runs it with the grader's rights.
Step 3 also skips a submission whose content hash matches the previous gradebook's
(:mod:`lora_course.classroom.record`), and ``shard`` grades one slice of a class.
Steps 3 to 5, one notebook in one kernel, are :mod:`lora_course.classroom.execution`; this
module is the class run around them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from lora_course.checks import run_checks
from lora_course.classroom.execution import run_notebook
from lora_course.classroom.results import NotebookRun, Submission
from lora_course.classroom.safety import clean_name, printable
from lora_course.classroom.sandbox import Limits
from lora_course.classroom.submissions import (
    Master,
    find_submissions,
    inspect_submission,
    match_master,
    read_notebook,
)

__all__ = [
    "CELL_TIMEOUT",
    "TIMEOUT",
    "grade_submission",
    "grade",
]

# The largest sweep exercise 3 allows (18 runs of 60 steps at batch 8, or the same budget in
# fewer, longer runs) took 90 s in one cell while grading with --jobs 2 on this 2-core machine
# under load; a 2-core laptop is no slower. Both limits leave about three times that.
CELL_TIMEOUT = 300.0
TIMEOUT = 600.0


def grade_submission(
    name: str,
    path: Path,
    notebooks: list[Path],
    masters: list[Master],
    cell_timeout: float = CELL_TIMEOUT,
    timeout: float = TIMEOUT,
    sandbox: bool = True,
    limits: Limits | None = None,
) -> Submission:
    """Copy one submission into a fresh temporary folder, run its exercise notebooks, check them.

    ``sandbox``: run each kernel in bubblewrap (see :mod:`lora_course.classroom.sandbox`) within
    ``limits``. A submission holding links, devices or fifos, or more than ``limits.submission``
    bytes, is not copied or run (status ``refused`` or ``too large``).
    """
    from lora_course.classroom.sandbox import capped_folder

    limits = limits or Limits()
    sub = Submission(name, path)
    sub.status, sub.message = inspect_submission(path, limits.submission or None)
    if sub.status:
        return sub
    with tempfile.TemporaryDirectory(prefix="lora-course-grade-") as tmp:
        with capped_folder(Path(tmp), limits.disk if sandbox else 0):
            _run_copies(sub, path, notebooks, masters, Path(tmp), cell_timeout, timeout,
                        sandbox, limits)  # fmt: skip
    if not sub.runs:
        sub.status = "error"
        sub.message = "no exercise notebook found in this submission"
    else:
        bad = [r for r in sub.runs if r.status != "ok"]
        sub.status = bad[0].status if bad else "ok"
        sub.message = "; ".join(f"{r.notebook}: {r.message}" for r in bad)
    return sub


def _run_copies(sub, path, notebooks, masters, tmp: Path, cell_timeout, timeout, sandbox, limits):
    work = tmp / "work"
    if path.is_dir():
        shutil.copytree(path, work, symlinks=True)  # inspect_submission: no link is left
        copies = [work / nb.relative_to(path) for nb in notebooks]
    else:
        work.mkdir()
        shutil.copy2(path, work / path.name)
        copies = [work / path.name]
    for copy in copies:
        nb, problem = read_notebook(copy)
        master = match_master(copy, nb, masters)
        shown = clean_name(copy.name)
        if nb is None and (path.is_file() or master is not None):
            sub.runs.append(NotebookRun(shown, None, "not a notebook", problem))
        elif master is not None:
            sub.runs.append(run_notebook(copy, master, tmp, cell_timeout, timeout, sandbox, limits))
        elif path.is_file():
            stems = ", ".join(m.path.name for m in masters)
            sub.runs.append(
                NotebookRun(
                    shown,
                    None,
                    "error",
                    f"cannot tell which exercise {shown} answers: keep the released file "
                    f"name ({stems})",
                )
            )


def prepare_grader(masters: list[Master]) -> None:
    """Import everything the checks and the outputs use, once, before any worker thread.

    Two threads importing one module at once can see it half-initialised (with ``--jobs 2`` an
    exercise 2 check failed with "cannot import name 'AutoConfig' from 'transformers'" while an
    exercise 3 re-run imported transformers). Importing here, in the main thread, also means no
    module is first read from disk while learner code runs.
    """
    import importlib

    for module in (
        "transformers",
        "lora_course.data",
        "lora_course.memory",
        "lora_course.models",
        "lora_course.params",
        "lora_course.sweep",
        "lora_course.classroom.gradebook",
        "lora_course.classroom.lms",
        "lora_course.classroom.record",
        "lora_course.classroom.report",
        "nbclient",
        "nbclient.exceptions",
        "jupyter_client.manager",
    ):
        importlib.import_module(module)
    from transformers import (  # noqa: F401
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
    )
    from transformers.utils import logging  # noqa: F401

    for ex in sorted({ex for m in masters for ex in m.exercises}):
        run_checks(ex, {})  # each exercise's module and the names it imports lazily
        importlib.import_module(f"lora_course.checks.{ex}")


def grade(
    submissions: str | Path,
    masters: list[Master],
    jobs: int = 1,
    cell_timeout: float = CELL_TIMEOUT,
    timeout: float = TIMEOUT,
    on_done: Callable[[Submission], None] | None = None,
    sandbox: bool = True,
    shard: tuple[int, int] = (1, 1),
    previous: dict[str, Submission] | None = None,
    limits: Limits | None = None,
) -> list[Submission]:
    """Grade every submission in ``submissions`` (or shard K of N of them); results in name order.

    ``jobs`` submissions run at once (a thread each, driving its own kernel process);
    ``on_done`` is called as each finishes (a progress bar). ``previous`` maps names to rows of
    an earlier run by the same grader: a row whose content hash is unchanged is reused, not run.
    ``limits``: what each kernel may use (:class:`lora_course.classroom.sandbox.Limits`).
    """
    from lora_course.classroom.files import content_hash
    from lora_course.classroom.record import shard_of

    if jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs}")
    limits = limits or Limits()
    if sandbox:
        from lora_course.classroom.sandbox import require_sandbox

        require_sandbox()  # once, before any row: not a failure per submission
    found = find_submissions(submissions)
    mine = set(shard_of([f.name for f in found], *shard))
    prepare_grader(masters)  # before the pool: no import races in its threads
    results = []

    def finish(result: Submission) -> None:
        results.append(result)
        if on_done is not None:
            on_done(result)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {}
        for n, p, nbs, refused in found:
            if n not in mine:
                continue
            try:
                status, message = ("refused", refused) if refused else inspect_submission(
                    p, limits.submission or None
                )  # fmt: skip
                if status:
                    finish(Submission(n, p, status=status, message=message))
                    continue
                digest = content_hash(p)
            except Exception as exc:  # noqa: BLE001 -- this row only
                message = f"the submission could not be read ({type(exc).__name__})"
                finish(Submission(n, p, status="error", message=message))
                continue
            before = (previous or {}).get(n)
            if before is not None and before.content_hash == digest:
                before.reused, before.path = True, p
                finish(before)
                continue
            job = pool.submit(
                grade_submission, n, p, nbs, masters, cell_timeout, timeout, sandbox, limits
            )
            futures[job] = (n, p, digest)
        for future in as_completed(futures):
            name, path, digest = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # a grader-side failure costs this row, not the run
                message = printable(
                    f"the grader failed on this submission ({type(exc).__name__}: {exc})"
                )[:500]
                result = Submission(name, path, status="error", message=message)
            result.content_hash = digest
            finish(result)
    return sorted(results, key=lambda s: s.name)
