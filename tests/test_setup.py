"""`make setup` hands pip and uv only the package sources that exist here (etc/pip_sources.py):
no "Location 'file:///...' is ignored" warning a newcomer cannot act on. Offline: every source
is a local folder."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "etc" / "pip_sources.py"
WARNING = "is ignored"


def _wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel of the project `demo-pkg` 0.1."""
    wheel = folder / "demo_pkg-0.1-py3-none-any.whl"
    info = "demo_pkg-0.1.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("demo_pkg/__init__.py", "")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 0.1\n")
        z.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture
def sources(tmp_path):
    """A pip configuration like a machine's: two find-links (one missing), a primary local index
    with demo-pkg's page, an extra local index without it, one that is missing, one on a
    network; no PIP_* variable from the caller leaks in."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = _wheel(wheels)
    primary = tmp_path / "primary"
    (primary / "demo-pkg").mkdir(parents=True)
    (primary / "demo-pkg" / "index.html").write_text(
        f'<html><body><a href="{wheel.as_uri()}">{wheel.name}</a></body></html>'
    )
    other = tmp_path / "other"
    (other / "something-else").mkdir(parents=True)
    conf = tmp_path / "pip.conf"
    extra = [other.as_uri(), (tmp_path / "gone").as_uri(), "https://example.invalid/simple"]
    conf.write_text(
        "[global]\n"
        f"find-links = {wheels} {tmp_path / 'missing-wheels'}\n"
        f"index-url = {primary.as_uri()}\n"
        f"extra-index-url = {' '.join(extra)}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=str(conf), PIP_DISABLE_PIP_VERSION_CHECK="1")
    return {"env": env, "wheels": wheels, "tmp": tmp_path, "extra": extra}


def _run(args, env, **kw):
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, **kw
    )


def test_uv_gets_only_the_find_links_that_exist(sources):
    out = _run([str(SCRIPT), "find-links"], sources["env"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["--find-links", str(sources["wheels"])]


def test_pip_sees_only_the_sources_that_exist_for_the_project(sources):
    env = sources["env"]
    out = _run([str(SCRIPT), "pip", "demo-pkg", "config", "list"], env)
    assert out.returncode == 0, out.stderr
    # the index without demo-pkg's page and the missing one are left out; the network one stays
    assert ":env:.extra-index-url='https://example.invalid/simple'" in out.stdout, out.stdout
    assert f":env:.find-links='{sources['wheels']}'" in out.stdout, out.stdout


def test_pip_warns_without_the_filter_and_not_with_it(sources):
    """The warning of a fresh clone's `make setup`, made here offline, and gone. No extra index
    is left, so this also shows that pip reads the blank value as none."""
    env = dict(sources["env"])
    # network sources cannot be reached in a test: only the local ones here
    conf = Path(env["PIP_CONFIG_FILE"])
    conf.write_text(conf.read_text().replace(" https://example.invalid/simple", ""))
    args = ["download", "--no-deps", "--dest", str(sources["tmp"] / "dl"), "demo-pkg"]
    plain = _run(["-m", "pip", *args], env)
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr.count(WARNING) == 3, plain.stderr  # two indexes, one find-links folder
    filtered = _run([str(SCRIPT), "pip", "demo-pkg", *args], env)
    assert filtered.returncode == 0, filtered.stderr
    assert WARNING not in filtered.stderr, filtered.stderr
    assert (sources["tmp"] / "dl" / "demo_pkg-0.1-py3-none-any.whl").exists()
