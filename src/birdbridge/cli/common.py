"""Shared CLI helpers: consoles, failure reports, option types."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from birdbridge.errors import Failure

# Piped output is not squeezed to 80 columns: tables stay readable in files and logs.
console = Console(width=None if sys.stdout.isatty() else 200)
console_err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def report_failures(failures: Sequence[Failure], what: str = "inputs") -> None:
    """Print the skipped inputs at the end of a batch job."""
    if not failures:
        return
    console_err.print(f"[yellow]skipped {len(failures)} {what}:[/]")
    for failure in failures:
        console_err.print(f"  [yellow]-[/] {failure.message}", highlight=False, soft_wrap=True)
