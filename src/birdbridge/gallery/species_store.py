"""The species index of a gallery on disk: ``species.npy`` (teacher text embeddings) and ``species.json``.

``species.json`` holds the records and the header (forms, templates, source, the teacher's fingerprint
and the sha256 of ``species.npy``); a ``species.npy`` that does not match it (an interrupted write) or
that was made with another teacher is refused, naming the command that rebuilds it. Building the index
is :func:`birdbridge.gallery.species_index.build_species_index`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.gallery.text_vectors import TextVectors

SPECIES_NPY = "species.npy"
SPECIES_JSON = "species.json"
SPECIES_FORMAT = "birdbridge-species-index"


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


class SpeciesIndex:
    """The species index files of the gallery in ``folder``, read lazily, checked against the gallery's teacher
    ``fingerprint`` and ``dim``; ``damaged(problem)`` makes the gallery's error for an unreadable file."""

    def __init__(self, folder: Path, fingerprint: str, dim: int, damaged: Callable[[str], Exception]) -> None:
        self.folder = folder
        self.dim = dim
        self._files = TextVectors(folder, SPECIES_NPY, SPECIES_JSON, fingerprint, dim, what="the species index",
                                  rebuild=f"`birdbridge gallery species {folder} --from-gallery` (or --species-list "
                                  "FILE)", damaged=damaged)
        self._damaged = damaged
        self._cache: tuple[list[SpeciesRecord], dict[str, Any]] | None = None
        self._vectors: np.ndarray | None = None

    def exists(self) -> bool:
        return self._files.exists()

    def forget(self) -> None:
        """Drop what was read, so the files are read again (after another process rewrote them)."""
        self._cache = self._vectors = None

    def records(self) -> list[SpeciesRecord]:
        """The records in index order (empty if there is no index)."""
        return list(self._load()[0])

    def info(self) -> dict[str, Any]:
        """The header: forms, templates, teacher fingerprint, source, created (empty if there is no index)."""
        return dict(self._load()[1])

    @property
    def vectors(self) -> np.ndarray:
        """float32 ``[S, D]`` teacher text embeddings of the species (``[0, D]`` if there is no index)."""
        if self._vectors is None:
            records, info = self._load()
            self._vectors = (self._files.read_vectors(len(records), info) if records
                             else np.zeros((0, self.dim), np.float32))
        return self._vectors

    def write(self, records: Sequence[Any], vectors: np.ndarray, forms: Sequence[Any], templates: str | Sequence[str],
              source: str | None) -> None:
        """Replace the index: one record (SpeciesRecord, Species-like object or dict) per row of ``vectors``.
        The caller holds the gallery's writer lock."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(records), self.dim):
            raise BirdbridgeError(
                f"species vectors have shape {list(vectors.shape)}; expected [{len(records)}, {self.dim}]"
            )
        entries = [_species_entry(r) for r in records]
        keys = [e["key"] for e in entries]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise BirdbridgeError(f"species {dup!r} appears twice in the species index")
        self._files.write(vectors, {
            "format": SPECIES_FORMAT,
            "version": 1,
            "forms": [str(getattr(f, "value", f)) for f in forms],
            "templates": templates if isinstance(templates, str) else list(templates),
            "source": source,
            "species": entries,
        })
        self.forget()

    def _load(self) -> tuple[list[SpeciesRecord], dict[str, Any]]:
        if self._cache is None:
            info = self._files.read_header()
            if info is None:
                self._cache = ([], {})
            else:
                try:
                    records = [
                        SpeciesRecord(i, e["key"], e["scientific_name"], e.get("common_name"), e.get("code"),
                                      bool(e.get("has_images")), tuple(e.get("taxonomy") or ()))
                        for i, e in enumerate(info["species"])
                    ]
                except (KeyError, TypeError) as exc:
                    raise self._damaged(f"{SPECIES_JSON} is unreadable ({exc})") from None
                header = {k: v for k, v in info.items() if k != "species"}
                self._cache = (records, header)
        return self._cache


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
