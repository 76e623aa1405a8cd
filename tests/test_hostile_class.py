"""A hostile class: attackers graded beside honest learners in ONE sandboxed run (``--jobs 2``).

Each attack is a small notebook or file that costs seconds. For each: the attacker's status,
what it got (read back from its own feedback), that nothing outside its folder changed (the
submissions folder, the course package and ``data/`` are byte-for-byte as before), and that
the honest learners' rows equal those of a clean run of the honest learners alone.

The grader-side attacks (links, fifos, devices, colliding and hostile names, a sparse file,
bytes that are not UTF-8) are refused before a kernel starts, so they add almost nothing; four
attackers need a kernel (the probe with its output flood, memory, disk, processes).
"""

import hashlib
import os
import re
import stat
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from grading_notebooks import (
    MASTER_NAME,
    SOLUTION,
    WRONG,
    answer,
    class_folder,
    sandbox_or_fail,
)

import lora_course
from lora_course.__main__ import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="the sandbox is bubblewrap: Linux only"
    ),
]

STEM = MASTER_NAME[:-6]
COURSE = Path(lora_course.__file__).resolve().parent
DATA = COURSE.parent / "data"
CANARY = f"grader-secret-{os.getpid()}"
SECRET = "TOPSECRET-content-of-a-file"
FORMULA = '=HYPERLINK("evil.example")\x1b[31m+probe'  # formula start, ANSI escape
PROBE_NAME = os.fsdecode(FORMULA.encode() + b"\xff" + f"-{STEM}.ipynb".encode())  # not UTF-8

PROBE = [
    "caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
    "raise RuntimeError(f'PROBE capeff={caps}')",
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    f"r = libc.mount(None, {str(COURSE).encode()!r}, None, 32 | 4096 | 1, None)\n"
    f"w = 'writable' if os.access({str(COURSE)!r}, os.W_OK) else 'read-only'\n"
    "raise RuntimeError(f'PROBE remount={r} errno={ctypes.get_errno()} course={w}')",
    "env1 = open('/proc/1/environ', 'rb').read()\n"
    "mine = open('/proc/self/environ', 'rb').read()\n"
    f"canary = {CANARY.encode()!r}\n"
    "raise RuntimeError(f'PROBE canary={canary in env1 + mine} pid1={len(env1)}')",
    "import os, sys\n"
    f"need = {{'python': sys.executable, 'course': {str(COURSE)!r}, 'data': {str(DATA)!r},\n"
    "        'cwd': os.getcwd(), 'home': os.environ['HOME'], 'tmp': '/tmp'}\n"
    "bad = [k for k, p in need.items() if not os.access(p, os.R_OK)]\n"
    "bad += [k for k in ('cwd', 'home', 'tmp') if not os.access(need[k], os.W_OK)]\n"
    "raise RuntimeError(f'PROBE uid={os.getuid()} cannot={bad}')",
    "raise RuntimeError('PROBE lone \\ud800 surrogate \\x1b[2J')",
]
MEMORY = ["block = bytearray(6 * 2**30)  # 6 GiB, over the 4 GiB default"]
DISK = [
    "with open('/tmp/big.bin', 'wb') as f:\n"
    "    for _ in range(100):\n"
    "        f.write(b'x' * 2**20)  # 100 MB, over --disk-limit"
]
PROCESSES = [
    "import subprocess\n"
    "children = []\n"
    "try:\n"
    "    for _ in range(200):\n"
    "        children.append(subprocess.Popen(['sleep', '60']))\n"
    "finally:\n"
    "    print(len(children), 'started')\n"
    "    for c in children:\n"
    "        c.kill()\n"
    "        c.wait()"
]
OUTPUT = ["for _ in range(40):\n    print('x' * 100_000)  # 4 MB, over --output-limit"]
FLAGS = ["--disk-limit", "0.0625", "--output-limit", "1"]  # 64 MiB, 1 MB: quick to hit


def _notebook(student, path: Path, cells: list[str], code: str = SOLUTION) -> None:
    nb = answer(student, code)
    for source in reversed(cells):
        nb.cells.insert(1, nbformat.v4.new_code_cell(source))
    nbformat.write(nb, path)


def _honest(student, subs: Path) -> None:
    _notebook(student, subs / f"honest-{MASTER_NAME}", [])
    (subs / "carol").mkdir()
    _notebook(student, subs / "carol" / MASTER_NAME, [], WRONG)


def _hostile(student, subs: Path, masters: Path) -> None:
    _notebook(student, subs / PROBE_NAME, PROBE + OUTPUT)  # one kernel for both
    for name, cells in (("memory", MEMORY), ("disk", DISK), ("processes", PROCESSES)):
        _notebook(student, subs / f"{name}-{MASTER_NAME}", cells)
    # links: a notebook that is the master; a learner folder that is someone else's; links inside
    (subs / f"linked-{MASTER_NAME}").symlink_to(masters / MASTER_NAME)
    (subs / "linkfolder").symlink_to(subs / "carol", target_is_directory=True)
    inner = subs / "links"
    inner.mkdir()
    (inner / MASTER_NAME).symlink_to("/proc/self/mem")
    (inner / "secret.txt").symlink_to(masters / MASTER_NAME)
    special = subs / "special"
    special.mkdir()
    _notebook(student, special / MASTER_NAME, [])
    os.mkfifo(special / "pipe")
    if os.geteuid() == 0:
        os.mknod(special / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.mkfifo(subs / f"fifo-{MASTER_NAME}")
    # colliding names: one row name twice; three names that make one feedback file name
    _notebook(student, subs / "bob.ipynb", [])
    (subs / "bob").mkdir()
    for name in ("alice", "alice!", "alice "):
        (subs / name).mkdir()
        (subs / name / "notes.txt").write_text("no notebook here")
    # a 2 GB sparse file; bytes that are not UTF-8; a file whose content must not be echoed
    sparse = subs / "sparse"
    sparse.mkdir()
    _notebook(student, sparse / MASTER_NAME, [])
    with open(sparse / "weights.bin", "wb") as f:
        f.truncate(2 * 10**9)
    (subs / f"badbytes-{MASTER_NAME}").write_bytes(b"\xff\xfe{ not utf-8 " + SECRET.encode())
    (subs / f"secret-{MASTER_NAME}").write_text(SECRET + " is not JSON")
    (subs / f".hidden-{MASTER_NAME}").write_text("{}")


def _snapshot(*roots: Path) -> dict:
    """Every entry under ``roots`` by lstat: type, size, mtime, and regular files' bytes."""
    seen = {}
    for root in roots:
        for top, dirs, files in os.walk(root, followlinks=False):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in dirs + files:
                path = Path(top) / name
                st = path.lstat()
                digest = ""
                if stat.S_ISREG(st.st_mode) and st.st_size < 10**8:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                seen[str(path)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, digest)
    return seen


def _grade(subs: Path, out: Path, masters: Path, *extra: str) -> tuple[int, float]:
    args = ["grade", str(subs), "--out", str(out), "--masters", str(masters), "--jobs", "2"]
    start = time.monotonic()
    code = main([*args, "--timeout", "120", "--cell-timeout", "60", *extra])
    return code, time.monotonic() - start


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    sandbox_or_fail()
    root = tmp_path_factory.mktemp("hostile")
    masters, student, clean_subs, clean_out = class_folder(root, "clean")
    _honest(student, clean_subs)
    clean_code, clean_seconds = _grade(clean_subs, clean_out, masters)
    subs = root / "subs"
    subs.mkdir()
    _honest(student, subs)
    _hostile(student, subs, masters)
    out = root / "out-hostile" / "gradebook.csv"
    before = _snapshot(subs, COURSE, DATA)
    os.environ["LORA_GRADER_CANARY"] = CANARY
    try:
        code, seconds = _grade(subs, out, masters, *FLAGS)
    finally:
        del os.environ["LORA_GRADER_CANARY"]
    after = _snapshot(subs, COURSE, DATA)
    yield {
        "clean": (clean_code, pd.read_csv(clean_out).set_index("submission")),
        "code": code,
        "book": pd.read_csv(out, keep_default_na=False).set_index("submission"),
        "out": out,
        "changed": sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)),
        "seconds": (clean_seconds, seconds),
    }


def _feedback(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in (out.parent / "gradebook-feedback").iterdir()}


def _row(hostile, name: str):
    return hostile["book"].loc[name]


def test_the_run_finishes_and_nothing_outside_the_attackers_folders_changed(hostile):
    assert hostile["clean"][0] == 0 and hostile["code"] == 0
    assert hostile["changed"] == []


def test_honest_rows_equal_a_clean_run(hostile):
    clean = hostile["clean"][1]
    book = hostile["book"]
    columns = ["exercise_1", "total", "status"]
    assert list(clean.index) == ["carol", f"honest-{STEM}"]
    assert clean.loc[f"honest-{STEM}", "total"] == 5 and 0 < clean.loc["carol", "total"] < 5
    pd.testing.assert_frame_equal(book.loc[clean.index, columns], clean[columns], check_dtype=False)


def test_probe_has_no_capability_no_remount_no_grader_environment(hostile):
    book = hostile["book"]
    (name,) = [n for n in book.index if "HYPERLINK" in n]
    # its last attack printed 4 MB: only 1 MB was kept, and its answer still counts
    assert (book.loc[name, "status"], book.loc[name, "total"]) == ("output limit", 5)
    assert "--output-limit" in book.loc[name, "message"]
    (text,) = [t for t in _feedback(hostile["out"]).values() if "PROBE capeff" in t]
    assert "PROBE capeff=0000000000000000" in text
    assert "PROBE remount=-1 errno=1 course=read-only" in text  # EPERM
    assert "PROBE canary=False pid1=0" in text  # bwrap's init: an empty environment
    assert "PROBE uid=65534 cannot=[]" in text  # nobody, yet reads and writes what it needs
    assert "surrogate" in text and "\x1b" not in text  # the kernel could not even send it


def test_formula_and_ansi_names_are_inert_in_every_csv(hostile):
    out = hostile["out"]
    raw = out.read_text(encoding="utf-8")
    assert "\x1b" not in raw and "\n=HYPERLINK" not in raw and ",=HYPERLINK" not in raw
    assert "'=HYPERLINK" in raw and "\\xff" in raw  # the non-UTF-8 byte, shown as text
    for platform in ("canvas", "moodle"):
        text = (out.parent / f"gradebook-{platform}.csv").read_text(encoding="utf-8")
        assert "'=HYPERLINK" in text and "\x1b" not in text
    report = (out.parent / "gradebook-report.html").read_text(encoding="utf-8")
    assert "<script" not in report.lower()


def test_lone_surrogates_and_bytes_in_names_and_messages_are_written(tmp_path):
    """A lone surrogate from an answer or an error, and a name that is not UTF-8, used to stop
    the whole gradebook (UnicodeEncodeError): now every file is written, as valid UTF-8."""
    from class_results import submission, table

    from lora_course.classroom.gradebook import write_outputs

    sub = submission(os.fsdecode(b"bad\xffname"), table(), status="error")
    sub.message = "cell 1 raised ValueError: \ud800 lone"
    sub.runs[0].cell_errors = [(1, "ValueError", "\ud800\x1b[2J")]
    paths = write_outputs([sub], ["exercise_1"], tmp_path / "gradebook.csv")
    files = [p for p in paths.values() if p.is_file() and p.suffix != ".png"]
    for path in files + list(paths["feedback"].iterdir()):
        path.read_bytes().decode("utf-8")  # valid UTF-8 everywhere
    feedback = next(paths["feedback"].iterdir()).read_text()
    assert "\\ud800" in feedback and "\x1b" not in feedback and "bad\\xffname" in feedback


def test_report_escapes_html_in_names(tmp_path):
    from class_results import submission, table

    from lora_course.classroom.gradebook import write_outputs

    subs = [submission("<script>alert(1)</script>", table(), status="error")]
    paths = write_outputs(subs, ["exercise_1"], tmp_path / "gradebook.csv")
    html = paths["report"].read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize(
    "name, status, says",
    [
        ("memory", "memory limit", "memory limit"),
        ("disk", "disk limit", "disk limit"),
        ("processes", "process limit", "process limit"),
    ],
)
def test_limits_stop_the_attacker_with_a_status_and_its_answer_still_counts(
    hostile, name, status, says
):
    row = _row(hostile, f"{name}-{STEM}")
    assert (row.status, row.total) == (status, 5), row.message
    assert says in row.message


def test_links_devices_and_fifos_are_refused_unopened(hostile):
    for name in (f"linked-{STEM}", "linkfolder", "links", "special", f"fifo-{STEM}"):
        row = _row(hostile, name)
        assert (row.status, row.total) == ("refused", 0), (name, row.message)
    assert "symbolic link" in _row(hostile, "links").message
    assert "fifo" in _row(hostile, "special").message
    everything = "".join(_feedback(hostile["out"]).values()) + hostile["out"].read_text()
    assert "BEGIN SOLUTION" not in everything and "Instructor:" not in everything


def test_colliding_names_are_refused_and_feedback_files_never_shared(hostile):
    book = hostile["book"]
    bobs = [n for n in book.index if n.startswith("bob")]
    assert len(bobs) == 2 and set(book.loc[bobs, "status"]) == {"refused"}
    assert "share the name 'bob'" in book.loc[bobs[0], "message"]
    files = _feedback(hostile["out"])
    assert {"alice.txt", "alice-2.txt", "alice-3.txt"} <= set(files)
    assert len(files) == len(book)  # one feedback file per row, none overwritten


def test_large_sparse_file_is_too_large_and_never_read(hostile):
    row = _row(hostile, "sparse")
    assert (row.status, row.total) == ("too large", 0)
    assert "2000 MB" in row.message and "--size-limit" in row.message


def test_no_message_echoes_file_content(hostile):
    for name in (f"secret-{STEM}", f"badbytes-{STEM}"):
        assert _row(hostile, name).status == "not a notebook"
    everything = "".join(_feedback(hostile["out"]).values()) + hostile["out"].read_text()
    assert SECRET not in everything


def test_hidden_entries_are_listed_as_skipped(tmp_path):
    from lora_course.classroom.submissions import find_submissions, hidden_entries

    (tmp_path / ".hidden.ipynb").write_text("{}")
    (tmp_path / ".git").mkdir()
    assert hidden_entries(tmp_path) == [".git", ".hidden.ipynb"]
    assert find_submissions(tmp_path) == []


def test_learner_named_model_is_refused_without_reading_it(tmp_path):
    import json

    from lora_course.checks import run_checks

    folder = tmp_path / "Llama-huge"
    folder.mkdir()
    config = {"model_type": "llama", "num_hidden_layers": 20000, "hidden_size": 64}
    (folder / "config.json").write_text(json.dumps(config))
    answers = {"model": str(folder), "footprint_8bit": 1, "footprint_4bit": 1, "ratio": 1.0}
    start = time.monotonic()
    result = run_checks("exercise_2", answers)
    missing = run_checks("exercise_2", dict(answers, model=str(tmp_path / "Llama-gone")))
    assert time.monotonic() - start < 30  # the 20,000-layer build took 117 s before
    assert result.score == 0 and "cannot price" in str(result)
    # the same words whether the path exists or not: nothing of the grader's disk leaks
    named = re.compile(r"price '.*?': it")  # the name as given (cut at 80 characters)
    assert named.sub("X", str(result)) == named.sub("X", str(missing))


def test_grader_imports_everything_before_the_pool_starts():
    """The --jobs 2 race (AutoConfig half-imported in one thread while another imported
    transformers): in a fresh interpreter, prepare_grader leaves nothing for a worker to import."""
    import subprocess

    code = (
        "import sys\n"
        "from lora_course.classroom.grading import prepare_grader\n"
        "from lora_course.classroom.submissions import load_masters\n"
        "prepare_grader(load_masters('notebooks'))\n"
        "import transformers\n"
        "from transformers import AutoConfig\n"
        "need = ['transformers.models.auto.configuration_auto', 'lora_course.sweep',\n"
        "        'lora_course.checks.exercise_2', 'lora_course.checks.exercise_3',\n"
        "        'lora_course.classroom.report', 'lora_course.classroom.lms']\n"
        "print([m for m in need if m not in sys.modules])"
    )
    root = COURSE.parent
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_hostile_run_time_is_reported(hostile):
    clean, hostile_seconds = hostile["seconds"]
    print(f"clean class (2 honest): {clean:.1f} s; hostile class "
          f"({len(hostile['book'])} rows): {hostile_seconds:.1f} s")  # fmt: skip
    assert len(hostile["book"]) == 19  # 2 honest, 4 run in kernels, 13 refused or stopped first


@pytest.mark.parametrize("prlimit", [True, False], ids=["prlimit", "python-fallback"])
def test_limits_reach_the_kernel_process_with_or_without_prlimit(tmp_path, monkeypatch, prlimit):
    import shutil
    import subprocess

    from lora_course.classroom.sandbox import Limits, bwrap_command

    sandbox_or_fail()
    if not prlimit:
        which = shutil.which
        monkeypatch.setattr(shutil, "which", lambda n: None if n == "prlimit" else which(n))
    code = (
        "import resource\n"
        "print([resource.getrlimit(getattr(resource, 'RLIMIT_' + n))[0] "
        "for n in ('AS', 'NPROC', 'FSIZE')])"
    )
    limits = Limits(memory=3 << 30, processes=77, disk=5 << 20)
    cmd = bwrap_command([sys.executable, "-c", code], tmp_path, tmp_path, limits)
    assert ("prlimit" in " ".join(cmd)) == prlimit
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == f"[{3 << 30}, 77, {5 << 20}]", done.stderr
