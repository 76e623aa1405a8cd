"""The sandbox each submission's kernel runs in: bubblewrap (``bwrap``) on Linux.

:func:`kernel_manager` gives nbclient a kernel manager whose kernel starts inside ``bwrap``:

- **writes** only its own folder (the submission's temporary folder: the copy it runs in, its
  home, the kernel's sockets); ``/tmp`` is a private, empty, size-capped tmpfs;
- **reads** the system (``/usr``, a few ``/etc`` files), this Python and its virtualenv, and the
  course's package and ``data/`` (the tiny model), all read-only; not the master notebooks (they
  hold the solutions), not the submissions folder, not the gradebook, not ``/root`` or ``/home``;
- **sees** its own processes only (a new PID namespace and its own ``/proc``: the grader's
  command line is not there), no network (a new network namespace: only its own loopback), a
  minimal ``/dev``, no ``/sys``; it dies with the grader (``--die-with-parent``);
- **is nobody**: uid and gid 65534 in its own user namespace, every capability dropped
  (``--cap-drop ALL``; ``CapEff`` 0 even when the grader is root, so a read-only bind cannot be
  remounted writable) and no further user namespace (``--disable-userns``);
- **inherits nothing**: bwrap itself starts from an empty environment (``env -i``), so no process
  in the sandbox, bwrap's own init (``/proc/1/environ``) included, carries the grader's
  variables; the kernel gets a few set here;
- **is limited** (:class:`Limits`, each a ``grade`` flag): address space per process
  (``RLIMIT_AS``), processes and threads (``RLIMIT_NPROC``, set inside the sandbox's own user
  namespace, so it counts that kernel's tasks only; for a root grader, whose kernels are root
  outside and so exempt from it, a pids cgroup per kernel: :func:`pids_cgroup`), the size of
  one file (``RLIMIT_FSIZE``) and of ``/tmp``; where the grader may mount (root), its whole
  folder is a tmpfs of that size too (:func:`capped_folder`).

When the grader runs as root, uid 65534 inside is root outside with no capability: it can reach
only what is bound, in the mode bound (a read-only bind stays read-only: remounting needs
``CAP_SYS_ADMIN``). The files it needs are those root owns, so a root grader needs no
permission changes. As a user, bwrap runs unprivileged and the kernel is that user in the
namespace, with the same binds and limits.

The grader talks to the kernel over ZeroMQ **IPC** sockets (Unix sockets in the submission's
folder, bind-mounted inside), not TCP: a kernel in its own network namespace binds its own
loopback, which the grader cannot reach. Interrupts and kills reach the kernel through its
process group, as without the sandbox.

A container still adds CPU limits and a memory limit over all processes together
(docs/instructors.md, "The sandbox"). bubblewrap (0.8 or newer) is Linux only: elsewhere
:func:`sandbox_problem` says so and the command line prints a warning and the container command.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Limits",
    "SANDBOX_UID",
    "SANDBOX_WARNING",
    "SandboxUnavailable",
    "bwrap_command",
    "capped_folder",
    "pids_cgroup",
    "kernel_manager",
    "require_sandbox",
    "sandbox_problem",
]

SANDBOX_WARNING = (
    "learner code runs with YOUR rights: it can read your files, use the network and change "
    "the gradebook. Grade untrusted work in a container (docs/instructors.md, 'The sandbox'): "
    "docker run --rm --network none --memory 4g --cpus 2 --pids-limit 256 --read-only "
    "--tmpfs /tmp:size=2g "
    '-e HOME=/tmp -v "$PWD/submissions:/submissions:ro" -v "$PWD/out:/out" lora-course '
    "python -m lora_course grade /submissions --out /out/gradebook.csv --jobs 2"
)
# System folders the kernel reads; a missing one is skipped, a symlink (merged /usr) copied.
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/opt/conda")
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf",
        "localtime", "hosts", "fonts", "alternatives", "mime.types")  # fmt: skip
_PASS_ENV = ("LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TZ")
SANDBOX_UID = 65534  # nobody
# Run inside the sandbox before the kernel: set the limits, then become the kernel.
_LIMITER = (
    "import os, resource, sys\n"
    "for name, value in zip(('RLIMIT_AS', 'RLIMIT_NPROC', 'RLIMIT_FSIZE'), sys.argv[1:4]):\n"
    "    if int(value) > 0:\n"
    "        resource.setrlimit(getattr(resource, name), (int(value), int(value)))\n"
    "os.execv(sys.argv[4], sys.argv[4:])"
)


@dataclass(frozen=True)
class Limits:
    """What one kernel may use; 0 turns a limit off. Defaults suit the course's tiny model.

    ``memory``: bytes of address space per process (a torch kernel training the tiny model
    peaks near 1.2 GB); ``processes``: processes and threads in the sandbox; ``disk``: bytes in
    one file, in ``/tmp``, and (root) in the kernel's folder; ``output``: bytes of cell output
    the grader keeps per notebook (more is dropped, status ``output limit``);
    ``submission``: bytes of files a submission may hold (more: ``too large``, not run).
    """

    memory: int = 4 << 30
    processes: int = 128
    disk: int = 1 << 30
    output: int = 8_000_000
    submission: int = 100_000_000


_ISOLATE = [
    *("--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"),
    *("--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--die-with-parent"),
]


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
    probe = [bwrap, *_ISOLATE, "--ro-bind", "/", "/", "true"]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return (
            f"bwrap cannot create namespaces here or is older than 0.8 "
            f"({done.stderr.strip()[:200]})"
        )
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


def bwrap_command(
    argv: list[str],
    folder: Path,
    cwd: Path,
    limits: Limits | None = None,
    cgroup: Path | None = None,
) -> list[str]:
    """``argv`` wrapped in bwrap: read-only system and course, ``folder`` writable, no network,
    no capabilities, an empty environment, ``limits`` (default :class:`Limits`) applied.

    ``argv[0]`` (this Python, maybe through a symlinked virtualenv) is replaced by the same
    interpreter under the virtualenv's real path, which is the one bound inside. ``cgroup``: a
    pids cgroup (:func:`pids_cgroup`) bwrap joins before it starts.
    """
    limits = limits or Limits()
    folder, cwd = Path(folder).resolve(), Path(cwd).resolve()
    prefix = Path(os.path.realpath(sys.prefix))
    python = prefix / "bin" / Path(argv[0]).name
    python = str(python) if python.exists() else argv[0]
    root, course = _course_paths()
    cmd = [shutil.which("bwrap") or "bwrap", *_ISOLATE, "--clearenv"]
    cmd += ["--proc", "/proc", "--dev", "/dev"]  # first: binds may be in /tmp
    cmd += (["--size", str(limits.disk)] if limits.disk else []) + ["--tmpfs", "/tmp"]
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
    rlimits = {"as": limits.memory, "nproc": limits.processes, "fsize": limits.disk}
    prlimit = shutil.which("prlimit")
    if prlimit and prlimit.startswith("/usr/"):  # util-linux, bound inside: no Python start
        options = [f"--{name}={value}" for name, value in rlimits.items() if value]
        kernel = [prlimit, *options, "--", python, *argv[1:]]
    else:
        kernel = [python, "-c", _LIMITER, *map(str, rlimits.values()), python, *argv[1:]]
    # The grader interrupts a cell with SIGINT to the kernel's process group, which holds bwrap
    # too: bwrap must ignore it or it would exit and take the kernel along. An ignored SIGINT
    # survives exec; ipykernel installs its own handler while it runs a cell. `env -i` (twice:
    # the shell exports PWD): bwrap and its init in the sandbox start with no variable at all.
    script = 'trap "" INT; if [ -n "$1" ]; then echo $$ > "$1/cgroup.procs" || exit 1; fi; '
    shell = ["/usr/bin/env", "-i", "/bin/sh", "-c", script + 'shift; exec env -i "$@"', "sh"]
    return [*shell, str(cgroup or ""), *cmd, "--", *kernel]


_CGROUP_BASES = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))  # cgroup v1, v2


@contextlib.contextmanager
def pids_cgroup(limit: int):
    """A fresh pids cgroup allowing ``limit`` tasks, where this process may make one (root, a
    writable cgroup tree); else None. ``RLIMIT_NPROC`` does not bind a kernel whose uid is root
    outside its namespace (a root grader's), so as root this is what limits processes."""
    folder = None
    if limit and sys.platform.startswith("linux") and os.geteuid() == 0:
        for base in _CGROUP_BASES:
            if not (base / "cgroup.procs").is_file():
                continue
            try:
                candidate = base / f"lora-course-{os.getpid()}-{os.urandom(4).hex()}"
                candidate.mkdir()
            except OSError:
                continue
            try:
                (candidate / "pids.max").write_text(str(limit))
                folder = candidate
                break
            except OSError:
                candidate.rmdir()
    try:
        yield folder
    finally:
        for _ in range(50) if folder is not None else ():
            try:
                folder.rmdir()  # once the sandbox's last process has gone
                break
            except OSError:
                time.sleep(0.1)


@contextlib.contextmanager
def capped_folder(path: Path, size: int):
    """Mount a tmpfs of ``size`` bytes on the empty folder ``path`` while the block runs (True),
    where this process may mount (root); elsewhere leave it as it is (False)."""
    mounted = False
    if size and sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("mount"):
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            capture_output=True,
        )
        mounted = done.returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(path)], capture_output=True)


def kernel_manager(
    folder: Path,
    cwd: Path,
    kernel_name: str = "python3",
    limits: Limits | None = None,
    cgroup: Path | None = None,
):
    """An ``AsyncKernelManager`` whose kernel runs in bwrap, talking over IPC in ``folder``."""
    from jupyter_client.manager import AsyncKernelManager

    require_sandbox()

    class _SandboxedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            command = super().format_kernel_cmd(extra_arguments)
            return bwrap_command(command, folder, cwd, limits, cgroup)

    sockets = Path(folder).resolve() / "kernel"
    sockets.mkdir(exist_ok=True)
    return _SandboxedKernelManager(
        kernel_name=kernel_name,
        transport="ipc",
        ip=str(sockets / "ipc"),
        connection_file=str(sockets / "connection.json"),
    )
