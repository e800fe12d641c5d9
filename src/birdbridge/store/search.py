"""Search over a store's unit rows: exact top-k in bounded memory, ANN candidates re-scored exactly, row subsets.

Written against :class:`Searchable`, the little a search needs of a store, so every store searches alike.
Scores are inner products (= cosine: the rows are unit vectors; queries are used as given), best first;
where fewer than ``k`` rows exist or match, the rest is padding: score ``-inf``, row ``-1``. A NaN or
+Inf score means damaged rows and is an error, never a ranking.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.store.kind import VECTORS_FILE

#: Rows per step of exact search: one float32 buffer of this many rows (96 MiB at 768-d) is reused.
SEARCH_CHUNK_ROWS = 32_768
MAX_SCORES = 1 << 24  # scores per exact-search step (64 MiB of float32)


class Searchable(Protocol):
    """What search needs of a store."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    @property
    def search_vectors(self) -> np.ndarray:
        """float16 ``[N, D]`` unit rows, in an array torch may wrap (a copy-on-write map; never written)."""
        ...

    def ann_candidates(self, queries: np.ndarray, k: int) -> np.ndarray | None:
        """``[Q, k]`` candidate rows (``-1`` = none) from an ANN index that covers every row, else None."""
        ...

    def damaged(self, problem: str) -> Exception:
        """The error that says the store is damaged by ``problem`` and what to do."""
        ...


def check_k(k: int) -> int:
    k = int(k)
    if k < 1:
        raise BirdbridgeError(f"k must be at least 1, got {k}")
    return k


def search(
    store: Searchable, queries: np.ndarray, k: int, *, exact: bool | None = None, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows of ``store`` for float32 ``[Q, D]`` ``queries``: ``(scores [Q, k] float32, rows [Q, k] int64)``.

    ``exact=None`` uses the ANN index when one covers every row, else searches exactly; ``exact=True``
    always searches exactly; ``exact=False`` asks for the ANN but falls back to exact search when
    there is none up to date (results are never stale). ``rows`` (sorted, unique, in range) restricts
    the search to those rows and is always exact. ANN results are re-scored exactly, so scores agree.
    """
    if rows is None and exact is not True:
        candidates = store.ann_candidates(queries, k)
        if candidates is not None:
            return rescore(store, queries, candidates, k)
    return exact_top_k(store, queries, k, rows)


def exact_top_k(
    store: Searchable, q: np.ndarray, k: int, rows: np.ndarray | None = None, *, chunk_rows: int = SEARCH_CHUNK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over every row (or ``rows``), ``chunk_rows`` at a time: memory stays bounded whatever Q and N."""
    import torch

    n_queries = q.shape[0]
    vectors = store.search_vectors  # one snapshot: an append by another thread remaps, this stays valid
    total = len(vectors) if rows is None else len(rows)
    best_scores = torch.full((n_queries, k), -math.inf)
    best_rows = torch.full((n_queries, k), -1, dtype=torch.int64)
    if total == 0 or n_queries == 0:
        return best_scores.numpy(), best_rows.numpy()
    # bounded memory: at most chunk x D float32 rows and MAX_SCORES scores at a time, whatever Q is
    chunk = max(1, min(int(chunk_rows), total, max(1024, MAX_SCORES // n_queries)))
    buffer = torch.empty((chunk, store.dim), dtype=torch.float32)
    scores = torch.empty((chunk, n_queries), dtype=torch.float32)
    qt = torch.from_numpy(np.ascontiguousarray(q.T))
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        n = stop - start
        source = vectors[start:stop] if rows is None else vectors[rows[start:stop]]
        buffer[:n].copy_(torch.from_numpy(source))  # float16 -> float32, several times faster than numpy
        part = scores[:n]
        torch.mm(buffer[:n], qt, out=part)
        top_scores, top_idx = torch.topk(part.T, min(k, n), dim=1)
        top_rows = top_idx + start if rows is None else torch.from_numpy(rows[start:stop])[top_idx]
        merged_scores = torch.cat([best_scores, top_scores], dim=1)
        merged_rows = torch.cat([best_rows, top_rows], dim=1)
        best_scores, order = torch.topk(merged_scores, k, dim=1)
        best_rows = torch.gather(merged_rows, 1, order)
    # topk ranks NaN first, so one damaged row anywhere surfaces here: a cheap check of Q x k scores
    check_scores(store, best_scores.numpy(), best_rows.numpy())
    best_rows[torch.isinf(best_scores)] = -1
    return best_scores.numpy(), best_rows.numpy()


def rescore(store: Searchable, q: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of candidate rows (``-1`` = none), sorted best first and padded to ``k``."""
    n_queries = q.shape[0]
    scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
    valid = candidates >= 0
    vectors = store.search_vectors
    if valid.any():
        flat = candidates[valid]
        order = np.argsort(flat, kind="stable")  # read the memmap in row order
        vecs = np.empty((len(flat), store.dim), dtype=np.float32)
        vecs[order] = vectors[flat[order]]
        which = np.nonzero(valid)[0]
        scores[valid] = np.einsum("ij,ij->i", vecs, q[which])
        check_scores(store, scores[valid], flat)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out_scores = np.take_along_axis(scores, order, axis=1)
    out_rows = np.take_along_axis(candidates, order, axis=1)
    if out_scores.shape[1] < k:
        pad = k - out_scores.shape[1]
        out_scores = np.concatenate([out_scores, np.full((n_queries, pad), -np.inf, np.float32)], axis=1)
        out_rows = np.concatenate([out_rows, np.full((n_queries, pad), -1, np.int64)], axis=1)
    out_rows[np.isinf(out_scores)] = -1
    return out_scores.astype(np.float32), out_rows.astype(np.int64)


def check_scores(store: Searchable, scores: np.ndarray, rows: np.ndarray) -> None:
    """Scores of unit vectors lie in [-1, 1]; NaN or +Inf means rows of the vectors file are damaged."""
    bad = np.isnan(scores) | np.isposinf(scores)
    if bad.any():
        raise store.damaged(f"{VECTORS_FILE} holds values that are not finite numbers (NaN or Inf), e.g. in row "
                            f"{int(rows[bad][0])}")


def top_k_dense(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-first top-k of each row of a small in-memory ``scores`` matrix, padded with ``-inf``/``-1``."""
    n_queries, n = scores.shape
    out_scores = np.full((n_queries, k), -np.inf, np.float32)
    out_idx = np.full((n_queries, k), -1, np.int64)
    if n == 0:
        return out_scores, out_idx
    m = min(k, n)
    part = np.argpartition(-scores, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (n_queries, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    out_scores[:, :m] = np.take_along_axis(part_scores, order, axis=1)
    out_idx[:, :m] = np.take_along_axis(part, order, axis=1)
    return out_scores, out_idx
