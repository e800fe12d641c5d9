"""Scoring a whole archive with its probes: detections with calibrated confidences, in search's result formats.

Every window's cosine with every probe is computed (in chunks of :data:`CHUNK_ROWS` windows: memory stays
bounded whatever the archive's size), mapped to a confidence by the probe's calibration (with
BirdNET-Analyzer's ``sensitivity``), and the window × label pairs whose confidence reaches ``min_conf``
are detections. They come out as :class:`~birdbridge.search.results.FileResult` s, one per recording of
the archive (a recording without a detection keeps its first window, so that its Raven table gets the
``nocall`` row), and are written by :func:`birdbridge.search.formats.write_results`: BirdNET-style CSV,
Raven, JSON or parquet. A hit's ``similarity`` is the window's cosine with the probe; its ``score`` and
``confidence`` the calibrated confidence.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from birdbridge.archive.store import Archive
from birdbridge.errors import BirdbridgeError
from birdbridge.models.calibration import DEFAULT_SENSITIVITY, check_sensitivity
from birdbridge.models.detection import DEFAULT_MIN_CONF
from birdbridge.probes.train import ProbeSet
from birdbridge.search.results import FileResult, SpeciesHit, WindowResult

CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class ProbeScores:
    """Detections as arrays: ``rows``, ``probe`` (index into the probe set), ``cosine`` and ``confidence``."""

    rows: np.ndarray
    probe: np.ndarray
    cosine: np.ndarray
    confidence: np.ndarray


def check_space(archive: Archive, probes: ProbeSet) -> None:
    """Refuse probes trained in another teacher's space (or of another width)."""
    archive.check_teacher(probes.teacher, "the probes")
    if probes.probes and probes.matrix().shape[1] != archive.dim:
        raise BirdbridgeError(f"the probes have {probes.matrix().shape[1]} dimensions, archive {archive.folder} "
                              f"{archive.dim}")


def score_archive(archive: Archive, probes: ProbeSet, *, min_conf: float = DEFAULT_MIN_CONF,
                  sensitivity: float = DEFAULT_SENSITIVITY, chunk_rows: int = CHUNK_ROWS) -> ProbeScores:
    """Every window × probe pair whose calibrated confidence is at least ``min_conf``."""
    check_space(archive, probes)
    archive.check_searchable()
    check_sensitivity(sensitivity)
    if not 0.0 <= min_conf <= 1.0:
        raise BirdbridgeError(f"--min-conf must be in [0, 1], not {min_conf}")
    if not probes.probes:
        raise BirdbridgeError("the probe set holds no probes")
    matrix = probes.matrix().T
    vectors = archive.vectors
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, len(archive), chunk_rows):
        cos = vectors[start : start + chunk_rows].astype(np.float32) @ matrix
        conf = np.stack([p.confidence(cos[:, j], sensitivity) for j, p in enumerate(probes.probes)], axis=1)
        rows, cols = np.nonzero(conf >= min_conf)
        parts.append((rows + start, cols, cos[rows, cols], conf[rows, cols]))
    if not parts:
        empty = np.zeros(0)
        return ProbeScores(empty.astype(np.int64), empty.astype(np.int64), empty, empty)
    rows, cols, cos, conf = (np.concatenate(p) for p in zip(*parts, strict=True))
    return ProbeScores(rows.astype(np.int64), cols.astype(np.int64), cos, conf)


def detections(archive: Archive, probes: ProbeSet, *, min_conf: float = DEFAULT_MIN_CONF,
               sensitivity: float = DEFAULT_SENSITIVITY) -> list[FileResult]:
    """The detections of every recording of the archive, as search's results (see the module docs)."""
    scores = score_archive(archive, probes, min_conf=min_conf, sensitivity=sensitivity)
    hits: dict[int, list[SpeciesHit]] = defaultdict(list)
    for row, j, cos, conf in zip(scores.rows, scores.probe, scores.cosine, scores.confidence, strict=True):
        label = probes.probes[int(j)].label
        hits[int(row)].append(SpeciesHit(label, label, None, None, float(conf), float(cos), False, float(conf)))
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
        results.append(FileResult(f.path, f.duration_s, found, "confidence", min_conf))
    return results


__all__ = ["CHUNK_ROWS", "ProbeScores", "check_space", "detections", "score_archive"]
