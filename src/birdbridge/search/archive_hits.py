"""Candidate species for an archive's search hits: each hit's window scored against a gallery's species index exactly
as ``birdbridge search`` scores a window (:meth:`SearchEngine.rank_species` under the same
:class:`~birdbridge.search.scoring.Scoring`: confidences when the archive's student is calibrated, the background rule,
``rank`` above species with the same combination of scores), restricted to a species list or to the species BirdNET's
range model expects at each recording's place and week (:mod:`birdbridge.archive.where`), named in a locale.

:func:`candidate_species` gives them (for a server too: no CLI types); :func:`with_candidates` puts them on the
:class:`~birdbridge.archive.search.ArchiveResults` that the archive's result files write; :func:`archive_search` is
``birdbridge archive search``: the search, the candidates, and the names in a locale.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from birdbridge.archive.identity import check_student
from birdbridge.archive.search import ArchiveHit, ArchiveResults, HitSpecies
from birdbridge.archive.store import Archive
from birdbridge.archive.where import recording_places
from birdbridge.errors import BirdbridgeError
from birdbridge.search.engine import SearchEngine
from birdbridge.search.locale import localize_hits, localize_query
from birdbridge.search.results import SpeciesHit
from birdbridge.search.scoring import Scoring
from birdbridge.species import SpeciesArg
from birdbridge.species.common_names import CommonNames
from birdbridge.species.where import RangeFilter, species_filter
from birdbridge.utils.vectors import l2_normalize

DEFAULT_TOP_K = 3


@dataclass
class HitCandidates:
    """Per hit (in the order given) its candidate species, best first (empty: none reaches the threshold, or none is
    expected there); the score that ranked them and its threshold; notes for the summary."""

    species: list[list[SpeciesHit]]
    ranked_by: str
    threshold: float
    rank: str
    notes: list[str] = field(default_factory=list)


def archive_engine(archive: Archive, gallery: str | os.PathLike[str], *, model: str | os.PathLike[str] | None = None,
                   teacher: str | None = None, device: str | None = None, labels: str | os.PathLike[str] | None = None,
                   locale: str | None = None) -> SearchEngine:
    """The engine that scores an archive's windows: ``gallery`` with the archive's student (``model``, default the one
    it records; its calibration gives confidences), checked to be that student and of the archive's teacher."""
    ref = model or archive.student.get("ref")
    engine = SearchEngine.open(gallery, ref, teacher=teacher, device=device, labels=labels, locale=locale)
    archive.check_teacher(engine.gallery.teacher, f"gallery {engine.gallery.folder}")
    if engine.student is not None:
        check_student(archive, engine.student, f"model {ref}")
    return engine


def window_vectors(archive: Archive, rows: Sequence[int]) -> np.ndarray:
    """float32 unit ``[len(rows), D]`` embeddings of archive windows."""
    return l2_normalize(np.asarray(archive.vectors[np.asarray(rows, dtype=np.int64)], np.float32),
                        what="the archive's windows")


def candidate_species(engine: SearchEngine, archive: Archive, hits: Sequence[ArchiveHit], *,
                      top_k: int = DEFAULT_TOP_K, scoring: Scoring | None = None,
                      where: RangeFilter | SpeciesArg | None = None, locale: str | None = None) -> HitCandidates:
    """The candidate species of each hit (see the module docs). ``scoring``: default confidences at BirdNET-Analyzer's
    0.25 (``rank`` in it); ``where``: a :class:`RangeFilter` (``week="auto"``: each recording's date) or a species
    list; ``locale``: the language of the common names (default: the engine's)."""
    if int(top_k) < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    scoring = scoring or Scoring()
    names = engine.common_names(locale)
    archive.check_teacher(engine.gallery.teacher, f"gallery {engine.gallery.folder}")
    ranked_by = scoring.ranked_by(engine.calibration)
    found = HitCandidates([[] for _ in hits], ranked_by, scoring.threshold(ranked_by), scoring.rank)
    if not hits:
        return found
    rows = [h.row for h in hits]
    vectors = window_vectors(archive, rows)
    groups: dict[Any, list[int]] = {}
    subsets: dict[Any, np.ndarray | None] = {}
    if isinstance(where, RangeFilter):
        file_of = {w.row: w.file for w in archive.records(sorted(set(rows)))}
        places = recording_places(archive, where, set(file_of.values()))
        found.notes += places.notes()
        for i, row in enumerate(rows):
            groups.setdefault(places.filters[file_of[row]], []).append(i)
        for place, members in groups.items():
            match = place.match(engine.taxonomy)
            if not len(match.taxonomy):
                found.notes.append(f"{len(members):,} hits without candidates: {match.note}")
                continue
            subsets[place] = engine.species_subset(match.taxonomy)
    else:
        groups[None] = list(range(len(hits)))
        subsets[None] = engine.species_subset(where)
    for key, members in groups.items():
        if key not in subsets:
            continue
        ranked, _, _ = engine.rank_species(vectors[members], top_k=int(top_k), scoring=scoring, subset=subsets[key])
        for i, species in zip(members, ranked, strict=True):
            found.species[i] = localize_hits(species, [], names)[0]
    return found


def with_candidates(results: ArchiveResults, found: HitCandidates, **settings: Any) -> ArchiveResults:
    """``results`` whose hits carry ``found``'s candidates, with its notes and how they were scored (and
    ``settings``: the gallery, the locale, ... as the JSON's ``candidates`` records them)."""
    hits = [replace(hit, species=tuple(_hit_species(h) for h in species))
            for hit, species in zip(results.hits, found.species, strict=True)]
    scored = {"ranked_by": found.ranked_by, "threshold": found.threshold, "rank": found.rank, **settings}
    return replace(results, hits=hits, notes=[*results.notes, *found.notes], candidates=scored)


def archive_search(archive: Archive, *, engine: SearchEngine | None = None, top_k_species: int = DEFAULT_TOP_K,
                   scoring: Scoring | None = None, where: RangeFilter | None = None, species: SpeciesArg | None = None,
                   locale: str | None = None, names: CommonNames | None = None, **query: Any) -> ArchiveResults:
    """:meth:`Archive.search` (``query``: its arguments) with the hits' candidate species when an ``engine`` is given
    (under ``scoring``, whose ``rank`` also reads a ``text`` taxon; only ``species`` or those ``where`` expects),
    and names in ``locale`` (from the engine's names, else ``names``). ``where`` also leaves out the recordings where
    a species (or taxon) ``text`` is not expected."""
    scoring = scoring or Scoring()
    chosen = species_filter(where, species)
    names = engine.names if engine is not None else names or CommonNames()
    code = names.check(locale) if locale else (engine.locale if engine is not None else None)
    if engine is None and species is not None:
        raise BirdbridgeError("--species-list restricts the hits' candidate species: give --gallery too")
    gallery = None if engine is None else engine.gallery
    results = archive.search(rank=scoring.rank, gallery=gallery, where=where, **query)
    if engine is not None:
        found = candidate_species(engine, archive, results.hits, top_k=top_k_species, scoring=scoring,
                                  where=chosen, locale=code)
        results = with_candidates(results, found, top_k=int(top_k_species), gallery=str(gallery.folder), locale=code,
                                  where=None if where is None else where.describe(),
                                  species_list=None if species is None else str(species))
    return replace(results, query=localize_query(results.query, names, code))


def _hit_species(hit: SpeciesHit) -> HitSpecies:
    return HitSpecies(hit.key, hit.scientific_name, hit.common_name, hit.score, hit.similarity, hit.confidence,
                      hit.taxon_rank, hit.members)


__all__ = ["DEFAULT_TOP_K", "HitCandidates", "archive_engine", "archive_search", "candidate_species", "with_candidates"]
