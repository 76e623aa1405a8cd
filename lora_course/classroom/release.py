"""Student notebooks from the master notebooks: solutions out, still runnable top to bottom.

The master notebooks in ``notebooks/`` hold the reference solutions; ``python -m lora_course
release`` writes one student notebook per master. Notebook authors mark what learners must not
see with these conventions:

- **Solution code**: lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` in a code
  cell (the markers on lines of their own, any indentation). The block becomes
  ``# YOUR CODE HERE``, preceded by ``name = None`` for every answer name the block assigns and
  the cell does not already set above the block (one placeholder per answer, never after the
  marker, so code typed at the marker is kept), so a later ``check("exercise_1", table=table)``
  runs and reports "not attempted" instead of a ``NameError``. A block inside a function or loop
  that assigns no answer gets ``pass``. The
  answer names are the variables passed to ``check(...)`` in the notebook, plus the names each
  of its exercises declares (``lora_course.checks.expected_answers``).
- **Written answers**: the same markers in a markdown cell; the block becomes
  ``*Write your answer here.*``.
- **Whole cells**: tag a cell ``solution`` to replace all of it (code: ``# YOUR CODE HERE`` and
  the ``None`` assignments; markdown: the written-answer placeholder); tag it ``instructor`` to
  drop it from the student notebook (notes for the instructor, answer keys, grading helpers).
- **Outputs**: a notebook with any of the above loses every output and execution count (an
  output further down can give a solution away); a notebook without any keeps its outputs, so
  the lesson notebooks read well before they are run.

A master whose markers do not pair up is refused with the notebook, cell index and line named.
The result is deterministic: the same master gives the same bytes.
"""

from __future__ import annotations

import ast
import copy
import re
import textwrap
from collections.abc import Iterable
from pathlib import Path

import nbformat

__all__ = [
    "BEGIN",
    "END",
    "CODE_PLACEHOLDER",
    "TEXT_PLACEHOLDER",
    "SOLUTION_TAG",
    "INSTRUCTOR_TAG",
    "MarkerError",
    "check_calls",
    "answer_variables",
    "release_notebook",
    "release_all",
    "master_notebooks",
]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CODE_PLACEHOLDER = "# YOUR CODE HERE"
TEXT_PLACEHOLDER = "*Write your answer here.*"
SOLUTION_TAG = "solution"
INSTRUCTOR_TAG = "instructor"

# NN_ or NNx_ (x a lowercase letter): 02b follows 02 without renumbering 03..10 or the exercises.
_MASTER_NAME = re.compile(r"^\d\d[a-z]?_.+\.ipynb$")


class MarkerError(ValueError):
    """A master notebook whose solution markers do not pair up."""


def master_notebooks(folder: str | Path) -> list[Path]:
    """The master notebooks ``NN_*.ipynb`` (or ``NNx_*.ipynb``, e.g. ``02b_``) in ``folder``, sorted
    by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no notebook folder {folder}: pass the folder of NN_*.ipynb")
    return sorted(p for p in folder.iterdir() if p.is_file() and _MASTER_NAME.match(p.name))


def check_calls(nb) -> dict[str, dict[str, str]]:
    """``check("exercise_N", name=expr, ...)`` calls in a notebook: {exercise id: {name: expr}}.

    ``expr`` is the source of the argument (usually a variable name); a grader evaluates it in
    the learner's kernel. Calls are read from code cells that parse as Python; the first call of
    an exercise wins.
    """
    calls: dict[str, dict[str, str]] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_without_magics(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name | ast.Attribute)
                and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) == "check"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                continue
            args = {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg is not None}
            calls.setdefault(node.args[0].value, args)
    return calls


def answer_variables(nb) -> dict[str, dict[str, str]]:
    """{exercise id: {answer name: expression to evaluate}} for the exercises a notebook checks.

    Declared answers that the ``check`` call does not pass are looked up under their own name.
    """
    from lora_course.checks import exercise_ids, expected_answers

    known = set(exercise_ids())
    result = {}
    for exercise_id, args in check_calls(nb).items():
        if exercise_id not in known:
            continue
        result[exercise_id] = {name: args.get(name, name) for name in expected_answers(exercise_id)}
    return result


def _without_magics(source: str) -> str:
    # IPython lines (%magic, !shell) are not Python; blank them so the rest can be parsed.
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )


def _assigned_names(block: list[str]) -> list[str]:
    """Names bound by assignment statements in a block of lines, in order of first binding."""
    code = textwrap.dedent("\n".join(block))
    names: list[str] = []
    try:
        tree = ast.parse(_without_magics(code))
    except SyntaxError:  # a fragment (e.g. the body of an if): fall back to a line scan
        for line in block:
            m = re.match(r"\s*([A-Za-z_]\w*)\s*(?::[^=]*)?(?:[-+*/%@&|^]|//|\*\*)?=(?!=)", line)
            if m and m.group(1) not in names:
                names.append(m.group(1))
        return names
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.For):
            targets = [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name) and sub.id not in names:
                    names.append(sub.id)
    return names


def _bound_by(lines: list[str]) -> set[str]:
    """Names that ``lines`` assign (``a = ...``, ``a, b = ...``): the cell's own placeholders."""
    names = set()
    for line in lines:
        m = re.match(r"\s*([A-Za-z_][\w\s,]*?)\s*=(?!=)", line)
        if m:
            names.update(n.strip() for n in m.group(1).split(",") if n.strip().isidentifier())
    return names


def _code_placeholder(
    block: list[str], indent: str, answers: Iterable[str], above: list[str] = ()
) -> list[str]:
    assigned = _assigned_names(block)
    already = _bound_by(list(above))
    nones = [name for name in answers if name in assigned and name not in already]
    lines = [f"{indent}{name} = None" for name in nones] + [indent + CODE_PLACEHOLDER]
    if indent and not nones:
        lines.append(indent + "pass")  # keep an enclosing def/for/if syntactically whole
    return lines


def _strip_blocks(source: str, where: str, code: bool, answers: list[str]) -> tuple[str, bool]:
    """Replace every BEGIN/END block in ``source``: (new source, whether anything changed)."""
    out: list[str] = []
    block: list[str] | None = None
    indent = ""
    begin_line = 0
    lines = source.splitlines()
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if block is not None:
                raise MarkerError(
                    f"{where}, line {number}: {BEGIN} inside the block opened on line "
                    f"{begin_line}; close it with {END} first"
                )
            block, indent, begin_line = [], line[: len(line) - len(line.lstrip())], number
        elif stripped == END:
            if block is None:
                raise MarkerError(
                    f"{where}, line {number}: {END} without a {BEGIN} above it in the same cell"
                )
            if code:
                out.extend(_code_placeholder(block, indent, answers, out))
            else:
                out.append(indent + TEXT_PLACEHOLDER)
            block = None
        elif block is not None:
            block.append(line)
        else:
            out.append(line)
    if block is not None:
        raise MarkerError(
            f"{where}, line {begin_line}: {BEGIN} is never closed; add {END} after the solution "
            "in the same cell"
        )
    if out == lines:
        return source, False
    return "\n".join(out) + ("\n" if source.endswith("\n") else ""), True


def release_notebook(nb, name: str = "notebook") -> tuple[nbformat.NotebookNode, bool]:
    """The student version of master notebook ``nb`` (not modified) and whether it changed.

    ``name`` is used in error messages. Raises :class:`MarkerError` on unbalanced markers.
    """
    student = copy.deepcopy(nb)
    variables = answer_variables(nb)
    answers = list(
        dict.fromkeys(
            expr for names in variables.values() for expr in names.values() if expr.isidentifier()
        )
    )
    changed = False
    cells = []
    for index, cell in enumerate(student.cells):
        tags = set(cell.get("metadata", {}).get("tags", []))
        where = f"{name}, cell {index}"
        if INSTRUCTOR_TAG in tags:
            changed = True
            continue
        if cell.cell_type not in ("code", "markdown"):
            cells.append(cell)
            continue
        code = cell.cell_type == "code"
        if SOLUTION_TAG in tags:
            lines = cell.source.splitlines()
            cell.source = (
                "\n".join(_code_placeholder(lines, "", answers)) if code else TEXT_PLACEHOLDER
            )
            changed = True
        else:
            cell.source, cell_changed = _strip_blocks(cell.source, where, code, answers)
            changed = changed or cell_changed
        cells.append(cell)
    student.cells = cells
    if changed:
        for cell in student.cells:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
    return student, changed


def release_all(
    masters: Iterable[str | Path], out: str | Path, missing_only: bool = False
) -> list[Path]:
    """Write the student version of each master into folder ``out``; returns the paths written.

    With ``missing_only`` a student notebook that already exists is left alone (a learner's
    edits survive). Every master is checked before anything is written, so one bad master
    leaves ``out`` untouched.
    """
    out = Path(out)
    released = []
    for path in map(Path, masters):
        nb = nbformat.read(path, as_version=4)
        student, _ = release_notebook(nb, path.name)
        released.append((out / path.name, nbformat.writes(student) + "\n"))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for target, text in released:
        if missing_only and target.exists():
            continue
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
