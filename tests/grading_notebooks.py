"""Master and submission notebooks for the release and grading tests (real exercise 1 checks)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

MASTER_NAME = "05_exercise_1.ipynb"

SETUP = """\
import pandas as pd
from torch import nn

from lora_course import LoRALayer, count_parameters
from lora_course.checks import check"""

SOLUTION = """\
for rank in (4, 8, 16, 32):
    layer = LoRALayer(nn.Linear(4096, 4096), rank=rank, alpha=2 * rank)
    trainable, total = count_parameters(layer)
    rows.append({"rank": rank, "trainable": trainable, "total": total, "ratio": trainable / total})
table = pd.DataFrame(rows)"""

# Exercise 1's "only A" mistake: trainable = 4096 * r, ratio following it.
WRONG = """\
for rank in (4, 8, 16, 32):
    trainable, total = 4096 * rank, 4096 * 4096 + 4096 + 2 * 4096 * rank
    rows.append({"rank": rank, "trainable": trainable, "total": total, "ratio": trainable / total})
table = pd.DataFrame(rows)"""

CHECK = 'check("exercise_1", table=table)'


def master_notebook():
    """A master in the course's conventions: markers, an instructor cell, a written answer."""
    solution_cell = new_code_cell(
        f"rows = []\n### BEGIN SOLUTION\n{SOLUTION}\n### END SOLUTION\nprint(len(rows))"
    )
    solution_cell.outputs = [new_output("stream", name="stdout", text="4\n")]
    solution_cell.execution_count = 2
    return new_notebook(
        cells=[
            new_markdown_cell("# Exercise 1\n\nBuild the table of trainable parameters."),
            new_code_cell(SETUP),
            new_markdown_cell(
                "Instructor: the answer is 2 * 4096 * r.", metadata={"tags": ["instructor"]}
            ),
            solution_cell,
            new_code_cell(CHECK),
            new_markdown_cell(
                "Why is the ratio so small?\n\n### BEGIN SOLUTION\nBecause r << d.\n"
                "### END SOLUTION"
            ),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )


def write_master(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MASTER_NAME
    nbformat.write(master_notebook(), path)
    return path


def answer(student_nb, code: str, before: str = ""):
    """A learner's version of the released notebook: ``code`` typed at ``# YOUR CODE HERE``."""
    nb = nbformat.from_dict(student_nb)
    for cell in nb.cells:
        if "# YOUR CODE HERE" in cell.source and cell.cell_type == "code":
            cell.source = cell.source.replace("# YOUR CODE HERE", code)
            if before:
                index = nb.cells.index(cell)
                nb.cells.insert(index, new_code_cell(before))
            return nb
    raise AssertionError("no placeholder in the released notebook")


def class_folder(root: Path, subs_name: str = "submissions"):
    """A class to grade under ``root``: the master in ``masters/``, its student release read back
    as a notebook, an empty submissions folder, and a previous ``out/gradebook.csv`` (so a test
    can see that grading, or a learner, does not clobber it). Returns
    ``(masters, student, subs, out)``."""
    from lora_course.classroom.release import release_all

    masters = root / "masters"
    write_master(masters)
    (released,) = release_all([masters / MASTER_NAME], root / "release")
    student = nbformat.read(released, as_version=4)
    subs = root / subs_name
    subs.mkdir()
    out = root / "out" / "gradebook.csv"
    out.parent.mkdir()
    out.write_text("previous gradebook\n")
    return masters, student, subs, out


def sandbox_or_fail() -> None:
    """Fail (not skip) a sandbox test where bwrap cannot run: `make test` installs it first."""
    import pytest

    from lora_course.classroom.sandbox import sandbox_problem

    problem = sandbox_problem()
    if problem:
        pytest.fail(f"the sandbox cannot run here: {problem} (`make bubblewrap` installs it)")


# What a learner types at each `# YOUR CODE HERE` of the released exercise notebooks, by cell id
# (exercise 3's sweep kept small: 5 steps, 16 held-out examples), and a written answer.
TYPED = {
    "504ffe05": "trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)\n"
    "        return trainable, sum(p.numel() for p in self.parameters())",
    "3ee25c45": "table = pd.DataFrame([dict(zip(('rank', 'trainable', 'total'), (r, "
    "*CountingLoRALayer(nn.Linear(4096, 4096), rank=r, alpha=2 * r).parameter_counts()))) "
    "for r in (4, 8, 16, 32)])\ntable['ratio'] = table.trainable / table.total",
    "b57f33c1": "footprint_8bit = 3_000_000\nfootprint_4bit = 2_000_000\nratio = 1.5",
    "6a61fdbb": "settings = [(4, a) for a in (0.2, 2, 20, 200)]\n"
    "runs.append(summarize(sweep(settings, steps=5, eval_size=16, seed=0, model=tiny)))",
    "386d8a85": "runs.append(summarize(sweep(settings, steps=5, eval_size=16, seed=1, "
    "model=tiny)))\nresults = pd.concat(runs, ignore_index=True)",
    "9abf276d": "means = results.groupby(['rank', 'alpha'])[['accuracy', 'final_loss']].mean()\n"
    "best = means.sort_values(['accuracy', 'final_loss'], ascending=[False, True]).index[0]",
}
WRITTEN = "Too low: s = 0.05 stays at chance."
