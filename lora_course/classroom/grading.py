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
process and no network. ``sandbox=False`` (``--no-sandbox``) runs it with the grader's rights.
Step 3 also skips a submission whose content hash matches the previous gradebook's
(:mod:`lora_course.classroom.record`), and ``shard`` grades one slice of a class.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from lora_course.checks import CheckResult, run_checks
from lora_course.classroom.answers import export_source, read_answers
from lora_course.classroom.submissions import Master, find_submissions, match_master, read_notebook

__all__ = [
    "STATUSES",
    "CELL_TIMEOUT",
    "TIMEOUT",
    "NotebookRun",
    "Submission",
    "run_notebook",
    "grade_submission",
    "grade",
]

STATUSES = ("ok", "timeout", "kernel died", "not a notebook", "error")
_TIMEOUT_ENAME = "CellTimeoutError"
_LOG = logging.getLogger(__name__)  # nbclient's timeout messages; the results carry them too
_LOG.addHandler(logging.NullHandler())
# The largest sweep exercise 3 allows (18 runs of 60 steps at batch 8, or the same budget in
# fewer, longer runs) took 90 s in one cell while grading with --jobs 2 on this 2-core machine
# under load; a 2-core laptop is no slower. Both limits leave about three times that.
CELL_TIMEOUT = 300.0
TIMEOUT = 600.0


@dataclass
class NotebookRun:
    """The outcome of running and checking one submitted notebook."""

    notebook: str
    master: str | None
    status: str = "ok"
    message: str = ""
    seconds: float = 0.0
    cell_errors: list[tuple[int, str, str]] = field(default_factory=list)  # (cell, name, value)
    notes: list[str] = field(default_factory=list)
    results: dict[str, CheckResult] = field(default_factory=dict)
    written: dict[str, str] = field(default_factory=dict)  # exercise -> written answer ("" empty)


@dataclass
class Submission:
    """One gradebook row: a learner's notebook or folder, and the runs of its notebooks."""

    name: str
    path: Path
    runs: list[NotebookRun] = field(default_factory=list)
    status: str = "ok"
    message: str = ""
    content_hash: str = ""  # of the submitted files (lora_course.classroom.record)
    reused: bool = False  # copied from the previous gradebook: same files, same grader

    @property
    def results(self) -> dict[str, CheckResult]:
        merged: dict[str, CheckResult] = {}
        for run in self.runs:  # an exercise answered twice counts its better attempt
            for ex, res in run.results.items():
                if ex not in merged or res.score > merged[ex].score:
                    merged[ex] = res
        return merged


async def _execute(nb, workdir: Path, answers_file: Path, expressions, cell_timeout, run, sandbox):
    from nbclient import NotebookClient

    from lora_course.classroom.sandbox import kernel_manager

    def on_cell_executed(cell, cell_index, execute_reply):
        content = (execute_reply or {}).get("content", {})
        if content.get("status") == "error":
            ename = str(content.get("ename", "Error"))[:100]
            run.cell_errors.append((cell_index, ename, str(content.get("evalue", ""))[:300]))

    client = NotebookClient(
        nb,
        kernel_name="python3",  # this environment's kernel, whatever the notebook's metadata says
        timeout=cell_timeout,
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={
            "ename": _TIMEOUT_ENAME,
            "evalue": f"the cell ran longer than {cell_timeout:g} s and was interrupted",
            "traceback": [],
        },
        record_timing=False,
        shutdown_kernel="immediate",
        on_cell_executed=on_cell_executed,
        log=_LOG,
        km=kernel_manager(answers_file.parent, workdir) if sandbox else None,
        resources={"metadata": {"path": str(workdir)}},  # the kernel's cwd is the copy
    )
    # The kernel's own stdout/stderr (not its cells' outputs) would land in the grader's terminal.
    from lora_course.checks.exercise_3 import IN_GRADER

    # The learner-side check leaves its re-runs to the grader (sandboxed kernels get the variable
    # from lora_course.classroom.sandbox; bwrap clears the rest of the environment).
    env = {**os.environ, IN_GRADER: "1"}
    async with client.async_setup_kernel(
        cleanup_kc=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    ):
        for index, cell in enumerate(nb.cells):
            await client.async_execute_cell(cell, index)
        source = export_source(expressions, answers_file)
        nb.cells.append(nbformat.v4.new_code_cell(source))  # nb is the grader's copy
        await client.async_execute_cell(nb.cells[-1], len(nb.cells) - 1, store_history=False)


async def _within(coroutine, seconds: float) -> bool:
    """Run ``coroutine``; past ``seconds`` cancel it (its kernel is shut down). True if it ended.

    Not ``asyncio.wait_for``: nbclient turns the cancellation into ``DeadKernelError``, and a
    timeout must not read as a crash.
    """
    task = asyncio.ensure_future(coroutine)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if done:
        task.result()  # re-raise what the run raised
        return True
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):  # the cancellation, via clean-up
        pass
    return False


def _run_async(make_coroutine):
    """``asyncio.run(make_coroutine())``, also where this thread already runs an event loop.

    An instructor calling ``grade`` from a Jupyter cell has a running loop, and so can a test
    session after another library started one; ``asyncio.run`` refuses both. The coroutine then
    runs on its own loop in a short-lived worker thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


def run_notebook(
    path: Path,
    master: Master,
    answers_dir: Path,
    cell_timeout: float,
    timeout: float,
    sandbox: bool = True,
) -> NotebookRun:
    """Execute the notebook ``path`` (a copy; the kernel runs in its folder) and check its answers.

    ``answers_dir`` receives the exported answers: a grader-owned folder outside the copy. With
    ``sandbox`` the kernel runs in bubblewrap (:mod:`lora_course.classroom.sandbox`), able to
    write ``answers_dir`` and below only.
    """
    from nbclient.exceptions import DeadKernelError

    run = NotebookRun(path.name, master.stem)
    nb, problem = read_notebook(path)
    if nb is None:
        run.status, run.message = "not a notebook", problem
        return run
    expressions = {
        f"{ex}:{name}": expr
        for ex, names in master.exercises.items()
        for name, expr in names.items()
    }
    # Outside the copy, under a name the learner's code cannot predict.
    answers_file = answers_dir / f"answers-{secrets.token_hex(8)}.json"
    start = time.monotonic()
    try:
        finished = _run_async(
            lambda: _within(
                _execute(
                    nb,
                    path.parent,
                    answers_file,
                    expressions,
                    min(cell_timeout, timeout),
                    run,
                    sandbox,
                ),
                timeout,
            )
        )
        if not finished:
            run.status = "timeout"
            run.message = (
                f"the notebook did not finish within {timeout:g} s; its kernel was stopped"
            )
    except DeadKernelError:
        run.status = "kernel died"
        run.message = "the kernel stopped while running the notebook (a crash or exit() call)"
    except Exception as exc:
        run.status = "error"
        run.message = f"the notebook could not be run ({type(exc).__name__}: {exc})"[:500]
    run.seconds = time.monotonic() - start
    if run.status == "ok" and any(e[1] == _TIMEOUT_ENAME for e in run.cell_errors):
        run.status = "timeout"
        run.message = f"a cell ran longer than {cell_timeout:g} s and was interrupted"
    values, run.notes = read_answers(answers_file, list(expressions))
    run.written = written_answers(nb, master)
    for ex, names in master.exercises.items():
        answers = {name: values[f"{ex}:{name}"] for name in names}
        run.results[ex] = run_checks(ex, answers)
        if run.status == "timeout":
            run.results[ex] = _flag_for_review(run.results[ex], run.message)
    return run


@functools.lru_cache(maxsize=16)
def _answer_cells(master_path: Path) -> tuple[tuple[str, frozenset], ...]:
    """(cell id, the released cell's own lines) of each written-answer cell of a master."""
    from lora_course.classroom.release import BEGIN, SOLUTION_TAG, release_notebook

    master = nbformat.read(master_path, as_version=4)
    student, _ = release_notebook(master, master_path.name)
    released = {c.get("id"): c.source for c in student.cells}
    return tuple(
        (c.get("id"), frozenset(released.get(c.get("id"), "").splitlines()))
        for c in master.cells
        if c.cell_type == "markdown"
        and (BEGIN in c.source or SOLUTION_TAG in c.get("metadata", {}).get("tags", []))
    )


def written_answers(nb, master: Master) -> dict[str, str]:
    """{exercise id: what the learner wrote in the master's written-answer cells} ("" if empty).

    The cells are found by id (the release keeps them); the released cell's own lines (its
    heading, the placeholder) are left out, so an untouched cell reads as "".
    """
    cells = {c.get("id"): c for c in nb.cells if c.get("cell_type") == "markdown"}
    texts = []
    for cell_id, given in _answer_cells(master.path):
        cell = cells.get(cell_id)
        if cell is not None:
            lines = [line for line in str(cell.source).splitlines() if line not in given]
            texts.append("\n".join(lines).strip())
    text = "\n\n".join(t for t in texts if t)[:20_000]
    return dict.fromkeys(master.exercises, text)


def _flag_for_review(result: CheckResult, why: str) -> CheckResult:
    """A timed-out notebook's result: every item it lost waits for a person, not a silent 0."""
    from dataclasses import replace

    items = tuple(
        replace(i, needs_review=True, hint=f"{why}: a person decides. {i.hint}".strip())
        if i.scored and not i.passed
        else i
        for i in result.items
    )
    note = f"{why}; the items it lost wait for an instructor's review"
    return CheckResult(result.exercise_id, result.title, items, True, (*result.notes, note))


def grade_submission(
    name: str,
    path: Path,
    notebooks: list[Path],
    masters: list[Master],
    cell_timeout: float = CELL_TIMEOUT,
    timeout: float = TIMEOUT,
    sandbox: bool = True,
) -> Submission:
    """Copy one submission into a fresh temporary folder, run its exercise notebooks, check them.

    ``sandbox``: run each kernel in bubblewrap (see :mod:`lora_course.classroom.sandbox`).
    """
    sub = Submission(name, path)
    with tempfile.TemporaryDirectory(prefix="lora-course-grade-") as tmp:
        work = Path(tmp) / "work"
        if path.is_dir():
            shutil.copytree(path, work, symlinks=True)
            copies = [work / nb.relative_to(path) for nb in notebooks]
        else:
            work.mkdir()
            shutil.copy2(path, work / path.name)
            copies = [work / path.name]
        for copy in copies:
            nb, problem = read_notebook(copy)
            master = match_master(copy, nb, masters)
            if nb is None and (path.is_file() or master is not None):
                sub.runs.append(NotebookRun(copy.name, None, "not a notebook", problem))
            elif master is not None:
                sub.runs.append(
                    run_notebook(copy, master, Path(tmp), cell_timeout, timeout, sandbox)
                )
            elif path.is_file():
                stems = ", ".join(m.path.name for m in masters)
                sub.runs.append(
                    NotebookRun(
                        copy.name,
                        None,
                        "error",
                        f"cannot tell which exercise {copy.name} answers: keep the released file "
                        f"name ({stems})",
                    )
                )
    if not sub.runs:
        sub.status = "error"
        sub.message = "no exercise notebook found in this submission"
    else:
        bad = [r for r in sub.runs if r.status != "ok"]
        sub.status = bad[0].status if bad else "ok"
        sub.message = "; ".join(f"{r.notebook}: {r.message}" for r in bad)
    return sub


def _import_before_threads() -> None:
    """Import what the checks import lazily, once, before the worker threads start.

    transformers' lazy top-level names are not safe to import from two threads at once: with
    ``--jobs 2`` one submission's exercise 2 check failed now and then with "ImportError: cannot
    import name 'AutoConfig' from 'transformers'" and scored 0 (seen in 2 of 4 bench runs).
    """
    from transformers import (  # noqa: F401
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
    )
    from transformers.utils import logging  # noqa: F401


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
) -> list[Submission]:
    """Grade every submission in ``submissions`` (or shard K of N of them); results in name order.

    ``jobs`` submissions run at once (a thread each, driving its own kernel process);
    ``on_done`` is called as each finishes (a progress bar). ``previous`` maps names to rows of
    an earlier run by the same grader: a row whose content hash is unchanged is reused, not run.
    """
    from lora_course.classroom.record import content_hash, shard_of

    if jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs}")
    if sandbox:
        from lora_course.classroom.sandbox import require_sandbox

        require_sandbox()  # once, before any row: not a failure per submission
    if jobs > 1:
        _import_before_threads()
    found = find_submissions(submissions)
    mine = set(shard_of([n for n, _, _ in found], *shard))
    results = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {}
        for n, p, nbs in found:
            if n not in mine:
                continue
            digest = content_hash(p)
            before = (previous or {}).get(n)
            if before is not None and before.content_hash == digest:
                before.reused, before.path = True, p
                results.append(before)
                if on_done is not None:
                    on_done(before)
                continue
            job = pool.submit(grade_submission, n, p, nbs, masters, cell_timeout, timeout, sandbox)
            futures[job] = (n, p, digest)
        for future in as_completed(futures):
            name, path, digest = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # a grader-side failure costs this row, not the run
                message = f"the grader failed on this submission ({type(exc).__name__}: {exc})"
                result = Submission(name, path, status="error", message=message)
            result.content_hash = digest
            results.append(result)
            if on_done is not None:
                on_done(result)
    return sorted(results, key=lambda s: s.name)
