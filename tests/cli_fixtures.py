"""Running the ``birdbridge`` command in tests: :func:`run` in the test process (fast, and monkeypatches apply),
:func:`start` as a real process for the tests that need one (to kill it, to serve from it, or to launch it with
torchrun)."""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def run(capsys: pytest.CaptureFixture[str] | None, *args: str | Path) -> subprocess.CompletedProcess:
    """``birdbridge ARGS`` in this process: exit status and captured output, like a subprocess.

    Give the test's ``capsys``; a module-scoped fixture, which has none, gives None and the output is captured
    here. Warnings logged meanwhile go to standard error, as in a real run (where nothing configures logging and
    Python's last-resort handler prints them)."""
    from birdbridge.cli import app as cli_app

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.ExitStack() as stack:
        if capsys is None:
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(_warnings_to_stderr())
        try:
            cli_app.main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    if capsys is not None:
        captured = capsys.readouterr()
        out.write(captured.out)
        err.write(captured.err)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _warnings_to_stderr():
    handler = logging.StreamHandler(sys.stderr)  # the stream of this moment: the capture's
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def start(*args: str | Path, launcher: tuple[str, ...] = (), **popen: Any) -> subprocess.Popen:
    """``python [LAUNCHER] -m birdbridge ARGS`` as a real process; output piped as text unless ``popen`` (keyword
    arguments of :class:`subprocess.Popen`, e.g. ``env``) says otherwise. ``launcher``: e.g. torchrun's
    ``("-m", "torch.distributed.run", ...)``."""
    command = [sys.executable, *launcher, "-m", "birdbridge", *map(str, args)]
    return subprocess.Popen(command, **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen})


def finish(process: subprocess.Popen, timeout: float = 600) -> subprocess.CompletedProcess:
    """Wait for a process from :func:`start` (killing it after ``timeout`` seconds): its status and output."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
