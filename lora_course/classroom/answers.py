"""Answers as plain data: out of a learner's kernel as JSON, back into values for the checks.

The grader runs a learner's notebook in its own kernel, then sends one more cell
(:func:`export_source`) that evaluates the answer expressions and writes them as JSON. The
learner's code controls that kernel, so the grader treats the file as untrusted text: it is
read with a size limit, parsed with :mod:`json` (never unpickled) and rebuilt by
:func:`from_plain` into a small set of types: ``None``, bools, numbers, strings, lists, tuples,
dicts, pandas ``DataFrame``/``Series``. Anything else arrives as an :class:`Unreadable` object
that names the learner's type, so a check can say "got Foo".

A learner can make the kernel write any values it likes; that is no loophole, because the
checks run in the grader's process on those values: writing the right table *is* answering.

Encoding (what :func:`to_plain` returns): JSON scalars as themselves; a list for lists and
arrays (numpy arrays and torch tensors through ``tolist()``); ``{"__type__": T, ...}`` for
``tuple``, ``dict`` (key-value pairs, so keys keep their types), ``set``, ``DataFrame``,
``Series`` and ``object`` (anything else: its type name and a short repr).
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_BYTES",
    "Unreadable",
    "to_plain",
    "from_plain",
    "export_source",
    "read_answers",
]

MAX_BYTES = 20_000_000  # an answer file larger than this is not read (a table is kilobytes)


def to_plain(x, _budget=None, _depth=0):
    """``x`` as JSON-ready data (runs inside the learner's kernel; self-contained on purpose)."""
    budget = [200_000] if _budget is None else _budget  # values left to encode
    budget[0] -= 1
    if budget[0] < 0 or _depth > 32:
        raise ValueError("answer too large or nested too deep to export")

    def rec(v):
        return to_plain(v, budget, _depth + 1)

    if x is None or isinstance(x, bool):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    if isinstance(x, str):
        return str(x)[:100_000]
    kind = type(x).__module__.split(".")[0] + "." + type(x).__name__
    if kind == "pandas.DataFrame":
        return {
            "__type__": "DataFrame",
            "columns": [rec(c) for c in x.columns],
            "index": [rec(i) for i in x.index],
            "index_names": [rec(n) for n in x.index.names],
            "data": [[rec(v) for v in row] for row in x.itertuples(index=False, name=None)],
        }
    if kind == "pandas.Series":
        return {
            "__type__": "Series",
            "name": rec(x.name),
            "index": [rec(i) for i in x.index],
            "data": [rec(v) for v in x.tolist()],
        }
    if kind.split(".")[0] in ("numpy", "torch") and hasattr(x, "tolist"):
        return rec(x.tolist())
    if isinstance(x, tuple):
        return {"__type__": "tuple", "items": [rec(v) for v in x]}
    if isinstance(x, list):
        return [rec(v) for v in x]
    if isinstance(x, set | frozenset):
        return {"__type__": "set", "items": [rec(v) for v in x]}
    if isinstance(x, dict):
        return {"__type__": "dict", "items": [[rec(k), rec(v)] for k, v in x.items()]}
    try:
        text = repr(x)[:300]
    except Exception:
        text = "?"
    return {"__type__": "object", "type": type(x).__name__[:80], "repr": text}


class Unreadable:
    """Stands for a value the grader could not rebuild; its class is named after the original."""

    def __init__(self, text: str = ""):
        self.text = text

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.text}>"


def _unreadable(type_name: str, text: str) -> Unreadable:
    name = re.sub(r"\W", "_", str(type_name))[:80] or "object"
    if not name[0].isalpha():
        name = "T" + name
    return type(name, (Unreadable,), {})(str(text)[:300])


def from_plain(data: Any) -> Any:
    """The inverse of :func:`to_plain`; raises ``ValueError`` on anything it did not produce."""
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        return [from_plain(v) for v in data]
    if not isinstance(data, dict) or not isinstance(data.get("__type__"), str):
        raise ValueError(f"unexpected {type(data).__name__} in the answer data")
    kind = data["__type__"]
    if kind == "tuple":
        return tuple(from_plain(v) for v in _list(data, "items"))
    if kind == "set":
        return {_hashable(from_plain(v)) for v in _list(data, "items")}
    if kind == "dict":
        pairs = _list(data, "items")
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise ValueError("a dict's items must be [key, value] pairs")
        return {_hashable(from_plain(k)): from_plain(v) for k, v in pairs}
    if kind == "object":
        return _unreadable(data.get("type", "object"), data.get("repr", ""))
    import pandas as pd

    if kind == "Series":
        index = [_hashable(from_plain(i)) for i in _list(data, "index")]
        values = [from_plain(v) for v in _list(data, "data")]
        if len(index) != len(values):
            raise ValueError("a Series needs as many index labels as values")
        return pd.Series(values, index=index, name=_hashable(from_plain(data.get("name"))))
    if kind == "DataFrame":
        columns = [_hashable(from_plain(c)) for c in _list(data, "columns")]
        rows = [[from_plain(v) for v in _list({"r": r}, "r")] for r in _list(data, "data")]
        index = [_hashable(from_plain(i)) for i in _list(data, "index")]
        names = [_hashable(from_plain(n)) for n in _list(data, "index_names")]
        if len(index) != len(rows) or any(len(r) != len(columns) for r in rows):
            raise ValueError("a DataFrame's rows must match its index and columns")
        if len(names) > 1:
            idx = pd.MultiIndex.from_tuples(index, names=names) if index else None
        else:
            idx = pd.Index(index, name=names[0] if names else None)
        return pd.DataFrame(rows, columns=columns, index=idx)
    raise ValueError(f"unknown answer type {kind!r}")


def _list(data: dict, key: str) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{key!r} must be a list")
    return value


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    try:
        hash(value)
    except TypeError:
        raise ValueError("a key or label must be hashable") from None
    return value


def export_source(expressions: dict[str, str], path: str | Path) -> str:
    """Code for one cell that evaluates ``{answer name: expression}`` and writes JSON to ``path``.

    The file maps each name to ``{"value": plain data}`` or ``{"error": "what went wrong"}``; a
    name that is not defined is an error ``"NameError"`` (the grader reads it as "not attempted").
    """
    return "\n".join(
        [
            inspect.getsource(to_plain)
            .replace("def to_plain", "def _lora_course_to_plain", 1)
            .replace("to_plain(v, budget", "_lora_course_to_plain(v, budget"),
            "def _lora_course_export(expressions, path):",
            "    import json",
            "    import IPython",
            "    namespace = IPython.get_ipython().user_ns",
            "    out = {}",
            "    for name, expression in expressions.items():",
            "        try:",
            "            value = eval(expression, namespace)",
            "            out[name] = {'value': _lora_course_to_plain(value)}",
            "        except BaseException as exc:",
            "            out[name] = {'error': type(exc).__name__ + ': ' + str(exc)[:300]}",
            "    with open(path, 'w', encoding='utf-8') as f:",
            "        f.write(json.dumps(out))",
            f"_lora_course_export({expressions!r}, {str(path)!r})",
            "del _lora_course_export, _lora_course_to_plain",
        ]
    )


def read_answers(path: str | Path, names: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Answers read from an export file: ({name: value or None}, notes for the feedback).

    Never raises on the file's content: a missing, oversized or malformed file gives ``None``
    for every answer (scored as "not attempted") and a note saying why.
    """
    path = Path(path)
    empty = dict.fromkeys(names)
    if not path.is_file():
        return empty, ["the answers could not be collected from the notebook's kernel"]
    if path.stat().st_size > MAX_BYTES:
        return empty, [f"the answers were larger than {MAX_BYTES} bytes and were not read"]
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return empty, [f"the answers file could not be read ({type(exc).__name__})"]
    answers, notes = {}, []
    for name in names:
        entry = raw.get(name)
        answers[name] = None
        if not isinstance(entry, dict):
            notes.append(f"`{name}`: no value came back from the kernel")
        elif "value" in entry:
            try:
                answers[name] = from_plain(entry["value"])
            except (ValueError, TypeError, RecursionError) as exc:
                notes.append(f"`{name}` could not be read as data ({exc})")
        elif not str(entry.get("error", "")).startswith("NameError"):
            notes.append(f"`{name}` could not be evaluated: {str(entry.get('error'))[:300]}")
    return answers, notes
