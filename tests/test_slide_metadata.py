"""Every notebook presents as a deck: slide metadata on every cell, a title slide, a closing slide.

Notebooks added later are held to the same rules: the list comes from notebooks/*.ipynb.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}


def _slide_type(cell) -> str | None:
    return cell.metadata.get("slideshow", {}).get("slide_type")


def _has_summary_heading(cell) -> bool:
    return cell.cell_type == "markdown" and any(
        line.startswith("#") and "summary" in line.lower() for line in cell.source.splitlines()
    )


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request):
    return nbformat.read(request.param, as_version=4)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/*.ipynb found"


def test_every_cell_has_slide_metadata(notebook):
    missing = [i for i, cell in enumerate(notebook.cells) if _slide_type(cell) not in SLIDE_TYPES]
    assert not missing, (
        f"cells {missing} lack metadata.slideshow.slide_type (one of {sorted(SLIDE_TYPES)}): "
        "set it in JupyterLab's property inspector (gear icon, 'Slide Type')"
    )


def test_first_cell_is_a_title_slide(notebook):
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and _slide_type(first) == "slide"
    assert first.source.startswith("# "), "the title slide starts with a level-1 heading"


def test_deck_closes_on_a_markdown_summary_slide(notebook):
    slides = [cell for cell in notebook.cells if _slide_type(cell) == "slide"]
    closing = slides[-1]
    assert closing.cell_type == "markdown", "the last slide is a markdown summary, not code"
    summaries = [i for i, cell in enumerate(notebook.cells) if _has_summary_heading(cell)]
    if summaries:
        # A summary, where there is one, sits on the closing slide, not mid-deck.
        later = [c for c in notebook.cells[summaries[-1] + 1 :] if _slide_type(c) == "slide"]
        assert not later, "slides follow the Summary: move it to the end"
