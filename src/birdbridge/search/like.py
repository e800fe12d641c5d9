"""Audio -> similar recordings, against an audio embedding store written by ``birdbridge embed audio``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from birdbridge.embed.table import EmbeddingTable
from birdbridge.embed.writers import read_table
from birdbridge.errors import BirdbridgeError
from birdbridge.models.student import AudioStudent
from birdbridge.utils.vectors import l2_normalize


@dataclass(frozen=True)
class Neighbour:
    name: str
    start_s: float | None
    end_s: float | None
    score: float


def load_store(path: str | Path, student: AudioStudent) -> EmbeddingTable:
    """The store at ``path`` (.parquet from ``birdbridge embed audio``), checked against ``student``."""
    store = read_table(path)
    made_by = store.meta.get("fingerprint")
    if made_by and made_by != student.fingerprint:
        raise BirdbridgeError(
            f"{path}: these embeddings were made by model {store.meta.get('model')} ({made_by}), not by "
            f"{student.name} ({student.fingerprint}); query with that model or re-embed the store"
        )
    if store.dim != student.embed_dim:
        raise BirdbridgeError(f"{path}: {store.dim}-d embeddings, but {student.name} makes {student.embed_dim}-d ones")
    return store


def nearest(queries: np.ndarray, store: EmbeddingTable, k: int) -> list[list[Neighbour]]:
    sims = l2_normalize(queries) @ l2_normalize(store.vectors).T
    out = []
    for row in sims:
        order = np.argsort(-row, kind="stable")[:k]
        out.append([Neighbour(store.names[j], None if store.start_s is None else float(store.start_s[j]),
                              None if store.end_s is None else float(store.end_s[j]), float(row[j])) for j in order])
    return out
