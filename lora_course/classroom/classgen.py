"""A generated class, for demonstrations and tests of the grader: ``gradebook demo-class``.

Built at run time from whatever masters it is given (their release is the blank notebook, the
master itself the full answer), so it follows the exercises when they change. Learners cycle
through these kinds, one folder each (``learner-01-full``, ...):

- ``full``: every master as submitted work (full marks);
- ``partial``: every master, then a last cell that doubles each numeric answer value (a table's
  numeric columns after the first, a number): some check items fail;
- ``mixed``: the first master full, the others as released (blank);
- ``blank``: every released notebook untouched (not attempted);
- ``missing``: only the first released notebook handed in;
- ``corrupt``: the first notebook is not JSON (broken file);
- ``crash``: every master with a first cell that kills its kernel (broken run).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

__all__ = ["KINDS", "generate_class"]

KINDS = ("full", "partial", "mixed", "blank", "missing", "corrupt", "crash")

_DOUBLE = """\
def _double(x):
    import numbers
    if isinstance(x, bool):
        return x
    if isinstance(x, numbers.Number):
        return x * 2
    if hasattr(x, "columns") and len(x.columns) > 1:
        x = x.copy()
        for c in x.columns[1:]:
            if str(x[c].dtype) not in ("object", "bool", "str", "string"):
                x[c] = x[c] * 2
    return x
"""


def _doubled(master) -> nbformat.NotebookNode:
    nb = nbformat.read(master.path, as_version=4)
    names = sorted({e for ex in master.exercises.values() for e in ex.values() if e.isidentifier()})
    lines = [_DOUBLE] + [f"{n} = _double({n})" for n in names]
    nb.cells.append(nbformat.v4.new_code_cell("\n".join(lines)))
    return nb


def _crashing(master) -> nbformat.NotebookNode:
    nb = nbformat.read(master.path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import os\nos._exit(3)"))
    return nb


def generate_class(masters_folder: str | Path, out: str | Path, size: int = 30) -> dict[str, str]:
    """Write ``size`` learner folders into ``out``; returns {folder name: kind}."""
    from lora_course.classroom.release import release_all
    from lora_course.classroom.submissions import load_masters

    if size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    masters = load_masters(masters_folder)
    out = Path(out)
    released_dir = out.parent / f".{out.name}-released"
    released = release_all([m.path for m in masters], released_dir)
    kinds = {}
    for i in range(size):
        kind = KINDS[i % len(KINDS)]
        folder = out / f"learner-{i + 1:02d}-{kind}"
        folder.mkdir(parents=True, exist_ok=True)
        kinds[folder.name] = kind
        for k, (master, student) in enumerate(zip(masters, released, strict=True)):
            target = folder / master.path.name
            if kind == "full" or (kind == "mixed" and k == 0):
                shutil.copyfile(master.path, target)
            elif kind == "partial":
                nbformat.write(_doubled(master), target)
            elif kind == "crash":
                nbformat.write(_crashing(master), target)
            elif kind == "corrupt" and k == 0:
                target.write_text('{"cells": [ this is not json')
            elif kind in ("mixed", "blank") or (kind == "missing" and k == 0):
                shutil.copyfile(student, target)
            elif kind == "corrupt":
                shutil.copyfile(student, target)
    shutil.rmtree(released_dir)
    return kinds
