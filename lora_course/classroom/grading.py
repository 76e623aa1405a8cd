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
from pathlib import Path

import nbformat

from lora_course.checks import CheckResult, run_checks
from lora_course.classroom.answers import export_source, read_answers
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
    "run_notebook",
    "grade_submission",
    "grade",
    "shown_text",
]

CHECK_TIMEOUT = 600.0  # seconds for one exercise's checks in the grader (exercise 3 re-trains)
# A cell error that is a limit being hit, by the text every such error carries.
_LIMIT_ERRORS = (
    ("memory limit", ("MemoryError", "Cannot allocate memory", "can't allocate memory",
                      "out of memory")),
    ("process limit", ("Resource temporarily unavailable", "can't start new thread")),
    ("disk limit", ("No space left on device", "File too large")),
)  # fmt: skip
_TIMEOUT_ENAME = "CellTimeoutError"
_LOG = logging.getLogger(__name__)  # nbclient's timeout messages; the results carry them too
_LOG.addHandler(logging.NullHandler())
# The largest sweep exercise 3 allows (18 runs of 60 steps at batch 8, or the same budget in
# fewer, longer runs) took 90 s in one cell while grading with --jobs 2 on this 2-core machine
# under load; a 2-core laptop is no slower. Both limits leave about three times that.
CELL_TIMEOUT = 300.0
TIMEOUT = 600.0


def shown_text(cells) -> str:
    """What ``cells`` show as text: their streams, plain-text and HTML outputs, one per line."""
    parts = []
    for cell in cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            texts = (out.get("text", ""), data.get("text/plain", ""), data.get("text/html", ""))
            for text in texts:
                parts.append(text if isinstance(text, str) else "".join(text))
    return "\n".join(p for p in parts if p)


def _capped_client(budget: int, run: NotebookRun):
    """An nbclient ``NotebookClient`` that keeps at most ``budget`` bytes of cell output (0: no
    cap); past it outputs are dropped and the run is marked (status ``output limit``)."""
    from nbclient import NotebookClient

    class _Client(NotebookClient):
        kept = 0

        def output(self, outs, msg, display_id, cell_index):
            if budget and msg.get("msg_type") in {"stream", "display_data", "execute_result",
                                                  "error", "update_display_data"}:  # fmt: skip
                size = len(repr(msg.get("content", "")))
                if self.kept + size > budget:
                    run.output_dropped = True
                    return None
                self.kept += size
            return super().output(outs, msg, display_id, cell_index)

    return _Client


async def _execute(
    nb, workdir: Path, answers_file: Path, expressions, cell_timeout, run, sandbox, limits
):
    from lora_course.classroom.sandbox import pids_cgroup

    with pids_cgroup(limits.processes if sandbox else 0) as cgroup:
        await _execute_in(
            nb, workdir, answers_file, expressions, cell_timeout, run, sandbox, limits, cgroup
        )


async def _execute_in(
    nb, workdir, answers_file, expressions, cell_timeout, run, sandbox, limits, cgroup
):
    from lora_course.classroom.sandbox import kernel_manager

    def on_cell_executed(cell, cell_index, execute_reply):
        content = (execute_reply or {}).get("content", {})
        if content.get("status") == "error":
            ename = str(content.get("ename", "Error"))[:100]
            run.cell_errors.append((cell_index, ename, str(content.get("evalue", ""))[:300]))

    client = _capped_client(limits.output, run)(
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
        km=kernel_manager(answers_file.parent, workdir, limits=limits, cgroup=cgroup)
        if sandbox
        else None,
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
        run.shown = shown_text(nb.cells)
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
    limits: Limits | None = None,
) -> NotebookRun:
    """Execute the notebook ``path`` (a copy; the kernel runs in its folder) and check its answers.

    ``answers_dir`` receives the exported answers: a grader-owned folder outside the copy. With
    ``sandbox`` the kernel runs in bubblewrap (:mod:`lora_course.classroom.sandbox`), able to
    write ``answers_dir`` and below only, within ``limits``.
    """
    from nbclient.exceptions import DeadKernelError

    limits = limits or Limits()
    run = NotebookRun(clean_name(path.name), master.stem)
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
                    limits,
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
        run.message = printable(f"the notebook could not be run ({type(exc).__name__}: {exc})")
        run.message = run.message[:500]
    run.seconds = time.monotonic() - start
    run.cell_errors = [(i, printable(n), printable(v)) for i, n, v in run.cell_errors]
    if run.status == "ok" and any(e[1] == _TIMEOUT_ENAME for e in run.cell_errors):
        run.status = "timeout"
        run.message = f"a cell ran longer than {cell_timeout:g} s and was interrupted"
    if run.status == "ok":
        run.status, run.message = _limit_hit(run, limits)
    values, run.notes = read_answers(answers_file, list(expressions))
    run.notes = [printable(n) for n in run.notes]
    run.written = written_answers(nb, master)
    for ex, names in master.exercises.items():
        answers = {name: values[f"{ex}:{name}"] for name in names}
        run.results[ex] = _check_within(ex, answers, CHECK_TIMEOUT, run)
        if run.status == "timeout":
            run.results[ex] = _flag_for_review(run.results[ex], run.message)
    return run


def _limit_hit(run: NotebookRun, limits: Limits) -> tuple[str, str]:
    """("ok", "") or the limit the run hit (``output limit``, ``memory limit``...) and a message."""
    if run.output_dropped:
        return "output limit", (
            f"the notebook printed more than {limits.output / 1e6:g} MB; the rest was not kept "
            "(--output-limit)"
        )
    for status, marks in _LIMIT_ERRORS:
        for index, name, value in run.cell_errors:
            if any(m in name or m in value for m in marks):
                flag = {
                    "memory limit": f"{limits.memory / 2**30:g} GiB per process, --memory-limit",
                    "process limit": f"{limits.processes} processes, --process-limit",
                    "disk limit": f"{limits.disk / 2**30:g} GiB, --disk-limit",
                }[status]
                return status, f"cell {index} hit the sandbox's {status} ({flag})"
    return "ok", ""


def _check_within(exercise_id: str, answers: dict, seconds: float, run: NotebookRun):
    """``run_checks`` on a daemon thread; past ``seconds``, "not attempted" and the run errs.

    A check that raises is the grader's failure on this notebook only (status ``error``).
    """
    import threading

    box: dict = {}

    def target():
        try:
            box["result"] = run_checks(exercise_id, answers)
        except Exception as exc:  # noqa: BLE001 -- reported on this row
            box["error"] = f"{type(exc).__name__}: {printable(str(exc))[:200]}"

    thread = threading.Thread(target=target, daemon=True, name=f"check-{exercise_id}")
    thread.start()
    thread.join(seconds)
    if "result" in box:
        return box["result"]
    problem = box.get("error") or f"took longer than {seconds:g} s"
    run.status = "error"
    run.message = f"the grader's check of {exercise_id} failed ({problem})"
    return run_checks(exercise_id, {})


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
