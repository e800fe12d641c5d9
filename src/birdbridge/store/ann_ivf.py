"""The ``faiss-ivf`` engine of :mod:`birdbridge.store.ann`: a FAISS inverted file (inner product), ``STORE/ann.faiss``.

Spherical k-means on a sample of the rows (:data:`TRAIN_PER_LIST` a list, :data:`KMEANS_ITERATIONS`
iterations) places ``nlist`` centroids; every row goes to the list of its nearest centroid, stored as
``dtype`` codes (f16, bf16: ``IndexIVFScalarQuantizer``; i8: 8-bit scalar quantiser; f32: ``IndexIVFFlat``).
A query scans the ``nprobe`` lists nearest to it (at most :data:`NPROBE_MAX`); searches map the file into
memory. Rows added later are assigned to the existing centroids, in the order of their row numbers (FAISS
ids = rows); once a store holds more than :data:`REGROW_FACTOR` times the rows the centroids were trained on,
the next build trains them afresh. Needs ``faiss-cpu`` (``pip install 'birdbridge[faiss]'``). Settings and
figures: ``benchmarks/bench_ann.py`` and the README ("ANN engines").
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.store.kind import IVF_FILE

if TYPE_CHECKING:
    from birdbridge.store.ann import AnnSettings

#: About this many rows a list when ``nlist`` is chosen automatically (a power of two, 1 to :data:`NLIST_MAX`):
#: 2,048 lists for 1,000,000 rows, trained in about a third of the CPU time of 4,096 (README, "ANN engines").
ROWS_PER_LIST = 512
NLIST_MAX = 8192
#: k-means trains on up to this many sampled rows a list.
TRAIN_PER_LIST = 64
KMEANS_ITERATIONS = 10
#: Lists scanned a query, at most (bounds the work of a query).
NPROBE_MAX = 1024
#: Centroids are trained afresh once the store holds more than this many times the rows they were trained on.
REGROW_FACTOR = 4
INSTALL = "pip install 'birdbridge[faiss]'"


def faiss_module() -> Any:
    """The ``faiss`` module, or an error that says how to install it."""
    try:
        import faiss
    except ImportError as exc:
        raise BirdbridgeError(f"the faiss-ivf ANN engine needs FAISS: {INSTALL} (or pip install faiss-cpu); "
                              "or choose --engine usearch") from exc
    return faiss


def faiss_available() -> bool:
    try:
        faiss_module()
    except BirdbridgeError:
        return False
    return True


def auto_nlist(n: int) -> int:
    """The number of lists for ``n`` rows: the power of two nearest ``n / ROWS_PER_LIST``, 1 to :data:`NLIST_MAX`."""
    return int(min(NLIST_MAX, 1 << max(0, round(math.log2(max(1.0, n / ROWS_PER_LIST))))))


class FaissIvfEngine:
    """FAISS inverted files (see the module doc)."""

    name = "faiss-ivf"
    file = IVF_FILE
    dtypes = ("i8", "f16", "bf16", "f32")
    build_keys = ("nlist",)
    search_key = "nprobe"
    keys = ("nlist", "nprobe", "trained_rows")

    def version(self) -> str:
        return f"faiss {faiss_module().__version__}"

    def _qtypes(self, faiss: Any) -> dict[str, Any]:
        sq = faiss.ScalarQuantizer
        return {"i8": sq.QT_8bit, "f16": sq.QT_fp16, "bf16": sq.QT_bf16}

    def new(self, dim: int, n: int, settings: AnnSettings, vectors: np.ndarray) -> tuple[Any, dict[str, Any]]:
        """An index whose centroids are trained on a sample of ``vectors`` (the store's ``n`` rows), and the entry
        fields it adds (``nlist``, ``trained_rows``)."""
        faiss = faiss_module()
        if settings.nlist > n:
            raise BirdbridgeError(f"ANN nlist {settings.nlist} is more than the {n:,} rows to index: give at most "
                                  f"{n:,} (or 0: chosen from the rows)")
        nlist = min(settings.nlist or auto_nlist(n), n)
        quantizer = faiss.IndexFlatIP(dim)
        if settings.dtype == "f32":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, self._qtypes(faiss)[settings.dtype],
                                                  faiss.METRIC_INNER_PRODUCT)
        train = min(n, TRAIN_PER_LIST * nlist)
        index.cp.spherical = True
        index.cp.niter = KMEANS_ITERATIONS
        index.cp.min_points_per_centroid = 1
        index.cp.max_points_per_centroid = -(-train // nlist)  # the sample is drawn here, not again by FAISS
        sample = np.sort(np.random.default_rng(0).choice(n, train, replace=False))
        index.train(np.asarray(vectors[sample], dtype=np.float32))
        return index, {"nlist": nlist, "trained_rows": n}

    def restore(self, path: Path) -> Any | None:
        try:
            return faiss_module().read_index(str(path))
        except BirdbridgeError:
            raise
        except Exception:
            return None

    def prepare(self, index: Any, settings: AnnSettings) -> None:
        pass

    def add(self, index: Any, lo: int, vectors: np.ndarray, threads: int) -> None:
        if index.ntotal != lo:  # FAISS numbers rows in the order they are added
            raise BirdbridgeError(f"the FAISS index holds {index.ntotal} rows, not {lo}")
        faiss = faiss_module()
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(threads or os.cpu_count() or 1)
        try:
            index.add(np.asarray(vectors, dtype=np.float32))
        finally:
            faiss.omp_set_num_threads(before)

    def save(self, index: Any, path: Path) -> None:
        faiss_module().write_index(index, str(path))

    def open(self, path: Path) -> Any:
        """The index with its lists memory-mapped (the page cache holds them, shared by processes)."""
        faiss = faiss_module()
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP)

    def shape(self, index: Any) -> tuple[int, int, str, dict[str, Any]]:
        faiss = faiss_module()
        if isinstance(index, faiss.IndexIVFFlat):
            dtype = "f32"
        elif isinstance(index, faiss.IndexIVFScalarQuantizer):
            dtype = {v: k for k, v in self._qtypes(faiss).items()}.get(index.sq.qtype, f"qtype {index.sq.qtype}")
        else:
            dtype = type(index).__name__
        return int(index.ntotal), int(index.d), dtype, {"nlist": int(index.nlist)}

    def search(self, index: Any, queries: np.ndarray, k: int, entry: dict[str, Any]) -> np.ndarray:
        faiss = faiss_module()
        nprobe = max(1, min(int(entry.get("nprobe", 1)), NPROBE_MAX, int(index.nlist)))
        _, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k,
                               params=faiss.SearchParametersIVF(nprobe=nprobe))
        return rows.astype(np.int64)


__all__ = ["FaissIvfEngine", "auto_nlist", "faiss_available"]
