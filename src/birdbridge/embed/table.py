"""Embeddings with the names (and, for audio, the times) of their rows, and the inputs that failed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from birdbridge.errors import Failure
from birdbridge.utils.vectors import l2_normalize
from birdbridge.utils.walk import WalkProblem

__all__ = ["EmbeddingTable", "Failure", "l2_normalize", "skipped"]


def skipped(problems: Iterable[WalkProblem]) -> list[Failure]:
    """Folder entries that could not be read (:func:`birdbridge.utils.walk.walk_files`), as failures."""
    return [Failure(str(p.path), p.message) for p in problems]


@dataclass
class EmbeddingTable:
    """float32 L2-normalised ``vectors`` [N, D] whose row i came from ``names[i]``."""

    vectors: np.ndarray
    names: list[str]
    start_s: np.ndarray | None = None
    end_s: np.ndarray | None = None
    failures: list[Failure] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # what made the embeddings (model name and fingerprint, windows)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def columns(self) -> dict[str, list]:
        """Per-row metadata columns, for tabular outputs."""
        cols: dict[str, list] = {"name": list(self.names)}
        if self.start_s is not None and self.end_s is not None:
            cols["start_s"] = [round(float(t), 4) for t in self.start_s]
            cols["end_s"] = [round(float(t), 4) for t in self.end_s]
        return cols

    def pooled(self) -> EmbeddingTable:
        """One row per name: the renormalised mean of its rows, in first-seen order."""
        order: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            order.setdefault(name, []).append(i)
        vectors = np.stack([self.vectors[idx].mean(axis=0) for idx in order.values()]) if order else (
            np.zeros((0, self.vectors.shape[1] if self.vectors.ndim == 2 else 0), np.float32)
        )
        vectors = l2_normalize(vectors, names=list(order), what="pooled embeddings")
        starts = ends = None
        if self.start_s is not None and self.end_s is not None:
            starts = np.array([self.start_s[idx].min() for idx in order.values()], dtype=np.float64)
            ends = np.array([self.end_s[idx].max() for idx in order.values()], dtype=np.float64)
        return EmbeddingTable(vectors, list(order), starts, ends, list(self.failures), {**self.meta, "pooled": True})

