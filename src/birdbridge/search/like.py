"""Audio -> similar recordings, against an audio embedding store written by ``birdbridge embed audio``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.embed.audio import embed_audio_windows
from birdbridge.embed.table import EmbeddingTable
from birdbridge.embed.writers import read_table
from birdbridge.errors import BirdbridgeError, Failure
from birdbridge.models.loader import load_student
from birdbridge.models.student import AudioStudent
from birdbridge.utils.vectors import l2_normalize


@dataclass(frozen=True)
class Neighbour:
    name: str
    start_s: float | None
    end_s: float | None
    score: float


@dataclass(frozen=True)
class SimilarWindows:
    """A window of a query recording and its nearest windows in the store, best first."""

    file: str
    start_s: float
    end_s: float
    similar: list[Neighbour]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "start_s": self.start_s, "end_s": self.end_s,
                "similar": [asdict(n) for n in self.similar]}


def search_like(inputs: Sequence[str | os.PathLike[str]], store: str | os.PathLike[str],
                student: AudioStudent | str | os.PathLike[str] | None, *, k: int = 5, window_s: float | None = None,
                hop_s: float | None = None, device: str | None = None, progress: bool | None = None,
                ) -> tuple[list[SimilarWindows], list[Failure]]:
    """Each window of the recordings ``inputs`` with its ``k`` most similar windows in ``store`` (a .parquet
    from ``birdbridge embed audio``, made by ``student``); the recordings that could not be read are returned
    as failures."""
    if student is None:
        raise BirdbridgeError("--like needs the model that made the store: pass --model")
    if not isinstance(student, AudioStudent):
        student = load_student(student, device)
    table = load_store(store, student)  # checked before any audio is embedded
    queries = embed_audio_windows(list(inputs), student, window_s=window_s, hop_s=hop_s, progress=progress)
    neighbours = nearest(queries.vectors, table, k)
    rows = [SimilarWindows(name, float(s), float(e), near)
            for name, s, e, near in zip(queries.names, queries.start_s, queries.end_s, neighbours, strict=True)]
    return rows, queries.failures


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
