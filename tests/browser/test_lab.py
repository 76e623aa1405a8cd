"""The learner's path: JupyterLab starts as `make lab` starts it, opens 01, runs its first cell."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "01_lora_layer.ipynb"
KERNEL = "lora-course"
START_TIMEOUT_S = 90  # two shared cores: JupyterLab's first start takes a while

pytestmark = pytest.mark.browser


def which_jupyter_lab() -> list[str]:
    """The command `make lab` runs, for this checkout's environment."""
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent))
    if jupyter is None:
        pytest.fail(f"no jupyter next to {sys.executable}: run `make setup`")
    return [jupyter, "lab"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _workdir(tmp_path):
    """A copy of the notebooks with their outputs cleared (an output seen later is a new one, and
    autosave cannot touch the repository), and a kernel spec for this checkout's Python."""
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks, ignore=shutil.ignore_patterns(".ipynb_*"))
    nb = nbformat.read(notebooks / NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, notebooks / NOTEBOOK)
    # `make setup` installs "Python (lora-course)" into the checkout's .venv; this copy of it
    # points at the Python running the tests, whichever environment that is.
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python (lora-course)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return notebooks


def _stop(server: subprocess.Popen) -> None:
    """End the server we started, by its pid, then anything left in its process group (kernels)."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    try:
        os.killpg(server.pid, signal.SIGKILL)  # its group: started with start_new_session=True
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def lab(tmp_path):
    notebooks = _workdir(tmp_path)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_PATH=str(tmp_path / "jupyter"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    command = which_jupyter_lab() + [
        f"--notebook-dir={notebooks}",
        f"--ServerApp.default_url=/lab/tree/{NOTEBOOK}",  # as `make lab`
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
    ]
    if os.geteuid() == 0:  # CI runs as root, which JupyterLab refuses unless told (as `make lab`)
        command.append("--allow-root")
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited ({server.returncode}):\n{_tail(tmp_path)}")
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"JupyterLab did not answer in {START_TIMEOUT_S} s:\n{_tail(tmp_path)}"
                    )
                time.sleep(0.5)
        yield url, token
    finally:
        _stop(server)
        log.close()


def _tail(tmp_path) -> str:
    return (tmp_path / "lab.log").read_text(errors="replace")[-3000:]


def test_lab_opens_notebook_01_and_runs_its_first_cell(lab, watched_page):
    url, token = lab
    page = watched_page.page
    page.goto(f"{url}/lab/tree/{NOTEBOOK}?reset&token={token}", wait_until="domcontentloaded")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    first = panel.locator(".jp-CodeCell").first
    try:
        # A cell run before the kernel is connected is dropped: wait for the status bar first.
        page.get_by_text("Python (lora-course) | Idle").wait_for(timeout=90_000)
        first.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        output = first.locator(".jp-OutputArea-output")
        # "attached", not "visible": JupyterLab may hide cells scrolled out of view.
        output.filter(has_text="lora_course").wait_for(state="attached", timeout=60_000)
        first.evaluate("cell => cell.scrollIntoView()")  # prompt and output in the screenshot
        prompt = first.locator(".jp-InputPrompt").text_content()
    finally:
        watched_page.screenshot("lab_01_first_cell.png")
    text = output.text_content()
    assert "torch" in text and "lora_course" in text, text
    assert "[1]" in prompt, prompt
    assert watched_page.blocked == [], "JupyterLab asked the network for these"
    assert watched_page.errors == [], "JupyterLab's scripts raised"
