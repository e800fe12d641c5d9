"""The gallery: the vector store with one image record per row, a species index beside it, and a summary.

See :mod:`birdbridge.gallery` for the on-disk layout; the storage, crash safety and search are the
generic :class:`~birdbridge.store.vector_store.VectorStore`'s.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.gallery.background import BACKGROUND_JSON, BACKGROUND_NPY, BackgroundIndex, background_command
from birdbridge.gallery.species_store import SPECIES_JSON, SPECIES_NPY, SpeciesIndex, SpeciesRecord
from birdbridge.species.background import BackgroundVocabulary
from birdbridge.store.kind import ANN_FILE, VECTORS_FILE, StoreKind
from birdbridge.store.records import RecordSchema, match
from birdbridge.store.search import check_k, top_k_dense
from birdbridge.store.vector_store import VectorStore, teacher_meta
from birdbridge.utils.atomic import json_default
from birdbridge.utils.text import optional_text

FORMAT = "birdbridge-gallery"
VERSION = 1
META_FILE = "gallery.json"
DB_FILE = "images.sqlite"
_RECORD_FIELDS = ("id", "path", "species", "split", "source", "licence", "photographer", "meta")


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


def _image_values(record: Mapping[str, Any], position: int) -> tuple:
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
        meta_text = json.dumps(dict(meta), ensure_ascii=False, default=_meta_default) if meta else None
    except (TypeError, ValueError) as exc:
        raise BirdbridgeError(f"record {image_id!r}: 'meta' is not JSON-serialisable ({exc})") from None
    return (image_id, None if path is None else str(path), species,
            *(optional_text(record.get(k)) for k in ("split", "source", "licence", "photographer")), meta_text)


def _meta_default(obj: Any) -> Any:
    """Free-form ``meta`` cells (extra manifest columns) are kept whatever their type: the JSON rule of
    :func:`~birdbridge.utils.atomic.json_default`, else bytes as hex and anything else as text."""
    try:
        return json_default(obj)
    except TypeError:
        return obj.hex() if isinstance(obj, (bytes, bytearray)) else str(obj)


def _image_record(row: int, values: tuple) -> ImageRecord:
    image_id, path, species, split, source, licence, photographer, meta = values
    return ImageRecord(row, image_id, path, species, split, source, licence, photographer,
                       json.loads(meta) if meta else {})


IMAGE_SCHEMA: RecordSchema[ImageRecord] = RecordSchema(
    table="images",
    columns=(("id", "TEXT NOT NULL UNIQUE"), ("path", "TEXT"), ("species", "TEXT NOT NULL"), ("split", "TEXT"),
             ("source", "TEXT"), ("licence", "TEXT"), ("photographer", "TEXT"), ("meta", "TEXT")),
    to_values=_image_values,
    from_values=_image_record,
    key="id",
    indexes=("species",),
)

GALLERY = StoreKind(
    noun="gallery",
    item="image",
    format=FORMAT,
    version=VERSION,
    meta_file=META_FILE,
    db_file=DB_FILE,
    schema=IMAGE_SCHEMA,
    build_command="birdbridge index",
    create_hint="build a gallery with `birdbridge index --images ... --output FOLDER`",
    exists_hint="open it (or add to it with --add) instead",
    ann_command="birdbridge gallery ann",
    files=(SPECIES_NPY, SPECIES_JSON, BACKGROUND_NPY, BACKGROUND_JSON),
)


@dataclass(frozen=True)
class GallerySummary:
    """What ``birdbridge gallery info`` shows: counts, teacher, species index, ANN status, build, sizes on disk."""

    gallery: str
    count: int
    dim: int
    teacher: dict[str, Any]
    species: dict[str, Any]  # count, with_images, and the index's forms, templates, source, created
    image_species: int  # species with at least one image
    background: list[str] | None  # the background vocabulary's labels (None: the gallery has none)
    ann: dict[str, Any]  # Gallery.ann_status()
    build: dict[str, Any] | None
    created: str | None
    updated: str | None
    size_bytes: int
    files: dict[str, int]  # bytes per file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_gallery(folder: str | os.PathLike[str]) -> bool:
    return Gallery.exists_in(folder)


class Gallery(VectorStore[ImageRecord]):
    """An embedded, serverless image gallery; open with :meth:`open`, make with :meth:`create`.

    Reading is thread-safe. A Gallery sees the rows committed when it was opened (or last
    :meth:`refresh`-ed); its own appends are visible at once.
    """

    kind = GALLERY

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        super().__init__(folder, meta)
        fingerprint = meta["teacher"]["fingerprint"]
        self._species = SpeciesIndex(self.folder, fingerprint, self.dim, self.damaged)
        self._background = BackgroundIndex(self.folder, fingerprint, self.dim, self._damaged_background)

    def refresh(self) -> bool:
        """Re-read ``gallery.json`` to see rows, ANN or species index written by another process; True if changed."""
        changed = super().refresh()
        if changed:
            self._species.forget()
            self._background.forget()
        return changed

    # ------------------------------------------------------------------------------ image records

    def row_of(self, image_id: str) -> int | None:
        """The row of an image id, or None."""
        rows = self.query("SELECT row FROM images WHERE id = ? AND row < ?", [str(image_id), len(self)])
        return int(rows[0][0]) if rows else None

    def has_id(self, image_id: str) -> bool:
        return self.row_of(image_id) is not None

    def ids(self) -> set[str]:
        """Every image id (reads the whole id column; prefer :meth:`existing` for a few ids)."""
        return {r[0] for r in self.query("SELECT id FROM images WHERE row < ?", [len(self)])}

    def existing(self, ids: Iterable[str]) -> dict[str, str | None]:
        """Of the given ids, those already in the gallery, with their stored paths."""
        return dict(self.select_in("id", (str(i) for i in ids), ("id", "path")))

    def rows_where(
        self, *, species: str | Sequence[str] | None = None, split: str | None = None, source: str | None = None
    ) -> np.ndarray:
        """Sorted int64 rows whose species (one key or several), split and source match; for ``search(rows=...)``."""
        return self.rows_matching(*match({"species": species, "split": split, "source": source}))

    def species_counts(self) -> dict[str, int]:
        """Images per species key, in key order."""
        rows = self.query("SELECT species, COUNT(*) FROM images WHERE row < ? GROUP BY species ORDER BY species",
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

    def check_searchable(self) -> None:
        """Raise BirdbridgeError naming the problem and its fix unless this gallery can answer searches: its
        build finished and it has a species index (or it would answer every query with nothing)."""
        super().check_searchable()
        if not self._species.exists():
            raise BirdbridgeError(
                f"gallery {self.folder} has no species index ({SPECIES_JSON} is missing), so it cannot rank species; "
                f"build it with `birdbridge gallery species {self.folder} --from-gallery` (or --species-list FILE)"
            )

    # ------------------------------------------------------------------------------ species index

    def species(self) -> list[SpeciesRecord]:
        """The species index records, in index order (empty if there is none)."""
        return self._species.records()

    def species_info(self) -> dict[str, Any]:
        """The species index header: forms, templates, teacher fingerprint, source, created (empty if none)."""
        return self._species.info()

    @property
    def species_vectors(self) -> np.ndarray:
        """float32 ``[S, D]`` teacher text embeddings of the species (``[0, D]`` if there is no index)."""
        return self._species.vectors

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
        with self.write_lock():
            self._species.write(records, vectors, forms, templates, source)

    def search_species(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the species index: ``(scores [Q, k] float32, species indices [Q, k] int64)``, padded."""
        q = self.check_queries(queries)
        k = check_k(k)
        return top_k_dense(q @ self.species_vectors.T, k)

    # ------------------------------------------------------------------------------ background vocabulary

    def background(self) -> tuple[BackgroundVocabulary, np.ndarray] | None:
        """The background vocabulary and its float32 ``[B, D]`` teacher text embeddings, or None if the gallery
        has none (see :mod:`birdbridge.gallery.background`)."""
        return self._background.load()

    def set_background(self, vocabulary: BackgroundVocabulary, vectors: np.ndarray) -> None:
        """Replace the background vocabulary: one row of ``vectors`` per class of ``vocabulary``."""
        with self.write_lock():
            self._background.write(vocabulary, vectors, {"source": vocabulary.source})

    def remove_background(self) -> None:
        """Remove the background vocabulary (searches then name a bird in every window that reaches the threshold)."""
        with self.write_lock():
            self._background.remove()

    def _damaged_background(self, problem: str) -> BirdbridgeError:
        return BirdbridgeError(f"gallery {self.folder}: its background vocabulary is damaged ({problem}); rebuild it "
                               f"with {background_command(self.folder)} (or remove it with --none)")

    # ------------------------------------------------------------------------------ summary

    def summary(self) -> GallerySummary:
        """Counts, teacher, species index, ANN status, build state and sizes on disk (``birdbridge gallery info``)."""
        species = self.species()
        header = self.species_info()
        sizes = self.disk_usage()
        meta = self.meta
        return GallerySummary(
            gallery=str(self.folder),
            count=len(self),
            dim=self.dim,
            teacher=self.teacher,
            species={"count": len(species), "with_images": sum(s.has_images for s in species),
                     **{k: v for k, v in header.items() if k in ("forms", "templates", "source", "created")}},
            image_species=len(self.species_counts()),
            background=None if (bg := self.background()) is None else bg[0].labels,
            ann=self.ann_status(),
            build=meta.get("build"),
            created=meta.get("created"),
            updated=meta.get("updated"),
            size_bytes=sum(sizes.values()),
            files=sizes,
        )


__all__ = [
    "ANN_FILE", "BACKGROUND_JSON", "BACKGROUND_NPY",
    "DB_FILE", "GALLERY", "IMAGE_SCHEMA", "META_FILE", "SPECIES_JSON", "SPECIES_NPY", "VECTORS_FILE",
    "Gallery", "GallerySummary", "ImageRecord", "SpeciesRecord", "is_gallery", "teacher_meta",
]
