"""Atomic file writes: readers see the old file or the new one, never a half-written one."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path


def write_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory, flushed to
    disk and renamed over ``path``; on any failure the temporary file is removed and ``path``
    is untouched. The file keeps the permission bits of the one it replaces (a new one gets
    ``0o666`` less the umask, as ``open`` gives). A symbolic link is written through: its
    target is replaced and the link stays. Where ``path`` exists but is not a regular file (a
    FIFO, ``/dev/stdout``), nothing can be renamed over it, so ``data`` is written into it."""
    path = Path(path)
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(path))
    if target.exists() and not target.is_file():
        with open(target, "wb") as f:
            f.write(data)
        return path
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp makes it 0o600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
