"""Walk a reveal.js deck step by step and report what does not fit on the slide.

Used by tests/browser/test_decks.py. Each step (slide, sub-slide or fragment) is measured in the
browser: content below the slide or cut on its right (beyond ``PAD`` pixels), content under the
navigation arrows, and a fragment step whose new content shows nowhere on screen.
"""

from __future__ import annotations

PAD = 4  # pixels of slack: sub-pixel rounding and borders

# Leaf-ish elements a reader reads; a cell's own box spans the full width and says little.
_MEASURE = r"""
(pad) => {
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
  const current = slide.querySelector(".fragment.current-fragment");
  if (current) {
    const r = current.getBoundingClientRect();
    if (r.top >= box.bottom - pad) problems.push("this fragment step shows nothing new on screen");
  }
  return [...new Set(problems)];
}
"""


def walk(page) -> list[tuple[str, list[str]]]:
    """Every step of the deck open in ``page`` as ``(label, problems)``; label like ``3.1 f2``."""
    page.evaluate("Reveal.slide(0, 0, -1)")
    steps = []
    for _ in range(2000):  # a guard; a deck has a few hundred steps at most
        i = page.evaluate("Reveal.getIndices()")
        label = f"{i['h'] + 1}.{i['v'] + 1}" + (f" f{i['f']}" if i.get("f") is not None else "")
        steps.append((label, page.evaluate(_MEASURE, PAD)))
        if page.evaluate("Reveal.isLastSlide() && !Reveal.availableFragments().next"):
            return steps
        page.evaluate("Reveal.next()")
    raise AssertionError("the deck never reached its last step")
