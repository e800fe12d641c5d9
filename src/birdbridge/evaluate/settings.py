"""The settings of an evaluation (recorded in its results)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSettings:
        """Settings as recorded in a results.json (lists back to tuples; keys of other versions ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})
