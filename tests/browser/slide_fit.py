"""Walk a reveal.js deck with the right-arrow key and report what does not fit or cannot be read.

Used by tests/browser/test_decks.py. The walk presses only the right arrow, as a presenter does,
and fails on a slide or sub-slide it never reaches. Each step (slide, sub-slide or fragment) is
measured in the browser: content below the slide or cut on its right (beyond ``PAD`` pixels),
content under the navigation arrows, a fragment step whose new content shows nowhere on screen,
a listing whose wrapped rows would not be marked as continuations, a sub-slide of nothing but
code longer than ``CODE_ALONE`` lines, text smaller than
``MIN_TEXT_PX`` and a figure shown smaller than in the notebook (``MIN_FIGURE_SCALE``: its
pixels on screen per pixel of the image).
"""

from __future__ import annotations

from lora_course.classroom.slide_layout import CODE_ALONE

PAD = 2  # pixels of slack: sub-pixel rounding and borders (a viewer sees more than this)
MIN_TEXT_PX = 13.5  # screen pixels: about 14 px, the smallest text readable projected
MIN_FIGURE_SCALE = 1.0  # a figure no smaller on the slide than in the notebook

# Leaf-ish elements a reader reads; a cell's own box spans the full width and says little.
_MEASURE = r"""
([pad, minText, minScale, codeAlone]) => {
  const box = document.querySelector(".reveal .slides").getBoundingClientRect();
  const slide = Reveal.getCurrentSlide();
  const hidden = (el) => el.closest(".fragment:not(.visible)") !== null;
  const leaves = slide.querySelectorAll(
    "h1, h2, h3, h4, p, li, pre, img, table, .MathJax_Display, .jp-OutputArea-output");
  const controls = [...document.querySelectorAll(".reveal .controls button.enabled")]
    .map((b) => b.getBoundingClientRect()).filter((r) => r.width > 0);
  const problems = [];
  const name = (el) => el.tagName.toLowerCase() + (el.textContent || "").trim().slice(0, 40)
    .replace(/\s+/g, " ").replace(/^/, ": ");
  for (const el of leaves) {
    if (hidden(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const down = Math.round(r.bottom - box.bottom), right = Math.round(r.right - box.right);
    if (down > pad) problems.push(`below the slide by ${down} px (${name(el)})`);
    if (right > pad) problems.push(`cut on the right by ${right} px (${name(el)})`);
    if (el.scrollWidth > el.clientWidth + pad && getComputedStyle(el).overflowX !== "visible")
      problems.push(`scrolls sideways by ${el.scrollWidth - el.clientWidth} px (${name(el)})`);
    for (const c of controls) {
      if (r.left < c.right && r.right > c.left && r.top < c.bottom && r.bottom > c.top)
        problems.push(`under the navigation arrows (${name(el)})`);
    }
  }
  for (const pre of slide.querySelectorAll("pre")) {
    if (!hidden(pre) && pre.textContent.trim() && !pre.querySelector(".lc-line"))
      problems.push(`a listing whose wrapped rows are not marked (${name(pre)})`);
  }
  const prose = slide.querySelector(".jp-RenderedMarkdown, .jp-OutputArea-output");
  const code = slide.querySelectorAll(".jp-InputArea pre .lc-line").length;
  if (!prose && code > codeAlone) problems.push(`a sub-slide of only code, ${code} lines`);
  const scale = Reveal.getScale();
  const texts = document.createTreeWalker(slide, NodeFilter.SHOW_TEXT);
  for (let n = texts.nextNode(); n; n = texts.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || hidden(el) || el.closest(".MJX_Assistive_MathML")) continue;
    if (el.getBoundingClientRect().width === 0) continue;
    const px = parseFloat(getComputedStyle(el).fontSize) * scale;
    if (px < minText) problems.push(`text at ${px.toFixed(1)} px (${name(el)})`);
  }
  for (const img of slide.querySelectorAll("img")) {
    const r = img.getBoundingClientRect();
    if (hidden(img) || !r.width || !img.naturalWidth) continue;
    const shown = r.width / img.naturalWidth;
    if (shown < minScale) problems.push(`figure at ${shown.toFixed(2)} of its notebook size`);
  }
  const current = slide.querySelector(".fragment.current-fragment");
  if (current) {
    const r = current.getBoundingClientRect();
    if (r.top >= box.bottom - pad) problems.push("this fragment step shows nothing new on screen");
  }
  return [...new Set(problems)];
}
"""


def walk(page, on_problem=None, min_figure_scale=MIN_FIGURE_SCALE) -> list[tuple[str, list[str]]]:
    """Every step of the deck open in ``page`` as ``(label, problems)``; label like ``3.1 f2``.
    ``on_problem(label)`` is called on a step with problems, while it is on screen.

    Steps with the right-arrow key only; raises ``AssertionError`` if a press does not move, or
    the walk ends without having shown every slide and sub-slide."""
    page.evaluate("Reveal.slide(0, 0, -1)")
    steps, seen = [], set()
    total = page.evaluate("Reveal.getTotalSlides()")
    for _ in range(2000):  # a guard; a deck has a few hundred steps at most
        i = page.evaluate("Reveal.getIndices()")
        label = f"{i['h'] + 1}.{i['v'] + 1}" + (f" f{i['f']}" if i.get("f") is not None else "")
        seen.add((i["h"], i["v"]))
        limits = [PAD, MIN_TEXT_PX, min_figure_scale, CODE_ALONE]
        steps.append((label, page.evaluate(_MEASURE, limits)))
        if steps[-1][1] and on_problem is not None:
            on_problem(label)
        if page.evaluate("Reveal.isLastSlide() && !Reveal.availableFragments().next"):
            assert len(seen) == total, (
                f"the right arrow reached {len(seen)} of the {total} slides and sub-slides"
            )
            return steps
        page.keyboard.press("ArrowRight")
        assert page.evaluate("Reveal.getIndices()") != i, f"the right arrow does not leave {label}"
    raise AssertionError("the deck never reached its last step")
