"""The archive: the vector store with one window of a recording per row, a ``files`` table and a ``labels`` table.

See :mod:`birdbridge.archive` for the on-disk layout; storage, crash safety and vector search are the
generic :class:`~birdbridge.store.vector_store.VectorStore`'s. A file's windows, and the file's row, are
committed in one append, so a killed build resumes at file granularity. Every read of ``files`` keeps
the files whose windows are committed (``first_row < count``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from birdbridge.archive.metadata import RecordingMeta, parse_date, parse_time
from birdbridge.errors import BirdbridgeError
from birdbridge.store.kind import StoreKind
from birdbridge.store.records import RecordSchema, batches, placeholders
from birdbridge.store.vector_store import VectorStore
from birdbridge.utils.clock import now_iso

if TYPE_CHECKING:
    from birdbridge.archive.labels import Label, LabelCount, LabelReport, LabelSpan
    from birdbridge.archive.search import ArchiveResults

FORMAT = "birdbridge-archive"
VERSION = 1
META_FILE = "archive.json"
DB_FILE = "archive.sqlite"
#: Columns of the ``files`` table after ``id`` (see :class:`RecordingFile`).
FILE_COLUMNS = ("path", "duration_s", "sample_rate", "channels", "date", "time", "t0", "site", "lat", "lon", "size",
                "mtime_ns", "first_row", "n_windows", "added")
_FILE_SELECT = ", ".join(("id", *(c for c in FILE_COLUMNS if c != "t0")))  # a RecordingFile's fields

_EXTRA_SQL = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    duration_s REAL NOT NULL,
    sample_rate INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    date TEXT,
    time TEXT,
    t0 REAL,
    site TEXT,
    lat REAL,
    lon REAL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    first_row INTEGER NOT NULL,
    n_windows INTEGER NOT NULL,
    added TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_site ON files(site);
CREATE UNIQUE INDEX IF NOT EXISTS windows_file_start ON windows(file, start_s, channel);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    row INTEGER NOT NULL,
    label TEXT NOT NULL,
    value INTEGER NOT NULL CHECK (value IN (0, 1)),
    who TEXT NOT NULL,
    at TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    source_row INTEGER NOT NULL DEFAULT 0,
    UNIQUE (row, label, value, who, source, source_row)
);
CREATE INDEX IF NOT EXISTS labels_label ON labels(label, row);
"""


@dataclass(frozen=True)
class WindowRecord:
    """One window: ``row`` in ``vectors.f16``, ``file`` the id of its recording in ``files``, its span in seconds
    and its channel (0 = the channels mixed to mono; per-channel archives may come later)."""

    row: int
    file: int
    start_s: float
    end_s: float
    channel: int = 0


@dataclass(frozen=True)
class RecordingFile:
    """One recording of the archive: its header, when and where it was made, and its windows (``first_row`` ..
    ``first_row + n_windows - 1``). ``size`` and ``mtime_ns`` are the file's when it was embedded."""

    id: int
    path: str
    duration_s: float
    sample_rate: int
    channels: int
    date: str | None
    time: str | None
    site: str | None
    lat: float | None
    lon: float | None
    size: int
    mtime_ns: int
    first_row: int
    n_windows: int
    added: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NewRecording:
    """A recording to add: its file facts, its date/time/site, and its windows (``[n, D]`` vectors and spans)."""

    path: str
    duration_s: float
    sample_rate: int
    channels: int
    size: int
    mtime_ns: int
    meta: RecordingMeta
    vectors: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray


def _window_values(record: Mapping[str, Any] | WindowRecord, position: int) -> tuple:
    get = record.get if isinstance(record, Mapping) else lambda k, d=None: getattr(record, k, d)
    try:
        return int(get("file")), float(get("start_s")), float(get("end_s")), int(get("channel", 0) or 0)
    except (TypeError, ValueError):
        raise BirdbridgeError(f"window {position} needs a file id, a start_s and an end_s, got {record!r}") from None


def _trim(conn: sqlite3.Connection, count: int) -> None:
    conn.execute("DELETE FROM files WHERE first_row >= ?", [count])
    conn.execute("DELETE FROM labels WHERE row >= ?", [count])


WINDOW_SCHEMA: RecordSchema[WindowRecord] = RecordSchema(
    table="windows",
    columns=(("file", "INTEGER NOT NULL"), ("start_s", "REAL NOT NULL"), ("end_s", "REAL NOT NULL"),
             ("channel", "INTEGER NOT NULL DEFAULT 0")),
    to_values=_window_values,
    from_values=lambda row, values: WindowRecord(row, *values),
    extra_sql=_EXTRA_SQL,
    trim=_trim,
)

ARCHIVE = StoreKind(
    noun="archive",
    item="window",
    format=FORMAT,
    version=VERSION,
    meta_file=META_FILE,
    db_file=DB_FILE,
    schema=WINDOW_SCHEMA,
    build_command="birdbridge archive build",
    create_hint="build an archive with `birdbridge archive build ARCHIVE --model STUDENT RECORDINGS...`",
    exists_hint="run `birdbridge archive build` on it again to resume it, or pass --add to add recordings",
    ann_command="birdbridge archive build ARCHIVE --ann",
    files=("probes.json",),  # written by `birdbridge archive probe train` (birdbridge.probes)
)


@dataclass(frozen=True)
class ArchiveSummary:
    """What ``birdbridge archive info`` shows."""

    archive: str
    windows: int
    files: int
    hours: float
    dim: int
    student: dict[str, Any]
    teacher: dict[str, Any]
    windowing: dict[str, Any]
    dates: tuple[str | None, str | None]  # first and last recording date
    undated_files: int
    sites: dict[str, int]  # files per site ("" = none)
    labels: int
    ann: dict[str, Any]
    build: dict[str, Any] | None
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Archive(VectorStore[WindowRecord]):
    """Window embeddings of a collection of recordings; open with :meth:`open`, build with
    :func:`~birdbridge.archive.build.build_archive`, query with :meth:`search`.

    ``search`` here ranks windows for a text, a picture, an example recording or a vector; the store's
    raw top-k over vectors is :meth:`VectorStore.search` (``VectorStore.search(archive, queries, k)``).
    """

    kind = ARCHIVE

    # ------------------------------------------------------------------------------ what it holds

    @property
    def student(self) -> dict[str, Any]:
        """The student that embedded the windows: ``ref``, ``name``, ``fingerprint``, ``embed_dim``, ``band_hz``."""
        return dict(self._meta.get("student") or {})

    @property
    def windowing(self) -> dict[str, Any]:
        """``window_s`` and ``hop_s`` of the windows, and the student's input ``sample_rate``."""
        return dict(self._meta.get("windowing") or {})

    def files(self, paths: Iterable[str] | None = None) -> list[RecordingFile]:
        """The recordings (all, or those of ``paths``, as stored, that are in the archive), by id."""
        if paths is None:
            return self._file_rows()
        found: list[RecordingFile] = []
        for part in batches(list(dict.fromkeys(str(p) for p in paths))):
            found += self._file_rows(f"path IN ({placeholders(len(part))})", part)
        return sorted(found, key=lambda f: f.id)

    def file(self, path_or_id: str | os.PathLike[str] | int) -> RecordingFile:
        """One recording by id or path (stored paths are absolute); KeyError if the archive lacks it."""
        if isinstance(path_or_id, (int, np.integer)):
            found = self._file_rows("id = ?", [int(path_or_id)])
        else:
            found = self.files([str(Path(path_or_id).expanduser().resolve()), str(path_or_id)])
        if not found:
            raise KeyError(f"{path_or_id} is not a recording of archive {self.folder}")
        return found[0]

    def _file_rows(self, where: str = "1", args: Sequence[Any] = ()) -> list[RecordingFile]:
        sql = f"SELECT {_FILE_SELECT} FROM files WHERE first_row < ? AND {where} ORDER BY id"
        return [RecordingFile(*r) for r in self.query(sql, [len(self), *args])]

    def windows(self, file: str | os.PathLike[str] | int | None = None) -> list[WindowRecord]:
        """The windows of one recording (id or path), or of all, in row order."""
        if file is None:
            return self.records(range(len(self)))
        return self.records(self.rows_matching(["file = ?"], [self.file(file).id]))

    # ------------------------------------------------------------------------------ adding recordings

    def add_recordings(self, recordings: Sequence[NewRecording]) -> int:
        """Append recordings in one commit: every window of each, and its row in ``files``. A path already in the
        archive is an error. Returns the number of windows added."""
        recordings = [r for r in recordings if len(r.start_s)]
        if not recordings:
            return 0
        with self.write_lock():
            present = {f.path for f in self.files(r.path for r in recordings)}
            if present:
                raise BirdbridgeError(f"{len(present)} recording(s) already in archive {self.folder}: "
                                      f"{sorted(present)[:3]}")
            first_id = int(self.query("SELECT COALESCE(MAX(id), 0) + 1 FROM files")[0][0])
            records, vectors, facts = [], [], []
            for i, rec in enumerate(recordings):
                n = len(rec.start_s)
                if rec.vectors.shape[0] != n or len(rec.end_s) != n:
                    raise BirdbridgeError(f"{rec.path}: {rec.vectors.shape[0]} vectors for {n} windows")
                records += [{"file": first_id + i, "start_s": float(s), "end_s": float(e)}
                            for s, e in zip(rec.start_s, rec.end_s, strict=True)]
                vectors.append(np.asarray(rec.vectors, np.float32))
                facts.append((first_id + i, rec, len(records) - n))
            added = now_iso()

            def also(conn: sqlite3.Connection, rows: range) -> None:
                conn.executemany(
                    f"INSERT INTO files (id, {', '.join(FILE_COLUMNS)}) VALUES ({placeholders(len(FILE_COLUMNS) + 1)})",
                    [(file_id, rec.path, float(rec.duration_s), int(rec.sample_rate), int(rec.channels),
                      rec.meta.date, rec.meta.time, rec.meta.epoch, rec.meta.site, rec.meta.lat, rec.meta.lon,
                      int(rec.size), int(rec.mtime_ns), rows.start + offset, len(rec.start_s), added)
                     for file_id, rec, offset in facts])

            return self.append(np.concatenate(vectors), records, also=also)

    def set_recording_meta(self, metas: Mapping[str, RecordingMeta]) -> int:
        """Replace the date, time, site and position of recordings already in the archive (by stored path);
        returns how many were found."""
        rows = [(m.date, m.time, m.epoch, m.site, m.lat, m.lon, path) for path, m in metas.items()]
        with self.transaction() as conn:
            before = conn.total_changes
            conn.executemany("UPDATE files SET date = ?, time = ?, t0 = ?, site = ?, lat = ?, lon = ? "
                             "WHERE path = ? AND first_row < ?", [(*r, len(self)) for r in rows])
            return conn.total_changes - before

    # ------------------------------------------------------------------------------ filters

    def rows_where(
        self, *, date_from: str | None = None, date_to: str | None = None, time_from: str | None = None,
        time_to: str | None = None, sites: Sequence[str] | None = None,
    ) -> np.ndarray | None:
        """Sorted int64 rows of the windows that pass the filters, or None when no filter is given.

        A window's date and time of day are those of its start (the recording's start plus its offset, so
        windows of a long recording pass midnight). ``date_from``/``date_to`` are inclusive; ``time_from`` ..
        ``time_to`` is inclusive and wraps midnight when ``time_from`` is later (22:00 .. 02:00). Recordings
        without a date (or a time, for the time filter) pass no date (time) filter. ``sites``: any of them.
        """
        clauses: list[str] = []
        args: list[Any] = []
        when = "(f.t0 + w.start_s)"
        if date_from is not None or date_to is not None:
            day = f"COALESCE(date({when}, 'unixepoch'), f.date)"
            if date_from is not None:
                clauses.append(f"{day} >= ?")
                args.append(parse_date(date_from, "--date-from"))
            if date_to is not None:
                clauses.append(f"{day} <= ?")
                args.append(parse_date(date_to, "--date-to"))
        if time_from is not None or time_to is not None:
            clock = f"time({when}, 'unixepoch')"
            start = parse_time(time_from, "--time-from") if time_from is not None else "00:00:00"
            end = parse_time(time_to, "--time-to") if time_to is not None else "23:59:59"
            joiner = "AND" if start <= end else "OR"
            clauses.append(f"({clock} >= ? {joiner} {clock} <= ?)")
            args += [start, end]
        if sites:
            clauses.append(f"f.site IN ({placeholders(len(sites))})")
            args += list(sites)
        if not clauses:
            return None
        sql = (f"SELECT w.row FROM windows w JOIN files f ON f.id = w.file WHERE w.row < ? AND "
               f"{' AND '.join(clauses)} ORDER BY w.row")
        found = self.query(sql, [len(self), *args])
        return np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))

    # ------------------------------------------------------------------------------ queries

    def search(  # type: ignore[override]  # the store's vector search stays VectorStore.search
        self, text: str | None = None, *, image: Any = None, like: Any = None, vector: np.ndarray | None = None,
        top_k: int = 20, min_score: float | None = None, per_file: int | None = None, date_from: str | None = None,
        date_to: str | None = None, time_from: str | None = None, time_to: str | None = None,
        sites: Sequence[str] | None = None, taxonomy: Any = None, free_text: bool = False, model: Any = None,
        teacher: Any = None, device: str | None = None, exact: bool | None = None, rank: str = "species",
        gallery: Any = None, where: Any = None,
    ) -> ArchiveResults:
        """The windows nearest to one query, best first; see :func:`birdbridge.archive.search.search_archive`."""
        from birdbridge.archive.search import search_archive

        return search_archive(self, text=text, image=image, like=like, vector=vector, top_k=top_k,
                              min_score=min_score, per_file=per_file, date_from=date_from, date_to=date_to,
                              time_from=time_from, time_to=time_to, sites=sites, taxonomy=taxonomy, free_text=free_text,
                              model=model, teacher=teacher, device=device, exact=exact, rank=rank, gallery=gallery,
                              where=where)

    # ------------------------------------------------------------------------------ labels

    def add_labels(
        self, labels: str | os.PathLike[str] | Iterable[LabelSpan], *, who: str | None = None,
        source: str | None = None, min_overlap: float = 0.5, label_column: str | None = None,
        file: str | os.PathLike[str] | None = None,
    ) -> LabelReport:
        """Attach labels (a Raven selection table or labels CSV, or :class:`LabelSpan` s) to the windows they
        overlap; see :func:`birdbridge.archive.labels.add_labels`."""
        from birdbridge.archive.labels import add_labels

        return add_labels(self, labels, who=who, source=source, min_overlap=min_overlap, label_column=label_column,
                          file=file)

    def labels(self, label: str | None = None, *, latest: bool = False, rows: Sequence[int] | None = None
               ) -> list[Label]:
        """Every label given (or those of one name, or of the windows ``rows``), oldest first, with provenance;
        ``latest``: only the last label given to each (window, name)."""
        from birdbridge.archive.labels import read_labels_table

        return read_labels_table(self, label, latest=latest, rows=rows)

    def label_counts(self) -> dict[str, LabelCount]:
        """Windows labelled yes and no, per label name (the last label of each window counts)."""
        from birdbridge.archive.labels import label_counts

        return label_counts(self)

    # ------------------------------------------------------------------------------ summary

    def summary(self) -> ArchiveSummary:
        """Counts, hours, dates, sites, models, labels, ANN status, build state and size (``archive info``)."""
        count = len(self)
        files, seconds, first, last, undated = self.query(
            "SELECT COUNT(*), COALESCE(SUM(duration_s), 0), MIN(date), MAX(date), SUM(date IS NULL) FROM files "
            "WHERE first_row < ?", [count])[0]
        sites = {s or "": int(n) for s, n in self.query(
            "SELECT site, COUNT(*) FROM files WHERE first_row < ? GROUP BY site ORDER BY site", [count])}
        labels = int(self.query("SELECT COUNT(*) FROM labels WHERE row < ?", [count])[0][0])
        return ArchiveSummary(
            archive=str(self.folder), windows=count, files=int(files), hours=float(seconds) / 3600, dim=self.dim,
            student=self.student, teacher=self.teacher, windowing=self.windowing, dates=(first, last),
            undated_files=int(undated or 0), sites=sites, labels=labels, ann=self.ann_status(),
            build=self.meta.get("build"), size_bytes=sum(self.disk_usage().values()),
        )


def is_archive(folder: str | os.PathLike[str]) -> bool:
    return Archive.exists_in(folder)


__all__ = ["ARCHIVE", "DB_FILE", "META_FILE", "Archive", "ArchiveSummary", "NewRecording", "RecordingFile",
           "WindowRecord", "is_archive"]
