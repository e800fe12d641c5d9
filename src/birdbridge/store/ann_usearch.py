"""The usearch engine of :mod:`birdbridge.store.ann`: an HNSW graph (inner product) in ``STORE/ann.usearch``.

Keys are row numbers. Searches open the file as a memory-mapped view. Settings: ``connectivity`` (M) and
``dtype`` are fixed at build time, ``expansion_add`` (efConstruction) applies to the rows being added,
``expansion_search`` (ef) to queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.store.kind import ANN_FILE

if TYPE_CHECKING:
    from birdbridge.store.ann import AnnSettings


def _index_class() -> Any:
    try:
        from usearch.index import Index
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise BirdbridgeError("the usearch ANN engine needs the usearch package: pip install usearch") from exc
    return Index


class UsearchEngine:
    """HNSW graphs by usearch (see the module doc)."""

    name = "usearch"
    file = ANN_FILE
    dtypes = ("i8", "f16", "bf16", "f32")
    #: Settings an index keeps from its build (rows are added only to an index built alike).
    build_keys = ("connectivity",)
    #: The setting of queries, changed without a rebuild.
    search_key = "expansion_search"
    #: Entry fields of this engine.
    keys = ("connectivity", "expansion_add", "expansion_search")

    def version(self) -> str:
        import usearch

        return f"usearch {usearch.__version__}"

    def new(self, dim: int, n: int, settings: AnnSettings, vectors: np.ndarray) -> tuple[Any, dict[str, Any]]:
        """An empty index and the entry fields it adds (none)."""
        index = _index_class()(ndim=dim, metric="ip", dtype=settings.dtype, connectivity=settings.connectivity,
                               expansion_add=settings.expansion_add, expansion_search=settings.expansion_search)
        return index, {}

    def restore(self, path: Path) -> Any | None:
        """The index in ``path`` to add rows to, or None when it cannot be read."""
        try:
            index = _index_class().restore(str(path), view=False)
        except Exception:
            return None
        if index is None:
            return None
        m = len(index)
        return index if not m or (index.contains(0) and index.contains(m - 1)) else None

    def prepare(self, index: Any, settings: AnnSettings) -> None:
        index.expansion_add = settings.expansion_add

    def add(self, index: Any, lo: int, vectors: np.ndarray, threads: int) -> None:
        index.add(np.arange(lo, lo + len(vectors), dtype=np.uint64), np.ascontiguousarray(vectors), threads=threads)

    def save(self, index: Any, path: Path) -> None:
        index.save(str(path))

    def open(self, path: Path) -> Any:
        """The index as a memory-mapped view (an unreadable file raises)."""
        index = _index_class().restore(str(path), view=True)
        if index is None:
            raise ValueError("not a usearch index")
        return index

    def shape(self, index: Any) -> tuple[int, int, str, dict[str, Any]]:
        """Rows, dimension, dtype and the build settings (:attr:`build_keys`) the index itself holds."""
        return len(index), index.ndim, str(index.dtype).rsplit(".", 1)[-1].lower(), {}

    def search(self, index: Any, queries: np.ndarray, k: int, entry: dict[str, Any]) -> np.ndarray:
        """``[Q, k]`` rows (``-1`` where fewer were found)."""
        index.expansion_search = int(entry.get("expansion_search", 128))
        n_queries = queries.shape[0]
        out = np.full((n_queries, k), -1, dtype=np.int64)
        matches = index.search(queries, k, threads=0 if n_queries > 1 else 1)
        keys = np.asarray(matches.keys).reshape(n_queries, -1)
        counts = np.asarray(getattr(matches, "counts", [keys.shape[1]])).reshape(-1)
        for i in range(n_queries):
            c = min(int(counts[i]), k, keys.shape[1])
            out[i, :c] = keys[i, :c].astype(np.int64)
        return out


__all__ = ["UsearchEngine"]
