"""Retrieval and classification metrics (numpy only), computed a chunk of queries at a time.

Ranking convention, used everywhere here: items are ranked by descending score, and items with equal scores
keep their input order (lower gallery / class / training index first). Results are thus deterministic and
independent of ``chunk``. ``sklearn.metrics.average_precision_score`` instead treats a run of tied scores as
one block, so the two agree only when a query's scores have no ties.

Embedding inputs are compared by cosine similarity (rows are L2-normalised here, in float32). BLAS may round
a float32 dot product differently for different chunk shapes, so two similarities closer than ~1e-7 can swap
places between chunk sizes; pass a ``scores_fn`` when bit-exact scores matter.

Memory: ``retrieval_metrics`` keeps float32 normalised copies of the embeddings and, per chunk, about
``chunk × G × 8`` bytes (the scores and a sorted copy; 16 for float64 ``scores_fn`` output) plus ~50 bytes per
relevant (query, item) pair: ~250 MB for 1,024 queries × 32,000 images in 60 classes. ``knn_classify`` needs
about ``chunk × N_train × 17`` bytes plus ``chunk × C × 8`` for the votes. Lower ``chunk`` to bound either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from birdbridge.errors import BirdbridgeError
from birdbridge.utils.vectors import l2_normalize

ScoresFn = Callable[[np.ndarray], np.ndarray]
"""``scores_fn(query_indices [q]) -> scores [q, G]``: similarities of those queries to the whole gallery."""

_TOPK_BLOCK_ELEMS = 8_000_000  # elements of a [rows, C] block in topk_accuracy
_TIE_BLOCK_ELEMS = 8_000_000  # elements of a [tied items, G] block when counting equal scores
_MAX_TIES_COUNTED = 64  # more tied relevant items in a row than this: rank the row by a stable argsort


# --- input checks and label encoding ---------------------------------------------------------------------


def _check_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BirdbridgeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    try:
        values = list(ks)
    except TypeError:
        values = [ks]
    if not values:
        raise BirdbridgeError("ks is empty: give at least one cut-off k, e.g. ks=(1, 5)")
    return tuple(sorted({_check_int(k, "each k in ks") for k in values}))


def as_labels(labels: ArrayLike, name: str, n: int | None = None) -> np.ndarray:
    """A non-empty 1-D label array (an object array when the labels are themselves sequences, e.g. tuples)."""
    if isinstance(labels, np.ndarray):
        arr = labels
    else:
        try:
            arr = np.asarray(labels)
        except ValueError:
            arr = None
        if arr is None or (arr.ndim > 1 and hasattr(labels, "__len__")):
            items = list(labels)  # type: ignore[arg-type]
            arr = np.empty(len(items), dtype=object)
            for i, item in enumerate(items):
                arr[i] = item
    if arr.ndim != 1:
        raise BirdbridgeError(f"{name} must be a 1-D array of labels, got shape {arr.shape}")
    if arr.size == 0:
        raise BirdbridgeError(f"{name} is empty: there is nothing to evaluate")
    if n is not None and arr.size != n:
        raise BirdbridgeError(f"{name} has {arr.size} labels but its embeddings / scores have {n} rows")
    return arr


def factorize(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes, codes) with ``classes[codes] == labels``; classes sorted when the labels are orderable."""
    try:
        classes, codes = np.unique(labels, return_inverse=True)
    except TypeError:  # unorderable mix of types: first-seen order
        index: dict[Any, int] = {}
        codes = np.fromiter((index.setdefault(x, len(index)) for x in labels.tolist()), np.int64, labels.size)
        classes = np.empty(len(index), dtype=object)
        for i, key in enumerate(index):
            classes[i] = key
    return classes, np.asarray(codes, dtype=np.int64).reshape(-1)


def _lookup(classes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Index of each label in ``classes``; -1 for labels that are not there."""
    index = {c: i for i, c in enumerate(classes.tolist())}
    uniq, inverse = factorize(labels)
    mapped = np.array([index.get(u, -1) for u in uniq.tolist()], dtype=np.int64)
    return mapped[inverse]


def _keys(labels: np.ndarray) -> list[Any]:
    """Python scalars for dict keys (np.int64(3) -> 3, np.str_('a') -> 'a')."""
    return labels.tolist()


def _normalized(emb: ArrayLike, name: str, n: int | None = None) -> np.ndarray:
    """A non-empty [N, D] embedding array (N = ``n`` if given) with unit rows (:func:`l2_normalize`)."""
    try:
        arr = np.asarray(emb, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise BirdbridgeError(f"{name} must be a numeric [N, D] array ({exc})") from exc
    if arr.ndim != 2:
        raise BirdbridgeError(f"{name} must be a 2-D [N, D] array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BirdbridgeError(f"{name} is empty (shape {arr.shape}): there is nothing to evaluate")
    if n is not None and arr.shape[0] != n:
        raise BirdbridgeError(f"{name} has {arr.shape[0]} rows but {n} labels")
    return l2_normalize(arr, what=name)


def _check_scores(scores: ArrayLike, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A 2-D float score array without NaN (integer and bool scores are promoted to float64)."""
    arr = np.asarray(scores)
    if arr.dtype.kind not in "f":
        if arr.dtype.kind not in "biu":
            raise BirdbridgeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise BirdbridgeError(f"{name} must be a 2-D array, got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise BirdbridgeError(f"{name} has shape {arr.shape}, expected {shape}")
    if arr.size == 0:
        raise BirdbridgeError(f"{name} is empty (shape {arr.shape}): there is nothing to evaluate")
    if np.isnan(arr).any():
        raise BirdbridgeError(f"{name} holds NaN scores; rankings are undefined with NaN")
    return np.ascontiguousarray(arr)


# --- ranking core ----------------------------------------------------------------------------------------


def _count_at_most(sorted_rows: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each probe, how many entries of ``sorted_rows[row]`` (ascending) are <= its value.

    A binary search run for all probes at once (binary lifting: log2(G) vectorised steps), so there is neither
    a Python loop per query nor a second [q, G] array.
    """
    g = sorted_rows.shape[1]
    flat = sorted_rows.reshape(-1)
    base = rows.astype(np.int64) * g - 1
    pos = np.zeros(rows.size, dtype=np.int64)
    step = 1 << (g.bit_length() - 1)  # largest power of two <= g
    while step:
        cand = pos + step
        ok = cand <= g
        ok &= flat[base + np.minimum(cand, g)] <= values
        pos[ok] = cand[ok]
        step >>= 1
    return pos


def _relevant_ranks(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks of the relevant items (``rows``, ``cols``), as (row, rank) pairs ordered by row then rank.

    rank = 1 + #(higher scores) + #(equal scores at a lower gallery index). The first term comes from sorting
    each row's values (faster than an argsort) and binary-searching the relevant scores; the second is needed
    only for tied items: counted directly where a row has few of them, else from a stable argsort of the row.
    """
    q, g = scores.shape
    if rows.size == 0:
        return rows, rows
    values = scores[rows, cols]
    ordered = np.sort(scores, axis=1)
    at_most = _count_at_most(ordered, rows, values)
    ranks = g - at_most + 1
    # The item itself is the last entry <= its value; an equal entry just before it means a tie.
    tied = np.flatnonzero(at_most >= 2)
    tied = tied[ordered.reshape(-1)[rows[tied].astype(np.int64) * g + at_most[tied] - 2] == values[tied]]
    del ordered
    if tied.size:
        per_row = np.bincount(rows[tied], minlength=q)
        light = tied[per_row[rows[tied]] <= _MAX_TIES_COUNTED]
        block = max(1, _TIE_BLOCK_ELEMS // g)
        positions = np.arange(g)
        for b in range(0, light.size, block):
            sel = light[b:b + block]
            equal_before = (scores[rows[sel]] == values[sel, None]) & (positions < cols[sel, None])
            ranks[sel] += np.count_nonzero(equal_before, axis=1)
        heavy = np.flatnonzero(per_row > _MAX_TIES_COUNTED)
        for b in range(0, heavy.size, block):
            heavy_rows = heavy[b:b + block]
            order = np.argsort(-scores[heavy_rows], axis=1, kind="stable")
            rank_of = np.empty(order.shape, dtype=np.int64)
            np.put_along_axis(rank_of, order, np.arange(1, g + 1)[None, :], axis=1)
            slot = np.full(q, -1, dtype=np.int64)
            slot[heavy_rows] = np.arange(heavy_rows.size)
            redo = np.flatnonzero(slot[rows] >= 0)
            ranks[redo] = rank_of[slot[rows[redo]], cols[redo]]
    order = np.argsort(rows.astype(np.int64) * (g + 1) + ranks)  # keys are unique
    return rows[order], ranks[order]


def _ap_and_first_rank(rows: np.ndarray, ranks: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row AP (NaN without relevant items), rank of the first relevant item (0 if none), relevant count."""
    n_rel = np.bincount(rows, minlength=q)
    starts = np.cumsum(n_rel) - n_rel
    hit_number = np.arange(rows.size) - starts[rows] + 1  # this is the n-th relevant item of its row
    sums = np.bincount(rows, weights=hit_number / ranks, minlength=q)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = sums / n_rel
    first = np.zeros(q, dtype=np.int64)
    is_first = hit_number == 1
    first[rows[is_first]] = ranks[is_first]
    return ap, first, n_rel


def average_precision(scores: ArrayLike, relevant: ArrayLike, chunk: int = 1024) -> np.ndarray:
    """Per-query average precision over the full ranking of ``scores`` [Q, G] (higher = better).

    AP = mean, over the relevant items, of precision at the item's rank; ties keep gallery order (module
    docstring). ``relevant`` is bool [Q, G]. A query without relevant items gets NaN.
    """
    chunk = _check_int(chunk, "chunk")
    s = _check_scores(scores, "scores")
    rel = np.asarray(relevant)
    if rel.shape != s.shape:
        raise BirdbridgeError(f"relevant has shape {rel.shape} but scores has shape {s.shape}")
    if rel.dtype != bool:
        if rel.dtype.kind not in "biu" or not np.isin(rel, (0, 1)).all():
            raise BirdbridgeError("relevant must be a boolean (or 0/1) array")
        rel = rel.astype(bool)
    q = s.shape[0]
    out = np.empty(q, dtype=np.float64)
    for start in range(0, q, chunk):
        stop = min(q, start + chunk)
        rows, cols = np.nonzero(rel[start:stop])
        rows, ranks = _relevant_ranks(s[start:stop], rows, cols)
        out[start:stop] = _ap_and_first_rank(rows, ranks, stop - start)[0]
    return out


# --- retrieval -------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RetrievalResult:
    """Per-query retrieval results. Summaries are ×100 and skip queries without any relevant gallery item.

    ``ap[i]``: query i's average precision in [0, 1] (NaN when skipped). ``hits[k][i]``: whether a relevant
    item is among its top k. ``first_rank[i]``: 1-based rank of its first relevant item (0 when skipped).
    ``n_relevant[i]``: number of gallery items of its class.

    R@k is the fraction of evaluated queries with at least one relevant item in the top k (the usual
    definition for class-level relevance, i.e. hit rate; not the fraction of relevant items retrieved).
    """

    ap: np.ndarray
    hits: dict[int, np.ndarray]
    first_rank: np.ndarray
    n_relevant: np.ndarray
    query_labels: np.ndarray

    @property
    def ks(self) -> tuple[int, ...]:
        return tuple(self.hits)

    @property
    def valid(self) -> np.ndarray:
        """Bool [Q]: queries with at least one relevant gallery item (the ones averaged)."""
        return self.n_relevant > 0

    @property
    def n_queries(self) -> int:
        """All queries given, including skipped ones."""
        return int(self.ap.size)

    @property
    def n_skipped(self) -> int:
        """Queries without any relevant gallery item: NaN AP, excluded from every mean."""
        return int(np.count_nonzero(~self.valid))

    @property
    def map(self) -> float:
        """Mean AP ×100 over evaluated queries (NaN if none)."""
        return _percent(self.ap[self.valid])

    @property
    def recall(self) -> dict[int, float]:
        """R@k ×100 over evaluated queries, for every k."""
        return {k: _percent(h[self.valid]) for k, h in self.hits.items()}

    def per_query(self) -> dict[str, np.ndarray]:
        """float [Q] arrays ×100 (``map``, ``recall@k``), NaN for skipped queries; ready for ``bootstrap_cis``."""
        out = {"map": self.ap * 100.0}
        for k, h in self.hits.items():
            out[f"recall@{k}"] = np.where(self.valid, h * 100.0, np.nan)
        return out

    def per_class(self) -> dict[Any, dict[str, float]]:
        """For each query class: ``map`` and ``recall@k`` (×100, NaN if all skipped), ``n``, ``n_skipped``."""
        classes, codes = factorize(self.query_labels)
        c = classes.size
        valid = self.valid
        n = np.bincount(codes, minlength=c)
        n_valid = np.bincount(codes[valid], minlength=c)
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = 100.0 * np.bincount(codes[valid], weights=self.ap[valid], minlength=c) / n_valid
            rec = {k: 100.0 * np.bincount(codes[valid], weights=h[valid], minlength=c) / n_valid
                   for k, h in self.hits.items()}
        out: dict[Any, dict[str, float]] = {}
        for i, label in enumerate(_keys(classes)):
            row: dict[str, float] = {"map": float(ap[i]), "n": int(n[i]), "n_skipped": int(n[i] - n_valid[i])}
            row.update({f"recall@{k}": float(r[i]) for k, r in rec.items()})
            out[label] = row
        return out

    def summary(self) -> dict[str, float]:
        """``map``, ``recall@k`` (×100), ``n_queries``, ``n_skipped``."""
        out: dict[str, float] = {"map": self.map}
        out.update({f"recall@{k}": v for k, v in self.recall.items()})
        out.update({"n_queries": self.n_queries, "n_skipped": self.n_skipped})
        return out


def _percent(values: np.ndarray) -> float:
    return float(100.0 * values.mean()) if values.size else float("nan")


def retrieval_metrics(
    query_emb: ArrayLike | None,
    query_labels: ArrayLike,
    gallery_emb: ArrayLike | None,
    gallery_labels: ArrayLike,
    ks: Iterable[int] = (1, 5, 10),
    chunk: int = 1024,
    *,
    scores_fn: ScoresFn | None = None,
) -> RetrievalResult:
    """Class-level retrieval: a gallery item is relevant to a query when their labels are equal.

    Similarities are cosine similarities of the embeddings, ``chunk`` queries at a time; or, with
    ``query_emb = gallery_emb = None``, ``scores_fn(query_indices)`` gives the [q, G] scores (e.g. when
    queries and gallery live in different spaces). Returns per-query AP and hit@k (see ``RetrievalResult``).
    """
    ks = _check_ks(ks)
    chunk = _check_int(chunk, "chunk")
    q_labels = as_labels(query_labels, "query_labels")
    g_labels = as_labels(gallery_labels, "gallery_labels")
    nq, ng = q_labels.size, g_labels.size
    g_classes, g_codes = factorize(g_labels)
    q_codes = _lookup(g_classes, q_labels)  # -1: the query's class has no gallery item

    if scores_fn is None:
        if query_emb is None or gallery_emb is None:
            raise BirdbridgeError("give query_emb and gallery_emb, or scores_fn with both embeddings None")
        qe = _normalized(query_emb, "query_emb", nq)
        ge = _normalized(gallery_emb, "gallery_emb", ng)
        if qe.shape[1] != ge.shape[1]:
            raise BirdbridgeError(
                f"query_emb has dimension {qe.shape[1]} but gallery_emb has {ge.shape[1]}; "
                "for embeddings in different spaces pass scores_fn instead"
            )

        def scores_of(start: int, stop: int) -> np.ndarray:
            return qe[start:stop] @ ge.T
    else:
        if query_emb is not None or gallery_emb is not None:
            raise BirdbridgeError("give either embeddings or scores_fn, not both (set query_emb=gallery_emb=None)")
        if not callable(scores_fn):
            raise BirdbridgeError("scores_fn must be callable: scores_fn(query_indices) -> [q, G] scores")

        def scores_of(start: int, stop: int) -> np.ndarray:
            return _check_scores(scores_fn(np.arange(start, stop)), "scores_fn output", (stop - start, ng))

    # Relevant (query, gallery) pairs come straight from the gallery's class lists: no [q, G] boolean matrix.
    by_class = np.argsort(g_codes, kind="stable")
    class_size = np.bincount(g_codes, minlength=g_classes.size)
    class_start = np.cumsum(class_size) - class_size
    known = q_codes >= 0
    q_start = np.where(known, class_start[np.maximum(q_codes, 0)], 0)
    q_count = np.where(known, class_size[np.maximum(q_codes, 0)], 0)

    ap = np.empty(nq, dtype=np.float64)
    first = np.empty(nq, dtype=np.int64)
    n_rel = np.empty(nq, dtype=np.int64)
    for start in range(0, nq, chunk):
        stop = min(nq, start + chunk)
        counts = q_count[start:stop]
        rows = np.repeat(np.arange(stop - start), counts)
        offsets = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
        cols = by_class[np.repeat(q_start[start:stop], counts) + offsets]
        rows, ranks = _relevant_ranks(scores_of(start, stop), rows, cols)
        ap[start:stop], first[start:stop], n_rel[start:stop] = _ap_and_first_rank(rows, ranks, stop - start)
    hits = {k: (first >= 1) & (first <= k) for k in ks}
    return RetrievalResult(ap=ap, hits=hits, first_rank=first, n_relevant=n_rel, query_labels=q_labels)


# --- kNN classification ----------------------------------------------------------------------------------


def _top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Indices [q, k] of the k highest similarities per row, by descending similarity then index."""
    cand = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    cand_sims = np.take_along_axis(sims, cand, axis=1)
    order = np.lexsort((cand, -cand_sims), axis=1)
    cand = np.take_along_axis(cand, order, axis=1)
    # Ties across the k-th place make argpartition's choice arbitrary; redo those rows with a stable sort.
    kth = cand_sims.min(axis=1)
    ambiguous = np.flatnonzero(np.count_nonzero(sims >= kth[:, None], axis=1) > k)
    if ambiguous.size:
        cand[ambiguous] = np.argsort(-sims[ambiguous], axis=1, kind="stable")[:, :k]
    return cand


def _knn_votes(
    train_emb: ArrayLike, train_labels: ArrayLike, test_emb: ArrayLike, k: int, tau: float, chunk: int,
    exclude_self: bool, keep_scores: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(predicted class codes, vote matrix or None, classes)."""
    k = _check_int(k, "k")
    chunk = _check_int(chunk, "chunk")
    if not np.isfinite(tau) or tau <= 0:
        raise BirdbridgeError(f"tau must be a positive temperature, got {tau!r}")
    labels = as_labels(train_labels, "train_labels")
    train = _normalized(train_emb, "train_emb", labels.size)
    if exclude_self:
        same = test_emb is train_emb or (
            np.shape(test_emb) == np.shape(train_emb) and np.array_equal(np.asarray(test_emb), np.asarray(train_emb))
        )
        if not same:
            raise BirdbridgeError("exclude_self=True needs test_emb to be the training set itself (identical arrays)")
        test = train
    else:
        test = _normalized(test_emb, "test_emb")
    if test.shape[1] != train.shape[1]:
        raise BirdbridgeError(f"test_emb has dimension {test.shape[1]} but train_emb has {train.shape[1]}")
    available = train.shape[0] - int(exclude_self)
    if k > available:
        raise BirdbridgeError(f"k={k} neighbours requested but only {available} training samples are available")
    classes, codes = factorize(labels)
    n_test, n_classes = test.shape[0], classes.size
    pred = np.empty(n_test, dtype=np.int64)
    scores = np.empty((n_test, n_classes), dtype=np.float32) if keep_scores else None
    for start in range(0, n_test, chunk):
        stop = min(n_test, start + chunk)
        q = stop - start
        sims = test[start:stop] @ train.T
        if exclude_self:
            sims[np.arange(q), np.arange(start, stop)] = -np.inf
        nbr = _top_k(sims, k)
        with np.errstate(over="raise"):
            try:
                weights = np.exp(np.take_along_axis(sims, nbr, axis=1).astype(np.float64) / tau)
            except FloatingPointError as exc:
                raise BirdbridgeError(f"tau={tau} is too small: exp(similarity / tau) overflows") from exc
        cells = (np.arange(q)[:, None] * n_classes + codes[nbr]).reshape(-1)
        votes = np.bincount(cells, weights=weights.reshape(-1), minlength=q * n_classes).reshape(q, n_classes)
        pred[start:stop] = votes.argmax(axis=1)  # first maximum: ties go to the smallest class index
        if scores is not None:
            scores[start:stop] = votes
    return pred, scores, classes


def knn_classify(
    train_emb: ArrayLike,
    train_labels: ArrayLike,
    test_emb: ArrayLike,
    k: int = 20,
    tau: float = 0.07,
    chunk: int = 1024,
    *,
    exclude_self: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted kNN on cosine similarity: (predicted labels [N], class scores [N, C] float32).

    Each of the k most similar training samples (ties: lower training index first) votes for its class with
    weight exp(sim / tau); the prediction is the class with the largest summed weight, ties going to the
    smallest class index. Score columns follow ``np.unique(train_labels)`` (first-seen order if the labels
    cannot be sorted). ``exclude_self=True`` (test_emb must be train_emb) drops each sample's own row
    (leave-one-out); duplicates at other rows still count.
    """
    pred, scores, classes = _knn_votes(train_emb, train_labels, test_emb, k, tau, chunk, exclude_self, True)
    assert scores is not None
    return classes[pred], scores


def knn_correct(
    train_emb: ArrayLike,
    train_labels: ArrayLike,
    test_emb: ArrayLike,
    test_labels: ArrayLike,
    k: int = 20,
    tau: float = 0.07,
    chunk: int = 1024,
    *,
    exclude_self: bool = False,
) -> np.ndarray:
    """Per-sample correctness (bool [N]) of ``knn_classify``; a test label unseen in training is wrong."""
    pred, _, classes = _knn_votes(train_emb, train_labels, test_emb, k, tau, chunk, exclude_self, False)
    truth = _lookup(classes, as_labels(test_labels, "test_labels", pred.size))
    return pred == truth


# --- classification accuracies ---------------------------------------------------------------------------


def topk_accuracy(scores: ArrayLike, labels: ArrayLike, ks: Iterable[int] = (1, 5)) -> dict[int, np.ndarray]:
    """Per-sample top-k correctness: ``{k: bool [N]}``, for class scores [N, C] and true class indices [N].

    A sample is correct at k when fewer than k classes rank above its true class: classes with a strictly
    higher score, or an equal score and a lower index. k > C counts every sample as correct.
    """
    ks = _check_ks(ks)
    s = _check_scores(scores, "scores")
    n, c = s.shape
    y = np.asarray(labels)
    if y.shape != (n,):
        raise BirdbridgeError(f"labels must have shape ({n},) to match scores {s.shape}, got {y.shape}")
    if y.dtype.kind not in "iu":
        raise BirdbridgeError(f"labels must be integer class indices into the {c} score columns, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= c:
        raise BirdbridgeError(f"labels must lie in [0, {c}), got values in [{y.min()}, {y.max()}]")
    y = y.astype(np.int64)
    ahead = np.empty(n, dtype=np.int64)  # classes ranked above the true one
    block = max(1, _TOPK_BLOCK_ELEMS // c)
    cols = np.arange(c)
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows, true = s[start:stop], y[start:stop]
        true_score = rows[np.arange(stop - start), true][:, None]
        ahead[start:stop] = np.count_nonzero(rows > true_score, axis=1) + np.count_nonzero(
            (rows == true_score) & (cols[None, :] < true[:, None]), axis=1
        )
    return {k: ahead < k for k in ks}


def _check_correct(correct: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    ok = np.asarray(correct)
    if ok.ndim != 1 or ok.size == 0:
        raise BirdbridgeError(f"correct must be a non-empty 1-D array, got shape {ok.shape}")
    if ok.dtype != bool:
        if ok.dtype.kind not in "biu" or not np.isin(ok, (0, 1)).all():
            raise BirdbridgeError("correct must be a boolean (or 0/1) array")
        ok = ok.astype(bool)
    return ok, as_labels(labels, "labels", ok.size)


def per_class_accuracy(correct: ArrayLike, labels: ArrayLike) -> dict[Any, tuple[float, int]]:
    """``{label: (accuracy ×100, n samples)}`` for each true class in ``labels`` (sorted when orderable)."""
    ok, lab = _check_correct(correct, labels)
    classes, codes = factorize(lab)
    n = np.bincount(codes, minlength=classes.size)
    right = np.bincount(codes, weights=ok, minlength=classes.size)
    return {label: (float(100.0 * right[i] / n[i]), int(n[i])) for i, label in enumerate(_keys(classes))}
