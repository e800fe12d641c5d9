"""Archives: every window of a collection of recordings, embedded once, searched by name, picture or example.

An archive is the second user of :mod:`birdbridge.store` (the gallery is the first): a folder of
memory-mapped float16 window embeddings made by a distilled student (so they live in its image-text
teacher's space), with one record per window, the recordings they come from, and labels given to them.
It is built (and resumed) by :func:`~birdbridge.archive.build.build_archive`, queried with
:meth:`Archive.search` (a species name or free text and a picture through the teacher, an example
recording through the student), and labelled with :meth:`Archive.add_labels`.

On-disk layout::

    ARCHIVE/
      archive.json     {"format": "birdbridge-archive", "version": 1,
                        "teacher": {"ref", "name", "fingerprint", "embed_dim"}, "dim": D, "count": N,
                        "student": {"ref", "name", "fingerprint", "embed_dim", "sample_rate", "window_s", "band_hz"},
                        "windowing": {"window_s", "hop_s", "min_tail_s", "sample_rate", "channels"},
                        "created", "updated", "ann": null | {...},
                        "build": {"complete", "sources", "add", "started", "finished"}}
      vectors.f16      raw little-endian float16 [N, D], L2-normalised rows, append-only
      archive.sqlite   windows(row INTEGER PRIMARY KEY (= vector row), file INTEGER (files.id), start_s REAL,
                               end_s REAL, channel INTEGER (0: the channels mixed to mono));
                       UNIQUE (file, start_s, channel)
                       files(id INTEGER PRIMARY KEY, path TEXT UNIQUE (absolute), duration_s, sample_rate,
                             channels, date TEXT (YYYY-MM-DD), time TEXT (HH:MM:SS), t0 REAL (date + time as
                             seconds from 1970, clock time without zone), site, lat, lon, size, mtime_ns (the file
                             when embedded, for resume), first_row, n_windows, added)
                       labels(id INTEGER PRIMARY KEY, row (window), label TEXT, value 1/0 (yes/no), who, at
                              (ISO time), source (file), source_row (its line, or the hit's rank));
                       UNIQUE (row, label, value, who, source, source_row)
      ann.usearch      optional ANN index (inner product, float16 by default): usearch HNSW (keys = rows), or
      ann.faiss        a FAISS inverted file (ids = rows; birdbridge[faiss]); the meta file's "ann" names which
      .lock            writers hold an exclusive flock on it

Crash safety is the store's: vectors, then records (windows, files, in one transaction), then the count.
"""

from __future__ import annotations

from birdbridge.utils.lazy import lazy_exports

# Imported lazily: opening and searching by vector needs neither torch's models nor audio decoding.
_EXPORTS = {
    "Archive": "birdbridge.archive.store",
    "ArchiveSummary": "birdbridge.archive.store",
    "RecordingFile": "birdbridge.archive.store",
    "WindowRecord": "birdbridge.archive.store",
    "BuildReport": "birdbridge.archive.build",
    "build_archive": "birdbridge.archive.build",
    "ArchiveHit": "birdbridge.archive.search",
    "ArchiveResults": "birdbridge.archive.search",
    "Label": "birdbridge.archive.labels",
    "LabelCount": "birdbridge.archive.labels",
    "LabelReport": "birdbridge.archive.labels",
    "LabelSpan": "birdbridge.archive.labels",
    "hit_labels": "birdbridge.archive.labels",
    "read_labels": "birdbridge.archive.labels",
    "RecordingMeta": "birdbridge.archive.metadata",
    "write_results": "birdbridge.archive.formats",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
