"""Figures with relevance at a taxon rank: every retrieval direction between audio, pictures and species texts at
species, genus and family rank (``a2i/genus/map``, ...), and zero-shot top-1 at genus and family rank
(``zero_shot_top1_family``).

At a rank, a gallery item is relevant to a query when their species share the taxon (the species itself, its
genus, its family), and a zero-shot answer is right when the best-scoring species is of the recording's taxon. A
rank that the dataset's taxonomy does not give for any species (family, for a manifest without a taxonomy CSV) is
left out; a species whose taxon is unknown counts as its own taxon.

Directions are named by their query and gallery sides, ``a`` (recordings), ``i`` (pictures) and ``t`` (one text
embedding per species): ``a2i``, ``i2a``, ``a2t``, ``t2a``, ``i2t``, ``t2i``. Each is one
:func:`~birdbridge.evaluate.metrics.retrieval_metrics` (MAP over the full ranking and R@1, ×100), which scores
1,024 queries at a time against the whole gallery: memory is about 1,024 × gallery × 8 bytes per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from birdbridge.evaluate.metrics import retrieval_metrics
from birdbridge.species.ranks import rank_groups
from birdbridge.species.taxonomy import Taxonomy

TAXON_RANKS = ("genus", "family")
RANKS = ("species", *TAXON_RANKS)
DIRECTIONS = ("a2i", "i2a", "a2t", "t2a", "i2t", "t2i")
TEACHER_DIRECTIONS = ("i2t", "t2i")  # the teacher alone: the ceiling of the others
FIGURES = ("map", "r1")
SIDES = {"a": "audio", "i": "pictures", "t": "species texts"}

Side = tuple[np.ndarray, np.ndarray]
"""One side of a retrieval: embeddings [N, D] and their species (indices into the taxonomy) [N]."""


def taxon_of(taxonomy: Taxonomy, rank: str) -> np.ndarray | None:
    """Per species of ``taxonomy`` (in its order) the index of its taxon at ``rank``; None if it names none.
    At ``species`` rank every species is its own taxon."""
    if rank == "species":
        return np.arange(len(taxonomy), dtype=np.int64)
    groups = rank_groups([(sp.scientific_name, sp.taxonomy_path) for sp in taxonomy], rank)
    return None if all(r == "species" for r in groups.ranks) else groups.of


def direction_key(direction: str, rank: str, figure: str) -> str:
    """The stable key of a figure, e.g. ``a2i/genus/map``."""
    return f"{direction}/{rank}/{figure}"


def direction_metrics(taxonomy: Taxonomy, sides: Mapping[str, Side], directions: Sequence[str] = DIRECTIONS, *,
                      ranks: Sequence[str] = RANKS, species: np.ndarray | None = None) -> dict[str, float]:
    """MAP and R@1 (×100) of each of ``directions`` whose two sides (``a``, ``i``, ``t``) are given, at each of
    ``ranks`` the taxonomy gives: ``{"a2i/genus/map": …, "a2i/genus/r1": …}``.

    ``species`` (bool [S]) keeps only the queries of those species (the gallery stays whole); a direction without
    such queries gets NaN. Queries whose taxon has nothing in the gallery are skipped, as in
    :class:`~birdbridge.evaluate.metrics.RetrievalResult`.
    """
    out: dict[str, float] = {}
    for rank in ranks:
        taxa = taxon_of(taxonomy, rank)
        if taxa is None:
            continue
        for direction in directions:
            query, gallery = direction[0], direction[-1]
            if query not in sides or gallery not in sides:
                continue
            (q, q_species), (g, g_species) = sides[query], sides[gallery]
            q_species = np.asarray(q_species, dtype=np.int64)
            keep = np.ones(len(q_species), bool) if species is None else np.asarray(species, bool)[q_species]
            if not keep.any() or not len(g_species):
                out[direction_key(direction, rank, "map")] = out[direction_key(direction, rank, "r1")] = np.nan
                continue
            res = retrieval_metrics(q[keep], taxa[q_species[keep]], g, taxa[np.asarray(g_species, dtype=np.int64)],
                                    ks=(1,))
            out[direction_key(direction, rank, "map")] = res.map
            out[direction_key(direction, rank, "r1")] = res.recall[1]
    return out


def rank_metrics(taxonomy: Taxonomy, query_labels: np.ndarray, *, audio: np.ndarray | None = None,
                 images: np.ndarray | None = None, image_labels: np.ndarray | None = None,
                 scores: np.ndarray | None = None) -> dict[str, float]:
    """``a2i_map_<rank>`` (×100; with ``audio`` and ``images`` in the teacher's space) and ``zero_shot_top1_<rank>``
    (×100; with species ``scores`` [queries, species]) for each of :data:`TAXON_RANKS` the taxonomy gives; labels
    are species indices into ``taxonomy``."""
    query_labels = np.asarray(query_labels, dtype=np.int64)
    out: dict[str, float] = {}
    if audio is not None and images is not None and image_labels is not None:
        found = direction_metrics(taxonomy, {"a": (audio, query_labels), "i": (images, image_labels)}, ("a2i",),
                                  ranks=TAXON_RANKS)
        out.update({f"a2i_map_{rank}": found[direction_key("a2i", rank, "map")]
                    for rank in TAXON_RANKS if direction_key("a2i", rank, "map") in found})
    for rank in TAXON_RANKS:
        taxa = taxon_of(taxonomy, rank)
        if taxa is not None and scores is not None and len(query_labels):
            best = np.asarray(scores).argmax(axis=1)  # ties: the first species, as topk_accuracy
            out[f"zero_shot_top1_{rank}"] = 100.0 * float(np.mean(taxa[best] == taxa[query_labels]))
    return out
