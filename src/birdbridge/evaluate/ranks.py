"""Audio→image MAP and zero-shot top-1 at genus and family rank (``a2i_map_genus``, ``zero_shot_top1_family``, ...).

At a rank, a picture is relevant to a recording when their species share the taxon (their genus, their family),
and a zero-shot answer is right when the best-scoring species is of the recording's taxon. A rank that the
dataset's taxonomy does not give for any species (family, for a manifest without a taxonomy CSV) is left out;
a species whose taxon is unknown counts as its own taxon.
"""

from __future__ import annotations

import numpy as np

from birdbridge.evaluate.metrics import retrieval_metrics
from birdbridge.species.ranks import rank_groups
from birdbridge.species.taxonomy import Taxonomy

TAXON_RANKS = ("genus", "family")


def taxon_of(taxonomy: Taxonomy, rank: str) -> np.ndarray | None:
    """Per species of ``taxonomy`` (in its order) the index of its taxon at ``rank``; None if it names none."""
    groups = rank_groups([(sp.scientific_name, sp.taxonomy_path) for sp in taxonomy], rank)
    return None if all(r == "species" for r in groups.ranks) else groups.of


def rank_metrics(taxonomy: Taxonomy, query_labels: np.ndarray, *, audio: np.ndarray | None = None,
                 images: np.ndarray | None = None, image_labels: np.ndarray | None = None,
                 scores: np.ndarray | None = None) -> dict[str, float]:
    """``a2i_map_<rank>`` (×100; with ``audio`` and ``images`` in the teacher's space) and ``zero_shot_top1_<rank>``
    (×100; with species ``scores`` [queries, species]) for each of :data:`TAXON_RANKS` the taxonomy gives; labels
    are species indices into ``taxonomy``."""
    query_labels = np.asarray(query_labels, dtype=np.int64)
    out: dict[str, float] = {}
    for rank in TAXON_RANKS:
        taxa = taxon_of(taxonomy, rank)
        if taxa is None:
            continue
        if audio is not None and images is not None and image_labels is not None:
            out[f"a2i_map_{rank}"] = retrieval_metrics(audio, taxa[query_labels], images,
                                                       taxa[np.asarray(image_labels, dtype=np.int64)]).map
        if scores is not None and len(query_labels):
            best = np.asarray(scores).argmax(axis=1)  # ties: the first species, as topk_accuracy
            out[f"zero_shot_top1_{rank}"] = 100.0 * float(np.mean(taxa[best] == taxa[query_labels]))
    return out
