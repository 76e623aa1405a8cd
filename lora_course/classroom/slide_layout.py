"""Make every step of a deck fit a 16:9 slide: styles and a small page script for the decks.

A notebook cell can be taller than a slide (a 26-row table, a figure under a paragraph, a long
code cell), and nbconvert puts it on the slide anyway, so the bottom is cut off and a fragment
can appear below the screen. The decks therefore lay themselves out once in the browser, where
the real sizes are known (fonts, typeset math, images), before the presenter sees anything:

1. styles: code wraps instead of running off the right edge, figures are at most
   ``FIGURE_MAX_HEIGHT`` pixels tall, prompts (``In [3]:``) are hidden, a table wider than the
   slide is set in a smaller font (down to ``TABLE_MIN_FONT_PX``);
2. pagination: each sub-slide is measured with every fragment laid out; from the first item
   whose bottom passes the usable height (the slide minus ``CONTROLS_RESERVE`` pixels kept free
   for the navigation arrows) the rest moves to a new sub-slide below it. An item taller than a
   slide on its own is split where it can be: a code cell's outputs go to the next sub-slide;
   a table keeps its head and continues (header repeated) on the next one; a long text output or
   a markdown cell breaks between lines or paragraphs. The first item of a new sub-slide is shown
   at once (a fragment there would only add an empty step).

``window.lcDeckReady`` becomes true when the layout is done; the browser test waits for it.
"""

from __future__ import annotations

__all__ = [
    "CONTROLS_RESERVE",
    "FIGURE_MAX_HEIGHT",
    "LAYOUT_HTML",
    "ROOM_WORTH_FILLING",
    "TABLE_MIN_FONT_PX",
]

CONTROLS_RESERVE = 72  # slide pixels at the bottom kept free for the arrows (at 1280 x 720)
FIGURE_MAX_HEIGHT = 400  # slide pixels; a 16:9 course figure at 711 x 400
TABLE_MIN_FONT_PX = 11  # below this a projected table is unreadable: split it instead
ROOM_WORTH_FILLING = 0.3  # share of a slide left blank above a long item: split it to fill it

_CSS = f"""
<style>
.reveal .jp-InputPrompt, .reveal .jp-OutputPrompt {{ display: none; }}
.reveal .jp-Cell {{ max-width: 100%; box-sizing: border-box; }}
.reveal pre, .reveal div.highlight > pre, .reveal div.jp-OutputArea-output > pre {{
  white-space: pre-wrap; overflow-wrap: anywhere; width: auto; max-width: 100%;
  box-sizing: border-box; overflow: visible;
}}
.reveal .jp-OutputArea-output img, .reveal .jp-RenderedImage img {{
  max-height: {FIGURE_MAX_HEIGHT}px; width: auto; max-width: 100%;
}}
.reveal .jp-RenderedHTMLCommon {{ overflow: visible; }}
.reveal.lc-measure .slides section {{ display: block !important; visibility: hidden; }}
.reveal .controls {{ transform: scale(0.7); transform-origin: 100% 100%; }}
.reveal .lc-continued {{ font-size: 60%; color: #666; margin: 0 0 0.3em 0; }}
</style>
"""

_JS = rf"""
<script>
(function () {{
  const RESERVE = {CONTROLS_RESERVE}, MIN_FONT = {TABLE_MIN_FONT_PX};
  const ROOM_WORTH_FILLING = {ROOM_WORTH_FILLING};
  const usable = () => Reveal.getConfig().height - RESERVE;

  function bottoms(section) {{
    const top = section.getBoundingClientRect().top, s = Reveal.getScale() || 1;
    return [...section.children].map((k) => (k.getBoundingClientRect().bottom - top) / s);
  }}
  function note(text) {{
    const p = document.createElement("p");
    p.className = "lc-continued";
    p.textContent = text;
    return p;
  }}
  function shrinkWideTables() {{
    const width = Reveal.getConfig().width;
    for (const t of document.querySelectorAll(".reveal .slides table")) {{
      let size = parseFloat(getComputedStyle(t).fontSize);
      while (t.scrollWidth > width && size > MIN_FONT) {{
        size -= 1;
        t.style.fontSize = size + "px";
      }}
    }}
  }}
  // Keep the first ``keep`` lines of ``pre`` and return the nodes of the rest (spans intact).
  function splitLines(pre, keep) {{
    let seen = 0;
    const nodes = [...pre.childNodes];
    for (let i = 0; i < nodes.length; i++) {{
      const parts = nodes[i].textContent.split("\n");
      if (seen + parts.length - 1 < keep) {{
        seen += parts.length - 1;
        continue;
      }}
      const k = keep - seen;  // newlines of this node that stay
      const tail = nodes[i].cloneNode(true);
      nodes[i].textContent = parts.slice(0, k).join("\n");
      tail.textContent = parts.slice(k).join("\n").replace(/^\n/, "");
      const rest = [tail, ...nodes.slice(i + 1)];
      rest.slice(1).forEach((n) => n.remove());
      return rest;
    }}
    return [];
  }}
  // Split an item into two siblings so that its first part can end higher; false if it cannot.
  // ``first``: the item opens its sub-slide (a fragment there is shown at once instead).
  function splitItem(item, section, first) {{
    if (item.classList.contains("fragment")) {{
      if (first) {{
        item.replaceWith(...item.childNodes);
        return true;
      }}
      if (item.children.length !== 1 || !splitItem(item.firstElementChild, section, false))
        return false;
      const wrap = item.cloneNode(false);  // the second part is a fragment step of its own
      wrap.appendChild(item.lastElementChild);
      item.after(wrap);
      return true;
    }}
    const outputs = item.querySelector(":scope > .jp-Cell-outputWrapper");
    const input = item.querySelector(":scope > .jp-Cell-inputWrapper");
    if (outputs && input) {{  // the code here, its result on the next sub-slide
      const rest = item.cloneNode(false);
      rest.appendChild(outputs);
      item.after(rest);
      return true;
    }}
    const area = item.querySelector(".jp-OutputArea");
    const results = area ? [...area.children] : [];
    if (results.length > 1) {{  // one result (a figure, a table) per sub-slide
      const rest = item.cloneNode(true);
      const restArea = rest.querySelector(".jp-OutputArea");
      [...restArea.children].slice(0, 1).forEach((e) => e.remove());
      results.slice(1).forEach((e) => e.remove());
      item.after(rest);
      return true;
    }}
    const limit = usable(), top = section.getBoundingClientRect().top;
    const s = Reveal.getScale() || 1;
    const below = (el) => (el.getBoundingClientRect().bottom - top) / s > limit;
    const rows = [...item.querySelectorAll("table > tbody > tr")];
    const cut = rows.findIndex(below);
    if (cut > 0) {{  // a long table: its head here, the rest (header repeated) below
      const rest = item.cloneNode(true);
      [...rest.querySelectorAll("table > tbody > tr")].slice(0, cut).forEach((r) => r.remove());
      rows.slice(cut).forEach((r) => r.remove());
      rest.prepend(note(`(continued: rows ${{cut + 1}}-${{rows.length}} of ${{rows.length}})`));
      item.after(rest);
      return true;
    }}
    const blocks = [...item.querySelectorAll(".jp-RenderedMarkdown > *")];
    const b = blocks.findIndex(below);
    if (b > 0) {{  // a long markdown cell breaks between paragraphs
      const rest = item.cloneNode(true);
      [...rest.querySelectorAll(".jp-RenderedMarkdown > *")].slice(0, b).forEach((e) => e.remove());
      blocks.slice(b).forEach((e) => e.remove());
      item.after(rest);
      return true;
    }}
    const pres = [...item.querySelectorAll("pre")];
    const pre = pres.find(below);
    if (pre) {{  // a long listing or printout breaks between lines, highlighting kept
      const lines = pre.textContent.split("\n").length;
      const box = pre.getBoundingClientRect();
      const lineHeight = box.height / s / Math.max(lines, 1);
      const room = Math.floor((limit - (box.top - top) / s) / lineHeight) - 1;
      if (room > 2 && room < lines) {{
        const rest = item.cloneNode(true);
        const restPre = rest.querySelectorAll("pre")[pres.indexOf(pre)];
        restPre.replaceChildren(...splitLines(pre, room));
        rest.prepend(note("(continued)"));
        item.after(rest);
        return true;
      }}
    }}
    return false;
  }}
  function paginate(section) {{
    for (let guard = 0; guard < 200; guard++) {{
      const ends = bottoms(section);
      const cut = ends.findIndex((b) => b > usable());
      if (cut < 0) return;
      const item = section.children[cut];
      // Room left above the item: worth filling with its first part rather than leaving blank.
      const room = cut === 0 ? usable() : usable() - ends[cut - 1];
      const worth = cut === 0 || room > ROOM_WORTH_FILLING * usable();
      if (worth && splitItem(item, section, cut === 0)) continue;
      if (cut === 0) return;  // cannot be split: the browser test reports it
      const next = document.createElement("section");
      [...section.children].slice(cut).forEach((k) => next.appendChild(k));
      section.after(next);
      const opener = next.firstElementChild;
      if (opener.classList.contains("fragment")) opener.replaceWith(...opener.childNodes);
      section = next;
    }}
  }}
  function layout() {{
    const reveal = document.querySelector(".reveal");
    reveal.classList.add("lc-measure");
    shrinkWideTables();
    document.querySelectorAll(".reveal .slides > section > section").forEach(paginate);
    reveal.classList.remove("lc-measure");
    Reveal.sync();
    Reveal.slide(0, 0, -1);
    window.lcDeckReady = true;
  }}
  function whenTypeset(then) {{
    if (window.MathJax && MathJax.Hub) {{
      const reveal = document.querySelector(".reveal");
      reveal.classList.add("lc-measure");  // typeset with every slide laid out
      MathJax.Hub.Queue(["Rerender", MathJax.Hub], then);
    }} else then();
  }}
  window.addEventListener("load", () => {{
    if (Reveal.isReady()) whenTypeset(layout);
    else Reveal.on("ready", () => whenTypeset(layout));
  }});
}})();
</script>
"""

LAYOUT_HTML = _CSS + _JS
