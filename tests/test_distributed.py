"""``python -m lora_course finetune``: one process against two under ``accelerate launch`` (DDP).

Both runs are subprocesses, started together, one torch thread each. The two-process run uses
gloo on the CPU. accelerate's config lookup is pointed at a temporary folder (``HF_HOME``) so
that no config in the user's cache changes the launch, and nothing is written there.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lora_course.machinery.distributed import _check_launch

pytest.importorskip("accelerate")

ROOT = Path(__file__).resolve().parents[1]
REPORT = re.compile(
    r"held-out accuracy (?P<accuracy>[\d.]+) on (?P<items>\d+) items after (?P<steps>\d+) "
    r"steps \(final loss (?P<loss>[\d.]+)\); (?P<processes>\d+) process\(es\), backend "
    r"(?P<backend>\w+), \[(?P<per_process>[\d, ]+)\] training items per process, "
    r"(?P<overlap>\d+) taken twice in a step"
)


def _start(command: list[str], tmp_path: Path) -> subprocess.Popen:
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("LORA_COURSE_MODEL", None)  # the tiny model, whatever the shell says
    return subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _report(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out[-3000:]
    found = REPORT.findall(out)  # exactly one report: only the main process prints
    assert len(found) == 1, out[-3000:]
    return REPORT.search(out).groupdict()


@pytest.mark.slow
def test_two_processes_reach_the_accuracy_of_one(tmp_path):
    finetune = ["-m", "lora_course", "finetune", "--cpu"]  # the defaults notebooks train with
    one = _start([sys.executable, *finetune], tmp_path)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launch += ["--num_processes", "2", "--main_process_port", "0", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    two = _start([*launch, *finetune], tmp_path)
    one, two = _report(one), _report(two)

    assert (one["processes"], one["backend"]) == ("1", "None")
    assert (two["processes"], two["backend"]) == ("2", "gloo")  # DDP over gloo, on the CPU
    # Each process took half of every global batch of 16, and no item went to both.
    assert one["per_process"] == "960"
    assert two["per_process"] == "480, 480" and two["overlap"] == "0"
    # The same training run up to the order of float sums: the same loss and accuracy.
    assert float(two["loss"]) == pytest.approx(float(one["loss"]), abs=1e-3)
    assert float(one["accuracy"]) >= 0.9
    assert abs(float(two["accuracy"]) - float(one["accuracy"])) <= 0.01  # 2 of 200 items
    assert one["items"] == two["items"] == "200"  # every test item evaluated exactly once


@pytest.mark.slow
def test_two_processes_train_a_local_shape_true_folder(tmp_path):
    """Llama-3.2-1B's layout scaled down (random weights), from a local folder, in two processes
    under `accelerate launch`, each loading its own whole copy. (One process on such a folder
    runs in tests/real_path; that one and two processes train the same run is checked above.)"""
    from lora_course.machinery.shape_true import SMALL_1B, shape_true_model

    folder = shape_true_model("Llama-3.2-1B", "bf16", SMALL_1B, root=tmp_path / "models")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launch += ["--num_processes", "2", "--main_process_port", "0", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["-m", "lora_course", "finetune", "--cpu", "--model-name", str(folder)]
    two = _report(_start([*launch, "--steps", "2", "--batch-size", "4"], tmp_path))

    assert (two["processes"], two["backend"]) == ("2", "gloo")
    assert two["per_process"] == "4, 4" and two["overlap"] == "0" and two["items"] == "200"
    assert 0 < float(two["loss"]) < 20  # random weights: a finite loss, nothing learned yet


def test_cpu_launcher_without_mpirun_is_refused(monkeypatch):
    """`accelerate launch --cpu --num_processes 2` starts one process (no mpirun): say so."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.raises(RuntimeError, match="--multi_gpu --num_processes N"):
        _check_launch()
    monkeypatch.setenv("WORLD_SIZE", "2")  # started by torchrun or mpirun: fine
    _check_launch()
