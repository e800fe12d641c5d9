"""The vector store: embeddings of one teacher's space in one folder, with records, searched exactly or by ANN.

Embedded and serverless: a store is a folder, opened by memory-mapping (instant even at 1M × 768),
safe to read from many threads and processes while one process appends. It knows nothing about what
its rows are: a kind of store (the image gallery, :mod:`birdbridge.gallery`; an audio archive)
subclasses :class:`VectorStore` and gives it a :class:`StoreKind` (names and files) with a
:class:`RecordSchema` (the records table, its columns and indexes, the user's other tables).

On-disk layout::

    STORE/
      <meta_file>      {"format", "version", "teacher": {"ref", "name", "fingerprint", "embed_dim"},
                        "dim": D, "count": N, "created", "updated",
                        "ann": null | {"engine": "usearch" | "faiss-ivf", "file", "count", "metric": "ip",
                                       "dtype": "f16" | "i8" | ..., usearch: "connectivity", "expansion_add",
                                       "expansion_search"; faiss-ivf: "nlist", "nprobe", "trained_rows";
                                       "added_rows", ...},
                        "build": null | {"complete", ...}, and fields of the store's user}
      vectors.f16      raw little-endian float16 [N, D], L2-normalised rows, append-only; only the first
                       `count` rows are valid
      <db_file>        SQLite: the records table (row INTEGER PRIMARY KEY = vector row, then the user's
                       columns) and any other tables of the user's
      ann.usearch      optional ANN index (inner product, float16 by default): usearch HNSW (keys = rows), or
      ann.faiss        a FAISS inverted file (ids = rows; birdbridge[faiss]); the meta file's "ann" names which
      .lock            writers hold an exclusive flock on it

Crash safety: an append writes and fsyncs the vectors, then inserts the records (and the user's rows
of other tables) in one transaction, then replaces the meta file (with the new ``count``) atomically.
Opening (with write access and no writer at work) and every append first truncate vector bytes and
delete records past ``count`` (the schema's ``trim`` hook deletes the user's rows for them). A kill at
any moment loses at most the batch in flight and never duplicates a row.

An ANN index covering fewer rows than ``count`` is stale; searches are then exact until it is brought
up to date (:func:`build_ann`), so results are never missing new rows.
"""

from __future__ import annotations

from birdbridge.utils.lazy import lazy_exports

# Imported lazily: opening a store needs neither torch nor usearch until it searches.
_EXPORTS = {
    "ANN_THRESHOLD": "birdbridge.store.ann",
    "AnnSettings": "birdbridge.store.ann",
    "build_ann": "birdbridge.store.ann",
    "StoreKind": "birdbridge.store.kind",
    "RecordSchema": "birdbridge.store.records",
    "match": "birdbridge.store.records",
    "Searchable": "birdbridge.store.search",
    "VectorStore": "birdbridge.store.vector_store",
    "read_meta": "birdbridge.store.vector_store",
    "teacher_meta": "birdbridge.store.vector_store",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
