"""`birdbridge evaluate` on soundscapes: BirdSet's window metrics and detections, checked against scikit-learn on
the same scores, intervals over recordings, failures reported; and the detection rule (models.detection)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from birdbridge.errors import BirdbridgeError
from birdbridge.models.calibration import Calibration
from birdbridge.models.detection import UncalibratedWarning, background_wins, detections
from cli_fixtures import run

WINDOW_S = 5.0
MIN_CONF = 0.3
METRIC_KEYS = ("cmap", "auroc", "t1", "precision", "recall", "f1", "false_alarm_rate")
ROWS = ("distilled", "random_projection", "text_mapping", "zero_shot_chain", "undistilled")


# ------------------------------------------------------------------------------------ the detection rule


def test_a_calibrated_detection_needs_min_conf() -> None:
    cal = Calibration(slope=10.0, intercept=-5.0)  # confidence 0.5 at similarity 0.5
    sims = np.array([[0.40, 0.50, 0.62], [0.70, 0.10, 0.45]])
    found = detections(sims, None, cal, min_conf=0.5)
    np.testing.assert_array_equal(found, [[False, True, True], [True, False, False]])
    assert found.dtype == bool
    # below min_conf: nothing; a lower min_conf lets more through
    assert not detections(sims, None, cal, min_conf=0.999).any()
    # sigmoid(10 * 0.45 - 5) = 0.38 >= 0.3 > sigmoid(10 * 0.40 - 5) = 0.27
    np.testing.assert_array_equal(detections(sims, None, cal, min_conf=0.3), [[False, True, True], [True, False, True]])
    # sensitivity shifts the curve as BirdNET-Analyzer's: (1.25 - 1) * 10 = +2.5 on the logit
    np.testing.assert_array_equal(detections(sims, None, cal, min_conf=0.5, sensitivity=1.25),
                                  10 * sims - 5 + 2.5 >= 0)


def test_no_detection_where_background_is_nearer() -> None:
    cal = Calibration(slope=10.0, intercept=-5.0)
    sims = np.array([[0.9, 0.6], [0.9, 0.6], [0.9, 0.6]])
    background = np.array([[0.95, 0.1], [0.1, 0.9], [0.2, 0.3]])  # beats the best species; ties it; stays below
    np.testing.assert_array_equal(background_wins(sims, background), [True, False, False])
    np.testing.assert_array_equal(detections(sims, background, cal), [[False, False], [True, True], [True, True]])
    # a window whose best species is weak is still quiet when any background class beats it
    np.testing.assert_array_equal(detections([[0.55, 0.2]], [[0.1, 0.56]], cal), [[False, False]])
    # no background classes: no rule
    np.testing.assert_array_equal(detections(sims, np.zeros((3, 0)), cal), np.ones((3, 2), bool))


def test_uncalibrated_detections_threshold_similarity_with_a_warning() -> None:
    sims = np.array([[0.49, 0.5, 0.8]])
    with pytest.warns(UncalibratedWarning, match=r"no calibration.*0\.5 \(min_sim\)"):
        found = detections(sims, None, None)
    np.testing.assert_array_equal(found, [[False, True, True]])
    with pytest.warns(UncalibratedWarning, match="0.75"):
        np.testing.assert_array_equal(detections(sims, [[0.1]], None, min_sim=0.75), [[False, False, True]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a calibrated model does not warn
        detections(sims, None, Calibration(1.0, 0.0))


def test_detection_arguments_are_checked() -> None:
    cal = Calibration(slope=10.0, intercept=-5.0)
    with pytest.raises(BirdbridgeError, match="min_conf must be a number from 0 to 1"):
        detections([[0.5]], None, cal, min_conf=1.5)
    with pytest.raises(BirdbridgeError, match=r"sensitivity must be a number from 0\.5 to 1\.5"):
        detections([[0.5]], None, cal, sensitivity=3)
    with pytest.raises(BirdbridgeError, match="min_sim must be a number from -1 to 1"):
        detections([[0.5]], None, None, min_sim=float("nan"))
    with pytest.raises(BirdbridgeError, match="2 windows of background similarities but 1"):
        detections([[0.5]], [[0.1], [0.2]], cal)
    with pytest.raises(BirdbridgeError, match=r"\[windows, classes\] matrix"):
        detections([0.5, 0.6], None, cal)


# --------------------------------------------------------------------------------------- a tiny world


@pytest.fixture(scope="module")
def scapes(tmp_path_factory, tiny_clip):
    """Five 30 s demo soundscapes (2 valid, 3 test), a small CLAP with 5 s input windows, and a student distilled
    (untrained) for the tiny teacher, calibrated so that some of its pairs are detections."""
    from birdbridge.datasets import load_soundscapes
    from birdbridge.demo.world import WorldConfig, generate_world
    from birdbridge.models.calibration import write_calibration
    from birdbridge.models.clap_frontend import FrontendConfig
    from birdbridge.models.distilled import save_distilled_student
    from birdbridge.models.loader import clear_model_cache, load_teacher
    from birdbridge.models.standins import build_small_clap
    from birdbridge.species.background import BackgroundClass, BackgroundVocabulary, background_text_embeddings
    from birdbridge.store.vector_store import teacher_meta
    from birdbridge.train.config import HeadConfig
    from birdbridge.train.student_setup import fresh_student

    root = tmp_path_factory.mktemp("scape-eval")
    config = WorldConfig(n_orders=2, families_per_order=1, genera_per_family=2, species_per_genus=2,
                         recordings_per_species=1, images_per_species=1, clip_s=(1.0, 1.5), seed=5,
                         soundscapes=5, soundscape_s=30.0, test_fraction=0.4)
    world = generate_world(root / "world", config)
    dataset = world.root / "soundscapes" / "dataset.yaml"
    taxonomy = load_soundscapes(dataset).taxonomy
    frontend = FrontendConfig(sample_rate=16_000, n_mels=32, n_fft=640, hop_length=320, fmin=50.0, fmax=8_000.0,
                              window_s=WINDOW_S)
    clap = build_small_clap(root / "clap", corpus=[f"{s.key} {s.common_name}" for s in taxonomy], frontend=frontend)
    teacher = load_teacher(str(tiny_clip))
    student = save_distilled_student(fresh_student(str(clap), HeadConfig(), teacher.embed_dim), root / "student",
                                     teacher=teacher_meta(teacher, str(tiny_clip)))
    vectors = np.vstack([_embed(student, world, split)[0] for split in ("valid", "test")])
    sims = _similarities(vectors, _species(teacher, taxonomy))
    # confidence 0.5 at the 60th percentile of the valid split's similarities: a fair share of pairs pass MIN_CONF
    calibration = Calibration(slope=40.0, intercept=-40.0 * float(np.percentile(sims, 60)), source="test")
    write_calibration(student, calibration)
    clear_model_cache()  # loaded students are cached, without the calibration written since
    # The untrained student's windows are all alike: a background class is nearer to all of them or to none. The
    # prompts of the default vocabulary that are nearer to none make the background classes of the Python API's run.
    prompts = [p for c in BackgroundVocabulary() for p in c.prompts]
    apart = [p for p in prompts if not background_wins(sims, _similarities(
        vectors, background_text_embeddings(teacher, [BackgroundClass(p, (p,))]))).any()]
    assert apart, "every background prompt is nearer to this student's windows than its best species"
    (root / "background.txt").write_text("".join(f"{p}\n" for p in apart))
    return {"root": root, "world": world, "dataset": dataset, "clap": clap, "teacher": tiny_clip, "student": student,
            "calibration": calibration, "background": root / "background.txt"}


def _embed(model, world, split: str) -> tuple[np.ndarray, list[tuple[str, float]], list[set[str]]]:
    """Window embeddings of a split's soundscapes and, by the demo world's own truth, each window's species."""
    from birdbridge.embed.audio import embed_audio_windows

    items = [s for s in world.soundscapes if s.split == split]
    table = embed_audio_windows([world.root / s.path for s in items], str(model), window_s=WINDOW_S, hop_s=WINDOW_S)
    truth = {(str(world.root / s.path), w.start_s): set(w.species) for s in items for w in s.windows()}
    keys = [(name, float(start)) for name, start in zip(table.names, table.start_s, strict=True)]
    return table.vectors, keys, [truth[k] for k in keys]


def _species(encoder, taxonomy) -> np.ndarray:
    from birdbridge.species import PromptSpec, species_text_embeddings

    return species_text_embeddings(encoder, taxonomy, PromptSpec(forms=("taxonomic_common",), templates="openai"))


def _similarities(vectors: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ classes.T


@pytest.fixture(scope="module")
def evaluated(scapes):
    """``birdbridge evaluate`` on every row, with background classes the student is never nearer to: its output and
    results.json (read back as an EvalResult)."""
    from birdbridge.evaluate.results import EvalResult

    out = scapes["root"] / "results.json"
    done = run(None, "evaluate", "-m", scapes["student"], "-d", scapes["dataset"], "--base-student", scapes["clap"],
               "--bootstrap", 200, "--min-conf", MIN_CONF, "--background", scapes["background"], "-o", out)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    return {"stdout": done.stdout, "stderr": done.stderr, "data": data,
            "result": EvalResult.from_dict(data)}


def test_the_command_prints_the_table_and_writes_every_row_and_metric(evaluated) -> None:
    stdout, data = evaluated["stdout"], evaluated["data"]
    for column in ("cmAP", "AUROC", "T1", "Prec", "Rec", "F1", "False alarm"):
        assert column in stdout, column
    names = ("student", "random projection", "text-embedding mapping", "zero-shot chain", "undistilled (clap)")
    for name in names:
        assert name in stdout
    assert "detections:" in stdout and f"calibrated confidence ≥ {MIN_CONF}" in stdout
    assert "the model's calibration.json" in stdout and "fitted on the 'valid' split" in stdout
    assert list(data["methods"]) == list(names)
    assert data["method_ids"] == dict(zip(ROWS, names, strict=True))
    for name in names:
        assert set(METRIC_KEYS) <= set(data["methods"][name]), name
        assert {"cmap", "auroc", "t1", "recall", "f1", "false_alarm_rate"} <= set(data["ci"][name]), name
        assert data["detection"][name]["score"] == "confidence" and data["detection"][name]["threshold"] == MIN_CONF
    assert data["detection"]["student"]["calibration"] == "model"
    assert data["detection"]["zero-shot chain"]["calibration"] == "split valid"
    assert data["dataset"]["kind"] == "soundscapes" and data["dataset"]["recordings"] == 3
    assert data["dataset"]["queries"] == 18 and data["dataset"]["calibration_windows"] == 12
    assert data["settings"]["min_conf"] == MIN_CONF and data["failures"] == [] and "wrote" in evaluated["stderr"]


def test_a_rows_metrics_equal_scikit_learn_on_the_same_scores(scapes, evaluated) -> None:
    """The distilled row recomputed from the public embedding API, the world's own truth and scikit-learn."""
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

    from birdbridge.datasets import load_soundscapes
    from birdbridge.models.loader import load_teacher
    from birdbridge.species.background import background_text_embeddings, load_background_vocabulary

    taxonomy = load_soundscapes(scapes["dataset"]).taxonomy
    teacher = load_teacher(str(scapes["teacher"]))
    vectors, _, truth = _embed(scapes["student"], scapes["world"], "test")
    sims = _similarities(vectors, _species(teacher, taxonomy))
    labels = np.array([[sp.key in t for sp in taxonomy] for t in truth])
    assert labels.any() and not labels.all(axis=1).any() and (~labels.any(axis=1)).any()

    cols = [j for j in range(labels.shape[1]) if labels[:, j].any()]
    both = [j for j in cols if not labels[:, j].all()]
    cmap = np.mean([average_precision_score(labels[:, j], sims[:, j]) for j in cols])
    auroc = np.mean([roc_auc_score(labels[:, j], sims[:, j]) for j in both])
    labelled = [i for i in range(len(labels)) if labels[i].any()]
    t1 = np.mean([labels[i, int(np.argmax(sims[i]))] for i in labelled])

    cal = scapes["calibration"]
    confidence = 1.0 / (1.0 + np.exp(-(cal.slope * sims + cal.intercept)))
    background = background_text_embeddings(teacher, load_background_vocabulary(scapes["background"]))
    quiet = _similarities(vectors, background).max(axis=1) > sims.max(axis=1)
    found = (confidence >= MIN_CONF) & ~quiet[:, None]
    assert 0 < found.sum() < found.size  # the calibration makes a real threshold
    free = ~labels.any(axis=1)
    expected = {
        "cmap": cmap, "auroc": auroc, "t1": t1,
        "precision": precision_score(labels.ravel(), found.ravel()),
        "recall": recall_score(labels.ravel(), found.ravel()),
        "f1": f1_score(labels.ravel(), found.ravel()),
        "false_alarm_rate": found[free].any(axis=1).mean(),
    }
    row = evaluated["result"].method("distilled")
    for key, value in expected.items():
        assert row.metrics[key] == pytest.approx(100 * value, abs=1e-4), key
    assert row.metrics["n_windows"] == len(labels) == 18
    rule = row.detection
    assert (rule.score, rule.threshold, rule.calibration, rule.background) == ("confidence", MIN_CONF, "model", True)
    assert rule.similarity == pytest.approx(cal.similarity_at(MIN_CONF))
    assert rule.counts["tp"] == int((found & labels).sum()) and rule.counts["fp"] == int((found & ~labels).sum())
    assert rule.counts["bird_free"] == int(free.sum())

    # the undistilled student: zero-shot through its own CLAP text tower, its calibration fitted on `valid`
    from birdbridge.models.calibration import fit_calibration
    from birdbridge.models.loader import load_text_encoder

    own = _species(load_text_encoder(str(scapes["clap"])), taxonomy)
    base, _, _ = _embed(scapes["clap"], scapes["world"], "test")
    base_sims = _similarities(base, own)
    undistilled = evaluated["result"].method("undistilled")
    assert undistilled.metrics["cmap"] == pytest.approx(
        100 * np.mean([average_precision_score(labels[:, j], base_sims[:, j]) for j in cols]), abs=1e-4)
    held, _, held_truth = _embed(scapes["clap"], scapes["world"], "valid")
    held_labels = np.array([[sp.key in t for sp in taxonomy] for t in held_truth])
    fitted = fit_calibration(_similarities(held, own), held_labels)
    assert undistilled.detection.calibration == "split valid"
    assert undistilled.detection.slope == pytest.approx(fitted.slope, rel=1e-6)
    assert undistilled.detection.intercept == pytest.approx(fitted.intercept, rel=1e-6)


def test_intervals_resample_recordings(scapes, evaluated) -> None:
    """The runner's intervals are the recording-level (cluster) bootstrap of the same scores, not a window one."""
    from birdbridge.datasets import load_soundscapes
    from birdbridge.evaluate.multilabel import multilabel_metrics
    from birdbridge.models.loader import load_teacher

    ds = load_soundscapes(scapes["dataset"])
    vectors, keys, truth = _embed(scapes["student"], scapes["world"], "test")
    sims = _similarities(vectors, _species(load_teacher(str(scapes["teacher"])), ds.taxonomy))
    labels = np.array([[sp.key in t for sp in ds.taxonomy] for t in truth])
    recording = [name for name, _ in keys]
    by_recording = multilabel_metrics(sims, labels, groups=recording, n_resamples=200, seed=0)
    by_window = multilabel_metrics(sims, labels, n_resamples=200, seed=0)
    ci = evaluated["result"].method("distilled").ci
    for key in ("cmap", "auroc", "t1"):
        assert ci[key] == pytest.approx(tuple(100 * v for v in by_recording.ci[key]), abs=1e-4), key
    assert any(ci[k] != pytest.approx(tuple(100 * v for v in by_window.ci[k]), abs=1e-4) for k in ("cmap", "auroc"))


def test_the_groups_are_the_windows_recordings(scapes, monkeypatch) -> None:
    from birdbridge.evaluate import soundscape
    from birdbridge.evaluate.runner import EvalSettings, evaluate

    seen = []
    real = soundscape.multilabel_metrics

    def spy(scores, labels, **kwargs):
        seen.append(np.asarray(kwargs["groups"]).copy())
        return real(scores, labels, **kwargs)

    monkeypatch.setattr(soundscape, "multilabel_metrics", spy)
    evaluate({"student": scapes["student"]}, scapes["dataset"], baselines=(), settings=EvalSettings(bootstrap=20))
    assert len(seen) == 2  # the ranking metrics and the detection figures
    for groups in seen:
        np.testing.assert_array_equal(groups, np.repeat([0, 1, 2], 6))  # three 30 s test recordings, 6 windows each


def test_results_round_trip_and_uncalibrated_rows_say_so(scapes, tmp_path, caplog) -> None:
    from birdbridge.evaluate.results import EvalResult
    from birdbridge.evaluate.runner import EvalSettings, evaluate

    settings = EvalSettings(bootstrap=20, calibration_split=None, min_sim=0.2)
    with caplog.at_level(logging.WARNING, logger="birdbridge.evaluate.soundscape"):
        result = evaluate({"student": scapes["student"]}, scapes["dataset"], base_student=str(scapes["clap"]),
                          baselines=("chain",), settings=settings)
    chain = result.method("zero_shot_chain").detection
    assert (chain.score, chain.threshold, chain.calibration) == ("similarity", 0.2, None)
    assert "cosine similarity ≥ 0.2 (no calibration)" in chain.describe()
    assert "zero-shot chain has no calibration" in caplog.text and "student has no" not in caplog.text
    assert result.method("distilled").detection.calibration == "model"
    assert result.dataset.calibration_split is None and result.dataset.calibration_windows == 0
    back = EvalResult.from_dict(json.loads(result.write(tmp_path / "results.json").read_text()))
    assert back.method("zero_shot_chain").detection == chain and back.dataset == result.dataset
    assert json.dumps(back.to_dict()) == json.dumps(result.to_dict())  # NaN (no detections: no precision) included


def refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def test_results_json_is_strict_json(scapes, tmp_path, capsys) -> None:
    """A figure without a value (no detections, so no precision) is null in results.json, which strict JSON readers
    (JavaScript's JSON.parse, jq) accept, and reads back as NaN."""
    from birdbridge.evaluate.results import EvalResult

    out = tmp_path / "results.json"
    done = run(capsys, "evaluate", "-m", scapes["student"], "-d", scapes["dataset"], "--base-student", scapes["clap"],
               "--baselines", "chain", "--bootstrap", "20", "--calibration-split", "", "--min-sim", "0.99", "-o", out)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text(encoding="utf-8"), parse_constant=refuse_constant)
    chain = data["methods"]["zero-shot chain"]
    assert chain["precision"] is None and chain["n_windows"] == 18  # nothing reaches a cosine of 0.99
    assert np.isnan(EvalResult.from_dict(data).method("zero_shot_chain").metrics["precision"])


def test_bad_annotation_rows_and_missing_recordings_are_reported_and_the_rest_evaluated(scapes, tmp_path,
                                                                                         capsys) -> None:
    from birdbridge.datasets import load_soundscapes

    folder = tmp_path / "soundscapes"
    shutil.copytree(scapes["world"].root / "soundscapes", folder)
    shutil.copy(scapes["world"].root / "taxonomy.csv", tmp_path / "taxonomy.csv")
    test_ids = [Path(s.path).stem for s in scapes["world"].soundscapes if s.split == "test"]
    table = folder / f"{test_ids[0]}.Table.1.selections.txt"
    lines = table.read_text().splitlines()
    header = lines[0].split("\t")
    species = header.index("Species")
    bad = lines[1].split("\t")
    bad[0], bad[species] = "999", "Nonexistent bird"  # a selection of its own, on line 2
    lines.insert(1, "\t".join(bad))
    table.write_text("\n".join(lines) + "\n")
    with open(folder / "soundscapes.csv", "a") as fh:
        fh.write("gone,gone.wav,test,30.0\n")  # id, path, split, duration_s: a recording that is not there
    ds = load_soundscapes(folder)
    assert len(ds.failures) == 2, ds.failures
    out = tmp_path / "results.json"
    done = run(capsys, "evaluate", "-m", scapes["student"], "-d", folder / "dataset.yaml", "--baselines", "none",
               "--bootstrap", "0", "-o", out)
    assert done.returncode == 0, done.stderr
    assert "skipped 2 inputs" in done.stderr and "Nonexistent bird" in done.stderr and "gone.wav" in done.stderr
    data = json.loads(out.read_text())
    assert len(data["failures"]) == 2 and any("line 2" in f["error"] for f in data["failures"])
    assert data["dataset"]["recordings"] == 3 and data["methods"]["student"]["n_windows"] == 18
    assert data["ci"] == {}


def test_windows_longer_than_the_model_input_are_a_clear_error(scapes, tiny_clap) -> None:
    from birdbridge.evaluate.runner import EvalSettings, evaluate

    with pytest.raises(BirdbridgeError, match=r"windows \(5 s\) are longer than the model's 1 s input.*--window 1"):
        evaluate({}, scapes["dataset"], teacher=str(scapes["teacher"]), base_student=str(tiny_clap),
                 baselines=("undistilled",), settings=EvalSettings(bootstrap=0))
    with pytest.raises(BirdbridgeError, match=r"no recordings in split 'train' \(splits: test, valid\)"):
        evaluate({"student": scapes["student"]}, scapes["dataset"], baselines=(), settings=EvalSettings(split="train"))


def test_shorter_windows_are_evaluated_on_their_own_labels(scapes) -> None:
    from birdbridge.evaluate.runner import EvalSettings, evaluate

    result = evaluate({"student": scapes["student"]}, scapes["dataset"], baselines=(),
                      settings=EvalSettings(bootstrap=0, window_s=2.5))
    assert (result.dataset.window_s, result.dataset.hop_s, result.dataset.queries) == (2.5, 2.5, 36)
    assert result.method("distilled").metrics["n_windows"] == 36
    assert dataclasses.asdict(result.settings)["window_s"] == 2.5
