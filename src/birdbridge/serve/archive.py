"""The archive behind ``birdbridge serve --archive``: search it by name, picture or recording; hear and see each hit's
window, the species it most likely is (with pictures), and label it yes or no.

* :class:`ArchiveService` holds the archive and the server's search engine. The archive must be in the gallery's
  teacher space (refused when the service is made, so at startup). Recording queries go through the archive's own
  student: the served model when it is that student, else the one the archive records (loaded once). Each search
  and info request first sees what another process added (rows, an ANN index): :meth:`ArchiveService.refresh`.
* Hits name their recording by its path below the folder holding all the archive's recordings (never the server's
  absolute path). A window's audio and spectrogram are cut from the recording the
  archive records for its row, never from a path a client sends; at most :data:`MAX_CONTEXT_S` on each side.
* Labels are written with :meth:`Archive.add_labels <birdbridge.archive.store.Archive.add_labels>` (the archive's
  writer lock and one transaction: safe from several requests at once), with ``who`` (default "web page"), the
  time and the source "web page"; each click is its own source row, so the last click counts.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
import numpy as np
import soundfile as sf
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as RowPath
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from birdbridge.archive.labels import LabelSpan
from birdbridge.archive.search import ArchiveHit
from birdbridge.archive.store import Archive, RecordingFile, WindowRecord
from birdbridge.audio.io import audio_info, read_audio
from birdbridge.audio.windows import WindowLimits, WindowSpec, count_windows
from birdbridge.errors import BirdbridgeError
from birdbridge.search.archive_hits import candidate_species, window_vectors
from birdbridge.search.engine import RETRIEVAL
from birdbridge.search.locale import localize_hits
from birdbridge.search.results import SpeciesHit
from birdbridge.serve.openapi import LOCALE, error_responses, image_url, multipart_body
from birdbridge.serve.uploads import Upload
from birdbridge.serve.work import WorkQueue

if TYPE_CHECKING:
    from birdbridge.models.student import AudioStudent
    from birdbridge.search.engine import SearchEngine

__all__ = ["ArchiveService", "add_archive_routes", "check_archive", "hit_candidates"]

log = logging.getLogger(__name__)
T = TypeVar("T")
CANDIDATES = 3  # species shown per hit
MAX_TOP_K = 100
MAX_CONTEXT_S = 1.0  # seconds of audio around a window, at most, on each side
SNIPPET_MAX_RATE = 48_000  # Hz of a window's audio, at most
SOURCE = "web page"
NO_ARCHIVE = "this server has no archive: start `birdbridge serve` with --archive ARCHIVE"

OnUpload = Callable[[Request, Callable[[Upload, threading.Event], T]], Awaitable[tuple[T, Upload]]]


def check_archive(archive: Archive, teacher: dict[str, Any]) -> None:
    """Refuse an unfinished archive, or one whose windows are not in the space of ``teacher`` (the gallery's)."""
    archive.check_searchable()
    try:
        archive.check_teacher(teacher, "the gallery")
    except BirdbridgeError as exc:
        raise BirdbridgeError(f"--archive {archive.folder} cannot be served with this gallery: {exc}") from None


def hit_candidates(engine: SearchEngine, archive: Archive, hits: Sequence[ArchiveHit]) -> list[list[SpeciesHit]]:
    """Per hit, the ``CANDIDATES`` species of the gallery's species index closest to its window (a softmax over
    the index, as text and picture queries are ranked)."""
    return candidate_species(engine, archive, hits, top_k=CANDIDATES, scoring=RETRIEVAL).species


# ---------------------------------------------------------------------------------------------------
# Schemas


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ArchiveInfo(BaseModel):
    name: str = Field(description="The archive folder's name.")
    windows: int
    files: int = Field(description="Recordings.")
    hours: float = Field(description="Hours of audio.")
    window_s: float | None = Field(None, description="Window length in seconds.")
    hop_s: float | None = Field(None, description="Hop between windows in seconds.")
    labels: int = Field(description="Labels given to its windows.")


class LabelState(BaseModel):
    label: str
    value: bool = Field(description="true: yes (the window holds it), false: no.")
    who: str
    at: str = Field(description="When it was given (ISO time).")


class Candidate(_Open):
    key: str
    scientific_name: str
    common_name: str | None = None
    score: float = Field(description="Softmax probability over the gallery's species index.")
    similarity: float = Field(description="Cosine similarity between the window and the species' text embedding.")
    image: dict[str, Any] | None = Field(None, description="The species' gallery picture closest to the window "
                                         "(with its `url`), or null if it has none.")


class Hit(BaseModel):
    rank: int
    row: int = Field(description="The window's row in the archive: its id in the other endpoints.")
    file: str = Field(description="The recording: its path below the folder that holds all the archive's recordings.")
    start_s: float
    end_s: float
    score: float = Field(description="Cosine similarity between the query and the window.")
    date: str | None = None
    time: str | None = None
    site: str | None = None
    audio_url: str = Field(description="The window's audio (WAV).")
    spectrogram_url: str = Field(description="The window's spectrogram (PNG).")
    candidates: list[Candidate] = Field(description=f"The {CANDIDATES} species closest to the window, best first.")
    labels: list[LabelState] = Field(description="The last label of each name given to the window.")


class ArchiveSearchResponse(BaseModel):
    query: dict[str, Any] = Field(description="What was searched: `kind` (text, image, like) and how it was read.")
    method: str = Field(description="exact or ann.")
    searched: int = Field(description="Windows searched.")
    hits: list[Hit]


class LabelRequest(BaseModel):
    row: int | None = Field(None, ge=0, description="The window's row (a hit's `row`); or give file, start_s, end_s.")
    file: str | None = Field(None, max_length=1000, description="A recording as a hit names it (or its file name, "
                             "or its path as the archive records it).")
    start_s: float | None = Field(None, ge=0)
    end_s: float | None = Field(None, ge=0)
    label: str = Field(..., min_length=1, max_length=200, description="The label's name, e.g. a species.")
    value: bool = Field(description="true: yes, the window holds it; false: no.")
    who: str | None = Field(None, max_length=100, description="Who labels (default: `web page`).")


class LabelResponse(BaseModel):
    windows: list[dict[str, Any]] = Field(description="Each window labelled: its `row` and `labels` (as in a hit).")


# ---------------------------------------------------------------------------------------------------
# The service


class ArchiveService:
    """An archive searched through a server's :class:`~birdbridge.search.SearchEngine` (see the module docs)."""

    def __init__(self, archive: Archive, engine: SearchEngine) -> None:
        check_archive(archive, engine.info()["teacher"])
        self.archive, self.engine = archive, engine
        self._positions = {sp.key: sp.index for sp in engine.gallery.species()}
        self._refresh_lock = threading.Lock()
        self._set_root()
        ours = archive.student.get("fingerprint")
        served = engine.student
        self._student: AudioStudent | None = served if served is not None and served.fingerprint == ours else None
        self._student_lock = threading.Lock()

    def _set_root(self) -> None:
        folders = [str(Path(f.path).parent) for f in self.archive.files()]
        self.root = Path(os.path.commonpath(folders)) if folders else Path("/")  # hits name files relative to it

    def refresh(self) -> None:
        """See what another process added (``archive build --add``, a new ANN index) since the last request."""
        with self._refresh_lock:
            if self.archive.refresh():
                self._set_root()

    def info(self) -> dict[str, Any]:
        self.refresh()
        s = self.archive.summary()
        return {"name": self.archive.folder.name, "windows": s.windows, "files": s.files, "hours": s.hours,
                "window_s": s.windowing.get("window_s"), "hop_s": s.windowing.get("hop_s"), "labels": s.labels}

    def student(self) -> AudioStudent:
        """The student that embedded the archive (the served one, or the archive's, loaded on first use)."""
        from birdbridge.archive.queries import student_for

        with self._student_lock:
            if self._student is None:
                self._student = student_for(self.archive, None, self.engine.device)
            return self._student

    # -------------------------------------------------------------------------------- searches

    def search(self, *, text: str | None = None, image: Path | None = None, like: Any = None, name: str = "",
               top_k: int = 12, per_file: int | None = None, min_score: float | None = None,
               locale: str | None = None) -> dict[str, Any]:
        """The hits of one query (``name``: the uploaded file's name) as the API's JSON."""
        names = self.engine.common_names(locale)  # an unknown locale before any model work
        self.refresh()
        options: dict[str, Any] = {"top_k": top_k, "per_file": per_file, "min_score": min_score}
        if text is not None:
            found = self.archive.search(text, taxonomy=self.engine.taxonomy, teacher=self.engine.teacher, **options)
        elif image is not None:
            found = self.archive.search(image=image, teacher=self.engine.teacher, **options)
        else:
            found = self.archive.search(like=like, model=self.student(), **options)
        query = {k: v for k, v in found.query.items() if k not in ("forms", "templates")}
        for key in ("image", "like"):  # the upload's name, not its temporary path
            if key in query:
                query[key] = name
        return {"query": query, "method": found.method, "searched": found.searched,
                "hits": self._hits(found.hits, names)}

    def check_recording(self, upload: Upload, start: float | None, end: float | None, bounds: WindowLimits) -> None:
        """The server's limits on an example recording (or its part), from its header, before it is embedded."""
        seconds = audio_info(upload.path).duration_s
        if start is not None and end is not None:
            seconds = max(0.0, min(end, seconds) - start)
        bounds.check_audio(upload.filename, seconds)
        windowing = self.archive.windowing
        spec = WindowSpec(float(windowing.get("window_s") or self.student().window_s), windowing.get("hop_s"))
        bounds.check_windows(count_windows(seconds, spec), spec)

    def _hits(self, hits: Sequence[ArchiveHit], names: dict[str, str] | None) -> list[dict[str, Any]]:
        rows = [h.row for h in hits]
        species = hit_candidates(self.engine, self.archive, hits)
        vectors = window_vectors(self.archive, rows) if hits else np.zeros((0, self.archive.dim), np.float32)
        labels = self.labels(rows)
        out = []
        for hit, candidates, vector in zip(hits, species, vectors, strict=True):
            candidates, _ = localize_hits(candidates, [], names)
            data = hit.to_dict()
            data["file"] = self.name(hit.file)
            out.append({**data, "audio_url": f"/api/archive/windows/{hit.row}/audio",
                        "spectrogram_url": f"/api/archive/windows/{hit.row}/spectrogram",
                        "candidates": [self._candidate(sp, vector, names) for sp in candidates],
                        "labels": labels.get(hit.row, [])})
        return out

    def name(self, path: str) -> str:
        """A recording as hits name it: its path below the folder that holds all the archive's recordings."""
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:  # a recording added since the server started
            return Path(path).name

    def _candidate(self, species: SpeciesHit, vector: np.ndarray, names: dict[str, str] | None) -> dict[str, Any]:
        image = None
        position = self._positions.get(species.key)
        if position is not None and species.has_images:
            found = self.engine.rank_images(vector[None], 1, np.array([position], dtype=np.int64))[0]
            if found:
                picture = localize_hits([], found[:1], names)[1][0].to_dict(paths=False)
                image = {**picture, "url": image_url(picture["id"])}
        return {**species.to_dict(), "image": image}

    # -------------------------------------------------------------------------------- windows

    def window(self, row: int) -> tuple[WindowRecord, RecordingFile]:
        """A window and its recording; 404 for a row the archive lacks."""
        try:
            record = self.archive.record(row)
        except IndexError:
            raise HTTPException(404, f"the archive has no window {row} (its rows are 0-{len(self.archive) - 1})"
                                ) from None
        return record, self.archive.file(record.file)

    def _span(self, row: int, context_s: float) -> tuple[Path, float, float, RecordingFile]:
        """The recording of window ``row`` and the part to cut: the window with ``context_s`` on each side."""
        record, file = self.window(row)
        path = Path(file.path)
        if not path.is_file():
            log.warning("archive window %d: recording %s is missing", row, path)
            raise HTTPException(404, f"the recording {self.name(file.path)} of window {row} is missing on the "
                                "server: it was moved or deleted after the archive was built (put it back where "
                                "`birdbridge archive info` says the archive's recordings are)")
        context_s = min(max(context_s, 0.0), MAX_CONTEXT_S)
        start = max(0.0, record.start_s - context_s)
        end = min(record.end_s + context_s, max(file.duration_s, record.end_s))
        return path, start, end, file

    def snippet_wav(self, row: int, context_s: float = 0.0) -> bytes:
        """The window's audio (mono, 16-bit WAV, at the recording's rate up to :data:`SNIPPET_MAX_RATE`)."""
        path, start, end, file = self._span(row, context_s)
        rate = min(int(file.sample_rate), SNIPPET_MAX_RATE)
        samples = read_audio(path, rate, offset_s=start, duration_s=end - start)
        buffer = io.BytesIO()
        sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
        return buffer.getvalue()

    def spectrogram_png(self, row: int, context_s: float = 0.0) -> bytes:
        from birdbridge.serve.spectrogram import spectrogram_png

        path, start, end, _ = self._span(row, context_s)
        return spectrogram_png(path, offset_s=start, max_seconds=end - start)

    # -------------------------------------------------------------------------------- labels

    def labels(self, rows: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """The last label of each name of these windows."""
        out: dict[int, list[dict[str, Any]]] = {}
        for label in self.archive.labels(latest=True, rows=rows):
            out.setdefault(label.row, []).append({"label": label.label, "value": label.value, "who": label.who,
                                                  "at": label.at})
        return out

    def add_label(self, request: LabelRequest) -> dict[str, Any]:
        """Write one yes/no label (of a row, or of a recording's span) and return the windows' labels now."""
        label = " ".join(request.label.split())
        if not label:
            raise HTTPException(422, "label: the label's name is empty; give one, e.g. a species")
        who = " ".join((request.who or "").split()) or SOURCE
        click = time.time_ns() // 1000  # each click its own source row: a changed mind is the latest label
        if request.row is not None:
            record, file = self.window(request.row)
            span = LabelSpan(file.path, record.start_s, record.end_s, label, request.value,
                             f"window {request.row}", click, exact=True)
        elif request.file and request.start_s is not None and request.end_s is not None:
            stored = self.root / request.file  # a hit's name; else a path or a file name, as labels files give them
            named = str(stored) if ".." not in Path(request.file).parts and self.archive.files([stored]) else None
            span = LabelSpan(named or request.file, request.start_s, request.end_s, label, request.value,
                             f"{request.file} {request.start_s:g}-{request.end_s:g} s", click, exact=True)
        else:
            raise HTTPException(422, "give the window's row, or its file, start_s and end_s")
        report = self.archive.add_labels([span], who=who, source=SOURCE)
        if report.skipped:
            raise HTTPException(404, report.skipped[0].message.replace(f" {self.archive.folder}", ""))
        found = self.archive.query("SELECT DISTINCT row FROM labels WHERE source = ? AND source_row = ? AND who = ? "
                                   "ORDER BY row", [SOURCE, click, who])
        rows = [r for (r,) in found] or ([request.row] if request.row is not None else [])
        labels = self.labels(rows)
        return {"windows": [{"row": r, "labels": labels.get(r, [])} for r in rows]}


# ---------------------------------------------------------------------------------------------------
# The endpoints


def add_archive_routes(app: FastAPI, service: ArchiveService | None, work: WorkQueue, on_upload: OnUpload,
                       bounds: WindowLimits) -> None:
    """The ``/api/archive`` endpoints (404 naming ``--archive`` when ``service`` is None)."""

    def served() -> ArchiveService:
        if service is None:
            raise HTTPException(404, NO_ARCHIVE)
        return service

    top_k_query = Query(12, ge=1, le=MAX_TOP_K, description="Windows to return.")
    per_file_query = Query(None, ge=1, le=MAX_TOP_K, description="At most this many windows of one recording.")
    min_score_query = Query(None, ge=-1, le=1, description="Leave out windows scoring below this.")
    context_query = Query(0.0, ge=0, le=MAX_CONTEXT_S, description="Seconds of the recording before and after the "
                          "window to include.")
    row_path = RowPath(..., ge=0, description="The window's row (a hit's `row`).")
    searching = {"tags": ["archive"], "response_model": ArchiveSearchResponse}

    @app.get("/api/archive/search/text", summary="Archive windows for a name or a description",
             responses=error_responses(404, 422, 503), **searching)
    async def search_text(
        request: Request,
        q: str = Query(..., min_length=1, max_length=500, description="A species (scientific or common name, code, "
                       "BirdNET label) or free text."),
        top_k: int = top_k_query, per_file: int | None = per_file_query, min_score: float | None = min_score_query,
        locale: str | None = LOCALE,
    ) -> dict:
        """The archive's windows closest to a text in the teacher's space (a species name is embedded as the gallery's
        species index embeds it), best first, each with its audio, spectrogram, candidate species and labels."""
        archive = served()
        text = " ".join(q.split())
        if not text:
            raise HTTPException(422, "q: the search text is empty")
        return await work.run(lambda cancel: archive.search(text=text, top_k=top_k, per_file=per_file,
                                                            min_score=min_score, locale=locale), request)

    @app.post("/api/archive/search/image", summary="Archive windows for a picture",
              responses=error_responses(400, 404, 408, 413, 415, 422, 503),
              openapi_extra=multipart_body("The picture: PNG, JPEG, WebP, ..."), **searching)
    async def search_image(
        request: Request, top_k: int = top_k_query, per_file: int | None = per_file_query,
        min_score: float | None = min_score_query, locale: str | None = LOCALE,
    ) -> dict:
        """The archive's windows closest to an uploaded picture (through the teacher's image tower)."""
        archive = served()
        result, _ = await on_upload(request, lambda upload, cancel: archive.search(
            image=upload.path, name=upload.filename, top_k=top_k, per_file=per_file, min_score=min_score,
            locale=locale))
        return result

    @app.post("/api/archive/search/recording", summary="Archive windows like a recording",
              responses=error_responses(400, 404, 408, 413, 415, 422, 503),
              openapi_extra=multipart_body("The example recording: WAV, FLAC, OGG/Vorbis/Opus, MP3 or AIFF."),
              **searching)
    async def search_recording(
        request: Request,
        start: float | None = Query(None, ge=0, description="Use the recording from here (s; with `end`)."),
        end: float | None = Query(None, gt=0, description="... to here (s)."),
        top_k: int = top_k_query, per_file: int | None = per_file_query, min_score: float | None = min_score_query,
        locale: str | None = LOCALE,
    ) -> dict:
        """The archive's windows closest to an uploaded example recording (or its part `start`-`end`): its windows,
        embedded by the archive's student as the archive's were, averaged into one query. Its seconds and windows
        are bounded as an audio search's (413)."""
        archive = served()
        if (start is None) != (end is None):
            raise HTTPException(422, "start and end go together: give both (seconds), or neither")
        if start is not None and end is not None and not end > start:
            raise HTTPException(422, f"end ({end:g} s) must come after start ({start:g} s)")

        def search(upload: Upload, cancel: threading.Event) -> dict:
            archive.check_recording(upload, start, end, bounds)
            like = upload.path if start is None else (upload.path, start, end)
            return archive.search(like=like, name=upload.filename, top_k=top_k, per_file=per_file,
                                  min_score=min_score, locale=locale)

        result, _ = await on_upload(request, search)
        return result

    @app.get("/api/archive/windows/{row}/audio", tags=["archive"], summary="A window's audio",
             response_class=Response, responses={200: {"content": {"audio/wav": {}}, "description": "16-bit WAV."},
                                                 **error_responses(404, 422, 503)})
    async def window_audio(request: Request, row: int = row_path, context: float = context_query) -> Response:
        """The window cut from its recording (mono), with `context` seconds around it. 404 names a recording that
        is missing on the server."""
        archive = served()
        wav = await work.run(lambda cancel: archive.snippet_wav(row, context), request)
        return Response(wav, media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/archive/windows/{row}/spectrogram", tags=["archive"], summary="A window's spectrogram",
             response_class=Response, responses={200: {"content": {"image/png": {}}, "description": "A PNG picture."},
                                                 **error_responses(404, 422, 503)})
    async def window_spectrogram(request: Request, row: int = row_path, context: float = context_query
                                 ) -> Response:
        """The window's spectrogram (as `/api/spectrogram` draws one), with `context` seconds around it."""
        archive = served()
        png = await work.run(lambda cancel: archive.spectrogram_png(row, context), request)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/archive/windows/{row}/labels", tags=["archive"], summary="A window's labels",
             response_model=LabelResponse, responses=error_responses(404, 422))
    async def window_labels(row: int = row_path) -> dict:
        """The last label of each name given to the window."""
        archive = served()

        def read() -> dict:
            archive.window(row)
            return {"windows": [{"row": row, "labels": archive.labels([row]).get(row, [])}]}

        return await anyio.to_thread.run_sync(read)

    @app.post("/api/archive/labels", tags=["archive"], summary="Label a window yes or no",
              response_model=LabelResponse, responses=error_responses(404, 422))
    async def add_label(body: LabelRequest) -> dict:
        """Store a yes/no label for a window (by `row`, or by `file`, `start_s` and `end_s` naming it exactly) in the
        archive, with who gave it (`who`, default "web page"), when, and the source "web page". The last label of a
        name given to a window is the one that counts (`birdbridge archive labels`); the answer is the window's
        labels now."""
        return await anyio.to_thread.run_sync(served().add_label, body)

