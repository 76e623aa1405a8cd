"""Offline decks: every asset a deck loads is a local file beside it; nothing names a CDN."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from lora_course.__main__ import main
from lora_course.classroom.slides import (
    SlidesError,
    build_all,
    build_deck,
    copy_assets,
    remote_references,
)

_LOADED = re.compile(r"<(?:script|link)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"")


def _slide(cell, slide_type):
    cell.metadata["slideshow"] = {"slide_type": slide_type}
    return cell


def _write_notebook(path, extra_markdown=""):
    code = new_code_cell("print(1 + 1)", execution_count=1)
    code.outputs = [new_output("stream", name="stdout", text="2\n")]
    nb = new_notebook(
        cells=[
            _slide(new_markdown_cell("# A title\n\n$$h = W x + B A x$$" + extra_markdown), "slide"),
            _slide(code, "fragment"),
            _slide(new_markdown_cell("## Summary\n\n- done"), "slide"),
        ]
    )
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def deck(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slides")
    return build_deck(_write_notebook(tmp / "demo.ipynb"), tmp / "out")


def test_deck_is_written_beside_its_assets(deck):
    assert deck.name == "demo.slides.html"
    html = deck.read_text(encoding="utf-8")
    assert "A title" in html and "Summary" in html
    loaded = _LOADED.findall(html)
    assert any(url.endswith("reveal.js/dist/reveal.js") for url in loaded)
    assert any("mathjax/MathJax.js" in url for url in loaded)
    for url in loaded:  # every script and stylesheet is a file in the deck's folder
        assert (deck.parent / url.split("?")[0]).is_file(), url


def test_deck_loads_nothing_from_the_network(deck):
    html = deck.read_text(encoding="utf-8")
    assert remote_references(html) == []
    assert "require.js" not in html and "jquery" not in html.lower()
    assert "mermaid" not in html


def test_theme_css_imports_no_web_fonts(deck):
    theme = deck.parent / "_static" / "reveal.js" / "dist" / "theme" / "white.css"
    assert remote_references(theme.read_text(encoding="utf-8")) == []


def test_remote_references_finds_fetches_not_links():
    html = (
        '<script src="https://cdn.example/x.js"></script><img src="//cdn.example/a.png">'
        "<style>@import url(https://fonts.example/f.css);</style>"
        '<a href="https://arxiv.org/abs/2106.09685">LoRA</a><script src="_static/y.js"></script>'
    )
    assert remote_references(html) == [
        "https://cdn.example/x.js",
        "//cdn.example/a.png",
        "https://fonts.example/f.css",
    ]


def test_a_remote_image_is_refused_with_the_fix(tmp_path):
    notebook = _write_notebook(tmp_path / "web.ipynb", "\n\n![plot](https://example.org/p.png)")
    with pytest.raises(SlidesError, match="would load https://example.org/p.png.*relative path"):
        build_deck(notebook, tmp_path / "out")


def test_missing_notebook_and_empty_list_are_clear_errors(tmp_path):
    with pytest.raises(SlidesError, match="no such notebook"):
        build_deck(tmp_path / "nope.ipynb", tmp_path)
    with pytest.raises(SlidesError, match="no notebooks given"):
        build_all([], tmp_path)


def test_assets_are_copied_once(deck):
    static = copy_assets(deck.parent)
    before = (static / "reveal.js" / "dist" / "reveal.js").stat().st_mtime_ns
    copy_assets(deck.parent)
    assert (static / "reveal.js" / "dist" / "reveal.js").stat().st_mtime_ns == before
    assert "sphinx-revealjs==" in (static / "VERSIONS").read_text()


def test_cli_builds_the_named_notebooks(tmp_path, capsys):
    notebook = _write_notebook(tmp_path / "cli.ipynb")
    assert main(["slides", str(notebook), "--out", str(tmp_path / "decks")]) == 0
    assert (tmp_path / "decks" / "cli.slides.html").is_file()
    assert "cli.slides.html" in capsys.readouterr().out
    assert main(["slides", str(tmp_path / "missing.ipynb"), "--out", str(tmp_path)]) == 2


def _write_exercise(path):
    task = new_code_cell(
        "answer = None\n### BEGIN SOLUTION\n"
        "answer = 'the secret reference answer'\n### END SOLUTION\nanswer",
        execution_count=1,
    )
    task.outputs = [new_output("execute_result", data={"text/plain": "'the saved output'"})]
    nb = new_notebook(
        cells=[
            _slide(new_markdown_cell("# An exercise\n\nDo the task."), "slide"),
            _slide(task, "subslide"),
            _slide(new_markdown_cell("## Summary\n\n- done"), "slide"),
        ]
    )
    nbformat.write(nb, path)
    return path


def test_exercise_deck_shows_the_task_not_the_answer(tmp_path):
    deck = build_deck(_write_exercise(tmp_path / "05_exercise_9.ipynb"), tmp_path / "out")
    html = deck.read_text(encoding="utf-8")
    assert deck.name == "05_exercise_9.slides.html"
    assert "Do the task" in html
    assert "the secret reference answer" not in html and "the saved output" not in html
    assert "YOUR CODE HERE" in html


def test_instructor_deck_with_solutions_on_request(tmp_path):
    master = _write_exercise(tmp_path / "05_exercise_9.ipynb")
    deck = build_deck(master, tmp_path / "out", solutions=True)
    assert deck.name == "05_exercise_9.solutions.slides.html"
    assert "the secret reference answer" in deck.read_text(encoding="utf-8")
    lesson = build_deck(_write_notebook(tmp_path / "01_lesson.ipynb"), tmp_path / "out", True)
    assert lesson.name == "01_lesson.slides.html"  # a lesson has no solutions to add


def test_every_deck_lays_itself_out_to_fit(deck):
    html = deck.read_text(encoding="utf-8")
    assert "window.lcDeckReady = true" in html  # the page script of slide_layout
    assert "center: false" in html  # top-aligned, so the band under the content stays free


def test_decks_read_markdown_as_jupyterlab_and_show_no_plumbing():
    from lora_course.classroom.slides import for_slides

    nb = new_notebook(
        cells=[
            new_markdown_cell("# Title\nissues (#1080,\n#254). Three ways\n```\n#x\n```"),
            new_markdown_cell("### BEGIN SOLUTION\nThe answer.\n### END SOLUTION"),
            new_code_cell("x = 1\n### BEGIN SOLUTION\ny = (1,\n 2)  # fmt: skip\n### END SOLUTION"),
        ]
    )
    shown = for_slides(nb)
    assert shown.cells[0].source == "# Title\nissues (#1080,\n\\#254). Three ways\n```\n#x\n```"
    assert shown.cells[1].source == "The answer."
    assert shown.cells[2].source == "x = 1\ny = (1,\n 2)"
    assert nb.cells[1].source.startswith("### BEGIN"), "the notebook itself is not changed"


def test_decks_navigate_in_one_line(deck):
    assert 'navigationMode: "linear"' in deck.read_text(encoding="utf-8")
