"""Detection confidences that stand on their own: a logistic map from cosine similarity to probability.

A student's audio embedding is compared with each species' text embedding in the teacher's space
(cosine similarity in [-1, 1]). Those similarities are not probabilities and their scale differs from
model to model, so each trained student carries a *calibration*: ``logit = slope * similarity +
intercept``, fitted by logistic regression on a labelled validation split (every window × species
pair is one example: positive when the species calls in it). The confidence of a species in a window
is then

    confidence = sigmoid(clip(logit + (sensitivity - 1) * 10, -20, 20))

with BirdNET-Analyzer's detection ``sensitivity`` (0.5–1.5, default 1.0; higher gives higher
confidences: the curve shifts, as BirdNET-Analyzer 2.x's ``flat_sigmoid`` does). Confidences of the
species of one window are independent: they do not sum to 1.

The calibration is stored with the model, in ``calibration.json`` beside ``birdbridge.json``
(:func:`write_calibration`, :func:`read_calibration`); it is not part of the model's fingerprint, so
recalibrating never makes embeddings written by the model stale. A loaded student carries it as
``student.calibration`` (None when the folder has none).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.errors import BirdbridgeError, ModelFormatError
from birdbridge.utils.atomic import write_json

__all__ = [
    "CALIBRATION_FILE",
    "DEFAULT_SENSITIVITY",
    "SENSITIVITY_RANGE",
    "Calibration",
    "check_sensitivity",
    "fit_calibration",
    "read_calibration",
    "write_calibration",
]

DEFAULT_SENSITIVITY = 1.0
SENSITIVITY_RANGE = (0.5, 1.5)  # BirdNET-Analyzer's
_LOGIT_CLIP = 20.0
_SHIFT_PER_UNIT = 10.0  # BirdNET-Analyzer: (sensitivity - 1) * 10 added to the logit
FORMAT = "logistic-cosine"
CALIBRATION_FILE = "calibration.json"


def check_sensitivity(sensitivity: float) -> float:
    """``sensitivity`` as a float in :data:`SENSITIVITY_RANGE`, or a BirdbridgeError saying the range."""
    low, high = SENSITIVITY_RANGE
    try:
        value = float(sensitivity)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise BirdbridgeError(f"sensitivity must be a number from {low} to {high} (as BirdNET-Analyzer's), "
                              f"not {sensitivity!r}")
    return value


@dataclass(frozen=True)
class Calibration:
    """``logit = slope * cosine_similarity + intercept``; see the module docstring."""

    slope: float
    intercept: float
    n_positive: int = 0
    n_negative: int = 0
    source: str = ""  # what it was fitted on, e.g. "demo-world:val"
    prompts: dict[str, Any] = field(default_factory=dict)  # forms/templates of the species embeddings it saw
    teacher_fingerprint: str | None = None
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # fit diagnostics (log-loss, AP, ...)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.slope) and math.isfinite(self.intercept)):
            raise ModelFormatError(f"calibration slope/intercept must be finite, got {self.slope}, {self.intercept}")

    def logit(self, similarity: np.ndarray | float, sensitivity: float = DEFAULT_SENSITIVITY) -> np.ndarray:
        """The (sensitivity-shifted, clipped) logit of each similarity."""
        shift = (check_sensitivity(sensitivity) - 1.0) * _SHIFT_PER_UNIT
        z = self.slope * np.asarray(similarity, dtype=np.float64) + self.intercept + shift
        return np.clip(z, -_LOGIT_CLIP, _LOGIT_CLIP)

    def confidence(self, similarity: np.ndarray | float, sensitivity: float = DEFAULT_SENSITIVITY) -> np.ndarray:
        """Confidence in [0, 1] of each similarity (any shape), float32."""
        return (1.0 / (1.0 + np.exp(-self.logit(similarity, sensitivity)))).astype(np.float32)

    def similarity_at(self, confidence: float, sensitivity: float = DEFAULT_SENSITIVITY) -> float:
        """The similarity whose confidence is ``confidence`` (for thresholds); +inf/-inf at 1/0."""
        if not 0.0 <= confidence <= 1.0:
            raise BirdbridgeError(f"confidence must be in [0, 1], not {confidence!r}")
        if confidence <= 0.0:
            return -math.inf
        if confidence >= 1.0:
            return math.inf
        shift = (check_sensitivity(sensitivity) - 1.0) * _SHIFT_PER_UNIT
        logit = math.log(confidence / (1.0 - confidence))
        return (logit - self.intercept - shift) / self.slope if self.slope else math.copysign(math.inf, -logit)

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "calibration") -> Calibration:
        if not isinstance(data, Mapping) or data.get("format", FORMAT) != FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ModelFormatError(f"{source}: unknown calibration format {found!r} (expected {FORMAT!r}); "
                                   "recalibrate with `birdbridge calibrate`")
        try:
            return cls(
                slope=float(data["slope"]), intercept=float(data["intercept"]),
                n_positive=int(data.get("n_positive", 0)), n_negative=int(data.get("n_negative", 0)),
                source=str(data.get("source", "")), prompts=dict(data.get("prompts") or {}),
                teacher_fingerprint=data.get("teacher_fingerprint"), created=str(data.get("created", "")),
                extra=dict(data.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{source}: unreadable calibration ({exc}); recalibrate with "
                                   "`birdbridge calibrate`") from None


def read_calibration(folder: str | os.PathLike[str]) -> Calibration | None:
    """The calibration stored in a model folder, or None if it has none."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: unreadable calibration ({exc}); recalibrate with "
                               "`birdbridge calibrate`") from None
    return Calibration.from_dict(data, str(path))


def write_calibration(folder: str | os.PathLike[str], calibration: Calibration) -> Path:
    """Store ``calibration`` with the model in ``folder`` (atomically; replaces an older one)."""
    path = Path(folder) / CALIBRATION_FILE
    write_json(path, calibration.as_dict())
    return path


def fit_calibration(
    similarities: np.ndarray,
    positives: np.ndarray,
    *,
    l2: float = 1e-3,
    max_iter: int = 100,
    **info: Any,
) -> Calibration:
    """Fit ``logit = slope * s + intercept`` by (lightly L2-regularised) logistic regression.

    Args:
        similarities: cosine similarities, any shape (e.g. [windows, species]).
        positives: booleans of the same shape: True where the species calls in the window.
        l2: ridge penalty on the slope (keeps a separable fit finite).
        info: more :class:`Calibration` fields (source, prompts, teacher_fingerprint, extra).

    Every pair counts once, so the confidence estimates the probability that a species calls in a
    window given its similarity, at the validation data's own base rate of positives.
    """
    s, y = np.asarray(similarities, dtype=np.float64), np.asarray(positives, dtype=bool)
    if s.shape != y.shape:
        raise BirdbridgeError(f"calibration needs one label per similarity, got {s.shape} and {y.shape}")
    s, y = s.reshape(-1), y.reshape(-1)
    keep = np.isfinite(s)
    s, y = s[keep], y[keep]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise BirdbridgeError(
            f"calibration needs positive and negative pairs, got {n_pos} positive and {n_neg} negative; use a "
            "labelled validation split with at least two species"
        )
    x = np.stack([s, np.ones_like(s)], axis=1)
    t = y.astype(np.float64)
    # Start from the base rate; Newton steps (IRLS) on the penalised log-likelihood.
    w = np.array([0.0, math.log(n_pos / n_neg)])
    penalty = np.diag([l2 * len(s), 0.0])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -35.0, 35.0)))
        grad = x.T @ (p - t) + penalty @ w
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + penalty + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -35.0, 35.0)))
    eps = 1e-12
    log_loss = float(-np.mean(t * np.log(p + eps) + (1 - t) * np.log(1 - p + eps)))
    extra = {"log_loss": round(log_loss, 6), **info.pop("extra", {})}
    created = info.pop("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return Calibration(slope=float(w[0]), intercept=float(w[1]), n_positive=n_pos, n_negative=n_neg,
                       created=created, extra=extra, **info)
