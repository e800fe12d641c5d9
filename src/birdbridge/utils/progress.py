"""One progress bar for long work: rich on a terminal, silent when asked or when short."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_enabled(show: bool | None, total: int | None, threshold: int = 2) -> bool:
    """Show a bar when asked, or by default for long work on an interactive stderr."""
    if show is not None:
        return show
    if os.environ.get("BIRDBRIDGE_NO_PROGRESS"):
        return False
    return sys.stderr.isatty() and (total is None or total >= threshold)


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)


@contextmanager
def progress_bar(
    description: str, total: int | None, show: bool | None = None, completed: int = 0
) -> Iterator[_Bar]:
    """Context manager yielding an object with ``advance(n)`` and ``describe(text)``; a no-op when disabled."""
    if not progress_enabled(show, total):
        yield _Bar(None, None)
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=completed)
        yield _Bar(progress, task)
