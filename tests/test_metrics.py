"""Retrieval, kNN, top-k and bootstrap metrics against independent computations (sklearn or plain loops)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, balanced_accuracy_score, top_k_accuracy_score
from sklearn.neighbors import KNeighborsClassifier

from birdbridge.errors import BirdbridgeError
from birdbridge.evaluate import metrics
from birdbridge.evaluate.bootstrap import bootstrap_ci, bootstrap_cis, bootstrap_indices
from birdbridge.evaluate.metrics import (
    average_precision,
    knn_classify,
    knn_correct,
    per_class_accuracy,
    retrieval_metrics,
    topk_accuracy,
)

# --- independent references -------------------------------------------------------------------------------


def stable_ranking(scores_row) -> list[int]:
    """Descending score, ties by index: the module's documented order, by plain Python sorting."""
    return sorted(range(len(scores_row)), key=lambda i: (-float(scores_row[i]), i))


def loop_ap(scores_row, relevant_row) -> float:
    found, total = 0, 0.0
    for rank, i in enumerate(stable_ranking(scores_row), start=1):
        if relevant_row[i]:
            found += 1
            total += found / rank
    return total / found if found else float("nan")


def loop_hit(scores_row, relevant_row, k: int) -> bool:
    return any(relevant_row[i] for i in stable_ranking(scores_row)[:k])


def sign_embeddings(rng, n: int, d: int = 16) -> np.ndarray:
    """±1 vectors: after normalisation (entries ±1/4 for d=16) every dot product is exact in float32, whatever
    the BLAS blocking, and many similarities tie."""
    return rng.choice([-1.0, 1.0], size=(n, d)).astype(np.float32)


# --- average precision -----------------------------------------------------------------------------------


def test_ap_hand_computed():
    rel = np.array([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]], dtype=bool)
    scores = np.array([[4.0, 3.0, 2.0, 1.0]] * 3)
    ap = average_precision(scores, rel)
    np.testing.assert_allclose(ap, [(1 / 1 + 2 / 3) / 2, 1 / 4, 1.0])
    # float32 fast path gives the same
    np.testing.assert_allclose(average_precision(scores.astype(np.float32), rel), ap)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ap_matches_sklearn_without_ties(dtype):
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((60, 250)).astype(dtype)
    rel = rng.random((60, 250)) < rng.uniform(0.01, 0.3, size=(60, 1))
    rel[:, 0] |= ~rel.any(axis=1)  # every query has a relevant item
    assert all(np.unique(row).size == row.size for row in scores)  # no ties
    ap = average_precision(scores, rel, chunk=7)
    ref = np.array([average_precision_score(r, s) for r, s in zip(rel, scores, strict=True)])
    np.testing.assert_allclose(ap, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(100 * ap.mean(), 100 * ref.mean(), atol=1e-10)


@pytest.mark.parametrize("max_counted", [0, 5, 10**9])  # tie ranks by argsort / mixed / by counting
def test_ap_ties_follow_gallery_order(monkeypatch, max_counted):
    monkeypatch.setattr(metrics, "_MAX_TIES_COUNTED", max_counted)
    monkeypatch.setattr(metrics, "_TIE_BLOCK_ELEMS", 100)  # several blocks of tied items / rows
    rng = np.random.default_rng(2)
    scores = rng.integers(-2, 3, size=(40, 30)).astype(np.float64)
    scores[scores == 0] = rng.choice([0.0, -0.0], size=int((scores == 0).sum()))  # -0.0 ties with 0.0
    scores[::5] = rng.standard_normal((8, 30))  # some rows without ties
    rel = rng.random((40, 30)) < 0.3
    ref = np.array([loop_ap(s, r) for s, r in zip(scores, rel, strict=True)])
    np.testing.assert_allclose(average_precision(scores, rel, chunk=9), ref, atol=1e-12)
    np.testing.assert_allclose(average_precision(scores.astype(np.float32), rel, chunk=9), ref, atol=1e-12)


def test_ap_all_tied_rows():
    rel = np.random.default_rng(3).random((3, 500)) < 0.5
    ap = average_precision(np.zeros((3, 500), np.float32), rel)  # > 64 ties per row: the argsort path
    np.testing.assert_allclose(ap, [loop_ap(np.zeros(500), r) for r in rel], atol=1e-12)


def test_ap_without_relevant_items_is_nan():
    scores = np.array([[0.3, 0.2, 0.1], [0.1, 0.2, 0.3]])
    ap = average_precision(scores, np.array([[0, 0, 0], [0, 0, 1]]))
    assert np.isnan(ap[0]) and ap[1] == 1.0


@pytest.mark.parametrize(
    ("scores", "relevant", "message"),
    [
        (np.zeros((0, 5)), np.zeros((0, 5), bool), "empty"),
        (np.zeros((3, 0)), np.zeros((3, 0), bool), "empty"),
        (np.zeros(5), np.zeros(5, bool), "2-D"),
        (np.zeros((2, 3)), np.zeros((2, 4), bool), "shape"),
        (np.array([[0.1, np.nan]]), np.array([[True, False]]), "NaN"),
        (np.zeros((1, 2)), np.array([[0.5, 1.0]]), "boolean"),
    ],
)
def test_ap_bad_inputs(scores, relevant, message):
    with pytest.raises(BirdbridgeError, match=message):
        average_precision(scores, relevant)


# --- retrieval -------------------------------------------------------------------------------------------


def test_retrieval_vs_brute_force_loop():
    rng = np.random.default_rng(3)
    q, g = sign_embeddings(rng, 70), sign_embeddings(rng, 300)
    ql, gl = rng.integers(0, 8, 70), rng.integers(0, 7, 300)  # class 7 has no gallery item
    res = retrieval_metrics(q, ql, g, gl, ks=(1, 5, 10, 1000), chunk=16)
    sims = (q / 4.0).astype(np.float64) @ (g / 4.0).astype(np.float64).T  # exact
    rel = ql[:, None] == gl[None, :]
    ap = np.array([loop_ap(s, r) for s, r in zip(sims, rel, strict=True)])
    np.testing.assert_allclose(res.ap, ap, atol=1e-12)
    valid = rel.any(axis=1)
    assert res.n_queries == 70 and res.n_skipped == int((~valid).sum()) == int((ql == 7).sum()) > 0
    assert res.map == pytest.approx(100 * ap[valid].mean())
    for k in (1, 5, 10, 1000):
        hit = np.array([loop_hit(s, r, k) for s, r in zip(sims, rel, strict=True)])
        np.testing.assert_array_equal(res.hits[k], hit)
        assert res.recall[k] == pytest.approx(100 * hit[valid].mean())
    assert res.recall[1000] == 100.0
    np.testing.assert_array_equal(res.n_relevant, rel.sum(axis=1))


def test_retrieval_continuous_scores_match_sklearn():
    rng = np.random.default_rng(4)
    scores = rng.standard_normal((50, 400))
    ql, gl = rng.integers(0, 10, 50), rng.integers(0, 10, 400)
    res = retrieval_metrics(None, ql, None, gl, ks=(1, 5), chunk=8, scores_fn=lambda idx: scores[idx])
    rel = ql[:, None] == gl[None, :]
    ref = np.array([average_precision_score(r, s) for r, s in zip(rel, scores, strict=True)])
    np.testing.assert_allclose(res.ap, ref, atol=1e-12)
    assert res.map == pytest.approx(100 * ref.mean(), abs=1e-9)
    for k in (1, 5):
        top = np.argsort(-scores, axis=1)[:, :k]
        np.testing.assert_array_equal(res.hits[k], np.take_along_axis(rel, top, axis=1).any(axis=1))


def test_chunked_unchunked_and_scores_fn_identical():
    rng = np.random.default_rng(5)
    q, g = sign_embeddings(rng, 90), sign_embeddings(rng, 250)
    ql, gl = rng.integers(0, 6, 90), rng.integers(0, 6, 250)
    full = retrieval_metrics(q, ql, g, gl, chunk=1000)
    sims = (q / 4.0) @ (g / 4.0).T  # float32, exact
    for res in (
        retrieval_metrics(q, ql, g, gl, chunk=1),
        retrieval_metrics(q, ql, g, gl, chunk=7),
        retrieval_metrics(None, ql, None, gl, chunk=11, scores_fn=lambda idx: sims[idx]),
        retrieval_metrics(None, ql, None, gl, chunk=90, scores_fn=lambda idx: sims[idx].astype(np.float64)),
    ):
        np.testing.assert_array_equal(res.ap, full.ap)
        np.testing.assert_array_equal(res.first_rank, full.first_rank)
        for k in full.ks:
            np.testing.assert_array_equal(res.hits[k], full.hits[k])


def test_scores_fn_gets_query_indices_and_is_checked():
    seen = []

    def fn(idx):
        seen.append(idx.tolist())
        return np.zeros((len(idx), 4))

    retrieval_metrics(None, [0, 1, 2, 3, 4], None, [0, 1, 2, 3], chunk=2, scores_fn=fn)
    assert seen == [[0, 1], [2, 3], [4]]
    with pytest.raises(BirdbridgeError, match="shape"):
        retrieval_metrics(None, [0, 1], None, [0, 1, 2], scores_fn=lambda idx: np.zeros((len(idx), 2)))
    with pytest.raises(BirdbridgeError, match="not both"):
        retrieval_metrics(np.ones((2, 3)), [0, 1], None, [0, 1, 2], scores_fn=lambda idx: np.zeros((len(idx), 3)))


def test_skipped_queries_are_nan_excluded_and_counted():
    rng = np.random.default_rng(6)
    q, g = rng.standard_normal((6, 8)), rng.standard_normal((10, 8))
    ql = np.array(["wren", "wren", "owl", "owl", "kiwi", "emu"])
    gl = np.array(["wren"] * 5 + ["owl"] * 5)
    res = retrieval_metrics(q, ql, g, gl, ks=(1, 3))
    assert res.n_queries == 6 and res.n_skipped == 2
    assert np.isnan(res.ap[4:]).all() and not np.isnan(res.ap[:4]).any()
    assert not res.hits[3][4:].any()
    assert res.map == pytest.approx(100 * res.ap[:4].mean())
    assert res.recall[3] == pytest.approx(100 * res.hits[3][:4].mean())
    per_query = res.per_query()
    assert set(per_query) == {"map", "recall@1", "recall@3"}
    assert np.isnan(per_query["recall@1"][4:]).all()
    per_class = res.per_class()
    assert list(per_class) == ["emu", "kiwi", "owl", "wren"]
    assert per_class["kiwi"]["n"] == 1 and per_class["kiwi"]["n_skipped"] == 1 and np.isnan(per_class["kiwi"]["map"])
    assert per_class["owl"]["map"] == pytest.approx(100 * res.ap[2:4].mean())
    assert per_class["wren"]["n"] == 2 and per_class["wren"]["n_skipped"] == 0
    summary = res.summary()
    assert summary["n_skipped"] == 2 and summary["map"] == res.map


def test_single_class_gallery():
    rng = np.random.default_rng(7)
    q, g = rng.standard_normal((4, 5)), rng.standard_normal((9, 5))
    res = retrieval_metrics(q, [3, 3, 4, 4], g, [3] * 9, ks=(1,))
    np.testing.assert_array_equal(res.ap[:2], [1.0, 1.0])
    assert res.map == 100.0 and res.recall[1] == 100.0 and res.n_skipped == 2
    none = retrieval_metrics(q, [4, 4, 4, 4], g, [3] * 9)
    assert none.n_skipped == 4 and np.isnan(none.map) and np.isnan(none.recall[1])


def test_retrieval_bad_inputs():
    e = np.ones((3, 4))
    cases = [
        (lambda: retrieval_metrics(np.ones((0, 4)), [], e, [0, 1, 2]), "query_labels is empty"),
        (lambda: retrieval_metrics(e, [0, 1, 2], np.ones((0, 4)), []), "gallery_labels is empty"),
        (lambda: retrieval_metrics(e, [0, 1], e, [0, 1, 2]), "3 rows but 2 labels"),
        (lambda: retrieval_metrics(e, [0, 1, 2], np.ones((3, 5)), [0, 1, 2]), "dimension"),
        (lambda: retrieval_metrics(np.zeros((3, 4)), [0, 1, 2], e, [0, 1, 2]), "all-zero"),
        (lambda: retrieval_metrics(e, [0, 1, 2], e, [0, 1, 2], ks=()), "ks is empty"),
        (lambda: retrieval_metrics(e, [0, 1, 2], e, [0, 1, 2], ks=(0,)), "k in ks"),
        (lambda: retrieval_metrics(e, [0, 1, 2], e, [0, 1, 2], chunk=0), "chunk"),
        (lambda: retrieval_metrics(None, [0, 1, 2], None, [0, 1, 2]), "scores_fn"),
    ]
    for call, message in cases:
        with pytest.raises(BirdbridgeError, match=message):
            call()


def test_tuple_labels():
    rng = np.random.default_rng(8)
    ql = [("Corvidae", "Pica"), ("Turdidae", "Turdus")]
    gl = [("Corvidae", "Pica"), ("Corvidae", "Corvus"), ("Turdidae", "Turdus")]
    res = retrieval_metrics(rng.standard_normal((2, 3)), ql, rng.standard_normal((3, 3)), gl)
    np.testing.assert_array_equal(res.n_relevant, [1, 1])
    assert set(res.per_class()) == {("Corvidae", "Pica"), ("Turdidae", "Turdus")}


# --- kNN -------------------------------------------------------------------------------------------------


def loop_knn(train, labels, test, k, tau, exclude_self=False):
    """Brute force: votes per class over the k nearest (cosine, float64), ties to the smallest class."""
    classes = sorted(set(labels.tolist()))
    tr = train / np.linalg.norm(train, axis=1, keepdims=True)
    te = test / np.linalg.norm(test, axis=1, keepdims=True)
    preds, votes = [], []
    for i, x in enumerate(te):
        sims = [(float(x @ t), j) for j, t in enumerate(tr) if not (exclude_self and j == i)]
        sims.sort(key=lambda p: (-p[0], p[1]))
        v = dict.fromkeys(classes, 0.0)
        for sim, j in sims[:k]:
            v[labels[j]] += np.exp(sim / tau)
        best = max(v.values())
        preds.append(next(c for c in classes if v[c] == best))
        votes.append([v[c] for c in classes])
    return np.array(preds), np.array(votes)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_knn_vs_loop_and_sklearn(exclude_self):
    rng = np.random.default_rng(9)
    centers = rng.standard_normal((5, 12))
    labels = rng.integers(0, 5, 150)
    train = centers[labels] + 1.5 * rng.standard_normal((150, 12))
    test = train if exclude_self else centers[rng.integers(0, 5, 60)] + 1.5 * rng.standard_normal((60, 12))
    k, tau = 7, 0.1
    pred, scores = knn_classify(train, labels, test, k=k, tau=tau, chunk=13, exclude_self=exclude_self)
    ref_pred, ref_votes = loop_knn(train, labels, test, k, tau, exclude_self)
    np.testing.assert_array_equal(pred, ref_pred)
    np.testing.assert_allclose(scores, ref_votes, rtol=1e-5)
    clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                               weights=lambda d: np.exp((1.0 - d) / tau)).fit(train, labels)
    np.testing.assert_array_equal(pred, clf.predict(None if exclude_self else test))


def test_knn_ties_and_string_labels():
    train = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # two identical neighbours of different classes tie: the smallest class ("a" < "b") wins
    pred, scores = knn_classify(train, ["b", "a", "c"], np.array([[1.0, 0.0]]), k=2)
    assert pred.tolist() == ["a"] and scores[0, 0] == scores[0, 1] and scores[0, 2] == 0
    # a tie across the k-th place: the lower training index is the neighbour
    pred, _ = knn_classify(train, ["b", "a", "c"], np.array([[1.0, 0.0]]), k=1)
    assert pred.tolist() == ["b"]


def test_knn_correct():
    rng = np.random.default_rng(10)
    train, test = rng.standard_normal((80, 6)), rng.standard_normal((30, 6))
    labels, test_labels = rng.integers(0, 4, 80), rng.integers(0, 5, 30)  # class 4 is never predicted
    pred, _ = knn_classify(train, labels, test, k=5)
    correct = knn_correct(train, labels, test, test_labels, k=5)
    np.testing.assert_array_equal(correct, pred == test_labels)
    assert not correct[test_labels == 4].any()


def test_knn_bad_inputs():
    x = np.eye(3)
    with pytest.raises(BirdbridgeError, match="training set itself"):
        knn_classify(x, [0, 1, 2], x + 1, k=1, exclude_self=True)
    with pytest.raises(BirdbridgeError, match="only 2 training samples"):
        knn_classify(x, [0, 1, 2], x, k=3, exclude_self=True)
    with pytest.raises(BirdbridgeError, match="tau"):
        knn_classify(x, [0, 1, 2], x, k=1, tau=0)
    with pytest.raises(BirdbridgeError, match="empty"):
        knn_classify(x, [0, 1, 2], np.ones((0, 3)), k=1)


# --- top-k and per-class accuracy ------------------------------------------------------------------------


def test_topk_vs_sklearn():
    rng = np.random.default_rng(11)
    scores = rng.standard_normal((300, 12))
    labels = rng.integers(0, 12, 300)
    hits = topk_accuracy(scores, labels, ks=(1, 3, 5))
    for k in (1, 3, 5):
        ref = top_k_accuracy_score(labels, scores, k=k, labels=np.arange(12))
        assert 100 * hits[k].mean() == pytest.approx(100 * ref)
        np.testing.assert_array_equal(hits[k], (np.argsort(-scores, axis=1)[:, :k] == labels[:, None]).any(axis=1))


def test_topk_ties_and_errors():
    hits = topk_accuracy(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]), np.array([1, 0]), ks=(1, 2, 9))
    assert hits[1].tolist() == [False, True] and hits[2].all() and hits[9].all()
    with pytest.raises(BirdbridgeError, match=r"\[0, 3\)"):
        topk_accuracy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(BirdbridgeError, match="integer"):
        topk_accuracy(np.zeros((2, 3)), np.array([0.0, 1.0]))


def test_per_class_accuracy():
    rng = np.random.default_rng(12)
    truth = rng.integers(0, 7, 500)
    pred = np.where(rng.random(500) < 0.6, truth, rng.integers(0, 7, 500))
    correct = pred == truth
    per_class = per_class_accuracy(correct, truth)
    macro = np.mean([acc for acc, _ in per_class.values()])  # class-averaged, as iNatSounds reports
    assert macro == pytest.approx(100 * balanced_accuracy_score(truth, pred))
    for c in range(7):
        mask = truth == c
        assert per_class[c] == (pytest.approx(100 * correct[mask].mean()), int(mask.sum()))
    with pytest.raises(BirdbridgeError, match="empty"):
        per_class_accuracy(np.array([], bool), np.array([]))
    with pytest.raises(BirdbridgeError, match="labels"):
        per_class_accuracy(np.array([True, False]), [0])


# --- bootstrap -------------------------------------------------------------------------------------------


def test_bootstrap_contains_mean_and_matches_normal_theory():
    rng = np.random.default_rng(13)
    for n in (400, 1600):
        x = rng.exponential(size=n)
        low, high = bootstrap_ci(x, n_resamples=1000, seed=1)
        assert low < x.mean() < high
        half = 1.96 * x.std(ddof=1) / np.sqrt(n)
        assert (high - low) / 2 == pytest.approx(half, rel=0.15)


def test_bootstrap_width_shrinks_like_inverse_sqrt_n():
    rng = np.random.default_rng(14)
    widths = []
    for n in (250, 1000, 4000):
        low, high = bootstrap_ci(rng.standard_normal(n), n_resamples=800, seed=0)
        widths.append(high - low)
    assert 1.6 < widths[0] / widths[1] < 2.5 and 1.6 < widths[1] / widths[2] < 2.5


def test_bootstrap_paired_deterministic_and_nan():
    rng = np.random.default_rng(15)
    x, y = rng.random(300), rng.random(300)
    cis = bootstrap_cis({"x": x, "neg": -x, "y": y}, n_resamples=500, seed=3)
    # identical resamples: the CI of -x mirrors that of x exactly, and each equals its single-metric run
    assert cis["neg"] == pytest.approx((-cis["x"][1], -cis["x"][0]), abs=1e-12)
    assert cis["y"] == bootstrap_ci(y, n_resamples=500, seed=3)
    assert bootstrap_ci(x, n_resamples=500, seed=3) == cis["x"]
    assert bootstrap_ci(x, n_resamples=500, seed=4) != cis["x"]
    # the paired difference computed by hand from the same indices
    means = np.concatenate([np.stack([x[i].mean(1), y[i].mean(1)]) for i in bootstrap_indices(300, 500, seed=3)], 1)
    assert tuple(np.percentile(means[0], [2.5, 97.5])) == pytest.approx(cis["x"], abs=1e-12)
    # NaN values are dropped
    with_nan = np.concatenate([x, [np.nan] * 20])
    assert bootstrap_ci(with_nan, n_resamples=500, seed=3) == cis["x"]
    median = bootstrap_ci(with_nan, n_resamples=200, statistic=np.median)
    assert median[0] < np.median(x) < median[1]


def test_bootstrap_stratified_keeps_class_sizes():
    rng = np.random.default_rng(16)
    strata = rng.integers(0, 5, 200)
    sizes = np.bincount(strata, minlength=5)
    for block in bootstrap_indices(200, 50, seed=0, strata=strata):
        for row in block:
            np.testing.assert_array_equal(np.bincount(strata[row], minlength=5), sizes)
    values = strata + rng.standard_normal(200)
    plain = bootstrap_ci(values, seed=0)
    strat = bootstrap_ci(values, seed=0, strata=strata)
    assert strat[0] < values.mean() < strat[1]
    assert strat[1] - strat[0] < plain[1] - plain[0]  # between-class variance is removed


def test_bootstrap_bad_inputs():
    with pytest.raises(BirdbridgeError, match="NaN"):
        bootstrap_ci([np.nan, np.nan])
    with pytest.raises(BirdbridgeError, match="NaN"):
        bootstrap_ci([])
    with pytest.raises(BirdbridgeError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.0)
    with pytest.raises(BirdbridgeError, match="n_resamples"):
        bootstrap_ci([1.0, 2.0], n_resamples=0)
    with pytest.raises(BirdbridgeError, match="values"):
        bootstrap_cis({"a": np.ones(3), "b": np.ones(4)})
    with pytest.raises(BirdbridgeError, match="strata"):
        bootstrap_ci(np.ones(3), strata=[0, 1])


def test_knn_many_ties_pick_lowest_training_indices():
    rng = np.random.default_rng(17)
    train, test = sign_embeddings(rng, 120, d=4), sign_embeddings(rng, 40, d=4)  # similarities in {0, ±.5, ±1}
    labels = rng.integers(0, 6, 120)
    pred, scores = knn_classify(train, labels, test, k=5, chunk=9)
    ref_pred, ref_votes = loop_knn(train, labels, test, 5, 0.07)
    np.testing.assert_array_equal(pred, ref_pred)
    np.testing.assert_allclose(scores, ref_votes, rtol=1e-5)
