"""Headless Debian Chromium driven by Playwright, with every non-local request blocked.

`make test-browser` (and `make test`) install Debian's `chromium` first where apt is usable;
without it these tests skip and say why. Playwright's own browser download is never used: it
cannot work on a closed network.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = Path(os.environ.get("LORA_COURSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",  # no update checks, safe-browsing lists, ...
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 720}
TIMEOUT_MS = 30_000  # any single wait; the whole browser suite takes well under two minutes

LOCAL_SCHEMES = {"file", "data", "blob", "about"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def is_local(url: str) -> bool:
    """True for file:, data:, blob: and about: URLs and for this machine's loopback addresses."""
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or parts.hostname in LOCAL_HOSTS


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory):
    """One headless Chromium with a new, empty profile for the whole session."""
    if not CHROMIUM.is_file():
        pytest.skip(
            f"{CHROMIUM} not found: `make test-browser` installs Debian's chromium where apt-get "
            "is usable (as root); elsewhere install chromium, or set LORA_COURSE_CHROMIUM"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: run `make setup`"
    )
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=VIEWPORT,
            service_workers="block",
            timeout=TIMEOUT_MS,
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


class Watched:
    """A page whose non-local requests are blocked and whose failures are recorded."""

    def __init__(self, page):
        self.page = page
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        page.route("**/*", self._route)
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        page.on("pageerror", lambda err: self.errors.append(str(err)))

    def _route(self, route):
        url = route.request.url
        if is_local(url):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def _failed(self, request):
        # MathJax 2 probes font loading with a font whose source is about:blank, on purpose.
        if request.url != "about:blank":
            self.failed.append(f"{request.url} ({request.failure})")

    def _response(self, response):
        if response.status >= 400:
            self.failed.append(f"{response.url} (HTTP {response.status})")

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        self.page.screenshot(path=str(path))
        return path


@pytest.fixture
def watched_page(browser_context):
    page = browser_context.new_page()
    try:
        yield Watched(page)
    finally:
        page.close()
