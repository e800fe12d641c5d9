"""The gallery's species index: one teacher text embedding per species, for open-vocabulary species ranking.

The species come from the gallery's own images, a taxonomy CSV, or a BirdNET-style species list
(``Turdus migratorius_American Robin``, read by :func:`birdbridge.species.as_taxonomy`); species of a
list that have no pictures in the gallery are kept, flagged ``has_images=False``, so a recording can
still be named as one of them. Embeddings are
:func:`~birdbridge.species.species_text_embeddings` (cached on disk) with the chosen forms and templates.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from birdbridge.embed.text import DEFAULT_FORMS, DEFAULT_TEMPLATES
from birdbridge.errors import BirdbridgeError
from birdbridge.gallery.store import UNKNOWN_SPECIES
from birdbridge.species import PromptSpec, Species, Taxonomy, species_text_embeddings

if TYPE_CHECKING:
    from birdbridge.gallery.species_store import SpeciesRecord
    from birdbridge.gallery.store import Gallery
    from birdbridge.models.teacher import Teacher


@dataclass(frozen=True)
class SpeciesIndexSummary:
    """What a species index holds after :func:`build_species_index`."""

    total: int
    with_images: int
    without_images: int
    source: str


def merge_species(first: Species, second: Species) -> Species:
    """``first`` with empty ranks, common name and code filled in from ``second`` (same species)."""
    if first.key != second.key:
        return first
    ranks = [a or b for a, b in zip(first.taxonomy_path[:5], second.taxonomy_path[:5], strict=True)]
    return Species(*ranks, first.genus, first.specific_epithet, first.common_name or second.common_name,
                   first.code or second.code)


def build_species_index(
    gallery: Gallery,
    teacher: Teacher,
    *,
    taxonomy: Taxonomy | None = None,
    known: Mapping[str, Species] | None = None,
    keep_existing: bool = True,
    forms: Sequence[str] = DEFAULT_FORMS,
    templates: str | Sequence[str] = DEFAULT_TEMPLATES,
    cache: bool | str | os.PathLike[str] = True,
    progress: bool | None = None,
    source: str | None = None,
) -> SpeciesIndexSummary:
    """Write the gallery's species index and return what it holds.

    Species, in order: ``taxonomy``'s (if given), else the species already indexed (if
    ``keep_existing``); then every gallery species not yet listed, sorted. Names and ranks come
    from ``taxonomy``, then ``known`` (gathered from the sources), then the existing index.
    """
    gallery.check_teacher(teacher, "the species text embeddings")
    counts = {key: n for key, n in gallery.species_counts().items() if key != UNKNOWN_SPECIES}
    existing = {r.key: _record_species(r) for r in gallery.species()}
    info: dict[str, Species] = {}
    order: list[str] = []

    def add(key: str, candidates: Sequence[Species | None]) -> None:
        if key in info:
            return
        found = [c for c in candidates if c is not None]
        species = found[0] if found else Species.from_names(key)
        for other in found[1:]:
            species = merge_species(species, other)
        info[key] = species
        order.append(key)

    known = known or {}
    if taxonomy is not None:
        for sp in taxonomy:
            add(sp.key, [sp, known.get(sp.key), existing.get(sp.key)])
    elif keep_existing:
        for key, sp in existing.items():
            add(key, [sp, known.get(key)])
    for key in sorted(counts):
        if key not in info:
            try:
                fallback = Species.from_names(key)
            except ValueError:
                fallback = None
            tax_entry = taxonomy.get(key) if taxonomy is not None else None
            candidates = [tax_entry, known.get(key), existing.get(key), fallback]
            if not any(candidates):
                raise BirdbridgeError(f"gallery species {key!r} is not a scientific name 'Genus epithet'")
            add(key, candidates)
    if not order:
        raise BirdbridgeError(f"gallery {gallery.folder} has no images and no species list was given")
    species_list = Taxonomy([info[k] for k in order])
    spec = PromptSpec(forms=tuple(forms), templates=templates if isinstance(templates, str) else tuple(templates))
    vectors = species_text_embeddings(teacher, species_list, spec, cache=cache, progress=progress)
    records = [
        {"key": sp.key, "scientific_name": sp.scientific_name, "common_name": sp.common_name, "code": sp.code,
         "taxonomy": list(sp.taxonomy_path), "has_images": sp.key in counts}
        for sp in species_list
    ]
    gallery.set_species(records, vectors, spec.forms, spec.templates, source=source)
    with_images = sum(r["has_images"] for r in records)
    return SpeciesIndexSummary(len(records), with_images, len(records) - with_images, source or "gallery")


def index_taxonomy(records: Sequence[SpeciesRecord]) -> Taxonomy:
    """The species of an index as a Taxonomy, in index order, to look labels up in (names, codes)."""
    return Taxonomy(sp for sp in map(_record_species, records) if sp is not None)


def _record_species(record: SpeciesRecord) -> Species | None:
    """The Species an index record describes (None if it cannot be rebuilt)."""
    try:
        if len(record.taxonomy) == 7:
            return Species(*record.taxonomy, record.common_name, record.code)
        return Species.from_names(record.scientific_name, record.common_name, record.code)
    except ValueError:
        return None
