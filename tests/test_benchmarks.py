"""The benchmark scripts stay runnable: tiny sizes, one repetition, no timing asserted.

Timings are the benchmarks' business (``make bench``); here only their structure and the
bit-exactness assertion that row 4 makes before it times anything.
"""

import sys
from functools import partial
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_lora  # noqa: E402
import bench_nf4  # noqa: E402
import run  # noqa: E402
import timing  # noqa: E402

KEYS = {"row", "what", "value", "target", "met", "detail"}


@pytest.fixture(autouse=True)
def one_call_per_sample(monkeypatch, one_torch_thread):
    """Structure only: one call per sample instead of 0.2 s of calls, which on a loaded machine
    made this file take minutes (314 s measured under load for row 1-3's tiny sizes)."""
    quick = partial(timing.interleaved_medians, min_sample_s=0.0)
    for module in (bench_lora, bench_nf4):
        monkeypatch.setattr(module, "interleaved_medians", quick)


def test_lora_rows_have_the_table_columns():
    rows = bench_lora.rows(sizes=(64,), ranks=(4,), repeats=1)
    assert [r["row"] for r in rows] == [1, 0, 2, 3]
    assert all(set(r) == KEYS and r["value"] > 0 for r in rows)


def test_nf4_row_asserts_bit_exactness_first():
    pytest.importorskip("bitsandbytes")
    rows = bench_nf4.rows(size=256, repeats=1)
    assert [r["row"] for r in rows] == [4, 4]
    assert all(set(r) == KEYS and r["value"] > 0 for r in rows)


def test_table_marks_missed_targets():
    text = run.table(
        [{"row": 1, "what": "x", "value": 1.2, "target": "<= 1.0", "met": False, "detail": "d"}]
    )
    assert "| 1 | x | 1.2 | <= 1.0 | **no** | d | - |" in text
    row = {"row": 6, "what": "y", "value": 2.0, "target": "t", "met": True, "detail": "d"}
    assert "| yes | d | emulated |" in run.table([{**row, "bf16": "emulated"}])
