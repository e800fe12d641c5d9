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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.models.calibration import DEFAULT_SENSITIVITY, Calibration, check_sensitivity
from birdbridge.models.detection import DEFAULT_MIN_CONF, DEFAULT_MIN_SIM, background_wins

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

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise BirdbridgeError(f"unknown score {self.score!r}; use one of {', '.join(SCORES)}")
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


@dataclass(frozen=True)
class Hit:
    """One species of a window: its position in the species searched, and its scores."""

    column: int
    score: float  # the score that ranked it
    similarity: float
    confidence: float | None


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


def score_windows(similarities: np.ndarray, scoring: Scoring, calibration: Calibration | None, *, top_k: int,
                  background: np.ndarray | None = None, scale: float = DEFAULT_SCALE) -> ScoredWindows:
    """Score ``similarities`` ``[windows, species]`` (cosines) under ``scoring``; ``background`` holds each
    window's cosines to the background classes ``[windows, classes]``, if the gallery has a vocabulary."""
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
    has_background = ranked_by != "softmax" and background is not None and background.shape[1] > 0
    if has_background:  # the same rule as evaluation's (birdbridge.models.detection)
        quiet = background_wins(sims, background)
        nearest = background.argmax(axis=1)
    for i in range(n_windows):
        hits: list[Hit] = []
        if not (has_background and quiet[i]):
            # best score first; equal scores (e.g. saturated confidences) by similarity, then by position
            order = np.lexsort((np.arange(n_species), -sims[i], -values[i]))[:top_k]
            for j in order:
                if values[i, j] < threshold:
                    break
                hits.append(Hit(int(j), float(values[i, j]), float(sims[i, j]),
                                None if confidence is None else float(confidence[i, j])))
        out.hits.append(hits)
        out.background.append(int(nearest[i]) if has_background and not hits else None)
    return out
