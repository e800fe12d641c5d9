"""Atomic writes with the usual permissions: birdbridge's writers of models, caches and results use these.

A file is written to a temporary name in the target's folder and renamed over the target, so readers
never see half a file. Whatever the writer did to the temporary file (``mkstemp`` makes it owner-only;
safetensors and ``save_pretrained`` write their own owner-only files), the result gets the mode a
plain ``open(path, "w")`` would give: ``0o666`` minus the process umask (0o644 under umask 0o022).

JSON files are written by :func:`write_json` only: strict JSON (NaN and infinities as null), UTF-8, fsynced
before the rename (a power cut leaves the old file or the new one, never an empty one), with one rule for
values JSON has no type for (:func:`json_default`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux ``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere the only way to read it is to set it and put it back
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The permission bits of a new file: ``0o666`` minus the umask."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; if the block succeeds, give it the usual mode and rename
    it onto ``target``. The block may write the path in any way, even by replacing it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_files(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder inside ``folder`` for a writer that fills a folder itself
    (``save_pretrained``, tokenizers); if the block succeeds, move each file it wrote into ``folder``
    (subfolders kept) by an atomic rename, with the usual mode. On failure nothing in ``folder`` changes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging.", dir=folder))
    try:
        yield staging
        mode = file_mode()
        for path in sorted(staging.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                continue
            target = folder / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_symlink():
                os.chmod(path, mode)
            os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_bytes(target: str | os.PathLike[str], data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` atomically; ``durable`` also fsyncs it before the rename."""
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())


def write_text(target: str | os.PathLike[str], text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as :func:`json_text`, UTF-8, atomically and durably."""
    write_bytes(target, json_text(obj).encode("utf-8"), durable=True)


def json_text(obj: Any) -> str:
    """``obj`` as strict, indented JSON text ending in a newline: NaN and infinities become null (JSON has no
    number for them, and strict readers refuse ``NaN``), other types as :func:`json_default` says."""
    return json.dumps(_finite(obj), indent=2, ensure_ascii=False, default=json_default, allow_nan=False) + "\n"


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (numpy's too, arrays included) replaced by None."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    return obj


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file that another library wrote (an ANN index) to the disk, before it is renamed into place."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def write_npy(target: str | os.PathLike[str], array: np.ndarray) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def json_default(obj: Any) -> Any:
    """The JSON value of what ``json`` has no type for: numpy scalars and arrays, paths, dates and times
    (ISO 8601). Anything else raises TypeError naming its type."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    raise TypeError(f"cannot write a {type(obj).__module__}.{type(obj).__qualname__} as JSON: {obj!r:.80}")
