"""Finding submissions and the exercise master each notebook answers (see ``grading``).

- A submissions folder holds ``.ipynb`` files (one submission each) or one folder per learner
  (all its notebooks form one submission, named after the folder).
- Exercise masters are the master notebooks ``NN_*.ipynb`` that call ``check("exercise_N", ...)``.
- A submitted notebook answers the master whose file stem its name contains (compared in lower
  case with runs of other characters read as ``_``: ``Alice-04_Exercise_1 (2).ipynb`` answers
  ``05_exercise_1``); failing that, the one master whose exercises its ``check`` calls name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from lora_course.classroom.release import answer_variables, check_calls, master_notebooks

__all__ = ["Master", "load_masters", "find_submissions", "match_master", "read_notebook"]


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


def find_submissions(folder: str | Path) -> list[tuple[str, Path, list[Path]]]:
    """(name, path, notebooks) per submission: each ``.ipynb`` file, and each learner folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no submissions folder {folder}: pass a folder of .ipynb files")
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            found.append((entry.stem, entry, [entry]))
        elif entry.is_dir():
            notebooks = sorted(
                p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
            )
            found.append((entry.name, entry, notebooks))
    return found


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
        return None, f"{path.name} is not a readable notebook ({type(exc).__name__}: {exc})"[:500]
