"""The gallery store: memory-mapped float16 image embeddings, their records in SQLite, a species index.

See :mod:`birdbridge.gallery` for the on-disk layout and the crash-safety rules. Writers take an
exclusive ``flock`` on ``GALLERY/.lock``; readers never wait for it. Every query filters on
``row < count``, so a reader is never confused by a batch that a writer has not committed yet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.utils.atomic import atomic_path
from birdbridge.utils.text import optional_text
from birdbridge.utils.vectors import l2_normalize

try:  # POSIX only; elsewhere writers are not serialised across processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

FORMAT = "birdbridge-gallery"
VERSION = 1
META_FILE = "gallery.json"
VECTORS_FILE = "vectors.f16"
DB_FILE = "images.sqlite"
SPECIES_NPY = "species.npy"
SPECIES_JSON = "species.json"
ANN_FILE = "ann.usearch"
LOCK_FILE = ".lock"
SPECIES_FORMAT = "birdbridge-species-index"

#: Rows per step of exact search: one float32 buffer of this many rows (96 MiB at 768-d) is reused.
SEARCH_CHUNK_ROWS = 32_768
_MAX_SCORES = 1 << 24  # scores per exact-search step (64 MiB of float32)
_SQL_BATCH = 500  # ids per ``IN (...)`` query
_OWN_FILES = {META_FILE, VECTORS_FILE, DB_FILE, f"{DB_FILE}-journal", SPECIES_NPY, SPECIES_JSON, ANN_FILE, LOCK_FILE}
_RECORD_FIELDS = ("id", "path", "species", "split", "source", "licence", "photographer", "meta")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    row INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    path TEXT,
    species TEXT NOT NULL,
    split TEXT,
    source TEXT,
    licence TEXT,
    photographer TEXT,
    meta TEXT
);
CREATE INDEX IF NOT EXISTS images_species ON images(species);
"""


@dataclass(frozen=True)
class ImageRecord:
    """One gallery image: ``row`` is its row in ``vectors.f16``; ``path`` is None for precomputed rows."""

    row: int
    id: str
    path: str | None
    species: str
    split: str | None
    source: str | None
    licence: str | None
    photographer: str | None
    meta: dict = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class SpeciesRecord:
    """One species of the species index; ``index`` is its row in :attr:`Gallery.species_vectors`.

    ``taxonomy`` is kingdom, phylum, class, order, family, genus, specific epithet (unknown ranks empty).
    """

    index: int
    key: str
    scientific_name: str
    common_name: str | None
    code: str | None
    has_images: bool
    taxonomy: tuple[str, ...] = ()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def teacher_meta(teacher: Any, ref: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``{"ref", "name", "fingerprint", "embed_dim"}`` of a loaded :class:`~birdbridge.models.teacher.Teacher`."""
    if ref is None:
        ref = teacher.folder if getattr(teacher, "folder", None) is not None else teacher.name
    return {"ref": str(ref), "name": teacher.name, "fingerprint": teacher.fingerprint,
            "embed_dim": int(teacher.embed_dim)}


def write_json_durable(target: Path, obj: Any) -> None:
    """Write JSON atomically and fsync it before the rename, so a power cut leaves old or new, never empty."""
    data = (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def is_gallery(folder: str | os.PathLike[str]) -> bool:
    return (Path(folder) / META_FILE).is_file()


class Gallery:
    """An embedded, serverless image gallery; open with :meth:`open`, make with :meth:`create`.

    Reading is thread-safe. A Gallery sees the rows committed when it was opened (or last
    :meth:`refresh`-ed); its own appends are visible at once.
    """

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self._meta = meta
        self._vectors: np.ndarray = np.zeros((0, self.dim), np.float16)
        self._torch_view: np.ndarray = self._vectors
        self._conn: sqlite3.Connection | None = None
        self._db_lock = threading.RLock()
        self._write_lock = threading.RLock()
        self._write_depth = 0
        self._lock_fd: int | None = None
        self._species_cache: tuple[list[SpeciesRecord], dict[str, Any]] | None = None
        self._species_vectors: np.ndarray | None = None
        self._ann_cache: tuple[dict[str, Any], Any] | None = None
        self._ann_lock = threading.Lock()
        self._map()

    # ------------------------------------------------------------------------------ open / create

    @classmethod
    def open(cls, folder: str | os.PathLike[str], *, repair: bool = True) -> Gallery:
        """Open a gallery: memory-maps ``vectors.f16`` (read-only); nothing is read eagerly.

        With ``repair`` (and write access, and no writer at work) vector bytes and records past
        ``count`` — left by a write that was killed — are removed first.
        """
        folder = Path(folder).expanduser()
        gallery = cls(folder, read_meta(folder))
        if repair:
            gallery._try_repair()
        return gallery

    @classmethod
    def create(cls, folder: str | os.PathLike[str], teacher: Mapping[str, Any], dim: int) -> Gallery:
        """Make an empty gallery in ``folder`` (new, empty, or left by an interrupted create)."""
        folder = Path(folder).expanduser()
        if is_gallery(folder):
            raise BirdbridgeError(f"{folder} is already a gallery; open it (or add to it with --add) instead")
        if folder.exists() and not folder.is_dir():
            raise InputError(str(folder), "is a file, not a folder", "choose a folder for the gallery")
        if folder.is_dir():
            foreign = sorted(
                p.name for p in folder.iterdir() if p.name not in _OWN_FILES and not p.name.endswith(".tmp")
            )
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise InputError(
                    str(folder), f"is not empty and not a gallery (it holds {shown})", "choose a new or empty folder"
                )
        dim = int(dim)
        if dim < 1:
            raise BirdbridgeError(f"gallery dimension must be positive, got {dim}")
        for name in ("name", "fingerprint"):
            if not teacher.get(name):
                raise BirdbridgeError(f"the teacher description needs a {name!r}: {dict(teacher)}")
        if int(teacher.get("embed_dim", dim)) != dim:
            raise BirdbridgeError(f"teacher {teacher['name']} has {teacher['embed_dim']} dimensions, not {dim}")
        folder.mkdir(parents=True, exist_ok=True)
        for name in (VECTORS_FILE, DB_FILE, f"{DB_FILE}-journal", SPECIES_NPY, SPECIES_JSON, ANN_FILE):
            (folder / name).unlink(missing_ok=True)
        (folder / VECTORS_FILE).touch()
        with contextlib.closing(sqlite3.connect(folder / DB_FILE)) as conn, conn:
            conn.executescript(_SCHEMA)
        stamp = now_iso()
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "teacher": {"ref": str(teacher.get("ref", teacher["name"])), "name": teacher["name"],
                        "fingerprint": teacher["fingerprint"], "embed_dim": dim},
            "dim": dim,
            "count": 0,
            "created": stamp,
            "updated": stamp,
            "ann": None,
            "build": None,
        }
        write_json_durable(folder / META_FILE, meta)  # written last: its presence marks a gallery
        return cls(folder, meta)

    def close(self) -> None:
        """Close the database connection (the memory map goes with the object)."""
        with self._db_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery({str(self.folder)!r}, {len(self):,} images, dim {self.dim}, teacher {self.teacher['name']!r})"

    # ------------------------------------------------------------------------------ properties

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of ``gallery.json`` as this object last read or wrote it."""
        return json.loads(json.dumps(self._meta))

    @property
    def teacher(self) -> dict[str, Any]:
        return dict(self._meta["teacher"])

    @property
    def dim(self) -> int:
        return int(self._meta["dim"])

    def __len__(self) -> int:
        return int(self._meta["count"])

    @property
    def vectors(self) -> np.ndarray:
        """float16 ``[N, D]`` unit rows, a read-only ``np.memmap`` of ``vectors.f16`` (a plain empty array if N = 0)."""
        return self._vectors

    def refresh(self) -> bool:
        """Re-read ``gallery.json`` to see rows, ANN or species index written by another process; True if changed."""
        meta = read_meta(self.folder)
        if meta == self._meta:
            return False
        self._meta = meta
        self._map()
        self._species_cache = self._species_vectors = None
        return True

    # ------------------------------------------------------------------------------ records

    def record(self, row: int) -> ImageRecord:
        """The record of one row; IndexError if there is no such row."""
        return self.records([row])[0]

    def records(self, rows: Sequence[int] | np.ndarray) -> list[ImageRecord]:
        """Records in the order of ``rows`` (drop search padding ``-1`` first); IndexError for a row out of range."""
        wanted = [int(r) for r in np.asarray(rows, dtype=np.int64).reshape(-1)]
        n = len(self)
        for r in wanted:
            if not 0 <= r < n:
                raise IndexError(f"row {r} is not in gallery {self.folder} ({n} rows)")
        found: dict[int, ImageRecord] = {}
        unique = sorted(set(wanted))
        for start in range(0, len(unique), _SQL_BATCH):
            part = unique[start : start + _SQL_BATCH]
            sql = f"SELECT row, {', '.join(_RECORD_FIELDS)} FROM images WHERE row IN ({','.join('?' * len(part))})"
            for values in self._query(sql, part):
                found[values[0]] = _record(values)
        missing = [r for r in wanted if r not in found]
        if missing:
            raise self._damaged(f"the records of rows {missing[:5]} are missing from {DB_FILE}")
        return [found[r] for r in wanted]

    def row_of(self, image_id: str) -> int | None:
        """The row of an image id, or None."""
        rows = self._query("SELECT row FROM images WHERE id = ? AND row < ?", [str(image_id), len(self)])
        return int(rows[0][0]) if rows else None

    def has_id(self, image_id: str) -> bool:
        return self.row_of(image_id) is not None

    def ids(self) -> set[str]:
        """Every image id (reads the whole id column; prefer :meth:`existing` for a few ids)."""
        return {r[0] for r in self._query("SELECT id FROM images WHERE row < ?", [len(self)])}

    def existing(self, ids: Iterable[str]) -> dict[str, str | None]:
        """Of the given ids, those already in the gallery, with their stored paths."""
        out: dict[str, str | None] = {}
        unique = list(dict.fromkeys(str(i) for i in ids))
        for start in range(0, len(unique), _SQL_BATCH):
            part = unique[start : start + _SQL_BATCH]
            sql = f"SELECT id, path FROM images WHERE row < ? AND id IN ({','.join('?' * len(part))})"
            out.update({i: p for i, p in self._query(sql, [len(self), *part])})
        return out

    def rows_where(
        self, *, species: str | Sequence[str] | None = None, split: str | None = None, source: str | None = None
    ) -> np.ndarray:
        """Sorted int64 rows whose species (one key or several), split and source match; for ``search(rows=...)``."""
        clauses, args = ["row < ?"], [len(self)]
        if species is not None:
            keys = [species] if isinstance(species, str) else list(species)
            clauses.append(f"species IN ({','.join('?' * len(keys))})")
            args += keys
        for column, value in (("split", split), ("source", source)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        rows = self._query(f"SELECT row FROM images WHERE {' AND '.join(clauses)} ORDER BY row", args)
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def species_counts(self) -> dict[str, int]:
        """Images per species key, in key order."""
        rows = self._query("SELECT species, COUNT(*) FROM images WHERE row < ? GROUP BY species ORDER BY species",
                           [len(self)])
        return {s: int(c) for s, c in rows}

    def image_file(self, row_or_id: int | str) -> Path | None:
        """The image file of a row or id (resolved; relative paths are relative to the gallery), or None."""
        if isinstance(row_or_id, str):
            row = self.row_of(row_or_id)
            if row is None:
                raise KeyError(f"image id {row_or_id!r} is not in gallery {self.folder}")
        else:
            row = int(row_or_id)
        path = self.record(row).path
        if path is None:
            return None
        return (self.folder / Path(path)).resolve() if not Path(path).is_absolute() else Path(path)

    # ------------------------------------------------------------------------------ teacher

    def check_teacher(self, teacher_meta: Mapping[str, Any] | Any, what: str) -> None:
        """Raise BirdbridgeError naming both teachers unless ``teacher_meta`` (dict or Teacher) has our fingerprint."""
        theirs = _as_teacher_dict(teacher_meta)
        ours = self._meta["teacher"]
        if theirs.get("fingerprint") == ours["fingerprint"]:
            return
        raise BirdbridgeError(
            f"{what} comes from teacher {theirs.get('name')!r} (fingerprint {theirs.get('fingerprint')}), but gallery "
            f"{self.folder} holds image embeddings of teacher {ours['name']!r} (fingerprint {ours['fingerprint']}); "
            f"embeddings of different teachers cannot be compared. Use the gallery's teacher ({ours.get('ref')}) "
            "or build a separate gallery."
        )

    def check_searchable(self) -> None:
        """Raise BirdbridgeError naming the problem and its fix unless this gallery can answer searches: its
        build finished and it has a species index (or it would answer every query with nothing)."""
        build = self._meta.get("build") or {}
        if build.get("complete") is False:
            state = ("is being built by another process right now; search it when that `birdbridge index` has "
                     "finished" if _writer_at_work(self.folder) else
                     "is unfinished: its build stopped before it completed; run the same `birdbridge index` command "
                     "again to resume the build")
            raise BirdbridgeError(f"gallery {self.folder} {state}")
        if not (self.folder / SPECIES_JSON).is_file():
            raise BirdbridgeError(
                f"gallery {self.folder} has no species index ({SPECIES_JSON} is missing), so it cannot rank species; "
                f"build it with `birdbridge gallery species {self.folder} --from-gallery` (or --species-list FILE)"
            )

    # ------------------------------------------------------------------------------ species index

    def species(self) -> list[SpeciesRecord]:
        """The species index records, in index order (empty if there is none)."""
        return list(self._load_species()[0])

    def species_info(self) -> dict[str, Any]:
        """The species index header: forms, templates, teacher fingerprint, source, created (empty if none)."""
        return dict(self._load_species()[1])

    @property
    def species_vectors(self) -> np.ndarray:
        """float32 ``[S, D]`` teacher text embeddings of the species (``[0, D]`` if there is no index)."""
        if self._species_vectors is None:
            records, info = self._load_species()
            if not records:
                self._species_vectors = np.zeros((0, self.dim), np.float32)
            else:
                path = self.folder / SPECIES_NPY
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    raise self._damaged(f"cannot read {SPECIES_NPY} ({exc})") from None
                if hashlib.sha256(data).hexdigest() != info.get("vectors_sha256"):
                    raise BirdbridgeError(
                        f"{path}: does not match {SPECIES_JSON} (an interrupted write?); rebuild the species index "
                        f"with `birdbridge gallery species {self.folder} --from-gallery` (or --species-list/--taxonomy)"
                    )
                import io

                array = np.load(io.BytesIO(data), allow_pickle=False)
                if array.shape != (len(records), self.dim):
                    raise self._damaged(
                        f"{SPECIES_NPY} has shape {list(array.shape)}, expected [{len(records)}, {self.dim}]"
                    )
                if not np.isfinite(array).all():
                    raise BirdbridgeError(
                        f"gallery {self.folder} is damaged: its species index ({SPECIES_NPY}) holds values that are "
                        f"not finite numbers (NaN or Inf). Rebuild it with `birdbridge gallery species {self.folder} "
                        "--from-gallery` (or --species-list FILE)"
                    )
                self._species_vectors = array.astype(np.float32, copy=False)
        return self._species_vectors

    def set_species(
        self,
        records: Sequence[Any],
        vectors: np.ndarray,
        forms: Sequence[Any],
        templates: str | Sequence[str],
        *,
        source: str | None = None,
    ) -> None:
        """Replace the species index: one record (SpeciesRecord, Species-like object or dict) per row of ``vectors``."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(records), self.dim):
            raise BirdbridgeError(
                f"species vectors have shape {list(vectors.shape)}; expected [{len(records)}, {self.dim}]"
            )
        if not np.all(np.isfinite(vectors)):
            raise BirdbridgeError("species vectors hold NaN or Inf values")
        entries = [_species_entry(r) for r in records]
        keys = [e["key"] for e in entries]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise BirdbridgeError(f"species {dup!r} appears twice in the species index")
        import io

        buffer = io.BytesIO()
        np.save(buffer, vectors)
        data = buffer.getvalue()
        info = {
            "format": SPECIES_FORMAT,
            "version": 1,
            "teacher_fingerprint": self._meta["teacher"]["fingerprint"],
            "count": len(entries),
            "dim": self.dim,
            "forms": [str(getattr(f, "value", f)) for f in forms],
            "templates": templates if isinstance(templates, str) else list(templates),
            "source": source,
            "created": now_iso(),
            "vectors_sha256": hashlib.sha256(data).hexdigest(),
            "species": entries,
        }
        with self.write_lock():
            with atomic_path(self.folder / SPECIES_NPY) as tmp, open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            write_json_durable(self.folder / SPECIES_JSON, info)
        self._species_cache = self._species_vectors = None

    def search_species(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the species index: ``(scores [Q, k] float32, species indices [Q, k] int64)``, padded."""
        q = self._check_queries(queries)
        k = _check_k(k)
        scores = q @ self.species_vectors.T
        return _top_k_dense(scores, k)

    # ------------------------------------------------------------------------------ search

    def search(
        self, queries: np.ndarray, k: int, *, exact: bool | None = None, rows: np.ndarray | Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k gallery rows by inner product (= cosine: rows are unit vectors; queries are used as given).

        Returns ``(scores [Q, k] float32, rows [Q, k] int64)``, best first. Where fewer than ``k``
        rows exist (or match), the rest is padding: score ``-inf``, row ``-1``.

        ``exact=None`` uses the ANN index when it is up to date, else exact search; ``exact=True``
        always searches exactly; ``exact=False`` asks for the ANN but falls back to exact search when
        there is no up-to-date ANN (results are never stale). ``rows`` restricts the search to a
        subset of rows and is always exact. ANN results are re-scored exactly, so scores agree.
        """
        q = self._check_queries(queries)
        k = _check_k(k)
        if rows is None and exact is not True:
            ann = self._ann()
            if ann is not None:
                return self._search_ann(ann, q, k)
        return self._search_exact(q, k, rows)

    def _search_exact(
        self, q: np.ndarray, k: int, rows: np.ndarray | Sequence[int] | None, chunk_rows: int = SEARCH_CHUNK_ROWS
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        n_queries = q.shape[0]
        vectors = self._torch_view  # one snapshot: an append by another thread remaps, this stays valid
        subset = None if rows is None else self._check_rows(rows, len(vectors))
        total = len(vectors) if subset is None else len(subset)
        best_scores = torch.full((n_queries, k), -math.inf)
        best_rows = torch.full((n_queries, k), -1, dtype=torch.int64)
        if total == 0 or n_queries == 0:
            return best_scores.numpy(), best_rows.numpy()
        # bounded memory: at most chunk x D float32 rows and _MAX_SCORES scores at a time, whatever Q is
        chunk = max(1, min(int(chunk_rows), total, max(1024, _MAX_SCORES // n_queries)))
        buffer = torch.empty((chunk, self.dim), dtype=torch.float32)
        scores = torch.empty((chunk, n_queries), dtype=torch.float32)
        qt = torch.from_numpy(np.ascontiguousarray(q.T))
        for start in range(0, total, chunk):
            stop = min(start + chunk, total)
            n = stop - start
            source = vectors[start:stop] if subset is None else vectors[subset[start:stop]]
            buffer[:n].copy_(torch.from_numpy(source))  # float16 -> float32, several times faster than numpy
            part = scores[:n]
            torch.mm(buffer[:n], qt, out=part)
            top_scores, top_idx = torch.topk(part.T, min(k, n), dim=1)
            top_rows = top_idx + start if subset is None else torch.from_numpy(subset[start:stop])[top_idx]
            merged_scores = torch.cat([best_scores, top_scores], dim=1)
            merged_rows = torch.cat([best_rows, top_rows], dim=1)
            best_scores, order = torch.topk(merged_scores, k, dim=1)
            best_rows = torch.gather(merged_rows, 1, order)
        # topk ranks NaN first, so one damaged row anywhere surfaces here: a cheap check of Q x k scores
        self._check_scores(best_scores.numpy(), best_rows.numpy())
        best_rows[torch.isinf(best_scores)] = -1
        return best_scores.numpy(), best_rows.numpy()

    def _search_ann(self, ann: Any, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        from birdbridge.gallery.ann import ann_candidates

        with self._ann_lock:  # one search at a time per index: usearch's thread contexts are not re-entrant
            candidates = ann_candidates(ann, q, k)
        return self._rescore(q, candidates, k)

    def _rescore(self, q: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of candidate rows (``-1`` = none), sorted best first and padded to ``k``."""
        n_queries = q.shape[0]
        scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
        valid = candidates >= 0
        vectors = self._vectors
        if valid.any():
            flat = candidates[valid]
            order = np.argsort(flat, kind="stable")  # read the memmap in row order
            vecs = np.empty((len(flat), self.dim), dtype=np.float32)
            vecs[order] = vectors[flat[order]]
            which = np.nonzero(valid)[0]
            scores[valid] = np.einsum("ij,ij->i", vecs, q[which])
            self._check_scores(scores[valid], flat)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out_scores = np.take_along_axis(scores, order, axis=1)
        out_rows = np.take_along_axis(candidates, order, axis=1)
        if out_scores.shape[1] < k:
            pad = k - out_scores.shape[1]
            out_scores = np.concatenate([out_scores, np.full((n_queries, pad), -np.inf, np.float32)], axis=1)
            out_rows = np.concatenate([out_rows, np.full((n_queries, pad), -1, np.int64)], axis=1)
        out_rows[np.isinf(out_scores)] = -1
        return out_scores.astype(np.float32), out_rows.astype(np.int64)

    def _check_scores(self, scores: np.ndarray, rows: np.ndarray) -> None:
        """Scores of unit vectors lie in [-1, 1]; NaN or +Inf means rows of ``vectors.f16`` are damaged."""
        bad = np.isnan(scores) | np.isposinf(scores)
        if bad.any():
            raise self._damaged(f"{VECTORS_FILE} holds values that are not finite numbers (NaN or Inf), e.g. in row "
                                f"{int(rows[bad][0])}")

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise BirdbridgeError(
                f"queries have shape {list(np.shape(queries))}, but gallery {self.folder} holds {self.dim}-d "
                f"embeddings of teacher {self._meta['teacher']['name']!r}; embed the queries into that teacher's space"
            )
        q = np.ascontiguousarray(q, dtype=np.float32)
        if not np.all(np.isfinite(q)):
            raise BirdbridgeError("queries hold NaN or Inf values")
        return q

    def _check_rows(self, rows: np.ndarray | Sequence[int], n: int) -> np.ndarray:
        subset = np.unique(np.asarray(rows, dtype=np.int64).reshape(-1))
        if len(subset) and (subset[0] < 0 or subset[-1] >= n):
            bad = subset[0] if subset[0] < 0 else subset[-1]
            raise IndexError(f"row {int(bad)} is not in gallery {self.folder} ({n} rows)")
        return subset

    # ------------------------------------------------------------------------------ ANN

    def ann_status(self) -> dict[str, Any]:
        """The ANN index: ``exists``, ``up_to_date``, ``rows`` (indexed), ``count``, ``settings``, ``size_bytes``."""
        entry = self._meta.get("ann") or None
        path = self.folder / (entry["file"] if entry else ANN_FILE)
        exists = entry is not None and path.is_file()
        rows = int(entry["count"]) if exists else 0
        names = ("connectivity", "expansion_add", "expansion_search")
        settings = {k: entry[k] for k in names if k in entry} if exists else {}
        return {
            "exists": exists,
            "up_to_date": exists and rows == len(self),
            "rows": rows,
            "count": len(self),
            "settings": settings,
            "built": entry.get("built") if exists else None,
            "size_bytes": path.stat().st_size if exists else 0,
        }

    def _ann(self) -> Any | None:
        """The loaded (memory-mapped) ANN index if it is up to date, else None."""
        status = self.ann_status()
        if not status["up_to_date"] or status["rows"] == 0:
            return None
        entry = self._meta["ann"]
        cached = self._ann_cache
        if cached is not None and cached[0] == entry:
            return cached[1]
        try:
            from birdbridge.gallery.ann import load_ann

            index = load_ann(self.folder / entry["file"], entry)
        except BirdbridgeError as exc:
            log.warning("%s; searching exactly", exc)
            return None
        self._ann_cache = (dict(entry), index)
        return index

    def set_ann(self, entry: Mapping[str, Any] | None) -> None:
        """Record the ANN index in ``gallery.json`` (``None`` forgets it); used by :mod:`birdbridge.gallery.ann`."""
        with self.write_lock():
            meta = self._reload_meta()
            meta["ann"] = dict(entry) if entry is not None else None
            self._save_meta(meta)
        self._ann_cache = None

    # ------------------------------------------------------------------------------ writing

    def append(self, vectors: np.ndarray, records: Sequence[Mapping[str, Any]], *, skip_existing: bool = False) -> int:
        """Append ``[n, D]`` embeddings (L2-normalised on the way in, stored as float16) and their records.

        A record is a dict with ``id`` and ``species`` (required) and ``path, split, source, licence,
        photographer, meta`` (optional). An id already in the gallery or repeated in the batch is
        refused, naming it; with ``skip_existing`` ids already in the gallery are skipped instead.
        Returns the number of rows added. Crash-safe: vectors (fsynced), then records (one
        transaction), then ``count`` in ``gallery.json`` (atomic).
        """
        arr = np.asarray(vectors)
        if arr.ndim != 2 or arr.shape[1] != self.dim or arr.shape[0] != len(records):
            raise BirdbridgeError(
                f"append needs [{len(records)}, {self.dim}] vectors for {len(records)} records, got {list(arr.shape)}"
            )
        rows = [_record_values(r, i) for i, r in enumerate(records)]
        ids = [r[0] for r in rows]
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        if repeated:
            raise BirdbridgeError(f"image ids repeated in one append: {_show(repeated)}")
        unit = l2_normalize(arr, names=ids, what="image embeddings")
        with self.write_lock():
            meta = self._reload_meta()
            count = int(meta["count"])
            self._repair_locked(count)
            present = self.existing(ids) if count else {}
            if present:
                if not skip_existing:
                    raise BirdbridgeError(
                        f"{len(present)} image id(s) already in gallery {self.folder}: {_show(sorted(present))}"
                    )
                keep = [i for i, image_id in enumerate(ids) if image_id not in present]
                rows = [rows[i] for i in keep]
                unit = unit[keep]
            if not rows:
                return 0
            data = np.ascontiguousarray(unit.astype("<f2")).tobytes()
            with open(self.folder / VECTORS_FILE, "r+b") as fh:
                fh.seek(count * self.dim * 2)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            with self._db_lock, self._sqlite_errors():
                conn = self._db()
                with conn:
                    conn.executemany(
                        "INSERT INTO images (row, id, path, species, split, source, licence, photographer, meta) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(count + i, *values) for i, values in enumerate(rows)],
                    )
            meta["count"] = count + len(rows)
            self._save_meta(meta)
        return len(rows)

    def update_meta(self, **fields: Any) -> None:
        """Set top-level fields of ``gallery.json`` other than the managed ones (e.g. ``build``)."""
        managed = {"format", "version", "teacher", "dim", "count", "created", "ann"}
        if managed & fields.keys():
            raise BirdbridgeError(f"cannot set {sorted(managed & fields.keys())} directly")
        with self.write_lock():
            meta = self._reload_meta()
            meta.update(fields)
            self._save_meta(meta)

    # ------------------------------------------------------------------------------ internals

    def _map(self) -> None:
        n, dim = len(self), self.dim
        path = self.folder / VECTORS_FILE
        if n == 0:
            self._vectors = self._torch_view = np.zeros((0, dim), np.float16)
            return
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise self._damaged(f"cannot read {VECTORS_FILE} ({exc})") from None
        if size < n * dim * 2:
            raise self._damaged(f"{VECTORS_FILE} holds {size // (dim * 2):,} rows but {META_FILE} says {n:,}")
        self._vectors = np.memmap(path, dtype="<f2", mode="r", shape=(n, dim))
        # A copy-on-write map of the same pages (never written): torch wants writable arrays.
        self._torch_view = np.memmap(path, dtype="<f2", mode="c", shape=(n, dim))

    def _db(self) -> sqlite3.Connection:
        with self._db_lock:
            if self._conn is None:
                path = self.folder / DB_FILE
                if not path.is_file():
                    raise self._damaged(f"{DB_FILE} is missing")
                with self._sqlite_errors():
                    if os.access(self.folder, os.W_OK) and os.access(path, os.W_OK):
                        self._conn = sqlite3.connect(path, timeout=60, check_same_thread=False)
                    else:
                        self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60,
                                                     check_same_thread=False)
            return self._conn

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._db_lock, self._sqlite_errors():
            return self._db().execute(sql, list(args)).fetchall()

    @contextlib.contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """Every sqlite3 error becomes a BirdbridgeError naming the gallery, the problem and what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise BirdbridgeError(f"gallery {self.folder}: {DB_FILE} is locked by another process ({text}); try "
                                      "again when that process has finished") from exc
            if "full" in text:
                raise BirdbridgeError(f"gallery {self.folder}: cannot write {DB_FILE} ({text}); free some disk space "
                                      "and run the command again") from exc
            raise self._damaged(f"{DB_FILE} is not a readable database ({text})") from exc

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the gallery's exclusive writer lock (re-entrant within this object)."""
        with self._write_lock:
            if self._write_depth == 0:
                self._lock_fd = _acquire_lock(self.folder, blocking=True)
            self._write_depth += 1
            try:
                yield
            finally:
                self._write_depth -= 1
                if self._write_depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    def _reload_meta(self) -> dict[str, Any]:
        """Re-read ``gallery.json`` (under the writer lock) and remap if another process appended."""
        meta = read_meta(self.folder)
        if meta != self._meta:
            self._meta = meta
            self._map()
        return meta

    def _save_meta(self, meta: dict[str, Any]) -> None:
        meta["updated"] = now_iso()
        write_json_durable(self.folder / META_FILE, meta)
        self._meta = meta
        self._map()

    def _try_repair(self) -> None:
        """Drop uncommitted vector bytes and records, if we can write and no writer is at work."""
        if not os.access(self.folder, os.W_OK):
            return
        try:
            fd = _acquire_lock(self.folder, blocking=False)
        except OSError:
            return
        if fd is None:
            return
        try:
            meta = self._reload_meta()
            self._repair_locked(int(meta["count"]))
            _remove_stale_temporaries(self.folder)
        finally:
            os.close(fd)

    def _repair_locked(self, count: int) -> None:
        path = self.folder / VECTORS_FILE
        want = count * self.dim * 2
        size = path.stat().st_size if path.exists() else -1
        if size < want:
            held = max(size, 0) // (self.dim * 2)
            raise self._damaged(f"{VECTORS_FILE} holds {held:,} rows but {META_FILE} says {count:,}")
        if size > want:
            log.info("%s: dropping %d bytes of uncommitted vectors", path, size - want)
            with open(path, "r+b") as fh:
                fh.truncate(want)
                os.fsync(fh.fileno())
        with self._db_lock, self._sqlite_errors():
            conn = self._db()
            last = conn.execute("SELECT MAX(row) FROM images").fetchone()[0]
            if last is not None and last >= count:
                with conn:
                    conn.execute("DELETE FROM images WHERE row >= ?", [count])
                last = conn.execute("SELECT MAX(row) FROM images").fetchone()[0]
        if count and (last is None or last != count - 1):
            raise self._damaged(f"{DB_FILE} has records up to row {last}, but {META_FILE} says {count:,} rows")

    def _load_species(self) -> tuple[list[SpeciesRecord], dict[str, Any]]:
        if self._species_cache is None:
            path = self.folder / SPECIES_JSON
            if not path.is_file():
                self._species_cache = ([], {})
            else:
                try:
                    info = json.loads(path.read_text(encoding="utf-8"))
                    entries = info["species"]
                    records = [
                        SpeciesRecord(i, e["key"], e["scientific_name"], e.get("common_name"), e.get("code"),
                                      bool(e.get("has_images")), tuple(e.get("taxonomy") or ()))
                        for i, e in enumerate(entries)
                    ]
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise self._damaged(f"{SPECIES_JSON} is unreadable ({exc})") from None
                if info.get("teacher_fingerprint") != self._meta["teacher"]["fingerprint"]:
                    raise BirdbridgeError(
                        f"{path}: the species index was made with another teacher than the images; rebuild it with "
                        f"`birdbridge gallery species {self.folder} --from-gallery`"
                    )
                header = {k: v for k, v in info.items() if k != "species"}
                self._species_cache = (records, header)
        return self._species_cache

    def _damaged(self, problem: str) -> BirdbridgeError:
        return BirdbridgeError(
            f"gallery {self.folder} is damaged: {problem}. Rebuild it with `birdbridge index` into a new folder."
        )


# ---------------------------------------------------------------------------------------- helpers


def read_meta(folder: Path) -> dict[str, Any]:
    """``gallery.json`` of ``folder``, checked; errors say what the folder is and what to do."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        what = "does not exist" if not Path(folder).exists() else f"is not a gallery (no {META_FILE})"
        raise InputError(str(folder), what, "build a gallery with `birdbridge index --images ... --output FOLDER`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise InputError(str(path), f"not a birdbridge gallery (format {found!r})")
    if int(meta.get("version", 0)) > VERSION:
        raise InputError(str(path), f"gallery format version {meta['version']} is newer than this birdbridge "
                         f"reads ({VERSION})", "upgrade birdbridge")
    for name in ("teacher", "dim", "count"):
        if name not in meta:
            raise InputError(str(path), f"missing field {name!r}")
    return meta


def _acquire_lock(folder: Path, *, blocking: bool) -> int | None:
    """An fd holding an exclusive flock on ``folder/.lock``; None if not blocking and another writer has it."""
    fd = os.open(Path(folder) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    if fcntl is None:  # pragma: no cover
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _writer_at_work(folder: Path) -> bool:
    """Whether another process holds the writer lock of ``folder`` now."""
    try:
        fd = _acquire_lock(folder, blocking=False)
    except OSError:  # a read-only gallery: nobody writes to it
        return False
    if fd is None:
        return True
    os.close(fd)
    return False


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files of atomic writes killed half-way (``.NAME.XXXX.tmp``)."""
    for path in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()


def _as_teacher_dict(teacher: Mapping[str, Any] | Any) -> dict[str, Any]:
    if isinstance(teacher, Mapping):
        return dict(teacher)
    return {"name": getattr(teacher, "name", None), "fingerprint": getattr(teacher, "fingerprint", None)}


def _record(values: tuple) -> ImageRecord:
    row, image_id, path, species, split, source, licence, photographer, meta = values
    return ImageRecord(int(row), image_id, path, species, split, source, licence, photographer,
                       json.loads(meta) if meta else {})


def _record_values(record: Mapping[str, Any], position: int) -> tuple:
    """The SQL values (without the row) of one record dict; raises naming the record."""
    if not isinstance(record, Mapping):
        raise BirdbridgeError(f"record {position} is a {type(record).__name__}, expected a dict")
    unknown = set(record) - set(_RECORD_FIELDS)
    if unknown:
        known = ", ".join(_RECORD_FIELDS)
        raise BirdbridgeError(f"record {position} has unknown fields {sorted(unknown)}; known: {known}")
    image_id, species = optional_text(record.get("id")), optional_text(record.get("species"))
    if image_id is None or species is None:
        raise BirdbridgeError(f"record {position} needs an 'id' and a 'species', got {dict(record)}")
    path = record.get("path")
    meta = record.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise BirdbridgeError(f"record {image_id!r}: 'meta' must be a dict, got {type(meta).__name__}")
    try:
        meta_text = json.dumps(dict(meta), ensure_ascii=False, default=_json_default) if meta else None
    except (TypeError, ValueError) as exc:
        raise BirdbridgeError(f"record {image_id!r}: 'meta' is not JSON-serialisable ({exc})") from None
    return (image_id, None if path is None else str(path), species,
            *(optional_text(record.get(k)) for k in ("split", "source", "licence", "photographer")), meta_text)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (datetime,)):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        return obj.hex()
    return str(obj)


def _species_entry(record: Any) -> dict[str, Any]:
    get = record.get if isinstance(record, Mapping) else lambda name, default=None: getattr(record, name, default)
    key = get("key")
    scientific = get("scientific_name") or key
    if not key or not scientific:
        raise BirdbridgeError(f"species record without a key: {record!r}")
    taxonomy = get("taxonomy") or get("taxonomy_path") or ()
    return {"key": str(key), "scientific_name": str(scientific), "common_name": get("common_name") or None,
            "code": get("code") or None, "taxonomy": [str(t) for t in taxonomy],
            "has_images": bool(get("has_images", False))}


def _check_k(k: int) -> int:
    k = int(k)
    if k < 1:
        raise BirdbridgeError(f"k must be at least 1, got {k}")
    return k


def _top_k_dense(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-first top-k of each row of ``scores``, padded with ``-inf``/``-1``."""
    n_queries, n = scores.shape
    out_scores = np.full((n_queries, k), -np.inf, np.float32)
    out_idx = np.full((n_queries, k), -1, np.int64)
    if n == 0:
        return out_scores, out_idx
    m = min(k, n)
    part = np.argpartition(-scores, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (n_queries, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    out_scores[:, :m] = np.take_along_axis(part_scores, order, axis=1)
    out_idx[:, :m] = np.take_along_axis(part, order, axis=1)
    return out_scores, out_idx


def _show(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
