"""Files that cannot be read for lack of permission are reported as such, never as damaged.

Loaders catch broad exceptions to explain damaged files ("corrupt or incomplete, download it again").
A permission problem must not end up there: it is told as ``permission denied``, naming the file and
saying how to fix it. Some libraries hide the cause (safetensors reports an unreadable file as "No such
file or directory"), so besides the exception chain the files themselves are checked with ``os.access``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from birdbridge.errors import InputError

PathLike = str | os.PathLike[str]


def permission_denied(path: PathLike, error: type[InputError] = InputError) -> InputError:
    """The error for a file this process may not read (``error``: the InputError subclass to raise)."""
    return error(
        str(path),
        "permission denied",
        f"your user cannot read it; fix its permissions (e.g. chmod a+r '{path}', and a+x on its folders) "
        "or ask its owner",
    )


def check_readable(paths: Iterable[PathLike], error: type[InputError] = InputError) -> None:
    """Open each existing file for reading; raise :func:`permission_denied` for the first that is refused."""
    for path in paths:
        try:
            with open(path, "rb"):
                pass
        except PermissionError as exc:
            raise permission_denied(path, error) from exc
        except OSError:
            continue  # missing or otherwise unreadable: the caller's own checks explain it


def unreadable_file(exc: BaseException, paths: Iterable[PathLike] = ()) -> Path | None:
    """The file a failure was really about if it was a permission problem, else None.

    Looks for a ``PermissionError`` in ``exc``'s chain (its file name, else the first of ``paths``),
    then for a file among ``paths`` that exists but may not be read.
    """
    paths = [Path(p) for p in paths]
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, PermissionError):
            if cause.filename:
                return Path(os.fsdecode(cause.filename))
            return next((p for p in paths if not os.access(p, os.R_OK)), paths[0] if paths else None)
        cause = cause.__cause__ or cause.__context__
    return next((p for p in paths if p.exists() and not os.access(p, os.R_OK)), None)


def raise_if_unreadable(
    exc: BaseException, paths: Iterable[PathLike] = (), error: type[InputError] = InputError
) -> None:
    """Raise :func:`permission_denied` (from ``exc``) if ``exc`` came from a permission problem."""
    path = unreadable_file(exc, paths)
    if path is not None:
        raise permission_denied(path, error) from exc
