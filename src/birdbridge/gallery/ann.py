"""Approximate nearest-neighbour search: a usearch HNSW index (inner product, float16) over the gallery rows.

The index lives in ``GALLERY/ann.usearch``; its settings and how many rows it covers are recorded in
``gallery.json`` under ``"ann"``. It is built on request or automatically once a gallery reaches
:data:`ANN_THRESHOLD` rows. Rows appended later make it stale: searches are exact until it is brought
up to date (new rows are added to the existing graph; ``rebuild`` starts from scratch). Keys are row
numbers. Searches load it as a memory-mapped view.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.gallery.store import ANN_FILE, fsync_file, now_iso
from birdbridge.utils.atomic import atomic_path
from birdbridge.utils.progress import progress_bar

if TYPE_CHECKING:
    from birdbridge.gallery.store import Gallery

#: Galleries with at least this many rows get an ANN index automatically when built or added to.
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


def _usearch():
    try:
        from usearch.index import Index
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise BirdbridgeError("the ANN index needs the usearch package: pip install usearch") from exc
    return Index


def build_ann(
    gallery: Gallery,
    *,
    rebuild: bool = False,
    settings: AnnSettings | None = None,
    threads: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Build (or bring up to date) the gallery's ANN index; returns its ``gallery.json`` entry.

    Without ``rebuild``, an existing index with the same connectivity gets only the rows it lacks.
    ``threads=0`` uses every core. The file is written atomically, then recorded in ``gallery.json``.
    """
    Index = _usearch()
    n = len(gallery)
    if n == 0:
        raise BirdbridgeError(f"gallery {gallery.folder} has no images to index")
    current = gallery.meta.get("ann") or None
    if settings is None:
        settings = AnnSettings(**{k: current[k] for k in ("connectivity", "expansion_add", "expansion_search")}) \
            if current else AnnSettings()
    path = gallery.folder / ANN_FILE
    index, start = None, 0
    if not rebuild and current and path.is_file() and int(current.get("connectivity", -1)) == settings.connectivity:
        done = int(current["count"])
        if done == n:  # up to date: at most the search depth changes
            if int(current.get("expansion_search", -1)) != settings.expansion_search:
                return set_expansion_search(gallery, settings.expansion_search)
            return dict(current)
        if done <= n:
            try:
                loaded = Index.restore(str(path), view=False)
            except Exception:  # unreadable: build afresh
                loaded = None
            if loaded is not None and len(loaded) == done and loaded.ndim == gallery.dim:
                index, start = loaded, done
    if index is None:
        index = Index(ndim=gallery.dim, metric="ip", dtype="f16", connectivity=settings.connectivity,
                      expansion_add=settings.expansion_add, expansion_search=settings.expansion_search)
    index.expansion_add = settings.expansion_add
    began = time.perf_counter()
    vectors = gallery.vectors
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
    with gallery.write_lock():  # the file and its entry change together for other writers
        with atomic_path(path) as tmp:
            index.save(str(tmp))
            fsync_file(tmp)
        gallery.set_ann(entry)
    return entry


def set_expansion_search(gallery: Gallery, expansion_search: int) -> dict[str, Any]:
    """Change the search depth recorded for the gallery's ANN index (no rebuild)."""
    current = gallery.meta.get("ann")
    if not current:
        raise BirdbridgeError(f"gallery {gallery.folder} has no ANN index; build one with `birdbridge gallery ann`")
    AnnSettings(expansion_search=expansion_search)
    entry = {**current, "expansion_search": int(expansion_search)}
    gallery.set_ann(entry)
    return entry


def load_ann(path: str | os.PathLike[str], entry: dict[str, Any]):
    """The index in ``path`` as a memory-mapped view, checked against its ``gallery.json`` entry."""
    Index = _usearch()
    try:
        index = Index.restore(str(path), view=True)
    except Exception as exc:
        raise BirdbridgeError(f"{path}: unreadable ANN index ({exc})") from None
    if index is None or len(index) != int(entry["count"]):
        raise BirdbridgeError(f"{path}: ANN index does not match gallery.json (an interrupted build?)")
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


def _version() -> str:
    try:
        import usearch

        return str(usearch.__version__)
    except Exception:  # pragma: no cover
        return "?"


__all__ = ["ANN_THRESHOLD", "AnnSettings", "ann_candidates", "build_ann", "load_ann", "set_expansion_search"]
