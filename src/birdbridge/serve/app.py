"""The web page and JSON API over a search service: ``create_app(service) -> FastAPI``.

* Uploads are streamed to a temporary file while their size is counted; the request is refused with
  413 as soon as the file passes the limit (or at once, from ``Content-Length``). Temporary files are
  always deleted.
* Model work (searches, spectrograms) runs in worker threads, at most ``max_concurrency`` at once;
  further requests wait without holding a thread, so the event loop stays free for ``/api/info``,
  images and the page. More than ``max_queue`` waiting requests are refused with 503.
* Images are served only as the files the service returns for a known id, only with an image suffix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import tempfile
import weakref
from base64 import b64encode
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import anyio
import anyio.to_thread
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from birdbridge.errors import BirdbridgeError, InputError, ModelFormatError, ModelNotFoundError

__all__ = ["SearchServiceLike", "create_app"]

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
IMAGE_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
    ".gif": "image/gif", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff",
}
MULTIPART_SLACK = 64 * 1024  # bytes of multipart framing allowed beyond the file limit in Content-Length
FIELD_LIMIT = 64 * 1024  # bytes of non-file form fields accepted (they are ignored)
PAGE_CSP = (  # the page loads nothing from elsewhere; blob: is the recorder's AudioWorklet and the audio player
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; script-src 'self' blob:; "
    "style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)
T = TypeVar("T")


class SearchServiceLike(Protocol):
    """What the app needs from :class:`birdbridge.search.service.SearchService`."""

    def info(self) -> dict: ...

    def search_audio(self, path: Path, *, top_k: int = 5, n_images: int = 8, window_s: float | None = None,
                     hop_s: float | None = None, min_score: float = 0.0) -> dict: ...

    def search_text(self, text: str, *, n_images: int = 12) -> dict: ...

    def image_file(self, image_id: str) -> Path | None: ...


# ---------------------------------------------------------------------------------------------------
# Response schemas (documentation and validation; fields the service adds are passed through)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SpeciesScore(_Open):
    key: str = Field(description="The gallery's species key.")
    scientific_name: str
    common_name: str | None = None
    code: str | None = Field(None, description="Short species code, if the taxonomy has one.")
    score: float = Field(description="Probability-like score in 0..1 (softmax over the species).")
    similarity: float = Field(description="Cosine similarity between the audio and the species text embedding.")
    has_images: bool = Field(description="Whether the gallery holds pictures of this species.")


class ImageHit(_Open):
    id: str = Field(description="Gallery image id; fetch the picture from `url`.")
    species: str
    common_name: str | None = None
    score: float = Field(description="Cosine similarity between the query and the picture.")
    source: str | None = None
    licence: str | None = None
    photographer: str | None = None
    url: str = Field(description="`/api/images/{id}` with the id URL-encoded.")


class Window(_Open):
    index: int
    start_s: float
    end_s: float
    species: list[SpeciesScore] = Field(description="Best species for this window, best first.")
    images: list[ImageHit] = Field(description="Closest gallery pictures to this window, best first.")


class Summary(_Open):
    species: list[SpeciesScore] = Field(description="Each species' best score over all windows, best first.")


class SpectrogramInfo(BaseModel):
    png: str = Field(description="The picture as a `data:image/png;base64,...` URL.")
    width: int
    height: int
    seconds: float = Field(description="Seconds of audio drawn from the start (the picture's full width).")
    max_hz: float = Field(description="Frequency at the top edge (the bottom edge is 0 Hz).")


class AudioSearchResponse(_Open):
    file: str = Field(description="The uploaded file's name.")
    duration_s: float
    windows: list[Window]
    summary: Summary
    spectrogram: SpectrogramInfo | None = Field(None, description="Present unless `spectrogram=false`.")


class TextSearchResponse(_Open):
    query: str
    images: list[ImageHit]
    species: list[SpeciesScore] = Field([], description="The species whose names are closest to the text.")


class GalleryInfo(_Open):
    images: int
    species: int


class Limits(BaseModel):
    max_upload_mb: float
    max_concurrency: int
    max_queue: int


class InfoResponse(_Open):
    model: str = Field(description="The student audio model.")
    teacher: dict[str, Any] = Field(description="The image-text teacher whose space the gallery is in.")
    gallery: GalleryInfo
    window_s: float = Field(description="Default analysis window in seconds.")
    sample_rate: int
    limits: Limits


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong, in words for a person.")


def _multipart_body(description: str) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of an upload (the body is parsed by :func:`receive_upload`, not by FastAPI)."""
    schema = {"type": "object", "required": ["file"],
              "properties": {"file": {"type": "string", "format": "binary", "description": description}}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Malformed upload.", 404: "Not found.", 413: "The upload is larger than the server's limit.",
        415: "Not a multipart/form-data upload.",
        422: "Bad parameters (e.g. a window longer than the model's), or a file that is not readable audio.",
        503: "Too many requests are waiting; try again shortly.",
    }
    return {code: {"model": ErrorResponse, "description": text[code]} for code in codes}


# ---------------------------------------------------------------------------------------------------
# Uploads


class _UploadTooLarge(Exception):
    pass


@dataclass(frozen=True)
class Upload:
    """An uploaded file saved to a temporary path."""

    path: Path
    filename: str
    size: int


def _mb(n: float) -> str:
    return f"{n / 2**20:.3g} MB"


def _clean_filename(raw: str) -> str:
    name = re.split(r"[/\\]", raw)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:200] or "upload"


class _MultipartFile:
    """python-multipart callbacks that write the form field ``field`` to ``out``.

    Every file part counts towards ``limit`` (only ``field`` is kept); other fields may hold at most
    :data:`FIELD_LIMIT` bytes in all.
    """

    def __init__(self, out, limit: int, field: str = "file") -> None:
        self.out, self.limit, self.field = out, limit, field
        self.size = self.file_bytes = self.field_bytes = 0
        self.filename: str | None = None
        self.names: list[str] = []
        self.complete = False
        self._header_name = self._header_value = b""
        self._disposition = b""
        self._writing = self._is_file = False

    def callbacks(self) -> dict[str, Callable]:
        return {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data, "on_part_end": self._part_end,
            "on_header_field": self._header_field, "on_header_value": self._header_val,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
        }

    def _part_begin(self) -> None:
        self._disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_val(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if len(self.names) < 10:  # for the error message only
            self.names.append(name)
        self._is_file = b"filename" in options
        self._writing = name == self.field and self.filename is None
        if self._writing:
            self.filename = _clean_filename(options.get(b"filename", b"upload").decode("utf-8", "replace"))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._writing or self._is_file:
            self.file_bytes += n
            if self.file_bytes > self.limit:
                raise _UploadTooLarge
        else:
            self.field_bytes += n
            if self.field_bytes > FIELD_LIMIT:
                raise _UploadTooLarge
        if self._writing:
            self.size += n
            self.out.write(data[start:end])

    def _part_end(self) -> None:
        if self._writing:
            self.complete = True
        self._writing = False


async def receive_upload(
    headers: Mapping[str, str], stream: AsyncIterator[bytes], limit: int, folder: str | None = None
) -> Upload:
    """Stream a multipart upload's ``file`` field to a new temporary file in ``folder``.

    The caller owns (and must delete) the returned file. On any error the file is deleted here.

    Raises:
        HTTPException: 415 not multipart; 413 over ``limit`` bytes (checked on every chunk); 400
            malformed or incomplete; 422 no ``file`` field.
    """
    kind, options = parse_options_header(headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise HTTPException(415, "send the recording as multipart/form-data with the file in a field named 'file'")
    too_large = HTTPException(413, f"the upload is larger than this server's limit of {_mb(limit)}")
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + MULTIPART_SLACK:
        raise too_large
    fd, name = tempfile.mkstemp(prefix="birdbridge-upload-", dir=folder)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            receiver = _MultipartFile(out, limit)
            try:
                parser = MultipartParser(options[b"boundary"], receiver.callbacks())
                async for chunk in stream:
                    parser.write(chunk)
                parser.finalize()
            except _UploadTooLarge:
                raise too_large from None
            except FormParserError as exc:
                raise HTTPException(400, f"malformed multipart upload ({exc})") from None
        if receiver.filename is None:
            got = f" (the form has {', '.join(repr(n) for n in receiver.names)})" if receiver.names else ""
            raise HTTPException(422, f"no file uploaded: send the recording in a form field named 'file'{got}")
        if not receiver.complete:
            raise HTTPException(400, "the upload ended before the file was complete; try again")
        suffix = Path(receiver.filename).suffix.lower()
        if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):  # keep the extension: it names the format
            path = path.rename(path.with_name(path.name + suffix))
        return Upload(path, receiver.filename, receiver.size)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@contextlib.asynccontextmanager
async def _upload(request: Request, limit: int, folder: str | None) -> AsyncIterator[Upload]:
    upload = await receive_upload(request.headers, request.stream(), limit, folder)
    try:
        yield upload
    finally:
        upload.path.unlink(missing_ok=True)


def _input_error(exc: InputError, upload: Upload) -> HTTPException:
    """422 naming the uploaded file instead of the server's temporary path."""
    source = upload.filename if exc.source == str(upload.path) else exc.source
    message = f"{source}: {exc.problem}" + (f" ({exc.hint})" if exc.hint else "")
    return HTTPException(422, message.replace(str(upload.path), upload.filename))


# ---------------------------------------------------------------------------------------------------
# Concurrency


class WorkGate:
    """Run blocking calls in worker threads, at most ``limit`` at once; others wait without a thread."""

    def __init__(self, limit: int, max_queue: int) -> None:
        if limit < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.limit, self.max_queue = limit, max_queue
        self.pending = 0
        self._limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary()
        )

    def _limiter(self) -> anyio.CapacityLimiter:
        loop = asyncio.get_running_loop()  # one limiter per event loop (tests may run several)
        if loop not in self._limiters:
            self._limiters[loop] = anyio.CapacityLimiter(self.limit)
        return self._limiters[loop]

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.pending >= self.limit + self.max_queue:
            raise HTTPException(503, f"the server is busy ({self.pending} requests in progress); try again shortly")
        self.pending += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter())
        finally:
            self.pending -= 1


# ---------------------------------------------------------------------------------------------------
# Results


def image_url(image_id: str) -> str:
    return "/api/images/" + quote(str(image_id), safe="")


def _with_urls(images: list[dict]) -> list[dict]:
    """Each image with its ``url``, and without its server-side ``path``."""
    return [{**{k: v for k, v in image.items() if k != "path"}, "url": image_url(image["id"])} for image in images]


def _spectrogram_info(path: Path) -> dict:
    from birdbridge.serve.spectrogram import render_spectrogram

    s = render_spectrogram(path)
    png = "data:image/png;base64," + b64encode(s.png).decode("ascii")
    return {"png": png, "width": s.width, "height": s.height, "seconds": s.seconds, "max_hz": s.max_hz}


def _safe_image_id(image_id: str) -> bool:
    """No empty ids, control characters, absolute paths, backslashes or ``..`` segments."""
    if not image_id or len(image_id) > 1000 or any(ord(c) < 32 for c in image_id) or "\\" in image_id:
        return False
    return not image_id.startswith(("/", "~")) and ".." not in image_id.split("/")


# ---------------------------------------------------------------------------------------------------
# The app


def create_app(
    service: SearchServiceLike,
    *,
    max_upload_mb: float = 50.0,
    max_concurrency: int = 1,
    max_queue: int = 64,
    upload_dir: str | os.PathLike[str] | None = None,
) -> FastAPI:
    """The FastAPI app: the page at ``/``, its assets at ``/static``, the JSON API under ``/api``.

    Args:
        service: a :class:`~birdbridge.search.service.SearchService` (or anything with its methods).
        max_upload_mb: largest accepted upload, in MiB.
        max_concurrency: model calls run at once (each in a worker thread); the rest queue.
        max_queue: model calls allowed to wait; beyond that requests get 503.
        upload_dir: where uploads are saved while they are searched (default: the system's temp folder).
    """
    from birdbridge import __version__

    if not (math.isfinite(max_upload_mb) and max_upload_mb > 0):
        raise ValueError(f"max_upload_mb must be above 0, not {max_upload_mb!r}")
    limit = int(max_upload_mb * 2**20)
    folder = None if upload_dir is None else os.fspath(upload_dir)
    gate = WorkGate(max_concurrency, max_queue)
    limits = {"max_upload_mb": max_upload_mb, "max_concurrency": max_concurrency, "max_queue": max_queue}

    app = FastAPI(
        title="birdbridge",
        version=__version__,
        summary="Recognise birds from a recording: species names with scores and the closest gallery pictures.",
        description=(
            "Upload a recording to `POST /api/search/audio` (multipart form field `file`), search pictures by "
            "text with `GET /api/search/text`, and fetch pictures from the `url` each result carries. "
            "Errors are JSON `{\"detail\": \"...\"}`."
        ),
        openapi_tags=[
            {"name": "search", "description": "Audio and text searches."},
            {"name": "gallery", "description": "Gallery pictures."},
            {"name": "service", "description": "The model, the gallery and the server's limits."},
        ],
    )
    app.state.service, app.state.gate = service, gate

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body"))
            parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(BirdbridgeError)
    async def _birdbridge(request: Request, exc: BirdbridgeError) -> JSONResponse:
        """Errors about the request (bad input, a window the model cannot take) are 422; a broken model 500."""
        broken = isinstance(exc, ModelNotFoundError | ModelFormatError)
        return JSONResponse({"detail": str(exc)}, status_code=500 if broken else 422)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    async def on_upload(request: Request, work: Callable[[Upload], T]) -> tuple[T, Upload]:
        """Receive the upload, run ``work(upload)`` through the gate, delete the file; 422 for bad audio."""
        async with _upload(request, limit, folder) as upload:
            try:
                return await gate.run(work, upload), upload
            except InputError as exc:
                raise _input_error(exc, upload) from None

    @app.get("/api/info", response_model=InfoResponse, tags=["service"], summary="Model, gallery and limits")
    async def info() -> dict:
        """The student model, its teacher, the gallery's size, the default window and the server's limits."""
        data = await anyio.to_thread.run_sync(service.info)
        return {**data, "limits": limits}

    @app.post(
        "/api/search/audio",
        response_model=AudioSearchResponse,
        tags=["search"],
        summary="Species and pictures for a recording",
        responses=_errors(400, 413, 415, 422, 503),
        openapi_extra=_multipart_body("The recording: WAV, FLAC, OGG/Vorbis/Opus, MP3 or AIFF."),
    )
    async def search_audio(
        request: Request,
        top_k: int = Query(5, ge=1, le=100, description="Species per window."),
        n_images: int = Query(8, ge=0, le=100, description="Pictures per window."),
        window: float | None = Query(None, gt=0, le=600, description="Window length in s (default: the model's)."),
        hop: float | None = Query(None, gt=0, le=600, description="Hop between windows in s (default: the window)."),
        min_score: float = Query(0.0, ge=0, le=1, description="Leave out species scoring below this."),
        spectrogram: bool = Query(True, description="Include a spectrogram picture (base64 PNG)."),
    ) -> dict:
        """Cut the uploaded recording into windows; for each window give the best species (with scores) and the
        closest gallery pictures, plus a summary over all windows and, by default, a spectrogram.

        Upload with `curl -F file=@call.wav http://HOST/api/search/audio`. Files over the server's limit get 413
        (see `/api/info`); files that are not readable audio get 422 with a message saying why.
        """

        def work(upload: Upload) -> dict:
            result = service.search_audio(
                upload.path, top_k=top_k, n_images=n_images, window_s=window, hop_s=hop, min_score=min_score
            )
            if spectrogram:
                result["spectrogram"] = _spectrogram_info(upload.path)
            return result

        result, upload = await on_upload(request, work)
        result["file"] = upload.filename
        for window_result in result.get("windows", []):
            window_result["images"] = _with_urls(window_result.get("images", []))
        return result

    @app.post(
        "/api/spectrogram",
        tags=["search"],
        summary="Spectrogram picture of a recording",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "A PNG picture."},
                   **_errors(400, 413, 415, 422, 503)},
        openapi_extra=_multipart_body("The recording: WAV, FLAC, OGG/Vorbis/Opus, MP3 or AIFF."),
    )
    async def spectrogram_png(request: Request) -> Response:
        """A log-magnitude spectrogram of the uploaded recording as PNG (low frequencies at the bottom; the width
        grows with the duration up to a cap)."""
        from birdbridge.serve.spectrogram import spectrogram_png as render

        png, _ = await on_upload(request, lambda upload: render(upload.path))
        return Response(png, media_type="image/png")

    @app.get(
        "/api/search/text",
        response_model=TextSearchResponse,
        tags=["search"],
        summary="Pictures for a text",
        responses=_errors(422, 503),
    )
    async def search_text(
        q: str = Query(..., min_length=1, max_length=500, description="A species name or description."),
        n_images: int = Query(12, ge=1, le=100, description="Pictures to return."),
    ) -> dict:
        """The gallery pictures closest to a text, such as `Pica hudsonia` or `a black and white bird`."""
        text = q.strip()
        if not text:
            raise HTTPException(422, "q: the search text is empty")
        result = await gate.run(lambda: service.search_text(text, n_images=n_images))
        result["images"] = _with_urls(result.get("images", []))
        return result

    @app.get(
        "/api/images/{image_id:path}",
        tags=["gallery"],
        summary="A gallery picture",
        response_class=FileResponse,
        responses={200: {"content": {"image/*": {}}, "description": "The picture file."}, **_errors(404)},
    )
    async def image(image_id: str) -> FileResponse:
        """The picture with this gallery id (URL-encode the id; results carry a ready `url`). Only gallery
        pictures are served."""
        not_found = HTTPException(404, "no gallery picture has this id")
        if not _safe_image_id(image_id):
            raise not_found
        path = await anyio.to_thread.run_sync(service.image_file, image_id)
        if path is None:
            raise not_found
        path = Path(path)
        media_type = IMAGE_TYPES.get(path.suffix.lower())
        if media_type is None or not await anyio.to_thread.run_sync(path.is_file):
            raise not_found
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        headers = {"Cache-Control": "no-cache", "Content-Security-Policy": PAGE_CSP}
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=headers)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
