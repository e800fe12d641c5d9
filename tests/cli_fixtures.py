"""Running the ``birdbridge`` command in the test process (fast, and monkeypatches apply)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run(capsys, *args: str | Path) -> subprocess.CompletedProcess:
    """``birdbridge ARGS`` in this process: exit status and captured output, like a subprocess."""
    from birdbridge.cli import app as cli_app

    code = 0
    try:
        cli_app.main([str(a) for a in args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)
