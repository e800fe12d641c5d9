"""Checks shared by every reader of user files: the file is there, readable and not empty; text or not.

Each check raises the reader's own :class:`~birdbridge.errors.InputError` subclass (``AudioError``,
``VideoError``, …) naming the file and saying what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from birdbridge.errors import InputError
from birdbridge.utils.readable import permission_denied

PathLike = str | os.PathLike[str]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
"""File name endings of pictures (folders of pictures and manifests are filtered by them)."""


def check_input_file(
    path: PathLike, error: type[InputError] = InputError, *, kind: str = "a file", noun: str = "file",
    folder_hint: str = "give the files",
) -> Path:
    """``path`` as a Path after checking it is an existing, non-empty, readable regular file.

    ``kind`` says what a folder is not ("an audio file"), ``noun`` what the file should hold ("recording");
    the ``error`` raised names the file.
    """
    p = Path(os.fspath(path))
    if not p.exists():
        raise error(p, "file not found", "check the path and the spelling")
    if p.is_dir():
        raise error(p, f"is a folder, not {kind}", folder_hint)
    if not p.is_file():
        raise error(p, "is not a regular file", f"give a path to a {noun} on disk")
    try:
        size = p.stat().st_size
        with open(p, "rb"):
            pass
    except PermissionError as e:
        raise permission_denied(p, error) from e
    except OSError as e:
        raise error(p, f"cannot be opened ({e.strerror or e})", "check the file's permissions") from e
    if size == 0:
        raise error(p, "is empty (0 bytes)", f"the {noun} was probably not saved or copied fully")
    return p


def read_head(path: PathLike, n: int = 512) -> bytes:
    """The first ``n`` bytes of a file; empty if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def looks_like_text(head: bytes) -> bool:
    """Whether a file's first bytes are printable UTF-8 text (a file given where media was expected)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(text) and all(c.isprintable() or c in "\r\n\t" for c in text)


def read_text_file(path: PathLike) -> str:
    """A UTF-8 text file (with or without BOM); a missing, unreadable or non-UTF-8 file raises InputError
    naming it (and the line of the first bad byte)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(str(path), "file not found", "check the path") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot be read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            str(path), f"line {line}: not valid UTF-8 text", "save the file as UTF-8 (with or without BOM)"
        ) from None
