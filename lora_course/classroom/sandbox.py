"""The sandbox each submission's kernel runs in: bubblewrap (``bwrap``) on Linux.

:func:`kernel_manager` gives nbclient a kernel manager whose kernel starts inside ``bwrap``:

- **writes** only its own folder (the submission's temporary folder: the copy it runs in, its
  home, the kernel's sockets); ``/tmp`` is a private, empty tmpfs;
- **reads** the system (``/usr``, a few ``/etc`` files), this Python and its virtualenv, and the
  course's package and ``data/`` (the tiny model), all read-only; not the master notebooks (they
  hold the solutions), not the submissions folder, not the gradebook, not ``/root`` or ``/home``;
- **sees** its own processes only (a new PID namespace and its own ``/proc``: the grader's
  command line is not there), no network (a new network namespace: only its own loopback), a
  minimal ``/dev``, no ``/sys``; an empty environment but for a few variables; no capabilities;
  it dies with the grader (``--die-with-parent``).

The grader talks to the kernel over ZeroMQ **IPC** sockets (Unix sockets in the submission's
folder, bind-mounted inside), not TCP: a kernel in its own network namespace binds its own
loopback, which the grader cannot reach. Interrupts and kills reach the kernel through its
process group, as without the sandbox.

Limits on memory, CPU and processes are not the sandbox's job: run the grader in a container for
those (README, "Grading"). bubblewrap is Linux only: elsewhere :func:`sandbox_problem` says so
and the command line prints a warning and the container command.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = [
    "SANDBOX_WARNING",
    "SandboxUnavailable",
    "bwrap_command",
    "kernel_manager",
    "require_sandbox",
    "sandbox_problem",
]

SANDBOX_WARNING = (
    "learner code runs with YOUR rights: it can read your files, use the network and change "
    "the gradebook. Grade untrusted work in a container (README, 'Grading'): docker run --rm "
    "--network none --memory 4g --cpus 2 --pids-limit 256 --read-only --tmpfs /tmp:size=2g "
    '-e HOME=/tmp -v "$PWD/submissions:/submissions:ro" -v "$PWD/out:/out" lora-course '
    "python -m lora_course grade /submissions --out /out/gradebook.csv --jobs 2"
)
# System folders the kernel reads; a missing one is skipped, a symlink (merged /usr) copied.
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/opt/conda")
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf",
        "localtime", "hosts", "fonts", "alternatives", "mime.types")  # fmt: skip
_PASS_ENV = ("LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TZ")


class SandboxUnavailable(RuntimeError):
    """Sandboxed grading was asked for where bubblewrap cannot run."""


@functools.cache
def sandbox_problem() -> str:
    """Why the sandbox cannot run here ("" when it can): the platform, or bwrap missing/failing."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux (bubblewrap); this is {sys.platform}"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return (
            "bubblewrap (bwrap) is not installed: `make bubblewrap` or "
            "`apt-get install bubblewrap` (as root)"
        )
    probe = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return f"bwrap cannot create namespaces here ({done.stderr.strip()[:200]})"
    return ""


def require_sandbox() -> None:
    """Raise :class:`SandboxUnavailable` (saying why and what to do) if bwrap cannot run here."""
    problem = sandbox_problem()
    if problem:
        raise SandboxUnavailable(f"{problem}; or grade with sandbox=False (--no-sandbox)")


def _course_paths() -> tuple[Path, list[Path]]:
    """The folder to put on ``PYTHONPATH`` and the course folders the kernel may read."""
    import lora_course

    package = Path(lora_course.__file__).resolve().parent
    readable = [package]
    data = package.parent / "data"
    if data.is_dir():
        readable.append(data)
    return package.parent, readable


def _ro(path: str | Path) -> list[str]:
    path = str(path)
    if os.path.islink(path):
        return ["--symlink", os.readlink(path), path]
    return ["--ro-bind", path, path] if os.path.exists(path) else []


def bwrap_command(argv: list[str], folder: Path, cwd: Path) -> list[str]:
    """``argv`` wrapped in bwrap: read-only system and course, ``folder`` writable, no network.

    ``argv[0]`` (this Python, maybe through a symlinked virtualenv) is replaced by the same
    interpreter under the virtualenv's real path, which is the one bound inside.
    """
    folder, cwd = Path(folder).resolve(), Path(cwd).resolve()
    prefix = Path(os.path.realpath(sys.prefix))
    python = prefix / "bin" / Path(argv[0]).name
    root, course = _course_paths()
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--clearenv"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # first: binds may be in /tmp
    for path in _SYSTEM:
        cmd += _ro(path)
    for name in _ETC:
        cmd += _ro(Path("/etc") / name)
    for path in dict.fromkeys([prefix, Path(os.path.realpath(sys.base_prefix)), *course]):
        cmd += ["--ro-bind", str(path), str(path)]
    cmd += ["--bind", str(folder), str(folder), "--chdir", str(cwd)]
    home = folder / "home"
    home.mkdir(exist_ok=True)
    env = {
        "HOME": str(home),
        "PATH": f"{prefix / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(root),
        "TMPDIR": "/tmp",
        "MPLCONFIGDIR": str(home / ".matplotlib"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LORA_COURSE_IN_GRADER": "1",  # exercise 3's check leaves its re-runs to the grader
    }
    env.update({k: os.environ[k] for k in _PASS_ENV if k in os.environ})
    env.update({k: v for k, v in os.environ.items() if k.startswith("LORA_COURSE_")})
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    # The grader interrupts a cell with SIGINT to the kernel's process group, which holds bwrap
    # too: bwrap must ignore it or it would exit and take the kernel along. An ignored SIGINT
    # survives exec; ipykernel installs its own handler while it runs a cell.
    shell = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh"]
    return [*shell, *cmd, "--", str(python) if python.exists() else argv[0], *argv[1:]]


def kernel_manager(folder: Path, cwd: Path, kernel_name: str = "python3"):
    """An ``AsyncKernelManager`` whose kernel runs in bwrap, talking over IPC in ``folder``."""
    from jupyter_client.manager import AsyncKernelManager

    require_sandbox()

    class _SandboxedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return bwrap_command(super().format_kernel_cmd(extra_arguments), folder, cwd)

    sockets = Path(folder).resolve() / "kernel"
    sockets.mkdir(exist_ok=True)
    return _SandboxedKernelManager(
        kernel_name=kernel_name,
        transport="ipc",
        ip=str(sockets / "ipc"),
        connection_file=str(sockets / "connection.json"),
    )
