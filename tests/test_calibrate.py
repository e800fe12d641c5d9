"""`birdbridge calibrate` and the calibration `birdbridge train` stores: labelled pairs from clips, soundscapes and
background recordings, the logistic fit (checked against scikit-learn), refusals, and the model's fingerprint."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from birdbridge.errors import BirdbridgeError
from birdbridge.evaluate.calibrate import calibrate
from birdbridge.models.calibration import read_calibration
from birdbridge.models.distilled import load_distilled_student
from birdbridge.train.config import load_config
from birdbridge.train.loop import train
from cli_fixtures import run
from train_fixtures import corpus, make_tone_dataset


def _settings(setup, output: Path, **extra) -> list[str]:
    base = {
        "data.dataset": setup["manifest"], "student": setup["student"], "teacher": setup["teacher"],
        "output": output, "run.batch_size": 8, "run.epochs": 16, "data.num_workers": 0, "run.progress": "false",
        "optim.warmup_steps": 2, "optim.lr": 2e-3, "optim.head_lr": 5e-3, "run.log_every": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tone clips of four species, a tiny teacher and student, and a student trained with a validation split."""
    from birdbridge.models.standins import build_small_clap, build_small_clip

    root = tmp_path_factory.mktemp("calibrate")
    setup = {"root": root, "manifest": make_tone_dataset(root / "data"),
             "student": build_small_clap(root / "student", corpus=corpus()),
             "teacher": build_small_clip(root / "teacher")}
    train(load_config(None, _settings(setup, root / "run", **{"data.val_split": "test"})))
    setup["model"] = root / "run" / "model"
    return setup


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny demo world with soundscapes (valid/test splits, Raven truth) and background clips."""
    from birdbridge.demo.world import WorldConfig, generate_world

    config = WorldConfig(n_orders=2, families_per_order=1, genera_per_family=2, species_per_genus=2,
                         recordings_per_species=2, images_per_species=1, clip_s=(1.0, 1.5), seed=5, soundscapes=4,
                         soundscape_s=30.0, background_per_class=3)
    return generate_world(tmp_path_factory.mktemp("world") / "world", config)


def test_train_with_a_val_split_stores_a_calibration_that_separates(setup) -> None:
    stored = read_calibration(setup["model"])
    assert stored is not None and stored.slope > 0
    assert stored.source == "data:test" and stored.prompts == {"forms": ["taxonomic_common"], "templates": "openai"}
    assert stored.n_positive == 12 and stored.n_negative == 36  # 12 one-window test clips x 4 species
    assert load_distilled_student(setup["model"]).calibration == stored

    report = calibrate(setup["model"], setup["manifest"], split="test", write=False)
    assert report.calibration.slope == pytest.approx(stored.slope) and report.path is None
    confidence = report.calibration.confidence(report.similarities)
    assert confidence[report.positives].mean() > confidence[~report.positives].mean()
    assert report.figures["average_precision"] > report.positives.mean()  # better than chance
    # the pairs: each test clip's own species is its one positive
    species = {row["path"]: row["species"] for row in _rows(setup["manifest"]) if row["split"] == "test"}
    assert report.positives.sum(axis=1).tolist() == [1] * len(species)


def test_the_fit_is_scikit_learns_logistic_regression(setup) -> None:
    from sklearn.linear_model import LogisticRegression

    report = calibrate(setup["model"], setup["manifest"], split="test", write=False)
    s, y = report.similarities.reshape(-1, 1).astype(np.float64), report.positives.reshape(-1)
    # fit_calibration's ridge (l2 = 1e-3 per pair, on the slope only) is scikit-learn's C = 1 / (l2 * n)
    ref = LogisticRegression(C=1.0 / (1e-3 * len(y)), tol=1e-12, max_iter=10_000).fit(s, y)
    assert report.calibration.slope == pytest.approx(ref.coef_[0, 0], rel=1e-4, abs=1e-6)
    assert report.calibration.intercept == pytest.approx(ref.intercept_[0], rel=1e-4, abs=1e-6)
    p = ref.predict_proba(s)[:, 1]
    log_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert report.figures["log_loss"] == pytest.approx(log_loss, abs=1e-5)


def test_cli_writes_calibration_json_without_changing_the_fingerprint(setup, tmp_path, capsys) -> None:
    model = tmp_path / "model"
    shutil.copytree(setup["model"], model)
    (model / "calibration.json").unlink()
    before = load_distilled_student(model)
    assert before.calibration is None
    result = run(capsys, "calibrate", "--model", model, "--dataset", setup["manifest"], "--split", "test",
                 "--templates", "single", "--forms", "common,scientific")
    assert result.returncode == 0, result.stderr
    assert "logit =" in result.stdout and "AP" in result.stdout and "48 pairs (12 positive)" in result.stdout
    after = load_distilled_student(model)
    assert after.fingerprint == before.fingerprint
    assert after.calibration is not None and after.calibration.slope > 0
    saved = json.loads((model / "calibration.json").read_text())
    assert saved["prompts"] == {"forms": ["common", "scientific"], "templates": "single"}
    assert saved["teacher_fingerprint"] == json.loads((model / "birdbridge.json").read_text())["teacher"]["fingerprint"]
    assert {"average_precision", "confidence_median_positive", "confidence_p99_negative", "log_loss"} <= set(
        saved["extra"])


def test_refusals(setup, tmp_path, monkeypatch, capsys) -> None:
    from birdbridge.models.standins import build_small_clip

    plain = run(capsys, "calibrate", "--model", setup["student"], "--dataset", setup["manifest"], "--split", "test")
    assert plain.returncode == 1 and "not a birdbridge student" in plain.stderr and "Traceback" not in plain.stderr
    other = build_small_clip(tmp_path / "other-teacher", seed=3)
    with pytest.raises(BirdbridgeError, match="distilled for teacher"):
        calibrate(setup["model"], setup["manifest"], split="test", teacher=str(other), write=False)
    rows = list(_rows(setup["manifest"]))
    one = tmp_path / "one.csv"
    with open(one, "w", newline="") as fh:  # the test split holds one species only
        writer = csv.DictWriter(fh, fieldnames=["path", "species", "split"])
        writer.writeheader()
        for row in rows:
            if row["split"] == "train" or row["species"] == rows[0]["species"]:
                writer.writerow({**row, "path": str(setup["manifest"].parent / row["path"])})
    with pytest.raises(BirdbridgeError, match="only 1 species"):
        calibrate(setup["model"], one, split="test", write=False)
    with pytest.raises(BirdbridgeError, match="no split 'val'"):
        calibrate(setup["model"], setup["manifest"], write=False)
    from birdbridge.evaluate import calibrate as module

    flipped = module.species_text_embeddings  # the right species now look the least alike
    monkeypatch.setattr(module, "species_text_embeddings", lambda *a, **k: -flipped(*a, **k))
    with pytest.raises(BirdbridgeError, match=r"confidence would fall as similarity rises \(slope -"):
        calibrate(setup["model"], setup["manifest"], split="test")
    assert read_calibration(setup["model"]).slope > 0  # the stored one is kept
    assert not (tmp_path / "calibration.json").exists()


def test_soundscapes_and_background_recordings(setup, world, monkeypatch) -> None:
    from birdbridge.datasets import load_soundscapes
    from birdbridge.evaluate import calibrate as module

    scapes = world.root / "soundscapes" / "dataset.yaml"
    # a student of tones knows nothing of the world's species, so its slope may come out either way: here only
    # the pairs count, and they must be the dataset's own labels (the fit is made to keep any slope)
    fit = module._fit
    monkeypatch.setattr(module, "_fit", lambda *a, **k: dataclasses.replace(fit(*a, **k), slope=1.0))
    report = calibrate(setup["model"], scapes, split="test", background=world.root / "background.csv", write=False)
    # windows shrink to the tiny model's 1 s; labels are the dataset's own at that window
    assert report.figures["window_s"] == 1.0 and report.figures["hop_s"] == 1.0
    ds = load_soundscapes(scapes)
    test = [r for r in ds.recordings if r.split == "test"]
    truth = dataclasses.replace(ds, recordings=test).windows(1.0, 1.0).label_matrix()
    background = [row for row in _rows(world.root / "background.csv") if row["split"] == "test"]
    assert all(float(row["duration_s"]) < 2.0 for row in background)  # one 1 s window each
    assert report.background_windows == len(background) > 0
    assert report.positives.shape == (len(truth) + len(background), len(ds.taxonomy))
    assert np.array_equal(report.positives[: len(truth)], truth)
    assert not report.positives[len(truth):].any()
    assert report.bird_free_windows == int((~truth.any(axis=1)).sum()) + len(background)
    assert report.calibration.n_positive == int(truth.sum())
    assert "background background.csv" in report.calibration.source
    with pytest.raises(BirdbridgeError, match=r"no soundscape recording in split 'val'.*test, valid"):
        calibrate(setup["model"], scapes, split="val", write=False)


def test_train_without_a_val_split_says_how_to_calibrate(setup, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    train(load_config(None, _settings(setup, out, **{"run.epochs": 1})))
    printed = capsys.readouterr().out
    assert "uncalibrated" in printed and f"birdbridge calibrate --model {out / 'model'}" in printed
    assert not (out / "model" / "calibration.json").exists()
    train(load_config(None, _settings(setup, out, **{"run.epochs": 1, "data.val_split": "test",
                                                     "calibration.enabled": "false"})), fresh=True)
    assert "calibration.enabled is false" in capsys.readouterr().out
    assert not (out / "model" / "calibration.json").exists()
    result = train(load_config(None, _settings(setup, out, **{"run.epochs": 1, "calibration.split": "nope"})),
                   fresh=True)  # a calibration that fails leaves the trained model as it is, and says why
    printed = capsys.readouterr().out
    assert "the model is uncalibrated: " in printed and "no split 'nope'" in printed
    assert "birdbridge calibrate --model" in printed
    assert result.model.is_dir() and not (out / "model" / "calibration.json").exists()


def test_train_calibrates_on_another_dataset(setup, tmp_path, capsys) -> None:
    other = tmp_path / "held-out" / "clips.csv"  # the same clips, listed elsewhere with a split of their own
    other.parent.mkdir()
    with open(other, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "species", "split"])
        writer.writeheader()
        for row in _rows(setup["manifest"]):
            writer.writerow({"path": str(setup["manifest"].parent / row["path"]), "species": row["species"],
                             "split": "holdout" if row["split"] == "test" else "train"})
    out = tmp_path / "run"
    train(load_config(None, _settings(setup, out, **{
        "calibration.dataset": other, "calibration.split": "holdout", "calibration.templates": "single"})))
    stored = read_calibration(out / "model")
    assert stored is not None and stored.source.endswith(":holdout") and stored.slope > 0
    assert stored.prompts["templates"] == "single" and stored.n_positive == 12
    assert "calibration written to" in capsys.readouterr().out
