"""Receiving uploads: Starlette's multipart parser over a request body whose size and pace are bounded.

* The body is counted as it streams in: past the file limit (plus :data:`MULTIPART_SLACK` of framing) the
  request is refused with 413 at once, before the rest is read; a declared ``Content-Length`` over it is
  refused before anything is read. A body that stops arriving for ``body_timeout_s`` gets 408.
* While it streams, the file lies in Starlette's spooled temporary file (memory, then an unnamed file that
  vanishes with the process). Once complete it is saved under the app's private :class:`UploadFolder`,
  which is removed at shutdown with whatever is still in it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.to_thread
from fastapi import HTTPException
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

__all__ = ["MULTIPART_SLACK", "Upload", "UploadFolder", "bounded_body", "receive_upload"]

MULTIPART_SLACK = 64 * 1024  # bytes of multipart framing (and small form fields) allowed beyond the file limit
FIELD_LIMIT = 64 * 1024  # bytes of one non-file form field (they are ignored)
INCOMPLETE = "the upload ended before the file was complete; try again"


@dataclass(frozen=True)
class Upload:
    """An uploaded file saved to a temporary path."""

    path: Path
    filename: str
    size: int


class UploadFolder:
    """One private folder (``tempfile.mkdtemp``: mode 0700, in ``parent`` or the system's temp folder) for the
    uploads of one run of the app.

    :meth:`open` makes it; :meth:`close` removes it with everything in it and refuses uploads with 503 until
    the next :meth:`open`. Used without :meth:`open` (an app whose lifespan never ran), it is made on first use.
    """

    def __init__(self, parent: str | os.PathLike[str] | None = None) -> None:
        self.parent = None if parent is None else os.fspath(parent)
        self.path: Path | None = None
        self.closed = False

    def open(self) -> Path:
        self.closed = False
        return self.ensure()

    def ensure(self) -> Path:
        """The folder (made now if it is missing); 503 once :meth:`close` has run."""
        if self.closed:
            raise HTTPException(503, "the server is shutting down; try again shortly")
        if self.path is None or not self.path.is_dir():
            self.path = Path(tempfile.mkdtemp(prefix="birdbridge-uploads-", dir=self.parent))
        return self.path

    def close(self) -> None:
        self.closed = True
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def _mb(n: float) -> str:
    return f"{n / 2**20:.3g} MB"


def too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the upload is larger than this server's limit of {_mb(limit)}")


async def bounded_body(stream: AsyncIterator[bytes], limit: int, max_bytes: int,
                       body_timeout_s: float | None) -> AsyncIterator[bytes]:
    """``stream`` passed on chunk by chunk; 413 (for a file ``limit``) once more than ``max_bytes`` have come,
    408 when no chunk comes for ``body_timeout_s`` seconds."""
    received = 0
    chunks = stream.__aiter__()
    while True:
        with anyio.move_on_after(body_timeout_s if body_timeout_s is not None else float("inf")) as waiting:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
        if waiting.cancelled_caught:
            raise HTTPException(408, f"the upload stalled: no data came for {body_timeout_s:g} s (body_timeout_s)",
                                headers={"Connection": "close"})
        received += len(chunk)
        if received > max_bytes:
            raise too_large(limit)
        yield chunk


class _Parser(MultiPartParser):
    """Starlette's parser, noting whether the closing boundary arrived (a cut-off body is not an error to it)."""

    complete = False

    def on_end(self) -> None:
        self.complete = True


def _clean_filename(raw: str) -> str:
    name = re.split(r"[/\\]", raw)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:200] or "upload"


def _save(source: BinaryIO, folder: str | os.PathLike[str] | None, suffix: str) -> Path:
    """Copy ``source`` to a new file in ``folder``; the file is removed again if the copy fails."""
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            source.seek(0)
            shutil.copyfileobj(source, out, 1 << 20)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


async def receive_upload(
    headers: Mapping[str, str], stream: AsyncIterator[bytes], limit: int,
    folder: str | os.PathLike[str] | None = None, *, body_timeout_s: float | None = None,
) -> Upload:
    """Receive a multipart upload's ``file`` field and save it to a new file in ``folder`` (default: the
    system's temp folder).

    The caller owns (and must delete) the returned file.

    Raises:
        HTTPException: 415 not multipart; 413 over ``limit`` bytes (checked on every chunk); 408 the body
            stalled; 400 malformed or incomplete; 422 no ``file`` field.
    """
    kind, options = parse_options_header(headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise HTTPException(415, "send the recording as multipart/form-data with the file in a field named 'file'")
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + MULTIPART_SLACK:
        raise too_large(limit)
    body = bounded_body(stream, limit, limit + MULTIPART_SLACK, body_timeout_s)
    parser = _Parser(Headers(headers=dict(headers)), body, max_files=4, max_fields=16, max_part_size=FIELD_LIMIT)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"malformed multipart upload ({exc.message})") from None
    except ClientDisconnect:
        raise HTTPException(400, INCOMPLETE) from None
    try:
        if not parser.complete:
            raise HTTPException(400, INCOMPLETE)
        files = [item for item in form.getlist("file") if isinstance(item, UploadFile)]
        if not files:
            names = ", ".join(repr(name) for name in list(form.keys())[:10])
            got = f" (the form has {names})" if names else ""
            raise HTTPException(422, f"no file uploaded: send the recording in a form field named 'file'{got}")
        file = files[0]
        if (file.size or 0) > limit:
            raise too_large(limit)
        filename = _clean_filename(file.filename or "upload")
        suffix = Path(filename).suffix.lower()  # kept: it names the format
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""
        path = await anyio.to_thread.run_sync(_save, file.file, folder, suffix)
        return Upload(path, filename, file.size or 0)
    finally:
        await form.close()
