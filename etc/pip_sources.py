"""pip's package sources, less the ones that are not on this machine (used by `make setup`).

`make setup` installs uv with pip, then the course with uv. pip's configuration may name local
sources that do not exist here: a find-links folder that is missing, or a local index
(`file://.../simple`) that has no page for the project asked for. pip warns once per such
source ("WARNING: Location 'file:///...' is ignored: it is neither a file nor a directory"), a
warning a newcomer can do nothing about. uv does not read pip's configuration at all, so the
find-links folders (here: the CPU build of torch) are handed to it by hand.

    python etc/pip_sources.py find-links
        prints `--find-links LOCATION` for each find-links source of pip's configuration
        (files and PIP_FIND_LINKS) that exists here: the options for uv.
    python etc/pip_sources.py pip PROJECT PIP_ARGS...
        runs `python -m pip PIP_ARGS...` with the find-links and extra-index-url sources that do
        not exist here (for PROJECT) left out; every other setting stays as configured.

Sources on a network (http, https) are always kept: only local ones can be checked. The
primary index (index-url) is never dropped: pip would fall back to its default index.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from urllib.parse import unquote, urlparse

LISTS = ("find-links", "extra-index-url")


def _settings() -> dict[str, str]:
    """pip's configuration as `pip config list` shows it: files and PIP_ variables."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return dict(re.findall(r"^(\S+?)='(.*)'$", listing, flags=re.M))


def configured(name: str, command: str = "install", found: dict | None = None) -> list[str]:
    """The value pip uses for the list option `name`: the environment (PIP_...) over the
    command's section over [global], as pip ranks them (pip/_internal/cli/parser.py,
    _get_ordered_configuration_items)."""
    found = _settings() if found is None else found
    for section in (":env:", command, "global"):
        value = found.get(f"{section}.{name}", "").strip()
        if value:
            return value.split()
    return []


def _local_path(location: str) -> str | None:
    """The path a local source names; None for a source on a network."""
    if location.startswith("file:"):
        return unquote(urlparse(location).path)
    return None if "://" in location else location


def exists(location: str, project: str | None = None) -> bool:
    """Whether pip finds something at `location`: a find-links file or folder, or, for an index
    (`project` given), the project's page folder (names normalized as in PEP 503)."""
    path = _local_path(location)
    if path is None:
        return True
    if project is not None:
        path = os.path.join(path, re.sub(r"[-_.]+", "-", project).lower())
    return os.path.exists(path)


def main(argv: list[str]) -> int:
    if argv[:1] == ["find-links"]:
        print(" ".join(f"--find-links {loc}" for loc in configured("find-links") if exists(loc)))
        return 0
    if len(argv) >= 3 and argv[0] == "pip":
        project, pip_args = argv[1], argv[2:]
        env, found = dict(os.environ), _settings()
        for name in LISTS:
            given = configured(name, command=pip_args[0], found=found)
            kept = [loc for loc in given if exists(loc, project if "index" in name else None)]
            if kept != given:
                # An empty value would be ignored (pip keeps the configured one); a blank one
                # reads as an empty list (pip/_internal/cli/parser.py, _update_defaults).
                env["PIP_" + name.replace("-", "_").upper()] = " ".join(kept) or " "
        return subprocess.run([sys.executable, "-m", "pip", *pip_args], env=env).returncode
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
