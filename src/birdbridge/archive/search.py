"""Searching an archive: one query (text, picture, example recording or vector) in, the nearest windows out.

Scores are cosine similarities in the teacher's space, best first. Filters (dates, times of day, sites)
select the windows first and the search is then exact over them, so a filtered search returns exactly
what an exhaustive one would. Without filters the ANN index is used when one covers every window
(results re-scored exactly), else the search is exact. ``per_file`` keeps at most that many hits per
recording: the search widens (4× each step) until ``top_k`` hits pass the cap, or every window has
been seen, or the scores fall below ``min_score``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from birdbridge.archive.queries import image_query, like_query, text_query
from birdbridge.archive.store import Archive
from birdbridge.archive.where import expected_in, recording_places
from birdbridge.errors import BirdbridgeError
from birdbridge.species.ranks import check_rank
from birdbridge.species.taxonomy import Species, Taxonomy
from birdbridge.species.where import RangeFilter
from birdbridge.store.records import batches, placeholders
from birdbridge.store.vector_store import VectorStore
from birdbridge.utils.vectors import l2_normalize

#: How much wider each step of a per-file-capped search looks.
WIDEN = 4


@dataclass(frozen=True)
class HitSpecies:
    """A candidate species of a hit (or a taxon, at a rank above species): as a window of ``birdbridge search`` names
    it, with the score that ranked it, its cosine ``similarity``, its ``confidence`` (None: no calibration), the rank
    it answers at and, for a taxon, its species."""

    key: str
    scientific_name: str
    common_name: str | None
    score: float
    similarity: float
    confidence: float | None = None
    taxon_rank: str = "species"
    members: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "members": list(self.members)}


@dataclass(frozen=True)
class ArchiveHit:
    """One window found: its rank (from 1), row, recording, span in the recording, score, and the date, time of
    day and site of its start (None where the recording has none); ``species``: its candidate species, best first
    (None when none were asked for)."""

    rank: int
    row: int
    file: str
    start_s: float
    end_s: float
    score: float
    date: str | None
    time: str | None
    site: str | None
    species: tuple[HitSpecies, ...] | None = None

    @property
    def top(self) -> HitSpecies | None:
        """The best candidate species (None: none, or none asked for)."""
        return self.species[0] if self.species else None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "species"}
        if self.species is not None:
            data["species"] = [sp.to_dict() for sp in self.species]
        return data


@dataclass(frozen=True)
class ArchiveResults:
    """The hits of one query, with what was asked (``query``, ``filters``), how (``method``: ``exact`` or
    ``ann``) over how many windows (``searched``), and what output files need: the recordings' durations
    and the student's frequency band."""

    archive: str
    query: dict[str, Any]
    filters: dict[str, Any]
    hits: list[ArchiveHit]
    method: str
    searched: int
    band_hz: tuple[float, float] = (0.0, 0.0)
    durations: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the summary says (range filters, left-out recordings)
    candidates: dict[str, Any] | None = None  # how the hits' candidate species were scored (None: not asked for)

    def to_dict(self) -> dict[str, Any]:
        data = {"archive": self.archive, "query": self.query, "filters": self.filters, "method": self.method,
                "searched": self.searched}
        if self.candidates is not None:
            data["candidates"] = self.candidates
        if self.notes:
            data["notes"] = self.notes
        return {**data, "hits": [h.to_dict() for h in self.hits]}


def search_archive(
    archive: Archive, *, text: str | None = None, image: Any = None, like: Any = None,
    vector: np.ndarray | None = None, top_k: int = 20, min_score: float | None = None, per_file: int | None = None,
    date_from: str | None = None, date_to: str | None = None, time_from: str | None = None,
    time_to: str | None = None, sites: Sequence[str] | None = None, taxonomy: Any = None, free_text: bool = False,
    model: Any = None, teacher: Any = None, device: str | None = None, exact: bool | None = None,
    rank: str = "species", gallery: Any = None, where: RangeFilter | None = None,
) -> ArchiveResults:
    """The ``top_k`` windows nearest to exactly one of ``text``, ``image``, ``like`` or ``vector`` (a ``[D]`` query
    in the teacher's space, e.g. a probe's weights, or ``[n, D]``: a window's score is its best cosine) that pass the
    filters (see :meth:`Archive.rows_where`).

    ``model`` and ``teacher`` default to those the archive records; a teacher or student of another space is
    refused. ``taxonomy`` (a taxonomy CSV or species list) lets ``text`` be a common name or code. At ``rank`` genus,
    family, order (or auto) a ``text`` that is no species is a taxon, its species from ``gallery``'s species index
    or ``taxonomy`` (:func:`~birdbridge.archive.queries.taxon_query`). With ``where`` (a
    :class:`~birdbridge.species.where.RangeFilter`) a species or taxon is searched only in the recordings where
    BirdNET's range model expects it then (:mod:`birdbridge.archive.where`); the notes count those left out.
    ``exact=True`` never uses the ANN index.
    """
    given = [name for name, value in (("text", text), ("image", image), ("like", like), ("vector", vector))
             if value is not None]
    if len(given) != 1:
        got = ", ".join(given) or "none"
        raise BirdbridgeError(f"search with exactly one of --text, --image or --like (got {got})")
    if int(top_k) < 1:
        raise BirdbridgeError(f"--top-k must be at least 1, got {top_k}")
    if per_file is not None and int(per_file) < 1:
        raise BirdbridgeError(f"--per-file must be at least 1, got {per_file}")
    archive.check_searchable()
    filters = {"date_from": date_from, "date_to": date_to, "time_from": time_from, "time_to": time_to,
               "sites": list(sites) if sites else None, "per_file": per_file, "min_score": min_score}
    rows = archive.rows_where(date_from=date_from, date_to=date_to, time_from=time_from, time_to=time_to,
                              sites=sites)  # checked before any model loads
    check_rank(rank)
    if text is not None:
        query, described = text_query(archive, text, teacher=teacher, taxonomy=taxonomy, free_text=free_text,
                                      device=device, rank=rank, gallery=gallery)
    elif image is not None:
        query, described = image_query(archive, image, teacher=teacher, device=device)
    elif like is not None:
        query, described = like_query(archive, like, model=model, device=device)
    else:
        query, described = np.asarray(vector, np.float32).reshape(1, -1), {"kind": "vector"}
    notes: list[str] = []
    if where is not None and described.get("read_as") in ("species", "taxon"):
        rows, notes = _where_expected(archive, where, described, rows)
    q = l2_normalize(archive.check_queries(query), what="the query")  # scores are cosines, whatever its length
    found = rank_windows(archive, q, int(top_k), rows=rows, min_score=min_score, per_file=per_file, exact=exact)
    method = "ann" if rows is None and exact is not True and archive.ann_index() is not None else "exact"
    hits, durations = _hits(archive, found)
    band = archive.student.get("band_hz") or (0.0, 0.0)
    return ArchiveResults(str(archive.folder), described, filters, hits, method,
                          len(archive) if rows is None else len(rows), (float(band[0]), float(band[1])), durations,
                          notes)


def _where_expected(archive: Archive, where: RangeFilter, described: dict[str, Any], rows: np.ndarray | None
                    ) -> tuple[np.ndarray, list[str]]:
    """``rows`` (None: all) without the windows of recordings where the range model expects none of the queried
    species then; and the notes that count them."""
    names = described.get("members") or [described["species"]]
    wanted = Taxonomy([Species.from_names(name) for name in names])
    places = recording_places(archive, where)
    cache: dict[RangeFilter, bool] = {}
    kept, left = [], []
    for f in archive.files():
        (kept if expected_in(places.filters[f.id], wanted, cache) else left).append(f)
    spans = [np.arange(f.first_row, f.first_row + f.n_windows, dtype=np.int64) for f in kept]
    allowed = np.concatenate(spans) if spans else np.zeros(0, dtype=np.int64)
    selected = allowed if rows is None else np.intersect1d(rows, allowed)
    what = described.get("taxon") or described["species"]
    notes = [*places.notes(), f"range filter {where.describe()}: {len(left):,} recordings "
             f"({sum(f.n_windows for f in left):,} windows) left out, where BirdNET's range model does not expect "
             f"{what} then; {len(kept):,} searched"]
    return selected, notes


def rank_windows(
    archive: Archive, q: np.ndarray, top_k: int, *, rows: np.ndarray | None = None, min_score: float | None = None,
    per_file: int | None = None, exact: bool | None = None,
) -> list[tuple[int, float]]:
    """``(row, score)`` of the best windows for a ``[1, D]`` query, best first (see the module docs); for ``[n, D]``
    queries a window's score is its best cosine with any of them."""
    n = len(archive) if rows is None else len(rows)
    if n == 0:
        return []
    k = min(n, top_k if per_file is None else top_k * WIDEN)
    while True:
        scores, found = VectorStore.search(archive, q, k, exact=exact, rows=rows)
        best: dict[int, float] = {}
        for row_ids, row_scores in zip(found, scores, strict=True):
            for r, sc in zip(row_ids, row_scores, strict=True):
                if r >= 0 and float(sc) > best.get(int(r), -np.inf):
                    best[int(r)] = float(sc)
        # a window is sure of its place when it scores at least every query's k-th: one below may be missing others
        full = [float(np.min(row_scores)) for row_ids, row_scores in zip(found, scores, strict=True)
                if np.all(row_ids >= 0)]
        cut = max(full) if len(full) == len(found) and k < n else -np.inf
        pairs = sorted(best.items(), key=lambda p: (-p[1], p[0]))
        seen_all = k >= n or cut == -np.inf
        pairs = [p for p in pairs if p[1] >= cut]
        files = _files_of(archive, [r for r, _ in pairs]) if per_file is not None else {}
        taken: list[tuple[int, float]] = []
        per: Counter[int] = Counter()
        for row, score in pairs:
            if min_score is not None and score < min_score:
                break
            if per_file is not None:
                if per[files[row]] >= per_file:
                    continue
                per[files[row]] += 1
            taken.append((row, score))
            if len(taken) == top_k:
                break
        below = min_score is not None and cut < min_score
        if len(taken) == top_k or seen_all or below:
            return taken
        k = min(n, k * WIDEN)


def _files_of(archive: Archive, rows: list[int]) -> dict[int, int]:
    return {int(r): int(f) for r, f in archive.select_in("row", rows, ("row", "file"))}


def _hits(archive: Archive, found: list[tuple[int, float]]) -> tuple[list[ArchiveHit], dict[str, float]]:
    rows = [r for r, _ in found]
    facts: dict[int, tuple] = {}
    for part in batches(rows):
        for row, *rest in archive.query(
            "SELECT w.row, f.path, w.start_s, w.end_s, f.t0, f.date, f.site, f.duration_s FROM windows w JOIN files f "
            f"ON f.id = w.file WHERE w.row IN ({placeholders(len(part))})", part):
            facts[row] = tuple(rest)
    hits, durations = [], {}
    for rank, (row, score) in enumerate(found, start=1):
        path, start, end, t0, day, site, duration = facts[row]
        clock = None
        if t0 is not None:
            when = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=t0 + start)
            day, clock = when.date().isoformat(), when.time().isoformat(timespec="seconds")
        hits.append(ArchiveHit(rank, row, path, start, end, score, day, clock, site))
        durations[path] = float(duration)
    return hits, durations


__all__ = ["ArchiveHit", "ArchiveResults", "HitSpecies", "rank_windows", "search_archive"]
