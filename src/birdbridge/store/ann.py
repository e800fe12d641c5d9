"""Approximate nearest-neighbour search: a usearch HNSW index (inner product) over a store's rows.

The index lives in ``STORE/ann.usearch``; its engine, settings and how many rows it covers are recorded
in the store's JSON meta file under ``"ann"``. Keys are row numbers. It is built on request or
automatically once a store reaches :data:`ANN_THRESHOLD` rows. It is never stale: an index that covers
fewer rows than the store holds is not used (searches are exact) until :func:`build_ann` brings it up to
date, adding only the new rows to the existing graph (``rebuild``, or other build settings, start from
scratch). An index whose file does not match its entry (rows, dimension, dtype) is not used either.
Searches load it as a memory-mapped view and re-score its candidates exactly from the float16 rows.

Settings (``benchmarks/bench_ann.py``, README): int8 storage and ``expansion_add`` 40 build about five
times cheaper at 100,000 rows, but at 1,000,000 clustered rows their recall@10 fell to 0.67-0.83, so the
defaults stay float16 and 128 (recall@10 0.98 at 1,000,000).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.store.kind import ANN_FILE, StoreKind
from birdbridge.utils.atomic import atomic_path, fsync_path
from birdbridge.utils.clock import now_iso

log = logging.getLogger(__name__)

#: Stores with at least this many rows get an ANN index automatically when built or added to.
ANN_THRESHOLD = 200_000
#: Rows added to the graph per step (bounds the memory of a build).
BUILD_CHUNK_ROWS = 65_536
#: The engine recorded in the meta entry; an entry of another engine is rebuilt, never read as this one.
ENGINE = "usearch"
#: Storage types of the index's vectors (the store keeps float16 rows; the index may quantise them).
DTYPES = ("i8", "f16", "bf16", "f32")
#: Candidates asked of an index per result wanted, by dtype, before exact re-scoring: quantised scores
#: misorder near ties, the exact scores put them right.
OVERSAMPLE = {"i8": 2}


@dataclass(frozen=True)
class AnnSettings:
    """HNSW settings: ``connectivity`` (M), ``expansion_add`` (efConstruction) and ``dtype`` (how the index stores
    vectors) are fixed at build time; ``expansion_search`` (ef) can be changed with ``birdbridge gallery ann
    --expansion-search``. The defaults: see ``benchmarks/bench_ann.py`` and the README."""

    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 128  # recall@10 0.98 at 1M × 768 clustered vectors, p50 2 ms (bench_gallery.py)
    dtype: str = "f16"

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name != "dtype" and int(value) < 1:
                raise BirdbridgeError(f"ANN {name} must be at least 1, got {value}")
        if self.dtype not in DTYPES:
            raise BirdbridgeError(f"ANN dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any] | None, **given: int | str | None) -> AnnSettings:
        """The settings given (not None); the others those of the index ``entry`` describes, else the defaults.
        An entry of another engine lends nothing."""
        if entry and entry.get("engine", ENGINE) != ENGINE:
            entry = None
        kinds = {f.name: str if f.name == "dtype" else int for f in fields(cls)}
        current = {name: kinds[name](entry[name]) for name in kinds if entry and name in entry}
        return cls(**{**current, **{name: kinds[name](v) for name, v in given.items() if v is not None}})

    def builds_like(self, entry: Mapping[str, Any] | None) -> bool:
        """Whether the index ``entry`` describes was built as these settings would build it (so rows may be added)."""
        return bool(entry) and entry.get("engine", ENGINE) == ENGINE and entry.get("dtype", "f16") == self.dtype \
            and int(entry.get("connectivity", -1)) == self.connectivity


class AnnTarget(Protocol):
    """What building an ANN index needs of a store."""

    folder: Path
    kind: StoreKind

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    @property
    def vectors(self) -> np.ndarray: ...

    @property
    def meta(self) -> dict[str, Any]: ...

    def write_lock(self) -> contextlib.AbstractContextManager[None]: ...

    def set_ann(self, entry: Mapping[str, Any] | None) -> None: ...


def _usearch():
    try:
        from usearch.index import Index
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise BirdbridgeError("the ANN index needs the usearch package: pip install usearch") from exc
    return Index


def build_ann(
    store: AnnTarget,
    *,
    rebuild: bool = False,
    settings: AnnSettings | None = None,
    threads: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Build (or bring up to date) the store's ANN index; returns its meta-file entry.

    ``settings`` default to those of the current index (:meth:`AnnSettings.from_entry`). An existing
    index built alike (engine, dtype, connectivity: :meth:`AnnSettings.builds_like`) gets only the rows it
    lacks (unless ``rebuild``); other settings build it from scratch. ``threads=0`` uses every core. The
    file is written atomically, then recorded in the meta file; a kill in between leaves a file that covers
    more rows than its entry says, which is not searched, and the next build adds only the rows it lacks.
    The entry's ``added_rows`` says how many rows this build added.
    """
    from birdbridge.utils.progress import progress_bar

    Index = _usearch()
    n = len(store)
    if n == 0:
        raise BirdbridgeError(f"{store.kind.noun} {store.folder} has no {store.kind.item}s to index")
    current = store.meta.get("ann") or None
    if settings is None:
        settings = AnnSettings.from_entry(current)
    path = store.folder / ANN_FILE
    index, start = None, 0
    if not rebuild and current and path.is_file() and settings.builds_like(current):
        done = int(current["count"])
        if done == n:  # up to date: at most the search depth changes
            if int(current.get("expansion_search", -1)) != settings.expansion_search:
                return set_expansion_search(store, settings.expansion_search)
            return dict(current)
        index = _resumable(Index, path, done, n, store.dim, settings.dtype)
        start = len(index) if index is not None else 0
    if index is None:
        if current and not rebuild and path.is_file():
            log.info("%s: building the ANN index afresh (%s)", store.folder, _why_afresh(current, settings))
        index = Index(ndim=store.dim, metric="ip", dtype=settings.dtype, connectivity=settings.connectivity,
                      expansion_add=settings.expansion_add, expansion_search=settings.expansion_search)
    index.expansion_add = settings.expansion_add
    began = time.perf_counter()
    vectors = store.vectors
    with progress_bar("Building ANN index", n, progress, completed=start) as bar:
        for lo in range(start, n, BUILD_CHUNK_ROWS):
            hi = min(lo + BUILD_CHUNK_ROWS, n)
            index.add(np.arange(lo, hi, dtype=np.uint64), np.ascontiguousarray(vectors[lo:hi]), threads=threads)
            bar.advance(hi - lo)
    entry = {
        "engine": ENGINE,
        "file": ANN_FILE,
        "count": n,
        "metric": "ip",
        "dtype": settings.dtype,
        "connectivity": settings.connectivity,
        "expansion_add": settings.expansion_add,
        "expansion_search": settings.expansion_search,
        "built": now_iso(),
        "build_seconds": round(time.perf_counter() - began, 2),
        "added_rows": n - start,
        "library": f"usearch {_version()}",
    }
    with store.write_lock():  # the file and its entry change together for other writers
        with atomic_path(path) as tmp:
            index.save(str(tmp))
            fsync_path(tmp)
        store.set_ann(entry)
    return entry


def _resumable(Index: Any, path: Path, done: int, n: int, dim: int, dtype: str) -> Any | None:
    """The index in ``path`` to add rows to, if it holds rows ``0 .. m-1`` for ``done <= m <= n`` (``m > done``: a
    build killed after saving its file, before recording it), ``dim`` wide, of ``dtype``; else None."""
    try:
        loaded = Index.restore(str(path), view=False)
    except Exception:  # unreadable: build afresh
        return None
    if loaded is None or loaded.ndim != dim or _dtype(loaded) != dtype:
        return None
    m = len(loaded)
    if not done <= m <= n or (m and not (loaded.contains(0) and loaded.contains(m - 1))):
        return None
    return loaded


def _why_afresh(entry: Mapping[str, Any], settings: AnnSettings) -> str:
    if not settings.builds_like(entry):
        return (f"{entry.get('engine', ENGINE)} {entry.get('dtype', 'f16')}, connectivity {entry.get('connectivity')} "
                f"-> {ENGINE} {settings.dtype}, connectivity {settings.connectivity}")
    return "the index file does not match its entry"


def _dtype(index: Any) -> str:
    """``"i8"``, ``"f16"``, ... of a usearch index."""
    return str(index.dtype).rsplit(".", 1)[-1].lower()


def set_expansion_search(store: AnnTarget, expansion_search: int) -> dict[str, Any]:
    """Change the search depth recorded for the store's ANN index (no rebuild)."""
    current = store.meta.get("ann")
    if not current:
        raise BirdbridgeError(f"{store.kind.noun} {store.folder} has no ANN index; build one with "
                              f"`{store.kind.ann_command}`")
    AnnSettings(expansion_search=expansion_search)
    entry = {**current, "expansion_search": int(expansion_search)}
    store.set_ann(entry)
    return entry


def ann_status(folder: Path, entry: Mapping[str, Any] | None, count: int) -> dict[str, Any]:
    """The ANN index of a store of ``count`` rows: ``exists``, ``up_to_date``, ``rows`` (indexed), ``count``,
    ``settings``, ``built``, ``size_bytes``."""
    path = folder / (entry["file"] if entry else ANN_FILE)
    exists = bool(entry) and path.is_file()
    rows = int(entry["count"]) if exists else 0
    names = ("connectivity", "expansion_add", "expansion_search", "dtype", "engine")
    return {
        "exists": exists,
        "up_to_date": exists and rows == count,
        "rows": rows,
        "count": count,
        "settings": {k: entry[k] for k in names if k in entry} if exists else {},
        "built": entry.get("built") if exists else None,
        "size_bytes": path.stat().st_size if exists else 0,
    }


def load_ann(path: str | Path, entry: Mapping[str, Any], meta_file: str = "the meta file"):
    """The index in ``path`` as a memory-mapped view, checked against its ``meta_file`` entry (engine, rows,
    dtype): a mismatch is an error, never a search of the wrong index."""
    Index = _usearch()
    engine = entry.get("engine", ENGINE)
    if engine != ENGINE:
        raise BirdbridgeError(f"{path}: an ANN index of {engine}, which this birdbridge does not read; build it "
                              "again with --rebuild")
    try:
        index = Index.restore(str(path), view=True)
    except Exception as exc:
        raise BirdbridgeError(f"{path}: unreadable ANN index ({exc})") from None
    if index is None or len(index) != int(entry["count"]):
        raise BirdbridgeError(f"{path}: ANN index does not match {meta_file} (an interrupted build?)")
    if _dtype(index) != entry.get("dtype", "f16"):
        raise BirdbridgeError(f"{path}: ANN index stores {_dtype(index)}, but {meta_file} says "
                              f"{entry.get('dtype', 'f16')}; build it again with --rebuild")
    index.expansion_search = int(entry.get("expansion_search", AnnSettings.expansion_search))
    return index


def ann_candidates(index: Any, queries: np.ndarray, k: int) -> np.ndarray:
    """``[Q, k × oversampling]`` int64 candidate rows from the ANN index (``-1`` where it found fewer), for
    :func:`birdbridge.store.search.rescore` (see :data:`OVERSAMPLE`)."""
    n_queries = queries.shape[0]
    k = k * OVERSAMPLE.get(_dtype(index), 1)
    out = np.full((n_queries, k), -1, dtype=np.int64)
    matches = index.search(queries, k, threads=0 if n_queries > 1 else 1)
    keys = np.asarray(matches.keys).reshape(n_queries, -1)
    counts = np.asarray(getattr(matches, "counts", [keys.shape[1]])).reshape(-1)
    for i in range(n_queries):
        c = min(int(counts[i]), k, keys.shape[1])
        out[i, :c] = keys[i, :c].astype(np.int64)
    return out


class AnnSlot:
    """The loaded ANN index of one store folder: used only while it covers every row, reloaded when its entry
    changes, searched by one thread at a time (usearch's thread contexts are not re-entrant)."""

    def __init__(self, folder: Path, meta_file: str) -> None:
        self.folder = folder
        self.meta_file = meta_file
        self._cached: tuple[dict[str, Any], Any] | None = None
        self._lock = threading.Lock()

    def index(self, entry: Mapping[str, Any] | None, count: int) -> Any | None:
        """The index ``entry`` describes if it is up to date with ``count`` rows, else None (a broken file is
        logged and searched around)."""
        status = ann_status(self.folder, entry, count)
        if not status["up_to_date"] or status["rows"] == 0:
            return None
        cached = self._cached
        if cached is not None and cached[0] == entry:
            return cached[1]
        try:
            index = load_ann(self.folder / entry["file"], entry, self.meta_file)
        except BirdbridgeError as exc:
            log.warning("%s; searching exactly", exc)
            return None
        self._cached = (dict(entry), index)
        return index

    def candidates(self, entry: Mapping[str, Any] | None, count: int, queries: np.ndarray, k: int) -> np.ndarray | None:
        """:func:`ann_candidates` of the up-to-date index, or None when there is none."""
        index = self.index(entry, count)
        if index is None:
            return None
        with self._lock:
            return ann_candidates(index, queries, k)

    def forget(self) -> None:
        self._cached = None


def _version() -> str:
    try:
        import usearch

        return str(usearch.__version__)
    except Exception:  # pragma: no cover
        return "?"


__all__ = [
    "ANN_THRESHOLD", "AnnSettings", "AnnSlot", "AnnTarget", "ann_candidates", "ann_status", "build_ann", "load_ann",
    "set_expansion_search",
]
