"""The one folder walker: the files of a folder tree, and every entry that could not be read, with why.

``os.walk`` and ``Path.rglob`` swallow errors, so an unreadable subfolder, a broken link or a link
loop would silently be left out of a batch job. :func:`walk_files` lists each of them as a
:class:`WalkProblem` instead, for the job's list of skipped inputs. Hidden entries (names starting
with ".", such as macOS "._x.wav" resource forks) are ignored. Links to folders are followed; a
folder reached twice (through two links) is listed once.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from birdbridge.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WalkProblem:
    """An entry of a folder that was left out, and why."""

    path: Path
    reason: str

    @property
    def message(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class FolderFiles:
    """Files found (sorted by path) and the entries that could not be read."""

    files: list[Path] = field(default_factory=list)
    problems: list[WalkProblem] = field(default_factory=list)

    def warn(self) -> list[Path]:
        """The files, after logging every problem as a warning (for callers that only return files)."""
        for problem in self.problems:
            log.warning("skipped %s", problem.message)
        return self.files


def walk_files(folder: str | os.PathLike[str], extensions: Collection[str], *, recursive: bool = True) -> FolderFiles:
    """Regular files under ``folder`` whose lowercase extension (with the dot) is in ``extensions``.

    Raises:
        InputError: ``folder`` itself cannot be listed.
    """
    root = Path(folder)
    out = FolderFiles()
    try:
        root_id = _identity(os.stat(root))
    except OSError as exc:
        raise InputError(str(root), f"cannot be read ({_why(exc)})", "check the path and its permissions") from exc
    seen = {root_id: root}
    stack: list[tuple[Path, tuple[tuple[int, int], ...]]] = [(root, (root_id,))]
    while stack:
        current, chain = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as exc:
            if current == root:
                raise InputError(str(root), f"cannot be read ({_why(exc)})", "check its permissions") from exc
            out.problems.append(WalkProblem(current, f"folder cannot be read ({_why(exc)}); check its permissions"))
            continue
        folders = []
        for entry in entries:
            path = Path(entry.path)
            try:
                info = entry.stat()  # follows links
            except FileNotFoundError:
                if entry.is_symlink():
                    out.problems.append(WalkProblem(path, f"broken link (it points to {_target(path)}, which does "
                                                          "not exist); fix or remove the link"))
                continue  # else removed while we looked
            except OSError as exc:
                what = "link loop" if exc.errno == errno.ELOOP else "cannot be read"
                out.problems.append(WalkProblem(path, f"{what} ({_why(exc)}); fix or remove it"))
                continue
            if stat.S_ISDIR(info.st_mode):
                ident = _identity(info)
                if not recursive:
                    continue
                if ident in chain:
                    out.problems.append(WalkProblem(path, f"link loop: it leads back to {seen[ident]}; "
                                                          "remove the link"))
                elif ident not in seen:
                    seen[ident] = path
                    folders.append((path, (*chain, ident)))
            elif os.path.splitext(entry.name)[1].lower() in extensions:
                if stat.S_ISREG(info.st_mode):
                    out.files.append(path)
                else:
                    out.problems.append(WalkProblem(path, "is not a regular file"))
        stack.extend(reversed(folders))
    out.files.sort(key=lambda p: p.parts)
    out.problems.sort(key=lambda p: p.path.parts)
    return out


def collect_files(
    inputs: Sequence[str | os.PathLike[str]], extensions: Collection[str], *, what: str, recursive: bool = True,
    error: type[InputError] = InputError,
) -> FolderFiles:
    """Command-line style inputs: files kept as given (whatever their extension), folders replaced by
    :func:`walk_files`; a file reached twice is listed once, at its first place.

    Raises:
        ``error`` (an InputError): a path that does not exist, or a folder with no ``what`` and no problems.
    """
    out = FolderFiles()
    seen: set[Path] = set()
    for item in inputs:
        path = Path(os.fspath(item))
        if path.is_dir():
            found = walk_files(path, extensions, recursive=recursive)
            if not found.files and not found.problems:
                where = "or its subfolders " if recursive else ""
                raise error(
                    str(path), f"folder {where}contains no {what} ({', '.join(sorted(extensions))})",
                    "check the folder" + ("" if recursive else ", or search subfolders too (recursive)"),
                )
            out.problems += found.problems
            files = found.files
        elif path.exists():
            files = [path]
        else:
            raise error(str(path), "no such file or folder", "check the path and the spelling")
        for file in files:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                out.files.append(file)
    return out


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _target(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:  # pragma: no cover - it was a link a moment ago
        return "nothing"
