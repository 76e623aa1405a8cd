"""The grading sandbox: learner code cannot reach other submissions, the gradebook, the course,
the grader's processes or the network; a learner's normal work still runs.

One sandboxed grading run (``--jobs 2``) over a vandal, a network probe, a learner doing normal
work (files, the tiny model, a few training steps) and an innocent victim; then the probe once
more without the sandbox, so every "blocked" is shown to be the sandbox's doing.
"""

import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from grading_notebooks import MASTER_NAME, SOLUTION, answer, class_folder, sandbox_or_fail

import lora_course
from lora_course.__main__ import main
from lora_course.classroom.sandbox import bwrap_command, sandbox_problem

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="the sandbox is bubblewrap: Linux only"
    ),
]

COURSE_FILE = Path(lora_course.__file__)  # touched (mtime), never rewritten, if writable
TOKEN = f"vandal-{os.getpid()}"

PROC = f"""\
try:
    seen = open('/proc/{os.getpid()}/cmdline', 'rb').read()  # the grader's (this test's) pid
except OSError:
    seen = b''
raise RuntimeError(f'GRADER SEEN: {{seen[:60]!r}}' if seen else 'no grader in /proc')
"""

NETWORK = """\
import socket
with socket.create_connection(('127.0.0.1', PORT), timeout=5) as s:
    s.sendall(b'hello from a kernel')
"""

NORMAL_WORK = """\
from pathlib import Path
Path('notes.txt').write_text('my results')
assert Path('notes.txt').read_text() == 'my results'
import torch
torch.set_num_threads(1)
from lora_course import add_lora, finetune, load_model, load_task
model, tokenizer = load_model()
add_lora(model, ['q_proj', 'v_proj'], rank=4, alpha=8)
history = finetune(model, tokenizer, load_task('train'), steps=2, batch_size=4, progress=False)
assert len(history) == 2
"""


class Server:
    """A TCP server on the host's loopback that counts the connections it accepts."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def _vandal(targets: list[Path]) -> list[str]:
    """One cell per attack, errors not caught: each failure is reported in the feedback."""
    cells = [PROC]
    cells += [f"open({str(path)!r}, 'w').write({TOKEN!r})" for path in targets]
    cells.append(f"import os\nos.utime({str(COURSE_FILE)!r})")
    cells.append(f"open({str(COURSE_FILE.parent / TOKEN)!r}, 'w').write('x')")
    return cells


def _submission(student, path: Path, cells: list[str]) -> None:
    nb = answer(student, SOLUTION)
    for code in reversed(cells):
        nb.cells.insert(1, nbformat.v4.new_code_cell(code))
    nbformat.write(nb, path)


def _grade(subs, out, masters, *extra):
    args = ["grade", str(subs), "--out", str(out), "--masters", str(masters), "--jobs", "2"]
    return main([*args, "--timeout", "120", "--cell-timeout", "90", *extra])


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory):
    sandbox_or_fail()
    root = tmp_path_factory.mktemp("sandbox")
    masters, student, subs, out = class_folder(root, "subs")
    victim = subs / f"victim-{MASTER_NAME}"
    _submission(student, victim, [])
    victim_bytes = victim.read_bytes()
    data_file = COURSE_FILE.parent.parent / "data" / TOKEN
    _submission(student, subs / f"vandal-{MASTER_NAME}", _vandal([victim, out, data_file]))
    server = Server()
    network = NETWORK.replace("PORT", str(server.port))
    _submission(student, subs / f"network-{MASTER_NAME}", [PROC, network])
    _submission(student, subs / f"worker-{MASTER_NAME}", [NORMAL_WORK])
    course_mtime = COURSE_FILE.stat().st_mtime_ns
    start = time.monotonic()
    code = _grade(subs, out, masters)
    seconds = time.monotonic() - start
    accepted_sandboxed = server.accepted
    # The same probe unsandboxed, alone in its folder: the server must now see it.
    bare = root / "bare"
    bare.mkdir()
    shutil.copy(subs / f"network-{MASTER_NAME}", bare)
    bare_out = root / "bare-out" / "gradebook.csv"
    assert _grade(bare, bare_out, masters, "--no-sandbox") == 0
    server.close()
    yield {
        "code": code,
        "book": pd.read_csv(out).set_index("submission"),
        "out": out,
        "bare_out": bare_out,
        "victim": (victim, victim_bytes),
        "course_mtime": course_mtime,
        "accepted": (accepted_sandboxed, server.accepted - accepted_sandboxed),
        "seconds": seconds,
    }
    for leftover in (COURSE_FILE.parent / TOKEN, data_file):
        leftover.unlink(missing_ok=True)  # only if the sandbox failed


def _feedback(out: Path, name: str) -> str:
    return (out.parent / "gradebook-feedback" / f"{name}-{MASTER_NAME[:-6]}.txt").read_text()


def test_vandal_changes_nothing_and_every_attempt_is_reported(sandboxed):
    assert sandboxed["code"] == 0
    victim, before = sandboxed["victim"]
    assert victim.read_bytes() == before
    book = sandboxed["book"]  # the grader's gradebook replaced the previous one, nothing else
    assert TOKEN not in sandboxed["out"].read_text()
    assert COURSE_FILE.stat().st_mtime_ns == sandboxed["course_mtime"]
    assert not (COURSE_FILE.parent / TOKEN).exists()
    assert not (COURSE_FILE.parent.parent / "data" / TOKEN).exists()
    feedback = _feedback(sandboxed["out"], "vandal")
    assert "no grader" in feedback and "GRADER SEEN" not in feedback
    # victim and gradebook: not in the sandbox at all; the course: read-only
    assert feedback.count("FileNotFoundError") >= 2, feedback
    assert feedback.count("Read-only file system") >= 2, feedback
    row = book.loc[f"vandal-{MASTER_NAME[:-6]}"]
    assert (row.status, row.total) == ("ok", 5)  # its answer still graded
    assert book.loc[f"victim-{MASTER_NAME[:-6]}"].total == 5


def test_network_is_cut_in_the_sandbox_and_open_without_it(sandboxed):
    inside, outside = sandboxed["accepted"]
    assert (inside, outside) == (0, 1)
    feedback = _feedback(sandboxed["out"], "network")
    assert "raised ConnectionRefusedError" in feedback or "raised OSError" in feedback
    bare = _feedback(sandboxed["bare_out"], "network")
    assert "GRADER SEEN" in bare  # and without the sandbox the grader's processes show


def test_normal_work_still_runs(sandboxed):
    row = sandboxed["book"].loc[f"worker-{MASTER_NAME[:-6]}"]
    feedback = _feedback(sandboxed["out"], "worker")
    assert (row.status, row.total) == ("ok", 5), feedback
    assert "raised" not in feedback, feedback


def test_the_command_binds_the_course_read_only_and_hides_the_masters(tmp_path):
    cmd = bwrap_command(["python", "-m", "ipykernel_launcher"], tmp_path, tmp_path)
    package = str(Path(lora_course.__file__).resolve().parent)
    pairs = list(zip(cmd, cmd[1:], cmd[2:], strict=False))
    assert ("--ro-bind", package, package) in pairs
    assert ("--bind", str(tmp_path.resolve()), str(tmp_path.resolve())) in pairs
    notebooks = str(Path(package).parent / "notebooks")
    assert notebooks not in cmd  # the masters hold the solutions
    assert "--unshare-all" in cmd and "--clearenv" in cmd


def test_sandbox_time_is_reported(sandboxed):
    per = sandboxed["seconds"] / len(sandboxed["book"])
    print(f"graded {len(sandboxed['book'])} sandboxed submissions in {sandboxed['seconds']:.1f} s")
    assert per < 60


@pytest.fixture
def fresh_probe():
    sandbox_problem.cache_clear()
    yield
    sandbox_problem.cache_clear()


def test_macos_and_windows_warn_and_give_the_container_command(monkeypatch, capsys, fresh_probe):
    from lora_course.classroom.cli import _sandbox_or_warn

    monkeypatch.setattr(sys, "platform", "darwin")
    assert _sandbox_or_warn(no_sandbox=False) == ""  # grades, unsandboxed
    err = capsys.readouterr().err
    assert "WARNING: no sandbox" in err and "docker run --rm --network none" in err


def test_linux_without_bwrap_refuses_and_says_how(monkeypatch, capsys, fresh_probe):
    from lora_course.classroom.cli import _sandbox_or_warn
    from lora_course.classroom.grading import grade
    from lora_course.classroom.sandbox import SandboxUnavailable

    monkeypatch.setattr(shutil, "which", lambda name: None)
    stop = _sandbox_or_warn(no_sandbox=False)
    assert "make bubblewrap" in stop and "--no-sandbox" in stop
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        grade(Path("."), [], sandbox=True)
    assert _sandbox_or_warn(no_sandbox=True) == ""
    assert "WARNING: --no-sandbox" in capsys.readouterr().err
