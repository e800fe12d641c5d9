"""Multi-label window metrics for soundscapes, streamed over blocks of the [windows, species] score matrix.

BirdSet's definitions, over evaluation windows (each with zero, one or several species labels):

* **cmAP**: average precision of each class over all windows, averaged over the classes with at least one
  positive window (macro).
* **AUROC**: ROC AUC of each class, averaged over the classes with both positive and negative windows.
* **T1**: the share of windows with at least one label whose top-scored class is one of their labels (among
  tied top scores the lowest class index is taken).
* **Detections** at a ``threshold`` (a window×species pair is detected when its score is ≥ the threshold):
  precision, recall and F1 **micro-averaged over window×species pairs**, and the share of bird-free windows
  (no label) with at least one detection (``false_alarm_rate``).

AP and AUROC equal scikit-learn's ``average_precision_score`` and ``roc_auc_score`` per class, ties included
(a run of tied scores is one threshold; a tied positive–negative pair counts ½ for AUROC). Both depend only on
the order of each class's scores, so any strictly increasing map applied to a class's scores (e.g. a per-model
or per-class logistic calibration of the cosine similarity) leaves them, and cmAP, unchanged; a map that
flattens scores into ties (clipping, a background rule that zeroes windows, float32 confidences that saturate
at 1) does change them. T1 and the detection figures compare scores across classes and against the threshold,
so they do depend on calibration. With one calibration for all species (``models.calibration.Calibration``),
scoring cosine similarities with ``threshold=calibration.similarity_at(confidence)`` gives the calibrated
detection figures and keeps AP and AUROC free of those ties.

Scores are given as an array [N, S], or as a callable ``scores(rows: slice, classes: slice) -> [rows, classes]``
(e.g. :class:`EmbeddingScores`, or calibrated confidences wrapping it). The matrix is never built whole:
per-class metrics read all windows for a chunk of classes at a time, row-wise metrics a chunk of windows for
all classes, each block within ``max_block_mb`` (plus about 50 bytes per window of working memory). AP and
AUROC need no sorting: each class's windows are counted against the distinct scores of its positive windows
(``searchsorted``), O(N log P) per class.

Intervals: a percentile bootstrap over **groups** (recordings: a cluster bootstrap, since windows of one
recording share its site, weather and birds), resampling groups with replacement (the resamples of
:func:`~birdbridge.evaluate.bootstrap.bootstrap_indices`) and recomputing every metric on the windows of the
drawn groups, each counted as often as its group was drawn. The counts behind every metric add up over
windows, so each resample is a weighted sum of per-group counts: exact, without re-scoring. Without
``groups`` each window is its own group (a window bootstrap, too narrow when windows are correlated).
The resampled cmAP leans upward, so its percentile interval can lie above the estimate: a recording drawn twice
puts each of its positive windows beside an exact copy, a tied true positive that raises the precision of a
class whose positives rank below many negatives; and a resample that draws none of a class's positive windows
leaves that class (rare classes tend to score low) out of its mean, as the definition says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from birdbridge.errors import BirdbridgeError
from birdbridge.evaluate.bootstrap import bootstrap_indices, check_confidence, check_count

__all__ = ["EmbeddingScores", "MultilabelResult", "ScoreFn", "multilabel_metrics"]

ScoreFn = Callable[[slice, slice], np.ndarray]
"""``scores(rows, classes) -> array [rows, classes]``: the scores of a block of windows for a block of classes."""

_BYTES_PER_WINDOW = 56  # per-class working arrays: two searchsorted results, bucket codes, masks
METRICS = ("cmap", "auroc", "t1")
DETECTION_METRICS = ("precision", "recall", "f1", "false_alarm_rate")


class EmbeddingScores:
    """Cosine similarities of window embeddings [N, D] and species embeddings [S, D], a block at a time.

    ``windows`` may be a memory-mapped array; only the rows of a block are read. Rows need not be unit
    length (the similarity is divided by the norms).
    """

    def __init__(self, windows: ArrayLike, species: ArrayLike) -> None:
        self.windows = windows if isinstance(windows, np.ndarray) else np.asarray(windows, dtype=np.float32)
        species = np.asarray(species, dtype=np.float32)
        if self.windows.ndim != 2 or species.ndim != 2 or self.windows.shape[1] != species.shape[1]:
            raise BirdbridgeError(
                f"window embeddings {self.windows.shape} and species embeddings {species.shape} must be "
                "2-D with the same dimension"
            )
        norms = np.sqrt(np.einsum("ij,ij->i", species, species))
        self.species = species / np.maximum(norms, 1e-12)[:, None]
        self._inv_norm = np.empty(self.windows.shape[0], dtype=np.float32)
        step = 1 << 16
        for i in range(0, self.windows.shape[0], step):
            w = np.asarray(self.windows[i:i + step], dtype=np.float32)
            self._inv_norm[i:i + step] = 1.0 / np.maximum(np.sqrt(np.einsum("ij,ij->i", w, w)), 1e-12)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.windows.shape[0]), int(self.species.shape[0])

    def __call__(self, rows: slice, classes: slice) -> np.ndarray:
        windows, species = np.asarray(self.windows[rows], dtype=np.float32), self.species[classes]
        # a chunk of classes is computed as (species @ windows.T).T: column-major, each class's scores contiguous
        out = (species @ windows.T).T if species.shape[0] < self.species.shape[0] else windows @ species.T
        out *= self._inv_norm[rows, None]
        return out


@dataclass(frozen=True)
class MultilabelResult:
    """Window metrics (fractions in [0, 1]; NaN when undefined) and, with resamples, their intervals."""

    cmap: float
    auroc: float
    t1: float
    ap: np.ndarray  # [S] per class; NaN for classes without positive windows
    auroc_per_class: np.ndarray  # [S]; NaN for classes without positives or without negatives
    n_windows: int
    n_labelled: int  # windows with at least one label
    n_classes: int  # classes with at least one positive window (those cmAP averages)
    threshold: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    false_alarm_rate: float | None = None  # bird-free windows with >= 1 detection / bird-free windows
    counts: dict[str, int] = field(default_factory=dict)  # tp, fp, fn, bird_free, false_alarm_windows
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    n_resamples: int = 0
    confidence: float | None = None

    def summary(self) -> dict[str, float]:
        """The headline metrics by name (detections only with a threshold)."""
        names = METRICS + (DETECTION_METRICS if self.threshold is not None else ())
        return {name: float(getattr(self, name)) for name in names}


@dataclass(frozen=True)
class _Labels:
    """Positive (window, class) pairs by row (CSR) and by column (CSC)."""

    n: int
    s: int
    row_ptr: np.ndarray
    row_cols: np.ndarray
    col_ptr: np.ndarray
    col_rows: np.ndarray

    @classmethod
    def build(cls, labels: Any, shape: tuple[int, int] | None) -> _Labels:
        if isinstance(labels, tuple) and len(labels) == 2:
            if shape is None:
                raise BirdbridgeError("labels given as (rows, cols) need the scores' shape (give shape=(N, S))")
            n, s = shape
            rows, cols = (np.asarray(v).reshape(-1) for v in labels)
            if rows.size != cols.size:
                raise BirdbridgeError(f"labels: {rows.size} rows but {cols.size} columns")
            if rows.size and (rows.min() < 0 or rows.max() >= n or cols.min() < 0 or cols.max() >= s):
                raise BirdbridgeError(f"labels: a (row, column) pair lies outside the {n} × {s} score matrix")
            pairs = np.unique(np.stack([rows.astype(np.int64), cols.astype(np.int64)], axis=1), axis=0)
            rows, cols = pairs[:, 0], pairs[:, 1]
        else:
            dense = np.asarray(labels)
            if dense.ndim != 2:
                raise BirdbridgeError(f"labels must be a [windows, species] array or (rows, cols), got {dense.shape}")
            if shape is not None and dense.shape != tuple(shape):
                raise BirdbridgeError(f"labels have shape {dense.shape} but the scores {tuple(shape)}")
            n, s = dense.shape
            rows, cols = np.nonzero(dense.astype(bool, copy=False))
            rows, cols = rows.astype(np.int64), cols.astype(np.int64)
        if n < 1 or s < 1:
            raise BirdbridgeError(f"nothing to evaluate: {n} windows × {s} classes")
        by_col = np.lexsort((rows, cols))
        return cls(
            n, s,
            np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=n)))),
            cols,
            np.concatenate(([0], np.cumsum(np.bincount(cols, minlength=s)))),
            rows[by_col],
        )

    def dense_rows(self, r0: int, r1: int) -> np.ndarray:
        out = np.zeros((r1 - r0, self.s), dtype=bool)
        lo, hi = self.row_ptr[r0], self.row_ptr[r1]
        counts = np.diff(self.row_ptr[r0:r1 + 1])
        out[np.repeat(np.arange(r1 - r0), counts), self.row_cols[lo:hi]] = True
        return out


def multilabel_metrics(
    scores: np.ndarray | ScoreFn,
    labels: ArrayLike | tuple[ArrayLike, ArrayLike],
    *,
    threshold: float | None = None,
    groups: ArrayLike | None = None,
    n_resamples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    max_block_mb: float = 256.0,
    shape: tuple[int, int] | None = None,
) -> MultilabelResult:
    """cmAP, AUROC and T1 (and detection figures at ``threshold``) of window scores against window labels.

    Args:
        scores: [N, S] array, or ``scores(rows, classes)`` (its ``shape`` attribute, or ``shape=``, or the
            labels' shape gives N and S). NaN scores raise; ±inf are allowed.
        labels: boolean [N, S] array, or ``(rows, cols)`` of the positive pairs (e.g.
            ``SoundscapeWindows.label_pairs()``).
        groups: one label per window (e.g. ``SoundscapeWindows.recording_index``): the bootstrap resamples
            these clusters. Without it, windows are resampled one by one.
        n_resamples: bootstrap resamples for ``ci`` (0: no intervals).
        max_block_mb: the largest score block read at once (at least one column of N, or one row of S, scores).
    """
    shape = _shape(scores, labels, shape)
    lab = _Labels.build(labels, shape)
    n = lab.n
    score_fn: ScoreFn = (lambda r, c: scores[r, c]) if isinstance(scores, np.ndarray) else scores
    if n_resamples:
        check_count(n_resamples, "n_resamples")
        check_confidence(confidence)
    if threshold is not None and np.isnan(threshold):
        raise BirdbridgeError("threshold is NaN: give a score, or None for no detection figures")
    if not max_block_mb > 0:
        raise BirdbridgeError(f"max_block_mb must be a number of megabytes above 0, not {max_block_mb!r}")
    budget = float(max_block_mb) * 2**20
    codes, n_groups = _group_codes(groups, n, bool(n_resamples))
    weights = _weights(n_groups, n_resamples, seed, budget)  # [R, G]; row 0 is the data itself
    window_w = weights @ np.bincount(codes, minlength=n_groups).astype(np.float64)  # [R] windows per resample

    ap_num, auc_num, positives = _class_pass(score_fn, lab, codes, n_groups, weights, budget)
    values, counts = _row_pass(score_fn, lab, codes, n_groups, weights, budget, threshold)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = ap_num / positives  # [S, R]
        auc = auc_num / (positives * (window_w - positives))
    ap[positives == 0] = np.nan
    auc[(positives == 0) | (positives == window_w)] = np.nan
    values |= {"cmap": _nanmean(ap), "auroc": _nanmean(auc)}

    ci: dict[str, tuple[float, float]] = {}
    if n_resamples:
        alpha = 100.0 * (1.0 - confidence) / 2.0
        for name, per_resample in values.items():
            finite = per_resample[1:][np.isfinite(per_resample[1:])]
            low, high = np.percentile(finite, [alpha, 100.0 - alpha]) if finite.size else (np.nan, np.nan)
            ci[name] = (float(low), float(high))
    point = {name: float(v[0]) for name, v in values.items()}
    return MultilabelResult(
        cmap=point["cmap"],
        auroc=point["auroc"],
        t1=point["t1"],
        ap=ap[:, 0].copy(),
        auroc_per_class=auc[:, 0].copy(),
        n_windows=n,
        n_labelled=counts.pop("labelled"),
        n_classes=int((positives[:, 0] > 0).sum()),
        threshold=None if threshold is None else float(threshold),
        **{name: point[name] for name in DETECTION_METRICS if name in point},
        counts=counts,
        ci=ci,
        n_resamples=int(n_resamples),
        confidence=float(confidence) if n_resamples else None,
    )


# ------------------------------------------------------------------------------------------- helpers


def _shape(scores: Any, labels: Any, shape: tuple[int, int] | None) -> tuple[int, int] | None:
    found = getattr(scores, "shape", None)
    if found is not None:
        if len(found) != 2:
            raise BirdbridgeError(f"scores must be a [windows, species] matrix, got shape {tuple(found)}")
        if shape is not None and tuple(shape) != tuple(found):
            raise BirdbridgeError(f"shape={tuple(shape)} but the scores have shape {tuple(found)}")
        return int(found[0]), int(found[1])
    if shape is None and not callable(scores):
        raise BirdbridgeError("scores must be an array [N, S] or a callable scores(rows, classes)")
    if shape is None and not isinstance(labels, tuple):
        return None  # taken from the dense labels
    return shape


def _group_codes(groups: ArrayLike | None, n: int, resampling: bool) -> tuple[np.ndarray, int]:
    """Group index of each window: one group without resampling, one per window without ``groups``."""
    if not resampling:
        return np.zeros(n, dtype=np.int64), 1
    if groups is None:
        return np.arange(n, dtype=np.int64), n
    arr = np.asarray(groups)
    if arr.shape != (n,):
        raise BirdbridgeError(f"groups must give one label per window ({n}), got shape {arr.shape}")
    uniques, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64).reshape(-1), int(uniques.size)


def _weights(n_groups: int, n_resamples: int, seed: int, budget: float) -> np.ndarray:
    """[1 + n_resamples, G]: ones (the data), then how often each group is drawn in each resample."""
    need = (1 + n_resamples) * n_groups * 8
    if need > budget:
        raise BirdbridgeError(
            f"the bootstrap needs {need / 2**20:,.0f} MB for {n_resamples} resamples of {n_groups:,} groups, "
            "more than max_block_mb: resample recordings (groups=...), use fewer resamples, or raise max_block_mb"
        )
    weights = np.ones((1 + n_resamples, n_groups), dtype=np.float64)
    done = 1
    for idx in bootstrap_indices(n_groups, n_resamples, seed) if n_resamples else ():
        b = idx.shape[0]
        flat = (np.arange(b)[:, None] * n_groups + idx).reshape(-1)
        weights[done:done + b] = np.bincount(flat, minlength=b * n_groups).reshape(b, n_groups)
        done += b
    return weights


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over classes (axis 0) ignoring NaN; NaN where every class is NaN."""
    present = ~np.isnan(values)
    counts = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present, values, 0.0).sum(axis=0) / counts


def _block(score_fn: ScoreFn, rows: slice, classes: slice, shape: tuple[int, int]) -> np.ndarray:
    block = np.asarray(score_fn(rows, classes))
    if block.shape != shape:
        raise BirdbridgeError(
            f"scores({rows.start}:{rows.stop}, {classes.start}:{classes.stop}) returned shape {block.shape}, "
            f"expected {shape}"
        )
    if block.dtype.kind not in "fiu":
        raise BirdbridgeError(f"scores must be numbers, got dtype {block.dtype}")
    if block.dtype.kind == "f" and np.isnan(block).any():
        raise BirdbridgeError(
            f"scores of windows {rows.start}–{rows.stop - 1}, classes {classes.start}–{classes.stop - 1} contain NaN"
        )
    return block


def _class_pass(
    score_fn: ScoreFn, lab: _Labels, codes: np.ndarray, n_groups: int, weights: np.ndarray, budget: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class and resample: the AP numerator, the AUROC numerator (U statistic) and the positive count."""
    n, s, r = lab.n, lab.s, weights.shape[0]
    ap_num, auc_num, positives = (np.zeros((s, r)) for _ in range(3))
    chunk = int(max(1, (budget - _BYTES_PER_WINDOW * n) // (16 * n)))  # [N, c] block + its transposed copy
    for c0 in range(0, s, chunk):
        c1 = min(s, c0 + chunk)
        columns = np.ascontiguousarray(_block(score_fn, slice(0, n), slice(c0, c1), (n, c1 - c0)).T)
        for j in range(c0, c1):
            pos = lab.col_rows[lab.col_ptr[j]:lab.col_ptr[j + 1]]
            if pos.size:
                ap_num[j], auc_num[j], positives[j] = _class_counts(columns[j - c0], pos, codes, n_groups, weights,
                                                                    budget)
    return ap_num, auc_num, positives


def _class_counts(
    x: np.ndarray, pos: np.ndarray, codes: np.ndarray, n_groups: int, weights: np.ndarray, budget: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP and AUROC numerators of one class for every resample (see the module doc), in chunks of thresholds.

    With ``u`` the distinct positive scores (ascending) and, for threshold ``u_j``: ``lt`` the windows scoring
    below it, ``le`` at or below it, ``hp`` the positives equal to it, ``plt`` the positives below it:
    AP = Σ_j hp·(P − plt)/(N − lt) / P and AUROC = Σ_j hp·(lt − plt + ½(le − lt − hp)) / (P·(N − P)).
    """
    g, r = n_groups, weights.shape[0]
    u, value_of = np.unique(x[pos], return_inverse=True)
    k = u.size
    below = np.searchsorted(u, x, "left")  # thresholds strictly below each score: le[j] counts below <= j
    above = below + (u[np.minimum(below, k - 1)] == x)  # ... at or below it: lt[j] counts above <= j
    pos_codes = codes[pos]
    total_w = weights @ np.bincount(codes, minlength=g).astype(np.float64)
    pos_w = weights @ np.bincount(pos_codes, minlength=g).astype(np.float64)
    ap, auc = np.zeros(r), np.zeros(r)
    lt = le = plt = np.zeros(r)
    step = int(max(1, budget // (8 * (3 * g + 10 * r))))  # thresholds per chunk: [m, G] counts, [m, R] sums
    for j0 in range(0, k, step):
        j1 = min(k, j0 + step)
        m = j1 - j0
        per = [_bucket_counts(v, j0, j1, codes, g) for v in (above, below)]
        sel = (value_of >= j0) & (value_of < j1)
        hp_counts = np.bincount((value_of[sel] - j0) * g + pos_codes[sel], minlength=m * g).reshape(m, g)
        h_lt, h_le, hp = (c @ weights.T for c in (*per, hp_counts))  # [m, R]
        lt_j = lt + np.cumsum(h_lt, axis=0)
        le_j = le + np.cumsum(h_le, axis=0)
        plt_j = plt + np.cumsum(hp, axis=0) - hp
        with np.errstate(invalid="ignore", divide="ignore"):
            ap += np.where(hp > 0, hp * (pos_w - plt_j) / (total_w - lt_j), 0.0).sum(axis=0)
        auc += (hp * (lt_j - plt_j + 0.5 * (le_j - lt_j - hp))).sum(axis=0)
        lt, le, plt = lt_j[-1], le_j[-1], plt_j[-1] + hp[-1]
    return ap, auc, pos_w


def _bucket_counts(bucket: np.ndarray, j0: int, j1: int, codes: np.ndarray, g: int) -> np.ndarray:
    """[j1 - j0, G]: windows of each group whose bucket is j, for j in j0..j1-1."""
    m = j1 - j0
    if j0 == 0 and g == 1:
        return np.bincount(bucket, minlength=m + 1)[:m].reshape(m, 1).astype(np.float64)
    sel = (bucket >= j0) & (bucket < j1)
    return np.bincount((bucket[sel] - j0) * g + codes[sel], minlength=m * g).reshape(m, g).astype(np.float64)


def _row_pass(
    score_fn: ScoreFn,
    lab: _Labels,
    codes: np.ndarray,
    n_groups: int,
    weights: np.ndarray,
    budget: float,
    threshold: float | None,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """T1 and the detection figures per resample, from per-group counts gathered a chunk of windows at a time."""
    n, s = lab.n, lab.s
    names = ("hits", "labelled", "tp", "detected", "positive", "bird_free", "false_alarm_windows")
    per_group = np.zeros((len(names), n_groups))
    chunk = int(max(1, budget // (s * 20)))  # the block (≤ 8 bytes), labels and detections (1 each), masks
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        block = _block(score_fn, slice(r0, r1), slice(0, s), (r1 - r0, s))
        truth = lab.dense_rows(r0, r1)
        n_labels = truth.sum(axis=1)
        per_window = [truth[np.arange(r1 - r0), block.argmax(axis=1)], n_labels > 0]
        if threshold is not None:
            detected = block >= threshold
            any_detected = detected.any(axis=1)
            per_window += [(detected & truth).sum(axis=1), detected.sum(axis=1), n_labels,
                           n_labels == 0, (n_labels == 0) & any_detected]
        for i, v in enumerate(per_window):
            per_group[i] += np.bincount(codes[r0:r1], weights=v.astype(np.float64), minlength=n_groups)
    sums = weights @ per_group.T  # [R, 7]
    hits, labelled, tp, detected_n, positive, free, alarms = sums.T
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"t1": hits / labelled}
        if threshold is not None:
            out |= {
                "precision": tp / detected_n,
                "recall": tp / positive,
                "f1": 2 * tp / (detected_n + positive),
                "false_alarm_rate": alarms / free,
            }
    point = per_group.sum(axis=1).round().astype(np.int64)
    counts = {"labelled": int(point[1])}
    if threshold is not None:
        counts |= {"tp": int(point[2]), "fp": int(point[3] - point[2]), "fn": int(point[4] - point[2]),
                   "bird_free": int(point[5]), "false_alarm_windows": int(point[6])}
    return out, counts

