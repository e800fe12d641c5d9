"""Soundscape window metrics (cmAP, AUROC, T1, detections) against scikit-learn and plain loops, streamed."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from birdbridge.errors import BirdbridgeError
from birdbridge.evaluate.bootstrap import bootstrap_indices
from birdbridge.evaluate.multilabel import EmbeddingScores, multilabel_metrics

# --- independent references -------------------------------------------------------------------------------


def sk_per_class(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn AP (classes with a positive) and AUROC (classes with both kinds), NaN elsewhere."""
    n, s = labels.shape
    ap = np.full(s, np.nan)
    auc = np.full(s, np.nan)
    for j in range(s):
        p = int(labels[:, j].sum())
        if p:
            ap[j] = average_precision_score(labels[:, j], scores[:, j])
        if 0 < p < n:
            auc[j] = roc_auc_score(labels[:, j], scores[:, j])
    return ap, auc


def loop_t1(scores: np.ndarray, labels: np.ndarray) -> float:
    hits = total = 0
    for row, truth in zip(scores, labels, strict=True):
        if not truth.any():
            continue
        best = max(range(len(row)), key=lambda j: (row[j], -j))  # highest score, lowest index among ties
        hits += bool(truth[best])
        total += 1
    return hits / total


def soundscape_like(seed: int = 0, n: int = 400, s: int = 15, decimals: int = 1, everywhere: bool = False):
    """Scores with many ties; bird-free and multi-label windows, a class without positives (and, if
    ``everywhere``, class 3 in every window: no bird-free windows then)."""
    rng = np.random.default_rng(seed)
    labels = rng.random((n, s)) < 0.06
    labels[rng.random(n) < 0.4] = False  # bird-free windows
    labels[:5, :4] = True  # several labels per window
    labels[:, 2] = False  # a class nobody heard
    if everywhere:
        labels[:, 3] = True  # a class without negatives
    scores = np.round(rng.normal(size=(n, s)) + 1.5 * labels, decimals)
    return scores, labels


# --- the metrics --------------------------------------------------------------------------------------------


def test_per_class_ap_and_auroc_match_sklearn_with_ties_and_empty_classes():
    scores, labels = soundscape_like(everywhere=True)
    assert len(np.unique(scores)) < scores.size / 10  # heavily tied
    res = multilabel_metrics(scores, labels)
    ap, auc = sk_per_class(scores, labels)
    np.testing.assert_allclose(res.ap, ap, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.auroc_per_class, auc, rtol=0, atol=1e-12)
    assert np.isnan(res.ap[2]) and np.isnan(res.auroc_per_class[2]) and np.isnan(res.auroc_per_class[3])
    assert res.ap[3] == 1.0
    assert res.cmap == pytest.approx(np.nanmean(ap), abs=1e-12)  # mean over the 14 classes with positives
    assert res.auroc == pytest.approx(np.nanmean(auc), abs=1e-12)  # over the 13 with both kinds
    assert res.n_classes == 14 and res.n_windows == 400
    assert res.n_labelled == int(labels.any(axis=1).sum())


def test_t1_over_labelled_windows_with_tied_top_scores():
    scores, labels = soundscape_like(seed=1, decimals=0)  # integer scores: many tied maxima
    res = multilabel_metrics(scores, labels)
    assert res.t1 == pytest.approx(loop_t1(scores, labels), abs=1e-12)
    tied = np.array([[1.0, 1.0, 0.0], [0.5, 2.0, 2.0], [3.0, 0.0, 0.0]])
    truth = np.array([[False, True, False], [False, True, False], [False, False, False]])
    assert multilabel_metrics(tied, truth).t1 == 0.5  # first row: class 0 wins the tie; third is unlabelled


def test_detection_figures_micro_over_pairs_and_bird_free_false_alarms():
    scores, labels = soundscape_like(seed=2)
    threshold = 1.0
    res = multilabel_metrics(scores, labels, threshold=threshold)
    predicted = scores >= threshold
    assert res.precision == pytest.approx(precision_score(labels, predicted, average="micro"), abs=1e-12)
    assert res.recall == pytest.approx(recall_score(labels, predicted, average="micro"), abs=1e-12)
    assert res.f1 == pytest.approx(f1_score(labels, predicted, average="micro"), abs=1e-12)
    free = ~labels.any(axis=1)
    assert 0 < free.sum() < len(free)
    assert res.false_alarm_rate == pytest.approx(predicted[free].any(axis=1).mean(), abs=1e-12)
    assert res.counts == {
        "tp": int((predicted & labels).sum()),
        "fp": int((predicted & ~labels).sum()),
        "fn": int((~predicted & labels).sum()),
        "bird_free": int(free.sum()),
        "false_alarm_windows": int(predicted[free].any(axis=1).sum()),
    }
    assert multilabel_metrics(scores, labels).precision is None  # no threshold, no detection figures


def test_labels_as_pairs_equal_dense_labels():
    scores, labels = soundscape_like(seed=3)
    rows, cols = np.nonzero(labels)
    dense = multilabel_metrics(scores, labels, threshold=0.5)
    pairs = multilabel_metrics(scores, (np.concatenate([rows, rows[:7]]), np.concatenate([cols, cols[:7]])),
                               threshold=0.5)  # repeated pairs count once
    np.testing.assert_array_equal(pairs.ap, dense.ap)
    assert (pairs.cmap, pairs.auroc, pairs.t1, pairs.f1) == (dense.cmap, dense.auroc, dense.t1, dense.f1)


def test_monotonic_calibration_leaves_ap_and_auroc_unchanged():
    scores, labels = soundscape_like(seed=4, decimals=3)
    raw = multilabel_metrics(scores, labels)
    slope = np.linspace(0.5, 4.0, scores.shape[1])  # a different increasing map for each class
    calibrated = multilabel_metrics(1 / (1 + np.exp(-(slope * scores - 1.0))), labels)
    np.testing.assert_allclose(calibrated.ap, raw.ap, atol=1e-12)
    np.testing.assert_allclose(calibrated.auroc_per_class, raw.auroc_per_class, atol=1e-12)


# --- streaming ----------------------------------------------------------------------------------------------


class CountingScores:
    """A score callable over a fixed matrix that records the size of every block it is asked for."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix
        self.shape = matrix.shape
        self.blocks: list[tuple[int, int]] = []

    def __call__(self, rows: slice, classes: slice) -> np.ndarray:
        block = self.matrix[rows, classes]
        self.blocks.append(block.shape)
        return block


def test_streamed_blocks_stay_within_the_budget_and_give_the_same_result():
    scores, labels = soundscape_like(seed=5, n=3000, s=40)
    whole = multilabel_metrics(scores, labels, threshold=1.0)
    source = CountingScores(scores)
    streamed = multilabel_metrics(source, labels, threshold=1.0, max_block_mb=0.2)  # 26,214 float64 scores
    largest = max(r * c for r, c in source.blocks)
    assert largest * 8 <= 0.2 * 2**20 and largest < scores.size / 4
    assert {c for r, c in source.blocks if r == 3000} and {r for r, c in source.blocks if c == 40}
    np.testing.assert_array_equal(streamed.ap, whole.ap)
    np.testing.assert_array_equal(streamed.auroc_per_class, whole.auroc_per_class)
    assert streamed.summary() == pytest.approx(whole.summary(), abs=0)


def test_embedding_scores_are_cosine_similarities_by_block():
    rng = np.random.default_rng(6)
    windows = rng.normal(size=(500, 16)).astype(np.float32) * 3
    species = rng.normal(size=(9, 16)).astype(np.float32)
    cos = (windows / np.linalg.norm(windows, axis=1, keepdims=True)) @ (
        species / np.linalg.norm(species, axis=1, keepdims=True)).T
    source = EmbeddingScores(windows, species)
    assert source.shape == (500, 9)
    np.testing.assert_allclose(source(slice(100, 140), slice(2, 7)), cos[100:140, 2:7], atol=1e-6)
    labels = rng.random((500, 9)) < 0.1
    streamed = multilabel_metrics(source, labels, max_block_mb=0.01)
    ap, auc = sk_per_class(cos, labels)
    np.testing.assert_allclose(streamed.ap, ap, atol=1e-6)
    np.testing.assert_allclose(streamed.auroc_per_class, auc, atol=1e-6)


def test_a_plain_callable_takes_its_shape_from_dense_labels_or_shape():
    scores, labels = soundscape_like(seed=7)
    fn = lambda rows, classes: scores[rows, classes]  # noqa: E731
    assert multilabel_metrics(fn, labels).cmap == multilabel_metrics(scores, labels).cmap
    rows, cols = np.nonzero(labels)
    with pytest.raises(BirdbridgeError, match="shape"):
        multilabel_metrics(fn, (rows, cols))
    assert multilabel_metrics(fn, (rows, cols), shape=scores.shape).cmap == multilabel_metrics(scores, labels).cmap


def test_bad_inputs_raise_clear_errors():
    scores, labels = soundscape_like(seed=8, n=50, s=5)
    bad = scores.copy()
    bad[7, 3] = np.nan
    with pytest.raises(BirdbridgeError, match="contain NaN"):
        multilabel_metrics(bad, labels)
    with pytest.raises(BirdbridgeError, match="shape"):
        multilabel_metrics(scores, labels[:, :4])
    with pytest.raises(BirdbridgeError, match="outside"):
        multilabel_metrics(scores, (np.array([0]), np.array([5])))
    with pytest.raises(BirdbridgeError, match="returned shape"):
        multilabel_metrics(lambda r, c: scores[r, c][:, :1], labels)
    with pytest.raises(BirdbridgeError, match="groups"):
        multilabel_metrics(scores, labels, groups=np.zeros(49), n_resamples=10)
    with pytest.raises(BirdbridgeError, match="max_block_mb"):
        multilabel_metrics(scores, labels, n_resamples=1000, max_block_mb=0.1)  # 1,001 × 50 window weights


# --- bootstrap over recordings ------------------------------------------------------------------------------


def test_cluster_bootstrap_recomputes_every_metric_on_the_drawn_recordings():
    scores, labels = soundscape_like(seed=9, n=240, s=8)
    groups = np.repeat(np.array([f"rec{i:02d}" for i in range(24)]), 10)
    res = multilabel_metrics(scores, labels, threshold=1.0, groups=groups, n_resamples=30, seed=3)
    # brute force: rebuild each resample's windows (recording by recording) and score it with sklearn
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    brute: dict[str, list[float]] = {"cmap": [], "auroc": [], "t1": [], "f1": []}
    for idx in np.concatenate(list(bootstrap_indices(len(members), 30, seed=3))):
        rows = np.concatenate([members[i] for i in idx])
        ap, auc = sk_per_class(scores[rows], labels[rows])
        brute["cmap"].append(np.nanmean(ap))
        brute["auroc"].append(np.nanmean(auc))
        brute["t1"].append(loop_t1(scores[rows], labels[rows]))
        brute["f1"].append(f1_score(labels[rows], scores[rows] >= 1.0, average="micro"))
    for name, values in brute.items():
        assert res.ci[name] == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])), abs=1e-12), name
    assert res.n_resamples == 30 and res.confidence == 0.95
    plain = multilabel_metrics(scores, labels, threshold=1.0).summary()
    assert res.summary() == pytest.approx(plain, abs=1e-12)  # the point estimate is the data's


def test_recording_bootstrap_is_wider_than_a_window_bootstrap_for_correlated_windows():
    rng = np.random.default_rng(10)
    n_rec, per_rec, s = 30, 40, 6
    groups = np.repeat(np.arange(n_rec), per_rec)
    labels = np.zeros((n_rec * per_rec, s), dtype=bool)
    for r in range(n_rec):  # each recording has its own birds, calling in runs of windows
        for j in rng.choice(s, 2, replace=False):
            start = rng.integers(0, per_rec - 10)
            labels[r * per_rec + start:r * per_rec + start + 10, j] = True
    quality = rng.normal(0, 1.5, n_rec)[groups]  # how well the model hears each recording (site, weather, mic)
    scores = rng.normal(size=labels.shape) + labels * quality[:, None]
    kw = {"threshold": 0.5, "n_resamples": 400, "seed": 0}
    clustered = multilabel_metrics(scores, labels, groups=groups, **kw).ci
    windows = multilabel_metrics(scores, labels, **kw).ci

    def width(ci, name):
        return ci[name][1] - ci[name][0]

    for name in ("cmap", "auroc", "t1", "f1"):
        assert width(clustered, name) > 1.5 * width(windows, name), name
