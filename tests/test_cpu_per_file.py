"""benchmarks/cpu_per_file.py: the plugin records a test's own and its children's CPU-seconds,
and the summary adds them up per file, most CPU first."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import cpu_per_file  # noqa: E402


def _run_hook(nodeid, work):
    """The hook as pytest runs a hookwrapper: up to its yield, the test, then the rest."""
    hook = cpu_per_file.pytest_runtest_protocol(SimpleNamespace(nodeid=nodeid), None)
    next(hook)
    work()
    try:
        hook.send(None)
    except StopIteration:
        pass


def test_a_test_s_own_and_children_s_cpu_land_in_its_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_COURSE_CPU_DIR", str(tmp_path))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw7")
    monkeypatch.setattr(cpu_per_file, "_OUT", {})

    def spin_here():
        end = cpu_per_file.cpu_seconds()[0] + 0.2
        while cpu_per_file.cpu_seconds()[0] < end:
            pass

    def spin_in_a_child():
        code = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
        subprocess.run([sys.executable, "-c", code], check=True)

    _run_hook("tests/test_a.py::test_one", spin_here)
    _run_hook("tests/test_a.py::test_two", spin_in_a_child)
    _run_hook("notebooks/01.ipynb::Cell 0", lambda: None)
    cpu_per_file._OUT["file"].close()

    records = [json.loads(x) for x in (tmp_path / "gw7.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [
        "tests/test_a.py::test_one",
        "tests/test_a.py::test_two",
        "notebooks/01.ipynb::Cell 0",
    ]
    assert records[0]["own"] >= 0.2 and records[1]["children"] >= 0.3

    table = cpu_per_file.per_file(tmp_path)
    assert [r["file"] for r in table] == ["tests/test_a.py", "notebooks/01.ipynb"]
    first = table[0]
    assert first["tests"] == 2 and first["cpu"] >= 0.5
    assert first["cpu"] == first["own"] + first["children"]


def test_the_summary_says_what_to_do_when_there_are_no_records(tmp_path, capsys):
    assert cpu_per_file.main([str(tmp_path)]) == 1
    assert "run pytest with -p cpu_per_file first" in capsys.readouterr().err


def test_a_running_child_counts_while_it_runs_and_once_when_reaped(tmp_path, monkeypatch):
    """A kernel lives across many tests: its CPU goes to the tests during which it worked."""
    monkeypatch.setenv("LORA_COURSE_CPU_DIR", str(tmp_path))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw8")
    monkeypatch.setattr(cpu_per_file, "_OUT", {})
    code = (
        "import sys, time\nend = time.process_time() + 0.4\n"
        "while time.process_time() < end: pass\nsys.stdout.write('done\\n'); sys.stdout.flush()\n"
        "sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    _run_hook("tests/test_a.py::while_it_works", child.stdout.readline)  # returns at 'done'
    _run_hook("tests/test_b.py::when_it_is_reaped", lambda: child.communicate(""))
    cpu_per_file._OUT["file"].close()

    worked, reaped = (json.loads(x) for x in (tmp_path / "gw8.jsonl").read_text().splitlines())
    assert worked["children"] >= 0.4  # charged while it ran, not yet reaped
    assert reaped["children"] < 0.2  # its reaping adds nothing counted twice
