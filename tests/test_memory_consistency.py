"""One setting, one number: every training-memory figure a notebook saved is re-priced with
``training_memory`` (the course's one estimate) and must appear, as printed, in that cell's
saved output. A notebook re-executed after a change to the estimate passes; a saved output
edited by hand, or left stale, fails and names the cell and the missing number."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch

from lora_course import training_memory as tm
from lora_course.machinery.memory_evidence import published_comparison

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
GB = 1e9


def peak(config, method="qlora", **settings) -> float:
    return tm.peak_bytes(tm.training_memory(config, method, **settings)) / GB


def parts(config, method="qlora", **settings):
    return tm.training_memory(config, method, **settings).set_index("part")["gb"]


def _nb09():
    expected = {}
    p = parts("Llama-3.1-8B", batch_size=1, seq_len=512)
    expected["ee3bf0d1"] = [f"{v:.3f}" for v in p]
    expected["8e383ddb"] = [f"peak: {p.sum():.2f} GB"]
    priced = []
    for kw in ({"method": "lora"}, {"method": "full"}, {"method": "full", "precision": "bf16"}):
        for optimizer in ("adamw", "adamw-8bit"):
            priced.append(f"{peak('Llama-3.1-8B', optimizer=optimizer, **kw):.3f}")
    expected["3609c1d7"] = priced
    small = [
        peak("Llama-3.2-1B", batch_size=4, seq_len=1024, **kw)
        for kw in ({"method": "lora"}, {"prepared": True}, {"prepared": False})
    ]
    expected["f8d2653e"] = [f"{v:.3f}" for v in small]
    expected["db46d147"] = [f"{v:.3f}" for v in tm.scenario_table("Llama-3.1-8B")["peak_gb"]]
    verdict = [
        peak(name, batch_size=b, seq_len=s)
        for name in ("Llama-2-7B", "Llama-3.1-8B")
        for b, s in [(1, 256), (1, 512), (1, 1024), (1, 2048), (4, 1024)]
    ]
    expected["701271f8"] = [f"{v:.3f}" for v in verdict]
    expected["i23a-02"] = [f"plain transformers + PEFT: {p.sum():.2f} GB"]
    expected["dc378933"] = [f"{v:.3f}" for v in published_comparison()["estimated_gb"]]
    fsdp = [
        peak("Llama-3.1-70B", seq_len=s, prepared=False, devices=n)
        for n in (1, 2)
        for s in (512, 1024, 2048)
    ]
    expected["6864af4d"] = [f"{v:.3f}" for v in fsdp]
    return expected


def _nb03():
    p = parts("Llama-2-7B", batch_size=4, seq_len=1024, gradient_checkpointing=True)
    rows = [
        peak(name, batch_size=b, seq_len=s, gradient_checkpointing=gc)
        for name, b, s in [
            ("Llama-2-7B", 1, 512),
            ("Llama-2-7B", 4, 1024),
            ("Llama-3.1-8B", 1, 512),
        ]
        for gc in (True, False)
    ]
    return {"cell-25": [f"{v:.3f}" for v in p], "cell-27": [f"{v:.2f}" for v in rows]}


def _nb02():
    values = []
    for r in (8, 64):
        p = parts("Llama-3.1-8B", rank=r)
        values.append(f"{p['base weights'] + p['quantization state']:.3f}")
        values += [f"{p[k]:.3f}" for k in ("trainable parameters", "activations")]
    return {"c5ab599a": values}


def _nb08():
    state = parts("Llama-3.1-8B", "full")[["base weights", "gradients", "optimizer state"]].sum()
    qv = parts("Llama-3.1-8B", "lora", target_modules=("q_proj", "v_proj"))
    qv_state = qv[["trainable parameters", "gradients", "optimizer state"]].sum()
    return {"cc9eed97": [f"{state:.0f} GB", f"{qv_state * 1e3:.0f} MB"]}


EXPECTED = {  # notebook -> {cell id -> the figures it must show, formatted as it prints them}
    "09_training_memory": _nb09,
    "03_qlora": _nb03,
    "02_rank_and_alpha": _nb02,
    "08_adapters": _nb08,
}


def saved_text(cell) -> str:
    """Everything a cell's saved outputs show as text: streams, plain text and Markdown."""
    out = []
    for o in cell.get("outputs", []):
        out.append(o.get("text", ""))
        data = o.get("data", {})
        out += [data.get("text/plain", ""), data.get("text/markdown", "")]
    return "".join(out)


def missing_figures(notebook: Path, expected: dict[str, list[str]]) -> dict[str, list[str]]:
    """For each cell id, the expected figures its saved output does not show."""
    cells = {c.get("id"): c for c in nbformat.read(notebook, as_version=4).cells}
    missing = {}
    for cell_id, figures in expected.items():
        if cell_id not in cells:
            missing[cell_id] = ["(no cell with this id)"]
            continue
        text = saved_text(cells[cell_id])
        gone = [f for f in figures if f not in text]
        if gone:
            missing[cell_id] = gone
    return missing


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_saved_memory_figure_is_the_estimate(name):
    torch.manual_seed(0)
    missing = missing_figures(NOTEBOOKS / f"{name}.ipynb", EXPECTED[name]())
    assert not missing, (
        f"{name}: saved outputs disagree with training_memory (re-execute the notebook): {missing}"
    )


def test_one_setting_gives_one_number_across_notebooks():
    """Settings shown in more than one notebook: the same call, so the same figure."""
    from lora_course.training_memory import qlora_training_estimate

    assert qlora_training_estimate("Llama-3.1-8B")["gb"].sum() == pytest.approx(
        peak("Llama-3.1-8B", batch_size=1, seq_len=512)
    )
    e09, e03 = _nb09(), _nb03()
    assert f"{peak('Llama-2-7B', batch_size=4, seq_len=1024):.2f}" in e03["cell-27"]
    assert f"{peak('Llama-2-7B', batch_size=4, seq_len=1024):.3f}" in e09["dc378933"]
    assert f"{peak('Llama-2-7B', batch_size=4, seq_len=1024):.3f}" in e09["701271f8"]
