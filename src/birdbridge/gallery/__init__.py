"""The image gallery index: teacher image embeddings in one folder, searched exactly or approximately.

Embedded and serverless: a gallery is a folder, opened by memory-mapping (instant even at 1M × 768),
safe to read from many threads and processes while one process appends. It is a
:mod:`birdbridge.store` vector store (vectors, SQLite records, writer lock, crash safety, exact and ANN
search) whose records are images (:mod:`~birdbridge.gallery.store`), with a species index beside it
(:mod:`~birdbridge.gallery.species_store`, built by :mod:`~birdbridge.gallery.species_index`) and, optionally,
a background vocabulary (:mod:`~birdbridge.gallery.background`).

On-disk layout::

    GALLERY/
      gallery.json     {"format": "birdbridge-gallery", "version": 1,
                        "teacher": {"ref", "name", "fingerprint", "embed_dim"}, "dim": D, "count": N,
                        "created", "updated",
                        "ann": null | {"engine": "usearch" | "faiss-ivf", "file", "count", "metric": "ip",
                                       "dtype": "f16" | "i8" | ..., usearch: "connectivity", "expansion_add",
                                       "expansion_search"; faiss-ivf: "nlist", "nprobe", "trained_rows";
                                       "added_rows", ...},
                        "build": null | {"complete", "sources", "teacher_fingerprint", "add", "started", "finished"}}
      vectors.f16      raw little-endian float16 [N, D], L2-normalised rows, append-only; only the first
                       `count` rows are valid
      images.sqlite    images(row INTEGER PRIMARY KEY (= vector row), id TEXT UNIQUE, path TEXT, species TEXT,
                              split TEXT, source TEXT, licence TEXT, photographer TEXT, meta TEXT (JSON));
                       `species` is the scientific name ("Pica hudsonia"); `path` is relative to GALLERY when
                       the image lies inside it, else absolute; NULL for precomputed embeddings
      species.npy      the species index: teacher text embeddings [S, D] float32 ...
      species.json     ... and their records: {"forms", "templates", "teacher_fingerprint", "vectors_sha256",
                       "species": [{"key", "scientific_name", "common_name", "code", "taxonomy" (7 ranks),
                       "has_images"}]}
      background.npy   the background vocabulary (wind, rain, ...): teacher text embeddings [B, D] float32 ...
      background.json  ... and {"vocabulary": {"source", "classes": [{"label", "prompts", "aliases"}]},
                       "teacher_fingerprint", "vectors_sha256", "source"}; optional
      ann.usearch      optional ANN index (inner product, float16 by default): usearch HNSW (keys = rows), or
      ann.faiss        a FAISS inverted file (ids = rows; birdbridge[faiss]); the meta file's "ann" names which
      .lock            writers hold an exclusive flock on it

Crash safety (the rules of every :mod:`birdbridge.store`): an append writes and fsyncs the vectors,
then inserts the records in one transaction, then replaces ``gallery.json`` (with the new ``count``)
atomically. Opening (with write access and no writer at work) and every append first truncate vector
bytes and delete records past ``count``. A kill at any moment loses at most the batch in flight and
never duplicates a row.

An ANN index covering fewer rows than ``count`` is stale; searches are then exact until it is brought
up to date (``birdbridge gallery ann``), so results are never missing new rows.
"""

from __future__ import annotations

from birdbridge.utils.lazy import lazy_exports

# Imported lazily: opening and searching a gallery needs neither torch's models nor image decoding.
_EXPORTS = {
    "ANN_THRESHOLD": "birdbridge.store.ann",
    "AnnSettings": "birdbridge.store.ann",
    "build_ann": "birdbridge.store.ann",
    "build_background": "birdbridge.gallery.background",
    "BuildReport": "birdbridge.gallery.build",
    "build_gallery": "birdbridge.gallery.build",
    "SpeciesIndexSummary": "birdbridge.gallery.species_index",
    "build_species_index": "birdbridge.gallery.species_index",
    "parse_species_label": "birdbridge.species",
    "Gallery": "birdbridge.gallery.store",
    "GallerySummary": "birdbridge.gallery.store",
    "ImageRecord": "birdbridge.gallery.store",
    "SpeciesRecord": "birdbridge.gallery.species_store",
    "teacher_meta": "birdbridge.store.vector_store",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
