"""The kernel belongs to its checkout: two clones' `make setup` never share or repoint one.

The Makefile's kernel install line runs, as `make setup` runs it, in two throwaway virtual
environments standing in for two clones' ``.venv`` (they borrow this environment's packages
through a ``.pth`` file). Each clone's Jupyter must find "lora-course" pointing at its own
Python, before and after the other clone installs, even with a stale per-user "lora-course"
kernel (what `make setup` used to write) pointing somewhere else.
"""

from __future__ import annotations

import json
import os
import re
import site
import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _install_line() -> str:
    """The Makefile's ``ipykernel install`` command, with its variables filled in."""
    makefile = (ROOT / "Makefile").read_text()
    kernel = re.search(r"^KERNEL\s*:=\s*(\S+)", makefile, re.MULTILINE).group(1)
    line = re.search(r"^\t(\$\(BIN\)/python -m ipykernel install .*)$", makefile, re.MULTILINE)
    assert line, "the Makefile installs no kernel with `$(BIN)/python -m ipykernel install`"
    return line.group(1).replace("$(KERNEL)", kernel)


def _clone_env(path: Path) -> Path:
    venv.create(path, with_pip=False)
    purelib = subprocess.run(
        [path / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return path / "bin"


def _kernel_python(bin_dir: Path, env: dict) -> str:
    """The Python that this clone's Jupyter starts for the kernel "lora-course"."""
    code = (
        "import json; from jupyter_client.kernelspec import KernelSpecManager as K; "
        "print(json.dumps(K().get_kernel_spec('lora-course').argv[0]))"
    )
    out = subprocess.run(
        [bin_dir / "python", "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout)


def test_two_clones_kernels_are_independent(tmp_path):
    command = _install_line()
    assert "--user" not in command, f"a per-user kernel is shared by every clone: {command}"
    home = tmp_path / "home"  # a stale per-user kernel, as `make setup` wrote it before
    stale = home / ".local" / "share" / "jupyter" / "kernels" / "lora-course"
    stale.mkdir(parents=True)
    (stale / "kernel.json").write_text(
        json.dumps({"argv": ["/elsewhere/python", "-m", "ipykernel_launcher"], "language": "py"})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "CONDA"))}
    env["HOME"] = str(home)
    first, second = _clone_env(tmp_path / "one" / ".venv"), _clone_env(tmp_path / "two" / ".venv")

    def install(bin_dir):
        shell = command.replace("$(BIN)", str(bin_dir))
        subprocess.run(shell, shell=True, check=True, env=env, cwd=bin_dir.parent.parent)

    install(first)
    assert _kernel_python(first, env) == str(first / "python")
    install(second)
    assert _kernel_python(second, env) == str(second / "python")
    assert _kernel_python(first, env) == str(first / "python"), "the second clone took it over"
    assert json.loads((stale / "kernel.json").read_text())["argv"][0] == "/elsewhere/python"
