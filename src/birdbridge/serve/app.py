"""The web page and JSON API over a search engine: ``create_app(engine) -> FastAPI``.

* Uploads go through Starlette's multipart parser (:mod:`birdbridge.serve.uploads`): refused with 413 as
  soon as the body passes the limit (or at once, from ``Content-Length``), with 408 when the body stalls.
  They are saved in one private folder made at startup and removed at shutdown.
* Every search is bounded before any model work (``min_hop_s``, ``max_windows``, ``max_audio_s``; see
  :class:`~birdbridge.audio.windows.WindowLimits`), from the header and again while decoding.
* Model work (searches, spectrograms) runs in worker threads under one limit (:mod:`birdbridge.serve.work`),
  and is cancelled when its client disconnects or the server shuts down.
* Results are the engine's own (:meth:`FileResult.to_dict(paths=False) <birdbridge.search.FileResult.to_dict>`,
  without the server's file paths), each picture with the ``url`` it is served at.
* Images are served only as the files the engine returns for a known id, only with an image suffix.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from base64 import b64encode
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import anyio
import anyio.to_thread
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from birdbridge.archive.store import Archive
from birdbridge.audio.windows import LimitExceeded, WindowLimits
from birdbridge.errors import AudioError, BirdbridgeError, Failure, ModelFormatError, ModelNotFoundError
from birdbridge.models.calibration import DEFAULT_SENSITIVITY
from birdbridge.search.results import FileResult, SpeciesHit, hits_to_dict
from birdbridge.search.results import ImageHit as FoundImage  # ImageHit below is the API's schema
from birdbridge.search.scoring import DEFAULT_MIN_CONF, DEFAULT_MIN_SIM, Scoring
from birdbridge.serve.archive import ArchiveInfo, ArchiveService, add_archive_routes
from birdbridge.serve.openapi import (
    LOCALE,
    RANK,
    ErrorResponse,
    Rank,
    error_responses,
    image_url,
    multipart_body,
    with_urls,
)
from birdbridge.serve.uploads import Upload, UploadFolder, receive_upload
from birdbridge.serve.work import ClientGone, WorkQueue
from birdbridge.species.geo import SF_THRESH
from birdbridge.species.taxonomy import Taxonomy
from birdbridge.species.where import RangeFilter

__all__ = ["ErrorResponse", "SearchEngineLike", "create_app", "image_url", "receive_upload"]

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
IMAGE_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
    ".gif": "image/gif", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff",
}
PAGE_CSP = (  # the page loads nothing from elsewhere; blob: is the recorder's AudioWorklet and the audio player
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; script-src 'self' blob:; "
    "style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)
SPECTROGRAM_MAX_S = 600.0  # seconds drawn at most
CLIENT_GONE = 499  # nginx's "client closed request": logged only, nobody is there to read it
T = TypeVar("T")


class SearchEngineLike(Protocol):
    """What the app needs from :class:`birdbridge.search.SearchEngine` (safe to call from several threads)."""

    def info(self) -> dict: ...

    def search_audio(self, inputs: Sequence[str | os.PathLike[str]], *, window_s: float | None = None,
                     hop_s: float | None = None, top_k: int = 5, n_images: int = 5, scoring: Scoring | None = None,
                     species: Taxonomy | RangeFilter | None = None, progress: bool | None = None,
                     limits: WindowLimits | None = None, cancel: threading.Event | None = None,
                     locale: str | None = None) -> tuple[list[FileResult], list[Failure]]: ...

    def search_texts(self, texts: Sequence[str], *, n_images: int = 12, locale: str | None = None
                     ) -> list[tuple[list[SpeciesHit], list[FoundImage]]]: ...

    def image_file(self, image_id: str) -> Path | None: ...

    @property
    def taxonomy(self) -> Taxonomy: ...


# ---------------------------------------------------------------------------------------------------
# Response schemas (documentation and validation; fields the engine adds are passed through)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SpeciesScore(_Open):
    key: str = Field(description="The gallery's species key.")
    scientific_name: str
    common_name: str | None = None
    code: str | None = Field(None, description="Short species code, if the taxonomy has one.")
    score: float = Field(description="The score that ranked the species (the result's `ranked_by`): its confidence, "
                         "its similarity, or a softmax probability over the species listed.")
    similarity: float = Field(description="Cosine similarity between the audio and the species text embedding.")
    confidence: float | None = Field(None, description="Calibrated confidence in 0..1 that the species calls in the "
                                     "window; independent of the other species (null: the model is not calibrated).")
    has_images: bool = Field(description="Whether the gallery holds pictures of this species.")
    taxon_rank: str = Field("species", description="The rank answered at: species, or (with `rank`) genus, family "
                            "or order; then `key` and `scientific_name` name the taxon.")
    members: list[str] = Field([], description="A higher taxon's species searched (scientific names).")


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
    species: list[SpeciesScore] = Field(description="The species detected in this window, best first (empty: no "
                                        "bird detected).")
    images: list[ImageHit] = Field(description="Closest gallery pictures to this window, best first (none without a "
                                   "detection).")
    background: str | None = Field(None, description="For a window without a detection: its nearest class of the "
                                   "gallery's background vocabulary (wind, rain, ...).")


class Summary(_Open):
    species: list[SpeciesScore] = Field(description="Each species' best window (by confidence), best first.")
    windows: int = Field(description="Windows searched.")
    detected: int = Field(description="Windows with a detection.")
    background: dict[str, int] = Field(description="Windows without a detection per nearest background class.")


class SpectrogramInfo(BaseModel):
    png: str = Field(description="The picture as a `data:image/png;base64,...` URL.")
    width: int
    height: int
    seconds: float = Field(description="Seconds of audio drawn from the start (the picture's full width).")
    max_hz: float = Field(description="Frequency at the top edge (the bottom edge is 0 Hz).")


class RangeFilterInfo(BaseModel):
    where: str = Field(description="The place and week, e.g. `at 42.48, -76.45 in week 20 (sf_thresh 0.03)`.")
    expected: int = Field(description="Species BirdNET's range model expects there and then.")
    kept: int = Field(description="Of those, the species the gallery's species index holds: the only ones searched.")


class AudioSearchResponse(_Open):
    file: str = Field(description="The uploaded file's name.")
    duration_s: float
    ranked_by: str = Field(description="The score that ranked the species: confidence, similarity (a model without "
                           "calibration) or softmax.")
    threshold: float | None = Field(None, description="The lowest score of a detection.")
    rank: str = Field("species", description="The rank asked for (each species entry says the rank it answers at).")
    windows: list[Window]
    summary: Summary
    spectrogram: SpectrogramInfo | None = Field(None, description="Present unless `spectrogram=false`.")
    range_filter: RangeFilterInfo | None = Field(None, description="Present when `lat` and `lon` restricted the "
                                                 "species.")


class TextSearchResponse(_Open):
    query: str
    images: list[ImageHit]
    species: list[SpeciesScore] = Field([], description="The species whose names are closest to the text.")


class GalleryInfo(_Open):
    images: int
    species: int
    background: list[str] = Field([], description="The labels of the gallery's background vocabulary (empty: it has "
                                  "none, and no window is told from wind or rain).")


class Limits(BaseModel):
    max_upload_mb: float = Field(description="Largest upload, in MiB (413 past it).")
    max_audio_s: float = Field(description="Most seconds of audio in one recording (413 past it).")
    max_windows: int = Field(description="Most analysis windows in one search (413 past it).")
    min_hop_s: float = Field(description="Shortest hop (the window, when no hop is given) in s (422 below it).")
    body_timeout_s: float = Field(description="Seconds an upload may stall before it is dropped with 408.")
    max_concurrency: int = Field(description="Model calls run at once.")
    max_queue: int = Field(description="Model calls that may wait; 503 beyond.")


class InfoResponse(_Open):
    model: str = Field(description="The student audio model.")
    calibrated: bool = Field(False, description="Whether the model has a calibration (confidences); without one, "
                             "audio searches rank by similarity.")
    backend: dict[str, str] | None = Field(None, description="What runs the student's audio tower: backend (torch, "
                                           "onnx), precision (fp32, int8) and runtime.")
    teacher: dict[str, Any] = Field(description="The image-text teacher whose space the gallery is in.")
    gallery: GalleryInfo
    window_s: float = Field(description="Default analysis window in seconds.")
    sample_rate: int
    locales: list[str] = Field(["en"], description="The languages common names can be given in (`locale`).")
    locale: str | None = Field(None, description="The server's default language (null: the gallery's own names).")
    limits: Limits
    archive: ArchiveInfo | None = Field(None, description="The archive searched under `/api/archive` (null: none; "
                                        "start the server with --archive).")


# ---------------------------------------------------------------------------------------------------
# Uploads


@contextlib.asynccontextmanager
async def _upload(request: Request, limit: int, folder: UploadFolder, body_timeout_s: float) -> AsyncIterator[Upload]:
    upload = await receive_upload(request.headers, request.stream(), limit, folder.ensure(),
                                  body_timeout_s=body_timeout_s)
    try:
        yield upload
    finally:
        upload.path.unlink(missing_ok=True)


def _request_error(exc: BirdbridgeError, upload: Upload) -> HTTPException:
    """The error as 413 (a limit) or 422, naming the uploaded file instead of the server's temporary path."""
    message = str(exc).replace(str(upload.path), upload.filename)
    return _limit_error(exc, message) if isinstance(exc, LimitExceeded) else HTTPException(422, message)


def _limit_error(exc: LimitExceeded, message: str) -> HTTPException:
    """422 for a hop under ``min_hop_s`` (a bad parameter), 413 for too much audio or too many windows."""
    return HTTPException(422 if exc.bound == "min_hop_s" else 413, f"{message} (see /api/info)")


# ---------------------------------------------------------------------------------------------------
# Results


def _search_one(engine: SearchEngineLike, path: Path, name: str, **params: Any) -> dict:
    """The JSON view of one recording's result, under its ``name``; ``AudioError`` if it cannot be searched."""
    results, failures = engine.search_audio([path], progress=False, **params)
    if failures or not results:
        message = failures[0].message.split(": ", 1)[-1] if failures else "contains no audio windows"
        raise AudioError(name, message)
    data = results[0].to_dict(paths=False)
    for window in data["windows"]:
        window["images"] = with_urls(window["images"])
    return {**data, "file": name}


def _range_species(engine: SearchEngineLike, where: RangeFilter) -> tuple[Taxonomy, dict[str, Any]]:
    """The species of the gallery that BirdNET's range model expects ``where`` (an error if none), and what the
    filter did: the place and week, the species expected, the species kept."""
    match = where.match(engine.taxonomy)
    return match.check(), {"where": where.describe(), "expected": match.expected, "kept": len(match.taxonomy)}


def _spectrogram_info(path: Path, max_seconds: float) -> dict:
    from birdbridge.serve.spectrogram import render_spectrogram

    s = render_spectrogram(path, max_seconds=max_seconds)
    png = "data:image/png;base64," + b64encode(s.png).decode("ascii")
    return {"png": png, "width": s.width, "height": s.height, "seconds": s.seconds, "max_hz": s.max_hz}


def _safe_image_id(image_id: str) -> bool:
    """No empty ids, control characters, absolute paths, backslashes or ``..`` segments."""
    if not image_id or len(image_id) > 1000 or any(ord(c) < 32 for c in image_id) or "\\" in image_id:
        return False
    return not image_id.startswith(("/", "~")) and ".." not in image_id.split("/")


class _SafetyHeaders:
    """Pure ASGI middleware adding two headers to every response (Starlette's ``BaseHTTPMiddleware`` would
    hide a client's disconnect from ``request.is_disconnected()``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ---------------------------------------------------------------------------------------------------
# The app


def create_app(
    engine: SearchEngineLike,
    *,
    max_upload_mb: float = 50.0,
    max_audio_s: float = 600.0,
    max_windows: int = 240,
    min_hop_s: float = 0.5,
    body_timeout_s: float = 30.0,
    max_concurrency: int = 1,
    max_queue: int = 64,
    upload_dir: str | os.PathLike[str] | None = None,
    archive: Archive | None = None,
) -> FastAPI:
    """The FastAPI app: the page at ``/``, its assets at ``/static``, the JSON API under ``/api``.

    Args:
        engine: a :class:`~birdbridge.search.SearchEngine` (or anything with the methods the app uses).
        max_upload_mb: largest accepted upload, in MiB.
        max_audio_s: most seconds of audio in one recording (from its header, and while decoding).
        max_windows: most analysis windows in one search.
        min_hop_s: shortest hop between windows (the window, when no hop is given), checked before the upload.
        body_timeout_s: seconds an upload may send nothing before it is dropped with 408.
        max_concurrency: model calls run at once (each in a worker thread); the rest queue.
        max_queue: model calls allowed to wait; beyond that requests get 503.
        upload_dir: where the private uploads folder is made (default: the system's temp folder).
        archive: an :class:`~birdbridge.archive.Archive` to search under ``/api/archive`` (the page's Archive tab);
            it must be in the gallery's teacher space (a BirdbridgeError otherwise).

    ``app.state.shutdown()`` cancels all model work and removes the uploads folder; the lifespan's end calls it
    (``birdbridge serve`` calls it as soon as a shutdown begins).
    """
    from birdbridge import __version__

    for name, value in (("max_upload_mb", max_upload_mb), ("max_audio_s", max_audio_s),
                        ("body_timeout_s", body_timeout_s)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be above 0, not {value!r}")
    service = None if archive is None else ArchiveService(archive, engine)  # type: ignore[arg-type]
    limit = int(max_upload_mb * 2**20)
    bounds = WindowLimits(max_windows=max_windows, max_audio_s=max_audio_s, min_hop_s=min_hop_s)
    folder = UploadFolder(upload_dir)
    work = WorkQueue(max_concurrency, max_queue)
    limits = {"max_upload_mb": max_upload_mb, "max_audio_s": max_audio_s, "max_windows": max_windows,
              "min_hop_s": min_hop_s, "body_timeout_s": body_timeout_s, "max_concurrency": max_concurrency,
              "max_queue": max_queue}

    def shutdown() -> None:
        work.cancel_all()
        folder.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        folder.open()
        work.start()
        try:
            yield
        finally:
            shutdown()

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
            {"name": "archive", "description": "An archive of recordings' windows (`--archive`): searches, each "
                                               "window's audio and spectrogram, yes/no labels."},
            {"name": "service", "description": "The model, the gallery and the server's limits."},
        ],
        lifespan=lifespan,
    )
    app.state.engine, app.state.work, app.state.uploads, app.state.shutdown = engine, work, folder, shutdown

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

    @app.exception_handler(LimitExceeded)
    async def _limit(request: Request, exc: LimitExceeded) -> JSONResponse:
        error = _limit_error(exc, str(exc))
        return JSONResponse({"detail": error.detail}, status_code=error.status_code)

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, exc: ClientGone) -> Response:
        if work.closing:
            return JSONResponse({"detail": "the server is shutting down; try again shortly"}, status_code=503)
        return Response(status_code=CLIENT_GONE)

    app.add_middleware(_SafetyHeaders)

    async def on_upload(request: Request, fn: Callable[[Upload, threading.Event], T]) -> tuple[T, Upload]:
        """Receive the upload, run ``fn(upload, cancel)`` in turn, delete the file; 413/422 for bad requests."""
        async with _upload(request, limit, folder, body_timeout_s) as upload:
            try:
                return await work.run(lambda cancel: fn(upload, cancel), request), upload
            except BirdbridgeError as exc:
                raise _request_error(exc, upload) from None

    @app.get("/api/info", response_model=InfoResponse, tags=["service"], summary="Model, gallery and limits")
    async def info() -> dict:
        """The student model, its teacher, the gallery's size, the default window and the server's limits."""
        data = await anyio.to_thread.run_sync(engine.info)
        teacher = {k: v for k, v in data["teacher"].items() if k != "ref"}  # ref may be a server path
        archive_info = None if service is None else await anyio.to_thread.run_sync(service.info)
        return {**data, "teacher": teacher, "limits": limits, "archive": archive_info}

    @app.post(
        "/api/search/audio",
        response_model=AudioSearchResponse,
        tags=["search"],
        summary="Species and pictures for a recording",
        responses=error_responses(400, 408, 413, 415, 422, 503),
        openapi_extra=multipart_body("The recording: WAV, FLAC, OGG/Vorbis/Opus, MP3 or AIFF."),
    )
    async def search_audio(
        request: Request,
        top_k: int = Query(5, ge=1, le=100, description="Species per window."),
        n_images: int = Query(8, ge=0, le=100, description="Pictures per window."),
        window: float | None = Query(None, gt=0, le=600, description="Window length in s (default: the model's)."),
        hop: float | None = Query(None, gt=0, le=600, description="Hop between windows in s (default: the window; "
                                  "at least `min_hop_s`)."),
        score: Literal["confidence", "similarity", "softmax"] = Query(
            "confidence", description="What ranks species and makes detections: confidence (the model's calibration; "
            "similarity if it has none), similarity (raw cosine) or softmax (plain retrieval: every window names a "
            "species)."),
        min_conf: float = Query(DEFAULT_MIN_CONF, ge=0, le=1, description="Lowest confidence of a detection."),
        sensitivity: float = Query(DEFAULT_SENSITIVITY, ge=0.5, le=1.5, description="Detection sensitivity "
                                   "(BirdNET-Analyzer's): higher values give higher confidences."),
        min_sim: float = Query(DEFAULT_MIN_SIM, ge=-1, le=1, description="Lowest similarity of a detection, when "
                               "ranking by similarity."),
        min_score: float = Query(0.0, ge=0, le=1, description="With score=softmax: leave out species below this."),
        rank: Rank = RANK,
        spectrogram: bool = Query(True, description="Include a spectrogram picture (base64 PNG)."),
        lat: float | None = Query(None, description="Recording latitude: keep the species BirdNET's range model "
                                  "expects there (with `lon`; needs birdbridge[geo])."),
        lon: float | None = Query(None, description="Recording longitude."),
        week: str | None = Query(None, description="Week 1-48 (4 per month), -1 for the whole year, or `auto`: from "
                                 "the file name (YYYYMMDD_HHMMSS)."),
        date: str | None = Query(None, max_length=32, description="Instead of `week`: the recording's date, "
                                 "YYYY-MM-DD (its BirdNET week is used)."),
        sf_thresh: float = Query(SF_THRESH, description="Lowest range-model score of a species kept."),
        locale: str | None = LOCALE,
    ) -> dict:
        """Cut the uploaded recording into windows; for each window give the species detected (with confidences) and
        the closest gallery pictures, plus a summary over all windows and, by default, a spectrogram. A window
        without a detection has no species and no pictures, and names its nearest background class.

        Upload with `curl -F file=@call.wav http://HOST/api/search/audio`. Past a limit of `/api/info` (upload
        size, seconds of audio, number of windows) the answer is 413 naming the limit; a hop under `min_hop_s`,
        or a file that is not readable audio, gets 422 with a message saying why.
        """
        step = hop if hop is not None else window
        if step is not None:
            bounds.check_hop(step)  # before the upload is read
        scoring = Scoring(score, min_conf=min_conf, sensitivity=sensitivity, min_sim=min_sim, min_score=min_score,
                          rank=rank)
        where = RangeFilter.from_options(lat, lon, week, date, sf_thresh)

        def search(upload: Upload, cancel: threading.Event) -> dict:
            species, kept = None, None
            if where is not None:
                species, kept = _range_species(engine, where.for_file(upload.filename))
            result = _search_one(engine, upload.path, upload.filename, top_k=top_k, n_images=n_images,
                                 window_s=window, hop_s=hop, scoring=scoring, species=species, limits=bounds,
                                 cancel=cancel, locale=locale)
            if kept is not None:
                result["range_filter"] = kept
            if spectrogram and not cancel.is_set():
                result["spectrogram"] = _spectrogram_info(upload.path, min(SPECTROGRAM_MAX_S, max_audio_s))
            return result

        result, _ = await on_upload(request, search)
        return result

    @app.post(
        "/api/spectrogram",
        tags=["search"],
        summary="Spectrogram picture of a recording",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "A PNG picture."},
                   **error_responses(400, 408, 413, 415, 422, 503)},
        openapi_extra=multipart_body("The recording: WAV, FLAC, OGG/Vorbis/Opus, MP3 or AIFF."),
    )
    async def spectrogram_png(request: Request) -> Response:
        """A log-magnitude spectrogram of the uploaded recording as PNG (low frequencies at the bottom; the width
        grows with the duration up to a cap; at most the first `max_audio_s` seconds are drawn)."""
        from birdbridge.serve.spectrogram import spectrogram_png as render

        seconds = min(SPECTROGRAM_MAX_S, max_audio_s)
        png, _ = await on_upload(request, lambda upload, cancel: render(upload.path, max_seconds=seconds))
        return Response(png, media_type="image/png")

    @app.get(
        "/api/search/text",
        response_model=TextSearchResponse,
        tags=["search"],
        summary="Pictures for a text",
        responses=error_responses(422, 503),
    )
    async def search_text(
        request: Request,
        q: str = Query(..., min_length=1, max_length=500, description="A species name or description."),
        n_images: int = Query(12, ge=1, le=100, description="Pictures to return."),
        locale: str | None = LOCALE,
        rank: Rank = RANK,
    ) -> dict:
        """The gallery pictures closest to a text, such as `Pica hudsonia` or `a black and white bird`."""
        text = q.strip()
        if not text:
            raise HTTPException(422, "q: the search text is empty")
        species, images = (await work.run(lambda cancel: engine.search_texts([text], n_images=n_images, locale=locale,
                                                                                  rank=rank),
                                              request))[0]
        hits = hits_to_dict(species, images, paths=False)
        return {"query": text, "species": hits["species"], "images": with_urls(hits["images"])}

    @app.get(
        "/api/images/{image_id:path}",
        tags=["gallery"],
        summary="A gallery picture",
        response_class=FileResponse,
        responses={200: {"content": {"image/*": {}}, "description": "The picture file."}, **error_responses(404)},
    )
    async def image(image_id: str) -> FileResponse:
        """The picture with this gallery id (URL-encode the id; results carry a ready `url`). Only gallery
        pictures are served."""
        not_found = HTTPException(404, "no gallery picture has this id")
        if not _safe_image_id(image_id):
            raise not_found
        path = await anyio.to_thread.run_sync(engine.image_file, image_id)
        if path is None:
            raise not_found
        path = Path(path)
        media_type = IMAGE_TYPES.get(path.suffix.lower())
        if media_type is None or not await anyio.to_thread.run_sync(path.is_file):
            raise not_found
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})

    add_archive_routes(app, service, work, on_upload, bounds)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        headers = {"Cache-Control": "no-cache", "Content-Security-Policy": PAGE_CSP}
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=headers)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
