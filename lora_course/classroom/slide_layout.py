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
    "CODE_ALONE",
    "CONTINUATION_INDENT",
    "ROOM_WORTH_FILLING",
    "TABLE_MIN_FONT_PX",
]

CONTROLS_RESERVE = 72  # slide pixels at the bottom kept free for the arrows (at 1280 x 720)
FIGURE_MAX_HEIGHT = 480  # slide pixels: a course figure (8 x 4.5 in at 100 dpi) at 1280 x 720 is
# shown no smaller than in the notebook (09's wide training-memory figure: 0.85, to be redrawn)
TABLE_MIN_FONT_PX = 14  # 15.4 px at 1280 x 720, 12.3 at 1024 x 768; smaller: split it instead
CODE_ALONE = 12  # lines: a longer listing is cut before a statement rather than shown alone
CONTINUATION_INDENT = "2ch"  # a wrapped row of code starts this far right, after an arrow
ROOM_WORTH_FILLING = 0.3  # share of a slide left blank above a long item: split it to fill it

# One grey arrow per wrapped row (ten rows at most): "\\21aa" is the arrow, "\\A" a new line.
_ARROWS = "\\A".join(["\\21aa"] * 10)

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
/* A row wrapped at the slide's edge starts further right, behind a grey arrow. */
.reveal pre .lc-line {{
  display: block; position: relative;
  padding-left: {CONTINUATION_INDENT}; text-indent: -{CONTINUATION_INDENT};
}}
.reveal pre .lc-line::after {{
  content: "{_ARROWS}";
  white-space: pre; position: absolute; left: 0; top: 1lh; bottom: 0; overflow: hidden;
  text-indent: 0; color: #999;
}}
.reveal .lc-continued {{ font-size: 14px; color: #666; margin: 0 0 0.3em 0; }}
</style>
"""

_JS = rf"""
<script>
(function () {{
  const RESERVE = {CONTROLS_RESERVE}, MIN_FONT = {TABLE_MIN_FONT_PX}, CODE_ALONE = {CODE_ALONE};
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
  // A table wider than the slide is set smaller, down to MIN_FONT; still too wide, its columns
  // are split: the first part keeps the columns that fit, each further part (a result of its
  // own, so pagination can give it a sub-slide) repeats the index column and the next ones.
  function shrinkWideTables() {{
    const width = Reveal.getConfig().width;
    for (const t of document.querySelectorAll(".reveal .slides table")) {{
      let size = parseFloat(getComputedStyle(t).fontSize);
      while (t.scrollWidth > width && size > MIN_FONT) {{
        size -= 1;
        t.style.fontSize = size + "px";
      }}
      if (t.scrollWidth > width) splitColumns(t, width);
    }}
  }}
  function splitColumns(table, width) {{
    const result = table.closest(".jp-OutputArea-child");
    const rows = [...table.rows];
    if (!result || rows.some((r) => [...r.cells].some((c) => c.colSpan > 1))) return;
    const head = rows[0].cells, n = head.length;
    const index = rows.every((r) => r.cells[0] && r.cells[0].tagName === "TH") ? 1 : 0;
    const left = table.getBoundingClientRect().left, s = Reveal.getScale() || 1;
    let fit = index;
    while (fit < n && (head[fit].getBoundingClientRect().right - left) / s <= width) fit++;
    if (fit <= index + 1 || fit >= n) return;
    const parts = Math.ceil((n - index) / (fit - index));  // as many parts, as even as can be
    fit = index + Math.ceil((n - index) / parts);
    const rest = result.cloneNode(true);
    const keep = (r, lo, hi) => [...r.cells].forEach((c, j) => {{
      if (j >= index && (j < lo || j >= hi)) c.remove();
    }});
    rows.forEach((r) => keep(r, index, fit));
    const restTable = rest.querySelector("table");
    [...restTable.rows].forEach((r) => keep(r, fit, n));
    const label = `(continued: columns ${{fit - index + 1}}-${{n - index}} of ${{n - index}})`;
    restTable.before(note(label));
    result.after(rest);
    if (restTable.scrollWidth > width) splitColumns(restTable, width);
  }}
  // Each line of a listing or printout becomes a block of its own (its text keeps the newline),
  // so that a row wrapped at the slide's edge is indented and marked as a continuation (CSS).
  function intoLines(pre) {{
    const lines = [[]];
    for (const node of [...pre.childNodes]) {{
      node.textContent.split("\n").forEach((part, k) => {{
        if (k > 0) lines[lines.length - 1].push(document.createTextNode("\n"));
        if (k > 0) lines.push([]);
        if (part === "") return;
        if (node.nodeType === Node.TEXT_NODE) {{
          lines[lines.length - 1].push(document.createTextNode(part));
        }} else {{
          const piece = node.cloneNode(false);
          piece.textContent = part;
          lines[lines.length - 1].push(piece);
        }}
      }});
    }}
    if (lines.length > 1 && lines[lines.length - 1].length === 0) lines.pop();
    pre.replaceChildren(...lines.map((nodes) => {{
      const line = document.createElement("span");
      line.className = "lc-line";
      line.append(...nodes);
      return line;
    }}));
  }}
  // Where a Python listing may break: before line i when ``rank[i]`` is 2 (a top-level
  // statement starts there), 1 (a statement inside a block starts) or 0 (inside a statement:
  // an open bracket or string, a backslash continuation, or a clause like ``else:``).
  function statementStarts(lines) {{
    const rank = [];
    let depth = 0, quote = null, continued = false;
    for (const line of lines) {{
      const text = line.replace(/\n$/, ""), blank = text.trim() === "";
      const indent = text.length - text.trimStart().length;
      const clause = /^\s*(else|elif|except|finally|case)\b|^\s*[)\]}}]/.test(text);
      rank.push(depth > 0 || quote || continued || clause || blank ? 0 : indent === 0 ? 2 : 1);
      for (let i = 0; i < text.length; i++) {{
        const c = text[i];
        if (quote) {{
          if (c === "\\") i++;
          else if (text.startsWith(quote, i)) {{ i += quote.length - 1; quote = null; }}
        }} else if (c === "#") break;
        else if (c === "'" || c === '"') {{
          quote = text.startsWith(c.repeat(3), i) ? c.repeat(3) : c;
          i += quote.length - 1;
        }} else if ("([{{".includes(c)) depth++;
        else if (")]}}".includes(c)) depth = Math.max(0, depth - 1);
      }}
      if (quote && quote.length === 1) quote = null;  // an unclosed one-line string: an error
      continued = /\\$/.test(text);
    }}
    return rank;
  }}
  // How many lines of ``pre`` to keep above ``limit``: at most ``room``; in a listing, before a
  // statement (top-level first), never inside one unless ``force`` (nothing else fits).
  function cutLine(pre, room, force) {{
    if (!pre.closest(".jp-InputArea")) return room;
    const rank = statementStarts([...pre.children].map((l) => l.textContent));
    for (const wanted of [2, 1]) {{
      for (let k = room; k > 2; k--) if (rank[k] >= wanted) return k;
      if (!force) return 0;
    }}
    return room;
  }}
  // Keep the first ``keep`` lines of ``pre`` and return the rest (line blocks, highlighting kept).
  function splitLines(pre, keep) {{
    const rest = [...pre.children].slice(keep);
    rest.forEach((n) => n.remove());
    return rest;
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
      if (splitCode(item, input)) return true;  // a long one: its last statements go along
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
      const lines = [...pre.children];
      const fits = lines.findIndex(below);
      const room = cutLine(pre, fits - 1, first);
      if (room > 2 && room < lines.length) {{
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
  // A listing longer than CODE_ALONE lines is cut before a top-level statement, so that no
  // sub-slide shows a wall of code on its own: the first part stays, the rest (with the cell's
  // result, if any) follows in a copy of the cell. False when there is no such statement.
  function splitCode(item, input) {{
    const pre = input.querySelector("pre");
    const lines = pre ? pre.children.length : 0;
    if (lines <= CODE_ALONE) return false;
    const rank = statementStarts([...pre.children].map((l) => l.textContent));
    const texts = [...pre.children].map((l) => l.textContent.trim());
    // Before a top-level statement; else before a statement in a block after a blank line
    // (a method of a class), else before any statement in a block.
    const ok = [
      (k) => rank[k] === 2,
      (k) => rank[k] >= 1 && texts[k - 1] === "",
      (k) => rank[k] >= 1,
    ];
    let keep = 0;
    for (const good of ok) {{
      for (let k = Math.min(CODE_ALONE, lines - 1); k > 2 && !keep; k--) if (good(k)) keep = k;
    }}
    if (!keep) return false;
    const rest = item.cloneNode(true);
    rest.querySelector(".jp-Cell-inputWrapper pre").replaceChildren(...splitLines(pre, keep));
    item.querySelector(":scope > .jp-Cell-outputWrapper")?.remove();
    rest.prepend(note("(continued)"));
    rest.classList.add("lc-break");  // starts a sub-slide of its own (paginate)
    item.after(rest);
    return true;
  }}
  // After pagination: a sub-slide holding only a long listing (no text, no result) is split.
  function noWallOfCode(section) {{
    const items = [...section.children];
    const text = section.querySelector(".jp-RenderedMarkdown, .jp-OutputArea-output");
    const pres = section.querySelectorAll(".jp-InputArea pre .lc-line").length;
    if (text || pres <= CODE_ALONE) return;
    const last = items[items.length - 1];
    const input = last.querySelector(":scope > .jp-Cell-inputWrapper");
    if (!input || !splitCode(last, input)) {{
      if (items.length < 2) return;
      const next = document.createElement("section");  // two listings: one per sub-slide
      next.appendChild(last);
      section.after(next);
      return;
    }}
    section.lastElementChild.classList.remove("lc-break");
    const next = document.createElement("section");
    next.appendChild(section.lastElementChild);
    section.after(next);
    noWallOfCode(next);
  }}
  function paginate(section) {{
    for (let guard = 0; guard < 200; guard++) {{
      const ends = bottoms(section);
      const kids = [...section.children];
      const cut = ends.findIndex((b, k) => b > usable() || (k > 0 && kids[k].matches(".lc-break")));
      if (cut < 0) return;
      const item = section.children[cut];
      item.classList.remove("lc-break");
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
    document.querySelectorAll(".reveal .slides pre").forEach(intoLines);
    shrinkWideTables();
    document.querySelectorAll(".reveal .slides > section > section").forEach(paginate);
    document.querySelectorAll(".reveal .slides > section > section").forEach(noWallOfCode);
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
