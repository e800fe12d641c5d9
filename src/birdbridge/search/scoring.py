"""How a window's species are scored, and which of them are detections.

Three scores, chosen with ``--score``:

* ``confidence`` (default): the student's calibration (:class:`~birdbridge.models.calibration.Calibration`)
  maps each cosine similarity to a confidence in [0, 1] that stands on its own: it does not depend on the
  other species listed, and the confidences of one window do not sum to 1. ``sensitivity`` shifts the
  curve as BirdNET-Analyzer's does; species at ``min_conf`` or above are detections. A model without a
  calibration falls back to ``similarity`` (with one warning, in :class:`~birdbridge.search.SearchEngine`).
* ``similarity``: the raw cosine similarity, thresholded at ``min_sim``.
* ``softmax``: the ranking of plain retrieval, a softmax over the species listed (it always names a species,
  and its scores change with the list); ``min_score`` leaves out the lowest.

In the first two, a window whose best background similarity (wind, rain, ... of the gallery's background
vocabulary) beats its best species similarity gets no detection; a window without a detection records its
nearest background class.

At a rank above species (``rank``: genus, family, order; :mod:`birdbridge.species.ranks`) the species of each
taxon are combined (:func:`combine_scores`), so that a window split between congeners can still name their genus:

* ``softmax``: the taxon's probability is the sum of its species' probabilities (exact under the softmax);
* ``confidence``: the noisy-OR ``1 - prod(1 - c)``, the chance that at least one of its species calls if their
  confidences were independent. It never falls below the best species' confidence and never exceeds 1, and it
  rises when the evidence is split between congeners, which ``rank="auto"`` needs (the max would never let a
  genus reach a threshold that none of its species reaches). Congeners' confidences are correlated, so it can
  overstate; read a genus answer as "one of these", not as a calibrated confidence;
* ``similarity``: the best similarity of its species (cosines do not add).

``rank="auto"`` answers each window at the lowest rank whose best taxon reaches the bar: ``min_conf`` for
confidences and softmax probabilities, ``min_sim`` for similarities (which never rise with the rank, so auto
answers at species rank there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.models.calibration import DEFAULT_SENSITIVITY, Calibration, check_sensitivity
from birdbridge.models.detection import DEFAULT_MIN_CONF, DEFAULT_MIN_SIM, background_wins
from birdbridge.species.ranks import ANSWER_RANKS, RankGroups, check_rank

SCORES = ("confidence", "softmax", "similarity")
DEFAULT_MIN_SCORE = 0.05
DEFAULT_SCALE = 100.0  # CLIP's logit scale, when a model records none


@dataclass(frozen=True)
class Scoring:
    """The score that ranks species (``score``, one of :data:`SCORES`) and the thresholds of detections."""

    score: str = "confidence"
    min_conf: float = DEFAULT_MIN_CONF
    sensitivity: float = DEFAULT_SENSITIVITY
    min_sim: float = DEFAULT_MIN_SIM
    min_score: float = DEFAULT_MIN_SCORE
    rank: str = "species"  # the rank answered at: species, genus, family, order or auto

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise BirdbridgeError(f"unknown score {self.score!r}; use one of {', '.join(SCORES)}")
        check_rank(self.rank)
        for name, low, high in (("min_conf", 0.0, 1.0), ("min_score", 0.0, 1.0), ("min_sim", -1.0, 1.0)):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and low <= value <= high):
                raise BirdbridgeError(f"{name} must be a number from {low:g} to {high:g}, not {value!r}")
        check_sensitivity(self.sensitivity)

    def ranked_by(self, calibration: Calibration | None) -> str:
        """The score that ranks: ``similarity`` stands in for ``confidence`` when there is no calibration."""
        return "similarity" if self.score == "confidence" and calibration is None else self.score

    def threshold(self, ranked_by: str) -> float:
        """The lowest score of a detection when ranking by ``ranked_by``."""
        return {"confidence": self.min_conf, "similarity": self.min_sim, "softmax": self.min_score}[ranked_by]

    def auto_bar(self, ranked_by: str) -> float:
        """The score the best taxon of a rank must reach for ``rank="auto"`` to answer at that rank."""
        return self.min_sim if ranked_by == "similarity" else self.min_conf

    @property
    def levels(self) -> tuple[str, ...]:
        """The ranks a window may be answered at, lowest first."""
        return ANSWER_RANKS if self.rank == "auto" else (self.rank,)


@dataclass(frozen=True)
class Hit:
    """One species (or taxon) of a window: its position in the species searched (at a higher ``level``: its group
    in that rank's :class:`~birdbridge.species.ranks.RankGroups`), and its scores."""

    column: int
    score: float  # the score that ranked it
    similarity: float
    confidence: float | None
    level: str = "species"  # the rank whose groups ``column`` indexes


@dataclass
class ScoredWindows:
    """Per window: the species that are detections (best first), and the nearest background class of a window
    without one (a position in the background vocabulary; None without a vocabulary, or in ``softmax``)."""

    ranked_by: str
    threshold: float
    hits: list[list[Hit]] = field(default_factory=list)
    background: list[int | None] = field(default_factory=list)


def softmax(similarities: np.ndarray, scale: float) -> np.ndarray:
    """Row-wise softmax of ``scale * similarities``."""
    logits = scale * similarities
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def combine_scores(values: np.ndarray, groups: RankGroups, how: str) -> np.ndarray:
    """``[windows, species]`` scores combined per taxon of ``groups`` into ``[windows, taxa]``: ``softmax`` sums,
    ``confidence`` takes the noisy-OR ``1 - prod(1 - c)``, ``similarity`` the max (see the module's text)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(groups):
        return np.zeros((values.shape[0], 0))
    part, starts = values[:, groups.order], groups.starts
    if how == "softmax":
        return np.add.reduceat(part, starts, axis=1)
    if how == "confidence":
        with np.errstate(divide="ignore"):  # a confidence of 1: log 0, and the taxon's is 1
            return -np.expm1(np.add.reduceat(np.log1p(-part), starts, axis=1))
    if how == "similarity":
        return np.maximum.reduceat(part, starts, axis=1)
    raise BirdbridgeError(f"unknown score {how!r}; use one of {', '.join(SCORES)}")


def score_windows(similarities: np.ndarray, scoring: Scoring, calibration: Calibration | None, *, top_k: int,
                  background: np.ndarray | None = None, scale: float = DEFAULT_SCALE,
                  groups: dict[str, RankGroups] | None = None) -> ScoredWindows:
    """Score ``similarities`` ``[windows, species]`` (cosines) under ``scoring``; ``background`` holds each
    window's cosines to the background classes ``[windows, classes]``, if the gallery has a vocabulary.
    ``groups``: the species grouped at each rank above species that ``scoring.rank`` may answer at."""
    sims = np.asarray(similarities)
    ranked_by = scoring.ranked_by(calibration)
    threshold = scoring.threshold(ranked_by)
    out = ScoredWindows(ranked_by, threshold)
    n_windows, n_species = sims.shape
    confidence = None if calibration is None else calibration.confidence(sims, scoring.sensitivity)
    if ranked_by == "softmax":
        values = softmax(sims, scale) if n_species else sims
    else:
        values = confidence if ranked_by == "confidence" else sims
    levels = {"species": (values, sims, confidence)}
    for level in (lv for lv in scoring.levels if lv != "species"):
        if groups is None or level not in groups:
            raise BirdbridgeError(f"answering at {level} rank needs the species grouped at that rank")
        levels[level] = (combine_scores(values, groups[level], ranked_by),
                         combine_scores(sims, groups[level], "similarity"),
                         None if confidence is None else combine_scores(confidence, groups[level], "confidence"))
    bar = scoring.auto_bar(ranked_by)
    has_background = ranked_by != "softmax" and background is not None and background.shape[1] > 0
    if has_background:  # the same rule as evaluation's (birdbridge.models.detection)
        quiet = background_wins(sims, background)
        nearest = background.argmax(axis=1)
    for i in range(n_windows):
        hits: list[Hit] = []
        if not (has_background and quiet[i]) and n_species:
            level = scoring.levels[-1]
            if scoring.rank == "auto":  # the lowest rank whose best taxon reaches the bar (else the highest)
                level = next((lv for lv in scoring.levels if levels[lv][0][i].max() >= bar), level)
            vals, sim, conf = levels[level]
            # best score first; equal scores (e.g. saturated confidences) by similarity, then by position
            order = np.lexsort((np.arange(vals.shape[1]), -sim[i], -vals[i]))[:top_k]
            for j in order:
                if vals[i, j] < threshold:
                    break
                hits.append(Hit(int(j), float(vals[i, j]), float(sim[i, j]),
                                None if conf is None else float(conf[i, j]), level))
        out.hits.append(hits)
        out.background.append(int(nearest[i]) if has_background and not hits else None)
    return out
