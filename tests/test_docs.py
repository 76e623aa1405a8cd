"""The README and docs/: every link lands on a file (and a heading) that is there, and every
command they show (`make X`, `python -m lora_course X --flag`) exists."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from lora_course.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _code(text: str) -> list[str]:
    """The code a page shows: each line of a fenced block (a line ending in a backslash joined
    to the next), then each inline `code span` of the prose."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", prose)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchor for each heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def _help(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*argv, "--help"])
    return out.getvalue()


def test_readme_links_every_doc_and_each_link_resolves():
    readme = README.read_text()
    assert DOCS, "docs/ holds no guide"
    linked = {(ROOT / link.split("#")[0]).resolve() for link in LINK.findall(readme)}
    for doc in DOCS:
        assert doc.resolve() in linked, f"{doc.name} is not linked from the README"
    for page in PAGES:
        for link in LINK.findall(page.read_text()):
            if "://" in link:
                continue
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            assert target.exists(), f"{page.name}: {link} points at no file"
            if anchor:
                assert anchor in _anchors(target), f"{page.name}: {link}: no such heading"


def test_readme_is_a_front_door():
    # the front door stays short; the rest lives in docs/ (one guide per reader)
    assert len(README.read_text().splitlines()) <= 150


def test_every_make_target_shown_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set()
    for names in re.findall(r"^([\w][\w .-]*):(?!=)", makefile, flags=re.M):
        targets.update(names.split())
    shown = {
        (page.name, target)
        for page in PAGES
        for line in _code(page.read_text())
        for target in re.findall(r"(?:^|[\s;(&|])make ([a-z][\w-]*)", line)
    }
    assert {t for _, t in shown} >= {"lab", "test", "release", "grade"}, shown
    missing = sorted((page, t) for page, t in shown if t not in targets)
    assert not missing, f"make targets shown but not in the Makefile: {missing}"


def test_every_lora_course_command_shown_exists():
    commands = set(re.findall(r"^    ([a-z][\w-]*)\s", _help(), flags=re.M))
    assert {"release", "grade", "gradebook", "finetune"} <= commands
    helps: dict[str, str] = {}
    shown = 0
    for page in PAGES:
        for line in _code(page.read_text()):
            code = line.split(" # ")[0]  # a shell comment shows no flag
            for command, rest in re.findall(r"-m lora_course ([a-z][\w-]*)([^;'`]*)", code):
                shown += 1
                assert command in commands, f"{page.name}: `{line}`: no command {command!r}"
                text = helps.setdefault(command, _help(command))
                for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", rest):
                    assert flag in text, f"{page.name}: `{line}`: {command} has no {flag}"
                if command == "gradebook":
                    action = rest.split()[0] if rest.split() else ""
                    assert action in ("merge", "demo-class") and action in text, line
    assert shown >= 10, f"only {shown} commands found: the parsing missed them"
