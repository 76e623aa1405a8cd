"""doctor: the compute-dtype row says which dtype QLoRA uses here and why."""

import re

import pytest
import torch

from lora_course.machinery import doctor, hardware


@pytest.mark.parametrize(
    "ratio, expected",
    [
        (0.7, r"^bfloat16, as the lesson: bf16 is native here .*0\.7x"),
        (6.4, r"^float32, not the lesson's bf16: bf16 is emulated here .*6\.4x.*GPU choice"),
    ],
)
def test_the_reason_names_the_dtype_and_the_measured_factor(monkeypatch, ratio, expected):
    monkeypatch.setattr(hardware, "bf16_slowdown", lambda: ratio)
    assert re.match(expected, doctor.compute_dtype_reason("cpu"))


@pytest.mark.parametrize(
    "capability, expected",
    [
        ((8, 6), r"^bfloat16 on the GPU, the lesson's choice: compute capability 8\.6"),
        ((7, 5), r"^float16 on the GPU, not the lesson's bf16: compute capability 7\.5 .*T4"),
    ],
)
def test_a_gpu_says_its_dtype_and_why(monkeypatch, capability, expected):
    monkeypatch.setattr(hardware, "bf16_slowdown", lambda: 9.0)  # a GPU ignores the CPU's ratio
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert re.match(expected, doctor.compute_dtype_reason("cuda"))


def test_the_row_is_in_the_report_and_a_failed_probe_is_a_problem(monkeypatch):
    rows = doctor.run_checks(include_model=False)
    row = next(c for c in rows if c.what == "QLoRA compute dtype")
    assert row.ok and str(hardware.qlora_compute_dtype("cpu")).removeprefix("torch.") in row.detail

    def broken():
        raise RuntimeError("no probe")

    monkeypatch.setattr(hardware, "bf16_slowdown", broken)
    if not torch.cuda.is_available():
        row = doctor._check_compute_dtype()
        assert not row.ok and "no probe" in row.detail
