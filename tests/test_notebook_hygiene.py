"""What a learner sees in a saved notebook: no test plumbing, no stderr, a result under every
code cell, and claim cells that fold away.

nbval reads its markers from cell tags (``nbval-check-output``, ``nbval-ignore-output``,
``nbval-skip``), so no cell needs a ``# NBVAL_`` comment. A cell tagged ``claim`` backs a
sentence above it with an ``assert`` that nbval runs: its source is folded in JupyterLab
(``jupyter.source_hidden``), it is skipped in the slides, and it prints what it checked.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request):
    return nbformat.read(request.param, as_version=4)


def _code_cells(nb):
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def test_no_nbval_comments(notebook):
    found = [i for i, c in _code_cells(notebook) if "NBVAL_" in c.source]
    assert not found, f"cells {found} carry '# NBVAL_' comments: use nbval's cell tags instead"


def test_no_stderr_saved(notebook):
    noisy = [
        i
        for i, c in _code_cells(notebook)
        if any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in c.outputs)
    ]
    assert not noisy, f"cells {noisy} saved a stderr stream: quiet it in the package and re-run"


def test_a_result_under_every_code_cell(notebook):
    empty = [i for i, c in _code_cells(notebook) if not c.outputs]
    assert not empty, f"code cells {empty} show no result: end them with a value or a print"


def test_claim_cells_fold_away_and_assert(notebook):
    for i, cell in _code_cells(notebook):
        if "claim" not in cell.metadata.get("tags", []):
            continue
        where = f"cell {i}"
        assert "assert " in cell.source, f"{where} is tagged claim but asserts nothing"
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, (
            f"{where}: a claim cell is folded (metadata.jupyter.source_hidden = true)"
        )
        assert cell.metadata.get("slideshow", {}).get("slide_type") == "skip", (
            f"{where}: a claim cell is skipped in the slides (slide_type 'skip')"
        )


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell binds at its top level, names it reads before binding them), from its
    source; lines starting with % or ! (IPython magics) are left out."""
    import ast

    code = "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )
    tree = ast.parse(code)
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    first_bound: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            first_bound[node.id] = min(first_bound.get(node.id, node.lineno), node.lineno)
    read = {  # read on a line before the cell's first binding of it (or never bound there)
        n.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Name)
        and isinstance(n.ctx, ast.Load)
        and n.lineno < first_bound.get(n.id, n.lineno + 1)
    }
    return bound, read


def test_claim_cells_define_nothing_a_visible_cell_uses(notebook):
    """A folded claim cell only checks: a learner who never unfolds it, and the slides, which
    skip it, must not meet a name that only it defines."""
    origin: dict[str, int] = {}  # name -> index of the claim cell that bound it last
    for i, cell in _code_cells(notebook):
        bound, read = _names(cell.source)
        if "claim" in cell.metadata.get("tags", []):
            origin.update(dict.fromkeys(bound, i))
            continue
        leaked = sorted(n for n in read if n in origin)
        assert not leaked, (
            f"cell {i} uses {leaked}, defined only in the folded claim cell(s) "
            f"{sorted({origin[n] for n in leaked})}: define them in a visible cell"
        )
        for name in bound:
            origin.pop(name, None)
