"""Finding submissions and the exercise master each notebook answers (see ``grading``).

- A submissions folder holds ``.ipynb`` files (one submission each) or one folder per learner
  (all its notebooks form one submission, named after the folder).
- Exercise masters are the master notebooks ``NN_*.ipynb`` that call ``check("exercise_N", ...)``.
- A submitted notebook answers the master whose file stem its name contains (compared in lower
  case with runs of other characters read as ``_``: ``Alice-04_Exercise_1 (2).ipynb`` answers
  ``05_exercise_1``); failing that, the one master whose exercises its ``check`` calls name.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import nbformat

from lora_course.classroom.release import answer_variables, check_calls, master_notebooks
from lora_course.classroom.safety import clean_name

__all__ = [
    "Found",
    "Master",
    "load_masters",
    "find_submissions",
    "hidden_entries",
    "inspect_submission",
    "match_master",
    "read_notebook",
]


@dataclass(frozen=True)
class Master:
    """An exercise master notebook: its stem and {exercise id: {answer name: expression}}."""

    path: Path
    exercises: dict[str, dict[str, str]]

    @property
    def stem(self) -> str:
        return self.path.stem


def load_masters(folder: str | Path) -> list[Master]:
    """The exercise masters in ``folder``: master notebooks that call ``check`` on an exercise."""
    masters = []
    for path in master_notebooks(folder):
        exercises = answer_variables(nbformat.read(path, as_version=4))
        if exercises:
            masters.append(Master(path, exercises))
    if not masters:
        raise ValueError(
            f"no exercise notebooks in {folder}: an exercise master is an NN_*.ipynb that calls "
            'check("exercise_N", ...); pass the master folder with --masters'
        )
    return masters


class Found(NamedTuple):
    """A submission as found: its row name, its path, its notebooks, and why it is refused
    ("" if it is not)."""

    name: str
    path: Path
    notebooks: list[Path]
    refused: str = ""


def _walk(path: Path):
    """Every entry under ``path`` as (relative path, lstat), links not followed."""
    for top, dirs, files in os.walk(path, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            entry = Path(top) / name
            yield entry.relative_to(path), entry.lstat()


def inspect_submission(path: str | Path, max_bytes: int | None = None) -> tuple[str, str]:
    """("", "") for a submission the grader may read, else (status, message), from ``lstat``
    alone: nothing is opened. Refused: a symbolic link (a file, a folder, the submission itself),
    a device, fifo or socket (``refused``); more than ``max_bytes`` in all (``too large``,
    counted by apparent size, so a sparse file counts whole)."""
    path = Path(path)
    shown = clean_name(path.name)
    top = path.lstat()
    if stat.S_ISLNK(top.st_mode):
        return "refused", f"{shown} is a symbolic link: submit the files themselves, not links"
    if not (stat.S_ISDIR(top.st_mode) or stat.S_ISREG(top.st_mode)):
        return "refused", f"{shown} is not a regular file or folder (a device, fifo or socket)"
    entries = [(Path(path.name), top)] if stat.S_ISREG(top.st_mode) else list(_walk(path))
    links = [clean_name(rel) for rel, st in entries if stat.S_ISLNK(st.st_mode)]
    special = [
        clean_name(rel)
        for rel, st in entries
        if not (stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode))
    ]
    if links or special:
        what = []
        if links:
            what.append(f"symbolic links ({', '.join(links[:5])})")
        if special:
            what.append(f"devices, fifos or sockets ({', '.join(special[:5])})")
        return "refused", (
            f"not graded: the submission holds {' and '.join(what)}; only regular files are "
            "read: replace each link by the file itself"
        )
    size = sum(st.st_size for _, st in entries if stat.S_ISREG(st.st_mode))
    if max_bytes is not None and size > max_bytes:
        return "too large", (
            f"not graded: {size / 1e6:.0f} MB of files, more than the {max_bytes / 1e6:g} MB a "
            "submission may hold (--size-limit); submit the notebooks without data or models"
        )
    return "", ""


def hidden_entries(folder: str | Path) -> list[str]:
    """The entries of a submissions folder that are not graded because their names start with
    ``.`` (as names to print)."""
    return sorted(clean_name(e.name) for e in os.scandir(folder) if e.name.startswith("."))


def find_submissions(folder: str | Path) -> list[Found]:
    """One :class:`Found` per submission: each ``.ipynb`` file, and each learner folder.

    Entries are read with ``lstat``: a link or special file at the top level is a submission
    refused by :func:`inspect_submission`, not followed. Names are taken as bytes and cleaned
    (:func:`lora_course.classroom.safety.clean_name`); names starting with ``.`` are skipped
    (:func:`hidden_entries` lists them). Two entries with one row name (``bob.ipynb`` beside a
    folder ``bob``) are both refused, their rows told apart by the entry's own name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no submissions folder {folder}: pass a folder of .ipynb files")
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: os.fsencode(e.name)):
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        is_link = entry.is_symlink()
        if entry.name.endswith(".ipynb") and not entry.is_dir(follow_symlinks=False):
            found.append(Found(clean_name(path.stem), path, [] if is_link else [path]))
        elif entry.is_dir(follow_symlinks=False):
            notebooks = sorted(
                Path(top) / f
                for top, _, files in os.walk(path, followlinks=False)
                for f in files
                if f.endswith(".ipynb") and ".ipynb_checkpoints" not in Path(top).parts
            )
            found.append(Found(clean_name(entry.name), path, notebooks))
        elif is_link or not entry.is_file(follow_symlinks=False):
            found.append(Found(clean_name(entry.name), path, []))  # refused when graded
    counts: dict[str, int] = {}
    for f in found:
        counts[f.name] = counts.get(f.name, 0) + 1
    out, used = [], set()
    for f in found:
        if counts[f.name] == 1:
            out.append(f)
            used.add(f.name)
            continue
        name, k = f"{f.name} [{clean_name(f.path.name)}]", 2
        while name in used or name in counts:
            name, k = f"{f.name} [{clean_name(f.path.name)} {k}]", k + 1
        used.add(name)
        others = sorted(clean_name(g.path.name) for g in found if g.name == f.name)
        out.append(Found(name, f.path, f.notebooks, (
            f"not graded: {len(others)} submissions share the name {f.name!r} "
            f"({', '.join(others)}); rename all but one"
        )))  # fmt: skip
    return out


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower())


def match_master(path: Path, nb, masters: Iterable[Master]) -> Master | None:
    """The master a submitted notebook answers: by file name first, then by its check calls."""
    masters = list(masters)
    by_name = [m for m in masters if _norm(m.stem) in _norm(path.stem)]
    if by_name:
        return max(by_name, key=lambda m: len(m.stem))
    if nb is not None:
        called = set(check_calls(nb))
        by_calls = [m for m in masters if called & set(m.exercises)]
        if len(by_calls) == 1:
            return by_calls[0]
    return None


def read_notebook(path: Path):
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        return nb, ""
    except Exception as exc:
        # Not the parser's own text: it quotes the file's first characters.
        what = "not JSON" if type(exc).__name__ == "NotJSONError" else "not a valid notebook"
        return None, (
            f"{clean_name(path.name)} is {what} ({type(exc).__name__}): submit the .ipynb file as "
            "Jupyter saved it"
        )
