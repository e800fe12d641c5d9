"""The writer lock of a store folder (an exclusive ``flock``; readers never take it) and its leftovers."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from birdbridge.store.kind import LOCK_FILE

try:  # POSIX only; elsewhere writers are not serialised across processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def acquire_lock(folder: Path, *, blocking: bool) -> int | None:
    """An fd holding an exclusive flock on ``folder/.lock``; None if not blocking and another writer has it."""
    fd = os.open(Path(folder) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    if fcntl is None:  # pragma: no cover
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def writer_at_work(folder: Path) -> bool:
    """Whether another process holds the writer lock of ``folder`` now."""
    try:
        fd = acquire_lock(folder, blocking=False)
    except OSError:  # a read-only store: nobody writes to it
        return False
    if fd is None:
        return True
    os.close(fd)
    return False


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files of atomic writes killed half-way (``.NAME.XXXX.tmp``)."""
    for path in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()
