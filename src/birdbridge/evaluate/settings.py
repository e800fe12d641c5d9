"""The settings of an evaluation (recorded in its results)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from birdbridge.models.calibration import DEFAULT_SENSITIVITY
from birdbridge.models.detection import DEFAULT_MIN_CONF, DEFAULT_MIN_SIM


@dataclass
class EvalSettings:
    split: str = "test"
    knn_split: str | None = "train"
    image_split: str | None = None  # None: every picture of the dataset
    k: int = 20
    tau: float = 0.07
    bootstrap: int = 1000
    seed: int = 0
    class_forms: tuple[str, ...] = ("taxonomic_common",)
    class_templates: str = "openai"
    text_forms: tuple[str, ...] = ("common", "scientific", "taxonomic", "taxonomic_common")
    mapping_ridge: float = 1e-2
    chain_scale: float = 100.0
    batch_size: int = 16
    holdout: tuple[str, ...] = ()  # species held out of training (default: as the trained students record them)
    # soundscapes (birdbridge.evaluate.soundscape)
    window_s: float | None = None  # None: the dataset's (5 s by default)
    hop_s: float | None = None  # None: the dataset's hop, or the window when window_s is given
    min_conf: float = DEFAULT_MIN_CONF  # detections of calibrated methods
    sensitivity: float = DEFAULT_SENSITIVITY
    min_sim: float = DEFAULT_MIN_SIM  # detections of methods without a calibration
    calibration_split: str | None = "valid"  # fit the methods without a calibration on this split, if present
    background: str | None = None  # a background vocabulary file (None: the default vocabulary)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSettings:
        """Settings as recorded in a results.json (lists back to tuples; keys of other versions ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})
