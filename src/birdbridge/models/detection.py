"""Which window × species pairs are detections: the one rule that search and evaluation share.

A species is detected in a window when

* its calibrated confidence (:meth:`Calibration.confidence <birdbridge.models.calibration.Calibration.confidence>`,
  with BirdNET-Analyzer's ``sensitivity``) is at least ``min_conf``, or, for a model without a calibration, its
  cosine similarity is at least ``min_sim`` (an :class:`UncalibratedWarning` says so: raw similarities mean
  different things for different models); and
* the window is not nearer to background: its best similarity to a background class (wind, rain, ...:
  :mod:`birdbridge.species.background`) does not beat its best species similarity.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike

from birdbridge.errors import BirdbridgeError
from birdbridge.models.calibration import DEFAULT_SENSITIVITY, Calibration, check_sensitivity

__all__ = ["DEFAULT_MIN_CONF", "DEFAULT_MIN_SIM", "UncalibratedWarning", "background_wins", "detections"]

DEFAULT_MIN_CONF = 0.25  # BirdNET-Analyzer's --min_conf
DEFAULT_MIN_SIM = 0.5  # cosine similarity, for a model without a calibration


class UncalibratedWarning(UserWarning):
    """Detections of a model without a calibration were made on raw cosine similarities."""


def background_wins(species_sims: ArrayLike, background_sims: ArrayLike | None) -> np.ndarray:
    """bool [W]: the windows whose best background similarity beats their best species similarity (none without
    background classes)."""
    sims = _matrix(species_sims, "species similarities")
    if background_sims is None:
        return np.zeros(sims.shape[0], dtype=bool)
    background = _matrix(background_sims, "background similarities")
    if background.shape[0] != sims.shape[0]:
        raise BirdbridgeError(f"{background.shape[0]} windows of background similarities but {sims.shape[0]} of "
                              "species similarities")
    if background.shape[1] == 0:
        return np.zeros(sims.shape[0], dtype=bool)
    best = sims.max(axis=1) if sims.shape[1] else np.full(sims.shape[0], -np.inf)
    return background.max(axis=1) > best


def detections(
    species_sims: ArrayLike,
    background_sims: ArrayLike | None,
    calibration: Calibration | None,
    *,
    min_conf: float = DEFAULT_MIN_CONF,
    sensitivity: float = DEFAULT_SENSITIVITY,
    min_sim: float = DEFAULT_MIN_SIM,
) -> np.ndarray:
    """bool [W, S]: the detected window × species pairs (see the module docstring).

    Args:
        species_sims: cosine similarities [W, S] of windows to species (whole rows: the background rule
            compares a window's best species with its best background class).
        background_sims: cosine similarities [W, B] of the same windows to background classes, or None (no
            background rule).
        calibration: the model's; None thresholds ``species_sims`` at ``min_sim`` (with an
            :class:`UncalibratedWarning`).
    """
    sims = _matrix(species_sims, "species similarities")
    quiet = background_wins(sims, background_sims)
    if calibration is None:
        threshold = _in_range(min_sim, "min_sim", -1.0, 1.0)
        warnings.warn(UncalibratedWarning(
            f"the model has no calibration: detections are cosine similarities of at least {threshold:g} (min_sim); "
            "calibrate it for confidences"), stacklevel=2)
        passed = sims >= threshold
    else:
        passed = calibration.confidence(sims, check_sensitivity(sensitivity)) >= _in_range(min_conf, "min_conf", 0, 1)
    return passed & ~quiet[:, None]


def _matrix(values: ArrayLike, what: str) -> np.ndarray:
    out = np.asarray(values)
    if out.ndim != 2:
        raise BirdbridgeError(f"{what} must be a [windows, classes] matrix, got shape {out.shape}")
    return out


def _in_range(value: float, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise BirdbridgeError(f"{name} must be a number from {low:g} to {high:g}, not {value!r}")
    return number
