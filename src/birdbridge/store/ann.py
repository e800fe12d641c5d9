"""Approximate nearest-neighbour search: a usearch HNSW index (inner product, float16) over a store's rows.

The index lives in ``STORE/ann.usearch``; its settings and how many rows it covers are recorded in the
store's JSON meta file under ``"ann"``. Keys are row numbers. It is built on request or automatically
once a store reaches :data:`ANN_THRESHOLD` rows. It is never stale: an index that covers fewer rows
than the store holds is not used (searches are exact) until :func:`build_ann` brings it up to date,
adding only the new rows to the existing graph (``rebuild`` starts from scratch). Searches load it as a
memory-mapped view.
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


@dataclass(frozen=True)
class AnnSettings:
    """HNSW settings: ``connectivity`` (M) and ``expansion_add`` (efConstruction) are fixed at build time;
    ``expansion_search`` (ef) can be changed with ``birdbridge gallery ann --expansion-search``."""

    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 128  # recall@10 0.98 at 1M × 768 clustered vectors, p50 2 ms (bench_gallery.py)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if int(value) < 1:
                raise BirdbridgeError(f"ANN {name} must be at least 1, got {value}")

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any] | None, **given: int | None) -> AnnSettings:
        """The settings given (not None); the others those of the index ``entry`` describes, else the defaults."""
        current = {f.name: int(entry[f.name]) for f in fields(cls) if entry and f.name in entry}
        return cls(**{**current, **{name: int(v) for name, v in given.items() if v is not None}})


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
    index with the same connectivity gets only the rows it lacks (unless ``rebuild``); another
    connectivity builds it from scratch. ``threads=0`` uses every core. The file is written
    atomically, then recorded in the meta file.
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
    if not rebuild and current and path.is_file() and int(current.get("connectivity", -1)) == settings.connectivity:
        done = int(current["count"])
        if done == n:  # up to date: at most the search depth changes
            if int(current.get("expansion_search", -1)) != settings.expansion_search:
                return set_expansion_search(store, settings.expansion_search)
            return dict(current)
        if done <= n:
            try:
                loaded = Index.restore(str(path), view=False)
            except Exception:  # unreadable: build afresh
                loaded = None
            if loaded is not None and len(loaded) == done and loaded.ndim == store.dim:
                index, start = loaded, done
    if index is None:
        index = Index(ndim=store.dim, metric="ip", dtype="f16", connectivity=settings.connectivity,
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
        "file": ANN_FILE,
        "count": n,
        "metric": "ip",
        "dtype": "f16",
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
    names = ("connectivity", "expansion_add", "expansion_search")
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
    """The index in ``path`` as a memory-mapped view, checked against its ``meta_file`` entry."""
    Index = _usearch()
    try:
        index = Index.restore(str(path), view=True)
    except Exception as exc:
        raise BirdbridgeError(f"{path}: unreadable ANN index ({exc})") from None
    if index is None or len(index) != int(entry["count"]):
        raise BirdbridgeError(f"{path}: ANN index does not match {meta_file} (an interrupted build?)")
    index.expansion_search = int(entry.get("expansion_search", AnnSettings.expansion_search))
    return index


def ann_candidates(index: Any, queries: np.ndarray, k: int) -> np.ndarray:
    """``[Q, k]`` int64 candidate rows from the ANN index (``-1`` where it found fewer)."""
    n_queries = queries.shape[0]
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
