"""Files on disk, below every classroom module: written whole or not at all, and hashed.

:func:`atomic_write` is how every grader output reaches the disk; :func:`content_hash` is how a
regrade knows a submission did not change (:mod:`lora_course.classroom.record`).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "content_hash"]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: a crash leaves
    the previous version whole, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def content_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a submission: a file's bytes, or a folder's relative names and bytes.

    Names are hashed as bytes; only regular files are read (a link or a device is never
    opened: :func:`lora_course.classroom.submissions.inspect_submission` refuses them first),
    in chunks, so memory stays flat whatever the size.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_symlink() or not path.is_dir():
        files = [(os.fsencode(path.name), path)]
    else:
        files = sorted(
            (os.fsencode((Path(top) / f).relative_to(path).as_posix()), Path(top) / f)
            for top, _, names in os.walk(path, followlinks=False)
            for f in names
        )
    for name, file in files:
        if b".ipynb_checkpoints" in name.split(b"/") or not stat.S_ISREG(file.lstat().st_mode):
            continue
        digest.update(name + b"\0")
        with open(file, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()
