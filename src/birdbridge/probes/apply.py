"""Scoring a whole archive with its probes: detections with calibrated confidences, in search's result formats.

Every window's cosine with every probe is computed (in chunks of :data:`CHUNK_ROWS` windows: memory stays
bounded whatever the archive's size), mapped to a confidence by the probe's calibration (with
BirdNET-Analyzer's ``sensitivity``), and the window × label pairs whose confidence reaches ``min_conf``
are detections. They come out as :class:`~birdbridge.search.results.FileResult` s, one per recording of
the archive (a recording without a detection keeps its first window, so that its Raven table gets the
``nocall`` row), and are written by :func:`birdbridge.search.formats.write_results`: BirdNET-style CSV,
Raven, JSON or parquet. A hit's ``similarity`` is the window's cosine with the probe; its ``score`` and
``confidence`` the calibrated confidence.

Labels that name species (``Pica hudsonia``, ``Pica hudsonia_Black-billed Magpie``) can be restricted to a species
list or to those BirdNET's range model expects at each recording's place and week (:mod:`birdbridge.archive.where`:
the detections of the others are removed, and counted), named in a ``locale``, and combined at a ``rank`` above
species as search combines them (:func:`~birdbridge.search.scoring.combine_scores`: the noisy-OR of the confidences
of a taxon's species, the best cosine; ``auto``: per window the lowest rank that reaches ``min_conf``). Labels that
name no species (``wind``, ``song type A``) are kept as they are.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from birdbridge.archive.store import Archive
from birdbridge.archive.where import recording_places
from birdbridge.errors import BirdbridgeError
from birdbridge.models.calibration import DEFAULT_SENSITIVITY, check_sensitivity
from birdbridge.models.detection import DEFAULT_MIN_CONF
from birdbridge.probes.train import ProbeSet
from birdbridge.search.results import FileResult, SpeciesHit, WindowResult
from birdbridge.search.scoring import combine_scores
from birdbridge.species import SpeciesArg, Taxonomy, as_taxonomy
from birdbridge.species.common_names import CommonNames
from birdbridge.species.labels import parse_species_label
from birdbridge.species.ranks import ANSWER_RANKS, RankGroups, check_rank, rank_groups
from birdbridge.species.taxonomy import Species
from birdbridge.species.where import RangeFilter

CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class Column:
    """What a detection names: a probe's label, or a taxon of labels (its name, rank and member labels)."""

    label: str
    rank: str = "species"
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProbeScores:
    """Detections as arrays: ``rows``, ``probe`` (index into ``columns``: the probe set's labels unless a rank above
    species was asked for), ``cosine`` and ``confidence``; and how many detections the species filter removed."""

    rows: np.ndarray
    probe: np.ndarray
    cosine: np.ndarray
    confidence: np.ndarray
    columns: list[Column] = field(default_factory=list)
    removed: int = 0
    notes: list[str] = field(default_factory=list)


def check_space(archive: Archive, probes: ProbeSet) -> None:
    """Refuse probes trained in another teacher's space (or of another width)."""
    archive.check_teacher(probes.teacher, "the probes")
    if probes.probes and probes.matrix().shape[1] != archive.dim:
        raise BirdbridgeError(f"the probes have {probes.matrix().shape[1]} dimensions, archive {archive.folder} "
                              f"{archive.dim}")


def label_species(label: str, taxonomy: Taxonomy | None = None) -> Species | None:
    """The species a probe's label names (through ``taxonomy`` when given), or None for a label that names none."""
    try:
        return parse_species_label(label, taxonomy)
    except ValueError:
        return None


def score_archive(archive: Archive, probes: ProbeSet, *, min_conf: float = DEFAULT_MIN_CONF,
                  sensitivity: float = DEFAULT_SENSITIVITY, chunk_rows: int = CHUNK_ROWS, rank: str = "species",
                  where: RangeFilter | SpeciesArg | None = None, taxonomy: SpeciesArg | None = None) -> ProbeScores:
    """Every window × probe pair whose calibrated confidence is at least ``min_conf`` (at ``rank``: window × taxon;
    ``where``: species labels only where expected; ``taxonomy``: the species' families and orders; see the module
    docs)."""
    check_space(archive, probes)
    archive.check_searchable()
    check_sensitivity(sensitivity)
    check_rank(rank)
    if not 0.0 <= min_conf <= 1.0:
        raise BirdbridgeError(f"--min-conf must be in [0, 1], not {min_conf}")
    if not probes.probes:
        raise BirdbridgeError("the probe set holds no probes")
    known = None if taxonomy is None else as_taxonomy(taxonomy)
    labels = [p.label for p in probes.probes]
    species = [label_species(label, known) for label in labels]
    allowed, notes = _allowed(archive, species, where)
    levels = ANSWER_RANKS if rank == "auto" else (rank,)
    groups = {lv: probe_groups(labels, species, lv) for lv in levels if lv != "species"}
    columns: list[Column] = []
    offset: dict[str, int] = {}
    for lv in levels:
        offset[lv] = len(columns)
        columns += ([Column(label) for label in labels] if lv == "species" else
                    [Column(name, r, tuple(labels[j] for j in m)) if r != "species" else Column(labels[int(m[0])])
                     for name, r, m in zip(groups[lv].names, groups[lv].ranks, groups[lv].members, strict=True)])
    matrix = probes.matrix().T
    vectors = archive.vectors
    parts: list[tuple[np.ndarray, ...]] = []
    removed = 0
    for start in range(0, len(archive), chunk_rows):
        cos = vectors[start : start + chunk_rows].astype(np.float32) @ matrix
        conf = np.stack([p.confidence(cos[:, j], sensitivity) for j, p in enumerate(probes.probes)], axis=1)
        if allowed is not None:  # each window's recording's row of the allowed table
            firsts, per_file = allowed
            keep = per_file[np.searchsorted(firsts, np.arange(start, start + len(conf)), side="right") - 1]
            removed += int(np.count_nonzero((conf >= min_conf) & ~keep))
            conf = np.where(keep, conf, 0.0)
        scored = {lv: (conf, cos) if lv == "species" else
                  (combine_scores(conf, groups[lv], "confidence"), combine_scores(cos, groups[lv], "similarity"))
                  for lv in levels}
        chosen = None
        if rank == "auto":  # per window the lowest rank whose best taxon reaches min_conf
            chosen = np.full(len(conf), -1)
            for i, lv in reversed(list(enumerate(levels))):
                chosen = np.where(scored[lv][0].max(axis=1) >= min_conf, i, chosen)
        for i, lv in enumerate(levels):
            c, s = scored[lv]
            mask = c >= min_conf
            if chosen is not None:
                mask &= (chosen == i)[:, None]
            rows, cols = np.nonzero(mask)
            parts.append((rows + start, cols + offset[lv], s[rows, cols], c[rows, cols]))
    if removed:
        notes.append(f"species filter: {removed:,} detections of species not expected there and then removed")
    if not parts:
        empty = np.zeros(0)
        return ProbeScores(empty.astype(np.int64), empty.astype(np.int64), empty, empty, columns, removed, notes)
    rows, cols, cos, conf = (np.concatenate(p) for p in zip(*parts, strict=True))
    order = np.lexsort((cols, rows))
    return ProbeScores(rows[order].astype(np.int64), cols[order].astype(np.int64), cos[order], conf[order], columns,
                       removed, notes)


def probe_groups(labels: list[str], species: list[Species | None], level: str) -> RankGroups:
    """The probes grouped into taxa at ``level`` (:func:`~birdbridge.species.ranks.rank_groups` over the labels that
    name species; a label that names none stays on its own)."""
    named = [j for j, sp in enumerate(species) if sp is not None]
    found = rank_groups([(species[j].scientific_name, species[j].taxonomy_path) for j in named], level)
    members = [np.array([named[int(i)] for i in m], dtype=np.int64) for m in found.members]
    names, ranks = list(found.names), list(found.ranks)
    for j, sp in enumerate(species):
        if sp is None:
            members.append(np.array([j], dtype=np.int64))
            names.append(labels[j])
            ranks.append("species")
    of = np.empty(len(labels), dtype=np.int64)
    for g, m in enumerate(members):
        of[m] = g
    return RankGroups(level, of, names, ranks, members)


def _allowed(archive: Archive, species: list[Species | None], where: RangeFilter | SpeciesArg | None
             ) -> tuple[tuple[np.ndarray, np.ndarray] | None, list[str]]:
    """Per recording (its first row, sorted) which probes may detect there (``[recordings, probes]`` bool; None:
    all), and notes."""
    if where is None:
        return None, []
    named = Taxonomy({sp.key: sp for sp in species if sp is not None}.values())
    if not len(named):
        raise BirdbridgeError("none of the probes' labels names a species, so --lat/--lon or --species-list cannot "
                              "restrict them; leave those out")
    files = archive.files()
    per_file = np.ones((len(files), len(species)), dtype=bool)
    notes: list[str] = []
    if isinstance(where, RangeFilter):
        places = recording_places(archive, where)
        notes += places.notes()
        expected: dict[RangeFilter, set[str]] = {}
        for i, f in enumerate(files):
            place = places.filters[f.id]
            if place not in expected:
                expected[place] = set(place.match(named).taxonomy.keys)
            per_file[i] = [sp is None or sp.key in expected[place] for sp in species]
    else:
        listed = {sp.key for sp in as_taxonomy(where)}
        per_file[:] = [sp is None or sp.key in listed for sp in species]
    order = np.argsort([f.first_row for f in files], kind="stable")
    return (np.array([files[i].first_row for i in order], dtype=np.int64), per_file[order]), notes


@dataclass
class ProbeDetections:
    """The detections of every recording (search's results), and notes for the summary."""

    results: list[FileResult]
    removed: int = 0
    notes: list[str] = field(default_factory=list)


def apply_probes(archive: Archive, probes: ProbeSet, *, min_conf: float = DEFAULT_MIN_CONF,
                 sensitivity: float = DEFAULT_SENSITIVITY, rank: str = "species",
                 where: RangeFilter | SpeciesArg | None = None, taxonomy: SpeciesArg | None = None,
                 locale: str | None = None, names: CommonNames | None = None) -> ProbeDetections:
    """The detections of every recording of the archive, as search's results (see the module docs); labels that are
    species get their common names in ``locale`` (from ``names``; never blank: English, then the scientific name)."""
    names = names or CommonNames()
    code = None if locale is None else names.check(locale)
    scores = score_archive(archive, probes, min_conf=min_conf, sensitivity=sensitivity, rank=rank, where=where,
                           taxonomy=taxonomy)
    known = None if taxonomy is None else as_taxonomy(taxonomy)
    common: dict[str, str] = {}
    if code is not None:
        for column in scores.columns:
            sp = label_species(column.label, known) if column.rank == "species" else None
            if sp is not None:
                common[column.label] = names.names(code, [(sp.key, sp.common_name)])[sp.key]
    hits: dict[int, list[SpeciesHit]] = defaultdict(list)
    for row, j, cos, conf in zip(scores.rows, scores.probe, scores.cosine, scores.confidence, strict=True):
        c = scores.columns[int(j)]
        hits[int(row)].append(SpeciesHit(c.label, c.label, common.get(c.label), None, float(conf), float(cos), False,
                                         float(conf), c.rank, c.members))
    windows = {w.row: w for w in archive.records(sorted(hits))} if hits else {}
    by_file: dict[int, list[WindowResult]] = defaultdict(list)
    for row in sorted(hits):
        w = windows[row]
        species = sorted(hits[row], key=lambda h: -h.score)
        by_file[w.file].append(WindowResult(row, w.start_s, w.end_s, species))
    results = []
    for f in archive.files():
        found = by_file.get(f.id)
        if not found:
            first = archive.record(f.first_row)
            found = [WindowResult(first.row, first.start_s, first.end_s)]
        results.append(FileResult(f.path, f.duration_s, found, "confidence", min_conf, rank))
    return ProbeDetections(results, scores.removed, scores.notes)


def detections(archive: Archive, probes: ProbeSet, *, min_conf: float = DEFAULT_MIN_CONF,
               sensitivity: float = DEFAULT_SENSITIVITY, **options) -> list[FileResult]:
    """The detections of every recording of the archive, as search's results (:func:`apply_probes`' options)."""
    return apply_probes(archive, probes, min_conf=min_conf, sensitivity=sensitivity, **options).results


__all__ = ["CHUNK_ROWS", "Column", "ProbeDetections", "ProbeScores", "apply_probes", "check_space", "detections",
           "label_species", "probe_groups", "score_archive"]
