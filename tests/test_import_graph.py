"""The package's import graph, read from the source (every import, at module level or inside a
function): no module imports one that imports it back, and the lesson's code never imports the
instructor's tools. A lazy import inside a function still counts: it is the same knot, only
tied later."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lora_course"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Each module of lora_course -> the modules of lora_course it imports. `from P import x`
    names the module P.x when there is one, else P; a module's parent packages are not counted
    (every import of lora_course.x runs lora_course/__init__.py, which is no circle of ours)."""
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..y import z
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            else:
                continue
            targets |= {t for t in map(owner, names) if t is not None and t != module}
        graph[module] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _in_classroom(module: str) -> bool:
    return module.startswith("lora_course.classroom.")


def test_the_graph_is_read():
    graph = import_graph()
    assert "lora_course.machinery.hardware" in graph["lora_course.models"]
    assert "lora_course.machinery.parallel" in graph["lora_course.sweep"]
    assert "lora_course.classroom.cli" in graph["lora_course.__main__"]
    assert "lora_course.classroom.grading" in graph["lora_course.classroom.cli"]  # in a function
    # a circle made up here is found
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_outside_the_classroom():
    knots = [c for c in circles(import_graph()) if not all(map(_in_classroom, c))]
    assert knots == [], f"modules that import each other, directly or round about: {knots}"


def test_no_import_circle_in_the_classroom():
    knots = [c for c in circles(import_graph()) if any(map(_in_classroom, c))]
    assert knots == [], f"classroom modules that import each other: {knots}"


def test_the_lesson_never_imports_the_tools_above_it():
    """The lesson's modules and the machinery sit below the exercises' checks, the classroom
    and the command line: none of them imports those."""
    above = ("lora_course.checks", "lora_course.classroom", "lora_course.__main__")
    wrong = {
        module: sorted(t for t in targets if t.startswith(above))
        for module, targets in import_graph().items()
        if not module.startswith(above)
    }
    assert {m: t for m, t in wrong.items() if t} == {}
