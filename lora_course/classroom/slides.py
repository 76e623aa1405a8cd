"""Slide decks that open with no network: one reveal.js deck per notebook, every asset local.

nbconvert's slides exporter points reveal.js, MathJax, jQuery, require.js and mermaid at a CDN,
so its decks show raw markup in a classroom without network. Here the decks load

- reveal.js 5 (``dist/`` and the speaker-notes plugin) from the copy inside ``sphinx-revealjs``;
- MathJax 2.7 (the version nbconvert's templates call) from ``jupyter-server-mathjax``;

both copied once into ``<out>/_static/`` and referenced by relative URLs, so ``build/slides/``
works from ``file://`` and can be copied whole onto a USB stick. jQuery, require.js, mermaid and
the widget manager are not loaded at all: the course's outputs need none of them, and our
template starts reveal.js with plain ``<script>`` tags instead of require.js.
"""

from __future__ import annotations

import copy
import re
import shutil
from importlib import metadata
from pathlib import Path

import nbformat

from lora_course.classroom.slide_layout import LAYOUT_HTML

__all__ = [
    "SlidesError",
    "asset_sources",
    "build_all",
    "build_deck",
    "copy_assets",
    "for_slides",
    "remote_references",
]

STATIC = "_static"
REVEAL_THEME = "white"  # its fonts ship beside it; "simple" and others import web fonts
SLIDE_SIZE = (1120, 630)  # 16:9 like the course's figures (plots.COURSE_STYLE)
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"  # the one combined config the package ships

_TEMPLATE_NAME = "lora_course_slides.html.j2"
# Extends nbconvert's reveal template: drop every CDN script, start reveal.js without require.js.
_TEMPLATE = """\
{%- extends 'index.html.j2' -%}
{%- block html_head_js_jquery -%}{%- endblock html_head_js_jquery -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}
{{ super() }}
<script type="text/x-mathjax-config">
// The packaged MathJax ships the STIX-Web fonts only (not MathJax's default TeX fonts).
MathJax.Hub.Config({
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
});
</script>
<style>
/* MathJax's hidden copy for screen readers asks for TeX fonts the package does not ship. */
.MJX_Assistive_MathML [mathvariant] { font-family: inherit !important; }
</style>
{%- endblock html_head_js_mathjax -%}
{% block footer_js %}
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script src="{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({
  hash: true,  // the address names the slide: a reload stays where the presenter was
  controls: true,
  progress: true,
  slideNumber: "c/t",
  // One line: the right arrow, Space, PageDown and a clicker all step through every slide,
  // sub-slide and fragment in order (the layout moves what does not fit to sub-slides, which
  // the right arrow would otherwise skip); the up/down arrow buttons are not drawn.
  navigationMode: "linear",
  center: false,  // top-aligned: the layout script keeps the bottom band free for the arrows
  transition: "{{ resources.reveal.transition }}",
  width: {{ resources.reveal.width }},
  height: {{ resources.reveal.height }},
  plugins: [RevealNotes],
});
</script>
{{ resources.layout_html }}
<script>
// MathJax measures formulas on hidden slides as zero-sized: typeset again once shown.
Reveal.on("slidechanged", function (event) {
  if (window.MathJax && MathJax.Hub) {
    MathJax.Hub.Queue(["Rerender", MathJax.Hub, event.currentSlide]);
  }
});
</script>
{% endblock footer_js %}
"""

# Tags that make the browser fetch something, with an absolute or protocol-relative URL.
_REMOTE_TAG = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio|embed)\b[^>]*?\b(?:src|href)\s*=\s*"
    r"[\"']?((?:[a-z][a-z0-9+.-]*:)?//[^\"'\s>]+)",
    re.IGNORECASE,
)
_REMOTE_CSS = re.compile(r"(?:@import\s+|url\()\s*[\"']?((?:https?:)?//[^\"')\s]+)", re.IGNORECASE)


class SlidesError(RuntimeError):
    """A deck cannot be built; the message names the fix."""


def asset_sources() -> dict[str, Path]:
    """Where the installed packages keep reveal.js and MathJax: ``{"reveal.js": dir, ...}``."""
    try:
        import jupyter_server_mathjax
        import sphinx_revealjs
    except ImportError as err:
        raise SlidesError(
            f"{err.name} is not installed, so the decks have no local reveal.js or MathJax: "
            "run `make setup` (or `pip install -c constraints.txt -e '.[dev]'`)"
        ) from err
    sources = {
        "reveal.js": Path(sphinx_revealjs.__file__).parent / "_static" / "revealjs",
        "mathjax": Path(jupyter_server_mathjax.__file__).parent / "static",
    }
    expected = {"reveal.js": "dist/reveal.js", "mathjax": "MathJax.js"}
    for name, root in sources.items():
        if not (root / expected[name]).is_file():
            raise SlidesError(
                f"{root / expected[name]} is missing: the installed package changed its layout; "
                "reinstall with `make setup`, or update lora_course/slides.py"
            )
    return sources


def _asset_versions() -> str:
    names = ("sphinx-revealjs", "jupyter-server-mathjax")
    return "".join(f"{name}=={metadata.version(name)}\n" for name in names)


def copy_assets(out_dir: str | Path) -> Path:
    """Copy reveal.js and MathJax into ``out_dir/_static`` (skipped when already current).

    Returns the ``_static`` folder. A ``VERSIONS`` file records which package versions it holds.
    """
    static = Path(out_dir) / STATIC
    stamp = static / "VERSIONS"
    versions = _asset_versions()
    if stamp.is_file() and stamp.read_text() == versions:
        return static
    sources = asset_sources()
    if static.exists():
        shutil.rmtree(static)
    reveal = static / "reveal.js"
    shutil.copytree(sources["reveal.js"] / "dist", reveal / "dist")
    shutil.copytree(sources["reveal.js"] / "plugin" / "notes", reveal / "plugin" / "notes")
    # MathJax's translations are never loaded for an English page.
    shutil.copytree(
        sources["mathjax"], static / "mathjax", ignore=shutil.ignore_patterns("localization")
    )
    stamp.write_text(versions)
    return static


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter

    width, height = SLIDE_SIZE
    return SlidesExporter(
        extra_loaders=[DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
        template_file=_TEMPLATE_NAME,
        reveal_url_prefix=f"{STATIC}/reveal.js",
        reveal_theme=REVEAL_THEME,
        reveal_transition="none",  # a projector shows transitions as smears
        reveal_width=str(width),
        reveal_height=str(height),
        mathjax_url=f"{STATIC}/mathjax/MathJax.js?config={MATHJAX_CONFIG}",
        embed_images=True,  # markdown images travel inside the deck
    )


def remote_references(html: str) -> list[str]:
    """Every URL in ``html`` that a browser would fetch from the network (empty when offline)."""
    return _REMOTE_TAG.findall(html) + _REMOTE_CSS.findall(html)


# A line starting with "#" and no space is text in JupyterLab (CommonMark), a heading in the
# exporter's markdown parser: "#254) Three ways" would become a title.
_HASH_TEXT = re.compile(r"^( {0,3})(#+)(?=[^#\s])", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
# Formatter directives are for the project's tooling, not for an audience.
_FORMATTER_COMMENT = re.compile(r"[ \t]*# fmt: (?:skip|off|on)[ \t]*$", re.MULTILINE)


def _markdown_as_jupyterlab(source: str) -> str:
    """Escape the ``#`` of lines that JupyterLab shows as text (outside fenced code)."""
    lines, fenced = source.split("\n"), False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines[i] = _HASH_TEXT.sub(lambda m: m.group(1) + "\\" + m.group(2), line)
    return "\n".join(lines)


def _without_markers(source: str) -> str:
    """The source minus the solution marker lines (an instructor deck shows the solution plain)."""
    from lora_course.classroom.release import BEGIN, END

    lines = source.split("\n")
    return "\n".join(line for line in lines if line.strip() not in (BEGIN, END))


def for_slides(nb):
    """A copy of ``nb`` as a deck shows it: markdown read as JupyterLab reads it, no solution
    markers (``### BEGIN SOLUTION`` would be a heading) and no ``# fmt: skip`` comments."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        source = _without_markers(cell.source)
        if cell.cell_type == "markdown":
            source = _markdown_as_jupyterlab(source)
        elif cell.cell_type == "code":
            source = _FORMATTER_COMMENT.sub("", source)
        cell.source = source
    return nb


def build_deck(notebook: str | Path, out_dir: str | Path, solutions: bool = False) -> Path:
    """Write ``out_dir/<notebook stem>.slides.html`` and the shared assets; return the deck's path.

    An exercise (a master with solutions, see :mod:`lora_course.classroom.release`) is presented
    as learners get it: the deck is built from its student release, which shows the task and
    none of the answers (and no saved outputs). With ``solutions=True`` its deck is built from
    the master instead and named ``<stem>.solutions.slides.html``, for the instructor.

    Raises ``SlidesError`` if the notebook is missing or the deck would still fetch anything from
    the network (for example a markdown image with an ``https://`` address).
    """
    from lora_course.classroom.release import MarkerError, release_notebook

    notebook, out_dir = Path(notebook), Path(out_dir)
    if not notebook.is_file():
        raise SlidesError(f"no such notebook: {notebook}")
    nb = nbformat.read(notebook, as_version=4)
    try:
        student, is_exercise = release_notebook(nb, notebook.name)
    except MarkerError as err:
        raise SlidesError(str(err)) from err
    name = notebook.stem
    if is_exercise and solutions:
        name += ".solutions"
    elif is_exercise:
        nb = student
    nb = for_slides(nb)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_assets(out_dir)
    resources = {
        "metadata": {"name": name, "path": str(notebook.parent)},
        "layout_html": LAYOUT_HTML,
    }
    html, _ = _exporter().from_notebook_node(nb, resources=resources)
    remote = remote_references(html)
    if remote:
        raise SlidesError(
            f"{notebook} would load {remote[0]} from the network ({len(remote)} such URL(s)): "
            "save the file next to the notebook and link it by a relative path"
        )
    deck = out_dir / f"{name}.slides.html"
    deck.write_text(html, encoding="utf-8")
    return deck


def build_all(
    notebooks: list[str | Path], out_dir: str | Path, solutions: bool = False
) -> list[Path]:
    """Build one deck per notebook, in the order given; return the decks' paths."""
    if not notebooks:
        raise SlidesError("no notebooks given: expected notebooks/*.ipynb")
    return [build_deck(nb, out_dir, solutions=solutions) for nb in notebooks]
