"""Every notebook's deck opens from file:// with the network blocked, shows its title slide and
its typeset math, and fits: every slide, sub-slide and fragment step of every deck is walked at
1280 x 720 with the right-arrow key alone: every step must be reached, fit the slide and be
legible (slide_fit.py). One page load per deck does all of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from slide_fit import walk  # beside this file (tests/browser is on the path)

from lora_course.classroom.slides import build_all

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DECKS = ROOT / "build" / "slides"

# MathJax 2 keeps a queue of typesetting work; it is done when nothing is pending or running.
MATHJAX_DONE = """() => !window.MathJax || (MathJax.isReady && MathJax.Hub.queue.pending === 0
                                            && MathJax.Hub.queue.running === 0)"""

pytestmark = pytest.mark.browser

# Every figure must be shown at least at its notebook size (none is excepted: 09's training-memory
# figure was redrawn at 11.6 x 4.15 in, bars paired by setting, for this).
FIGURE_SCALE_FOR_NOW: dict[str, float] = {}


@pytest.fixture(scope="session")
def decks():
    return {deck.name: deck for deck in build_all(NOTEBOOKS, DECKS)}


def _open(decks, notebook, watched_page):
    """Open the notebook's deck and wait until it has laid itself out and typeset its math."""
    page = watched_page.page
    page.goto(decks[f"{notebook.stem}.slides.html"].as_uri(), wait_until="load")
    page.wait_for_function("() => window.lcDeckReady === true")
    page.wait_for_function(MATHJAX_DONE)
    return page


def _title(notebook) -> str:
    first = json.loads(notebook.read_text(encoding="utf-8"))["cells"][0]
    return "".join(first["source"]).splitlines()[0].lstrip("# ").strip()


def _check_title_and_math(notebook, deck, page, watched_page):
    """The title slide shows the notebook's title; every formula is typeset (the first one's
    slide is photographed, with the title slide, for a person to look at)."""
    title_slide = page.locator(".reveal .slides > section.present").first
    text = title_slide.inner_text()
    watched_page.screenshot(f"{notebook.stem}.slides.png")
    assert _title(notebook).casefold() in text.casefold(), (
        f"title slide of {deck.name} shows: {text[:200]!r}"
    )
    assert page.evaluate("Reveal.getTotalSlides()") > 1
    math = page.locator("script[type^='math/tex']").count()  # MathJax 2 keeps the source here
    if math:
        assert page.locator(".MathJax_Error, .MathJax_Display .merror").count() == 0
        assert page.locator(".MathJax, .MathJax_Display").count() >= math
        # Show the first formula's slide too, so the screenshot shows typeset math.
        page.evaluate(
            """() => { const i = Reveal.getIndices(document.querySelector(".MathJax").closest(
                       "section")); Reveal.slide(i.h, i.v, Number.MAX_SAFE_INTEGER); }"""
        )
        page.wait_for_function(MATHJAX_DONE)
        watched_page.screenshot(f"{notebook.stem}.math.png")


def test_every_deck_is_in_build_slides(decks):
    assert sorted(decks) == sorted(f"{nb.stem}.slides.html" for nb in NOTEBOOKS)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_deck_renders_offline_and_every_step_fits(notebook, decks, watched_page):
    """One page load per deck (a load lays the deck out and typesets it: the costly part)."""
    deck = decks[f"{notebook.stem}.slides.html"]
    page = _open(decks, notebook, watched_page)
    _check_title_and_math(notebook, deck, page, watched_page)
    shots = {}

    def screenshot(label):
        name = f"{notebook.stem}.overflow.{label.replace(' ', '_')}.png"
        shots[label] = watched_page.screenshot(name).name

    scale = FIGURE_SCALE_FOR_NOW.get(notebook.stem, 1.0)
    bad = [
        f"step {label}: {'; '.join(problems)} (screenshot {shots[label]})"
        for label, problems in walk(page, on_problem=screenshot, min_figure_scale=scale)
        if problems
    ]
    assert not bad, f"{deck.name}: {len(bad)} step(s) do not fit:\n" + "\n".join(bad)
    assert watched_page.blocked == [], "the deck asked the network for these"
    assert watched_page.failed == [], "these local requests failed"
    assert watched_page.errors == [], "the deck's scripts raised"
