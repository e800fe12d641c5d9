"""The logistic similarity → confidence map and the background vocabulary (checked against scikit-learn)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from birdbridge.errors import BirdbridgeError, InputError, ModelFormatError
from birdbridge.models.calibration import (
    Calibration,
    check_sensitivity,
    fit_calibration,
    read_calibration,
    write_calibration,
)
from birdbridge.species.background import (
    DEFAULT_BACKGROUND,
    BackgroundVocabulary,
    background_text_embeddings,
    load_background_vocabulary,
)


def _synthetic(n: int = 20_000, slope: float = 12.0, intercept: float = -4.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    s = rng.uniform(-0.2, 0.8, n)
    p = 1 / (1 + np.exp(-(slope * s + intercept)))
    return s, rng.random(n) < p


def test_fit_matches_scikit_learn_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    s, y = _synthetic()
    cal = fit_calibration(s, y, l2=0.0)
    ref = LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(s[:, None], y)
    assert cal.slope == pytest.approx(ref.coef_[0, 0], rel=1e-4)
    assert cal.intercept == pytest.approx(ref.intercept_[0], rel=1e-4)
    assert (cal.n_positive, cal.n_negative) == (int(y.sum()), int((~y).sum()))
    # and it recovers the generating map
    assert cal.slope == pytest.approx(12.0, rel=0.1) and cal.intercept == pytest.approx(-4.0, rel=0.1)


def test_fit_stays_finite_when_separable() -> None:
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    cal = fit_calibration(s, s > 0.5)
    assert math.isfinite(cal.slope) and cal.slope > 0
    assert cal.confidence(0.9) > 0.5 > cal.confidence(0.1)


def test_fit_needs_both_classes_and_matching_shapes() -> None:
    with pytest.raises(BirdbridgeError, match="positive and negative"):
        fit_calibration(np.array([0.1, 0.2]), np.array([True, True]))
    with pytest.raises(BirdbridgeError, match="one label per similarity"):
        fit_calibration(np.zeros((2, 3)), np.zeros((3, 2), bool))


def test_confidence_sensitivity_and_inverse() -> None:
    cal = Calibration(slope=10.0, intercept=-3.0)
    sims = np.array([[-0.5, 0.0, 0.3, 0.6]])
    conf = cal.confidence(sims)
    assert conf.shape == sims.shape and conf.dtype == np.float32
    assert np.all(np.diff(conf[0]) > 0)  # monotone in the similarity
    assert conf[0, 2] == pytest.approx(0.5)  # 10 * 0.3 - 3 = 0
    higher = cal.confidence(sims, sensitivity=1.25)  # BirdNET: higher sensitivity, higher confidences
    lower = cal.confidence(sims, sensitivity=0.75)
    assert np.all(higher > conf) and np.all(lower < conf)
    assert higher[0, 2] == pytest.approx(1 / (1 + math.exp(-2.5)))  # shifted by (1.25 - 1) * 10
    for c in (0.1, 0.5, 0.9):
        for sens in (0.5, 1.0, 1.5):
            assert cal.confidence(cal.similarity_at(c, sens), sens) == pytest.approx(c, abs=1e-5)
    with pytest.raises(BirdbridgeError, match="sensitivity"):
        check_sensitivity(1.7)
    with pytest.raises(BirdbridgeError, match="sensitivity"):
        cal.confidence(0.1, sensitivity=float("nan"))


def test_round_trip_and_file(tmp_path) -> None:
    cal = fit_calibration(*_synthetic(2_000), source="demo:val", teacher_fingerprint="abc",
                          prompts={"forms": ["taxonomic_common"], "templates": "openai"})
    again = Calibration.from_dict(cal.as_dict())
    assert again == cal
    assert read_calibration(tmp_path) is None
    write_calibration(tmp_path, cal)
    assert read_calibration(tmp_path) == cal
    (tmp_path / "calibration.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelFormatError, match="calibrate"):
        read_calibration(tmp_path)
    with pytest.raises(ModelFormatError, match="calibrate"):
        Calibration.from_dict({"format": "isotonic"})
    with pytest.raises(ModelFormatError, match="calibrate"):
        Calibration.from_dict({"slope": "x", "intercept": 0})


def test_default_vocabulary_and_lookup() -> None:
    vocab = BackgroundVocabulary()
    assert vocab.labels[:2] == ["wind", "rain"] and len(vocab) == len(DEFAULT_BACKGROUND)
    assert vocab.labels[vocab.index("Water")] == "running water"
    assert vocab.labels[vocab.index("voices")] == "human speech"
    with pytest.raises(KeyError, match="not a background class"):
        vocab.index("thunder")
    assert BackgroundVocabulary.of(["voices", "wind"]).labels == ["human speech", "wind"]
    assert BackgroundVocabulary.from_dict(vocab.as_dict()).classes == vocab.classes


def test_vocabulary_file(tmp_path) -> None:
    path = tmp_path / "bg.txt"
    path.write_text("# site noises\nwind: wind; gusts\nsurf: waves on a beach\ngenerator\n", encoding="utf-8")
    vocab = load_background_vocabulary(path)
    assert vocab.labels == ["wind", "surf", "generator"]
    assert vocab.classes[0].prompts == ("wind", "gusts") and vocab.classes[2].prompts == ("generator",)
    path.write_text("wind: wind\n: orphan prompt\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2"):
        load_background_vocabulary(path)
    path.write_text("wind: a\nWIND: b\n", encoding="utf-8")
    with pytest.raises(InputError, match="used twice"):
        load_background_vocabulary(path)


def test_background_embeddings_average_the_prompts() -> None:
    class Encoder:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def encode_texts(self, texts, batch_size=64):
            self.seen += texts
            rng = np.random.default_rng(len(texts))
            return rng.standard_normal((len(texts), 8)).astype(np.float32)

    encoder = Encoder()
    vocab = BackgroundVocabulary.of(["wind", "rain"])
    emb = background_text_embeddings(encoder, vocab)
    rows = Encoder().encode_texts(encoder.seen)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    n = len(vocab.classes[0].prompts)
    expected = rows[:n].mean(0) / np.linalg.norm(rows[:n].mean(0))
    assert emb.shape == (2, 8) and np.allclose(emb[0], expected, atol=1e-6)
    assert encoder.seen == [*vocab.classes[0].prompts, *vocab.classes[1].prompts]


def test_a_student_carries_its_calibration_without_changing_its_fingerprint(tmp_path) -> None:
    import shutil
    from pathlib import Path

    from birdbridge.models.distilled import load_distilled_student

    folder = tmp_path / "student"
    shutil.copytree(Path(__file__).parent / "data" / "student-v1-mlp", folder)
    before = load_distilled_student(folder, "cpu")
    assert before.calibration is None
    cal = Calibration(slope=9.0, intercept=-2.5, source="test")
    write_calibration(folder, cal)
    after = load_distilled_student(folder, "cpu")
    assert after.calibration == cal
    assert after.fingerprint == before.fingerprint  # embeddings made before calibrating stay valid


def test_load_student_sees_a_new_calibration_and_new_weights(tmp_path) -> None:
    """The loader caches models, but never serves a stale calibration or weights rewritten in place."""
    import shutil
    from pathlib import Path

    import torch
    from safetensors.torch import load_file, save_file

    from birdbridge.models.loader import load_student

    folder = tmp_path / "student"
    shutil.copytree(Path(__file__).parent / "data" / "student-v1-mlp", folder)
    first = load_student(folder, "cpu")
    assert load_student(folder, "cpu") is first  # cached
    assert first.calibration is None
    cal = Calibration(slope=7.0, intercept=-1.0)
    write_calibration(folder, cal)
    assert load_student(folder, "cpu").calibration == cal
    head = load_file(str(folder / "head.safetensors"))
    save_file({k: torch.zeros_like(v) for k, v in head.items()}, str(folder / "head.safetensors"))
    again = load_student(folder, "cpu")
    assert again is not first
    assert all(float(p.detach().abs().sum()) == 0 for p in again.head.parameters())
