"""One submitted notebook in one kernel: run it within limits, read its answers, check them.

:func:`run_notebook` executes a copy of the notebook with nbclient (sandboxed by
:mod:`lora_course.classroom.sandbox` unless told not to): cell errors are kept and the run goes
on, a cell past its limit is interrupted, a notebook past its wall limit has its kernel stopped,
and a limit hit inside the sandbox is named (``memory limit``, ``output limit``...). One more
cell exports the master's answer expressions as JSON (:mod:`lora_course.classroom.answers`),
and :func:`lora_course.checks.run_checks` scores them here, in the grader's process, under a
time limit (``CHECK_TIMEOUT``). The class run around it is :mod:`lora_course.classroom.grading`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import secrets
import subprocess
import time
from pathlib import Path

import nbformat

from lora_course.checks import CheckResult, run_checks
from lora_course.classroom.answers import export_source, read_answers
from lora_course.classroom.results import NotebookRun
from lora_course.classroom.safety import clean_name, printable
from lora_course.classroom.sandbox import Limits
from lora_course.classroom.submissions import Master, read_notebook

__all__ = ["CHECK_TIMEOUT", "run_notebook", "shown_text", "written_answers"]

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
