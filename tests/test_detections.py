"""Detections: confidences that stand on their own, thresholds, and no bird where none calls (issue 11).

A tiny student is distilled in seconds; a copy of it gets a calibration written by the test (so confidences
spread around 0.5 on its windows), and the gallery gets a background vocabulary built from the prompt that the
noise windows are provably nearest to (see detection_fixtures.py). Through the CLI and Python.
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from birdbridge.errors import BirdbridgeError
from birdbridge.models.calibration import Calibration
from cli_fixtures import run
from detection_fixtures import calibrated_copy, noise, noise_background, tone, window_vectors, write
from search_fixtures import distilled_world
from train_fixtures import SPECIES

KEYS = [sci for sci, _, _ in SPECIES]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = distilled_world(tmp_path_factory.mktemp("detections"), per_species=6, pictures=2)
    root, model, teacher, gallery = world["root"], world["model"], world["teacher"], world["gallery"]
    calls = [write(root / "calls" / f"call{i}.wav", tone(3, freq)) for i, (_, _, freq) in enumerate(SPECIES)]
    quiet = write(root / "noise" / "noise.wav", noise(3))
    mixed = write(root / "mixed" / "mixed.wav", tone(2, SPECIES[0][2]), noise(2))  # its noise is noise.wav's start
    # A calibration written for the test: confidence 0.5 at the median similarity of the calls' windows.
    sims = window_vectors(model, calls) @ _species_vectors(gallery).T
    calibration = Calibration(slope=10.0, intercept=-10.0 * float(np.median(sims)), source="test")
    calibrated = calibrated_copy(model, root / "calibrated", calibration)
    # The quiet gallery: one background class, from the prompt the noise windows are nearest to.
    quiet_gallery = root / "quiet-gallery"
    shutil.copytree(gallery, quiet_gallery)
    vocabulary = root / "noise-vocabulary.txt"
    prompt = noise_background(quiet_gallery, teacher, model, [quiet], calls, vocabulary)
    return {**world, "calibrated": calibrated, "calibration": calibration, "quiet_gallery": quiet_gallery,
            "vocabulary": vocabulary, "prompt": prompt, "calls": calls, "noise": quiet, "mixed": mixed}


def _species_vectors(gallery: Path) -> np.ndarray:
    from birdbridge.gallery import Gallery

    return Gallery.open(gallery).species_vectors


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "birdbridge", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def quiet_gallery(world) -> Path:
    """The quiet gallery, its background vocabulary written by `birdbridge gallery background --vocabulary`."""
    result = cli("gallery", "background", world["quiet_gallery"], "--vocabulary", world["vocabulary"])
    assert result.returncode == 0, result.stderr
    assert "1 classes (static)" in result.stdout
    return world["quiet_gallery"]


@pytest.fixture(scope="module")
def bare_gallery(world, tmp_path_factory) -> Path:
    """A gallery without background vocabulary (removed with `birdbridge gallery background --none`)."""
    bare = tmp_path_factory.mktemp("bare") / "gallery"
    shutil.copytree(world["gallery"], bare)
    result = cli("gallery", "background", bare, "--none")
    assert result.returncode == 0, result.stderr
    return bare


def hits(results) -> list:
    return [h for r in results for w in r.windows for h in w.species]


# ------------------------------------------------------------------------------------------ confidences


def test_confidences_stand_on_their_own(world, bare_gallery) -> None:
    """Confidences are the calibration's map of each similarity: they do not sum to 1 and do not change with the
    species list, unlike softmax scores."""
    from birdbridge.search import Scoring, SearchEngine

    engine = SearchEngine.open(bare_gallery, world["calibrated"])
    everything = Scoring(min_conf=0.0)
    full, _ = engine.search_audio([world["calls"][0]], top_k=4, scoring=everything)
    part, _ = engine.search_audio([world["calls"][0]], top_k=4, scoring=everything, species=KEYS[1:3])
    assert full[0].ranked_by == "confidence" and full[0].threshold == 0.0
    for whole, some in zip(full[0].windows, part[0].windows, strict=True):
        assert len(whole.species) == 4 and len(some.species) == 2
        for hit in whole.species:
            expected = float(world["calibration"].confidence(hit.similarity))
            assert hit.confidence == pytest.approx(expected, abs=1e-6) and hit.score == hit.confidence
        assert abs(sum(h.confidence for h in whole.species) - 1.0) > 0.05  # not a distribution
        own = {h.key: h.confidence for h in whole.species}
        assert {h.key: h.confidence for h in some.species} == pytest.approx({k: own[k] for k in KEYS[1:3]}, abs=1e-6)
    soft = Scoring("softmax", min_score=0.0)
    full, _ = engine.search_audio([world["calls"][0]], top_k=4, scoring=soft)
    part, _ = engine.search_audio([world["calls"][0]], top_k=4, scoring=soft, species=KEYS[1:3])
    whole, some = full[0].windows[0], part[0].windows[0]
    assert full[0].ranked_by == "softmax" and sum(h.score for h in whole.species) == pytest.approx(1.0, abs=1e-5)
    assert sum(h.score for h in some.species) == pytest.approx(1.0, abs=1e-5)  # renormalised over two species
    own = {h.key: h.score for h in whole.species}
    assert all(abs(h.score - own[h.key]) > 1e-3 for h in some.species)  # softmax scores move with the list
    assert all(h.confidence is not None for h in whole.species)  # the confidence rides along


def test_min_conf_and_sensitivity_move_detections(world, bare_gallery, capsys) -> None:
    from birdbridge.search import Scoring, SearchEngine

    engine = SearchEngine.open(bare_gallery, world["calibrated"])

    def count(**scoring) -> int:
        return len(hits(engine.search_audio(world["calls"], top_k=4, scoring=Scoring(**scoring))[0]))

    by_conf = [count(min_conf=c) for c in (0.0, 0.25, 0.5, 0.75, 0.99)]
    assert by_conf[0] == 4 * 12 and by_conf[-1] == 0  # 4 calls x 3 windows x 4 species
    assert all(a >= b for a, b in itertools.pairwise(by_conf)) and by_conf[1] > by_conf[3], by_conf
    by_sensitivity = [count(min_conf=0.5, sensitivity=s) for s in (0.5, 0.75, 1.0, 1.25, 1.5)]
    assert all(a <= b for a, b in itertools.pairwise(by_sensitivity)), by_sensitivity
    assert by_sensitivity[0] < by_conf[2] < by_sensitivity[-1]

    def csv_rows(*options) -> int:
        out = run(capsys, "search", world["calls"][0].parent, "--model", world["calibrated"], "--gallery",
                  bare_gallery, "--format", "csv", "--top-k", "4", *options)
        assert out.returncode == 0, out.stderr
        return len(list(csv.DictReader(out.stdout.splitlines())))

    assert csv_rows("--min-conf", "0.75") == by_conf[3] < csv_rows("--min-conf", "0.25") == by_conf[1]
    assert csv_rows("--min-conf", "0.5", "--sensitivity", "1.5") == by_sensitivity[-1]
    bad = run(capsys, "search", world["calls"][0], "-m", world["calibrated"], "-g", bare_gallery, "--sensitivity", "2")
    assert bad.returncode == 2 and "Invalid value for '--sensitivity'" in bad.stderr
    bad = run(capsys, "search", world["calls"][0], "-m", world["calibrated"], "-g", bare_gallery, "--score", "best")
    assert bad.returncode == 1 and "unknown score 'best'" in bad.stderr


# ------------------------------------------------------------------------------------------ no bird


def test_noise_gets_no_detection_but_softmax_names_a_species(world, quiet_gallery, capsys) -> None:
    """Through the CLI: the noise windows of a recording get no detection, no pictures and no rows; the same recording
    under --score softmax names a species in every window."""
    out = world["root"] / "noise-out"
    result = run(capsys, "search", world["mixed"], world["noise"], "-m", world["calibrated"], "-g", quiet_gallery,
                 "--format", "json", "--output", out)
    assert result.returncode == 0, result.stderr
    mixed = json.loads((out / "mixed.birdbridge.results.json").read_text())[0]
    assert [w["start_s"] for w in mixed["windows"]] == [0.0, 1.0]  # the calls; the noise windows have no row
    assert all(w["species"] and w["images"] for w in mixed["windows"])
    assert mixed["summary"]["windows"] == 4 and mixed["summary"]["detected"] == 2
    assert mixed["summary"]["background"] == {"static": 2} and mixed["ranked_by"] == "confidence"
    only_noise = json.loads((out / "noise.birdbridge.results.json").read_text())[0]
    assert only_noise["windows"] == [] and only_noise["summary"]["background"] == {"static": 3}
    table = run(capsys, "search", world["mixed"], "-m", world["calibrated"], "-g", quiet_gallery)
    assert table.returncode == 0, table.stderr
    assert "2 of 4 windows in 1 file with a detection; 2 without (static 2); ranked by confidence ≥ 0.25" in " ".join(
        table.stdout.split())
    soft = run(capsys, "search", world["mixed"], "-m", world["calibrated"], "-g", quiet_gallery, "--format", "json",
               "--score", "softmax")
    assert soft.returncode == 0, soft.stderr
    windows = json.loads(soft.stdout)[0]["windows"]
    assert len(windows) == 4 and all(w["species"] and w["images"] and w["background"] is None for w in windows)

    from birdbridge.search import search

    merged = search(world["mixed"], model=world["calibrated"], gallery=quiet_gallery, merge=True).results[0]
    assert [(w.start_s, w.end_s, w.background, bool(w.species), bool(w.images)) for w in merged.windows] == [
        (0.0, 2.0, None, True, True), (2.0, 3.0, "static", False, False), (3.0, 4.0, "static", False, False)]


def test_background_rule_on_controlled_embeddings(world, tmp_path) -> None:
    """A window whose embedding is a background class's own text embedding is nearest to it: no detection, its
    label recorded; a window on a species' embedding is that species; softmax mode names a species for both."""
    from birdbridge.embed.table import EmbeddingTable
    from birdbridge.gallery import Gallery, build_background
    from birdbridge.models.loader import load_teacher
    from birdbridge.search import Scoring, SearchEngine
    from birdbridge.species.background import BackgroundClass, BackgroundVocabulary

    gallery = tmp_path / "gallery"
    shutil.copytree(world["gallery"], gallery)
    vocabulary = BackgroundVocabulary((BackgroundClass("hiss", ("static hiss",)), BackgroundClass("rain", ("rain",))),
                                      "test")
    build_background(Gallery.open(gallery), load_teacher(str(world["teacher"])), vocabulary)
    g = Gallery.open(gallery)
    stored, background = g.background()
    assert stored.labels == ["hiss", "rain"]
    species = g.species_vectors
    assert (background[0] @ species.T).max() < 0.999  # the hiss is nearer to itself than to any species
    table = EmbeddingTable(np.stack([background[0], species[2]]).astype(np.float32), ["rec.wav", "rec.wav"],
                           np.array([0.0, 1.0]), np.array([1.0, 2.0]))
    engine = SearchEngine.open(gallery, world["calibrated"])
    for scoring in (Scoring(min_conf=0.0), Scoring("similarity", min_sim=-1.0)):
        [result] = engine.search_table(table, top_k=2, n_images=2, scoring=scoring)
        quiet, call = result.windows
        assert (quiet.species, quiet.images, quiet.background) == ([], [], "hiss")
        assert call.top.key == g.species()[2].key and call.images and call.background is None
    [result] = engine.search_table(table, top_k=2, n_images=2, scoring=Scoring("softmax"))
    assert all(w.species and w.images and w.background is None for w in result.windows)


# ------------------------------------------------------------------------------------------ outputs


def test_no_rows_below_the_threshold_and_ravens_nocall_row(world, quiet_gallery, capsys, tmp_path) -> None:
    from birdbridge.search import SearchEngine, search
    from birdbridge.search.formats import RAVEN_COLUMNS

    engine = SearchEngine.open(quiet_gallery, world["calibrated"])
    inputs = [world["mixed"], world["calls"][1]]
    expected = search(inputs, engine=engine, min_conf=0.5, top_k=4).results
    detected = [(Path(r.file).name, w.start_s, h.key) for r in expected for w in r.windows for h in w.species]
    assert 0 < len(detected) < 4 * 7  # some windows and species reach 0.5, others do not
    out = run(capsys, "search", *inputs, "-m", world["calibrated"], "-g", quiet_gallery, "--min-conf", "0.5",
              "--top-k", "4", "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(out.stdout.splitlines()))
    assert [(Path(r["File"]).name, float(r["Start (s)"]), r["Scientific name"]) for r in rows] == detected
    assert all(float(r["Confidence"]) >= 0.5 and -1 <= float(r["Similarity"]) <= 1 for r in rows)

    raven = run(capsys, "search", world["mixed"], world["noise"], "-m", world["calibrated"], "-g", quiet_gallery,
                "--format", "raven", "--output", tmp_path / "raven")
    assert raven.returncode == 0, raven.stderr
    noise_table = (tmp_path / "raven" / "noise.birdbridge.selection.table.txt").read_text().splitlines()
    low, high = engine.band_hz
    assert noise_table == ["\t".join(RAVEN_COLUMNS), "\t".join(
        ["1", "Spectrogram 1", "1", "0", "1", f"{low:g}", f"{high:g}", "nocall", "nocall", "1.0",
         str(world["noise"].resolve()), "0"])]  # BirdNET-Analyzer 2.4's row for a file without detections
    mixed_table = (tmp_path / "raven" / "mixed.birdbridge.selection.table.txt").read_text().splitlines()
    assert len(mixed_table) > 1 and "nocall" not in "".join(mixed_table)

    nothing = search(world["calls"], engine=engine, min_conf=0.99, output=tmp_path / "json", format="json")
    assert len(nothing.written) == 4
    for path in nothing.written:
        [data] = json.loads(path.read_text())
        assert data["windows"] == [] and data["summary"]["detected"] == 0 and data["summary"]["windows"] == 3
    parquet = search(inputs, engine=engine, min_conf=0.5, top_k=4, output=tmp_path / "all.parquet", format="parquet",
                     combined=True)
    table = pq.read_table(parquet.written[0])
    assert [(Path(f).name, s, k) for f, s, k in zip(*(table.column(c).to_pylist() for c in
                                                     ("file", "start_s", "species")), strict=True)] == detected
    assert min(table.column("confidence").to_pylist()) >= 0.5 and set(table.column("ranked_by").to_pylist()) == {
        "confidence"}
    empty = search(world["noise"], engine=engine, output=tmp_path / "none.parquet", format="parquet", combined=True)
    empty_table = pq.read_table(empty.written[0])
    assert empty_table.num_rows == 0 and {"confidence", "similarity", "score"} <= set(empty_table.column_names)


# ------------------------------------------------------------------------------------------ fallbacks


def test_uncalibrated_model_warns_once_and_uses_the_similarity_threshold(world, quiet_gallery, caplog) -> None:
    from birdbridge.search import Scoring, SearchEngine

    engine = SearchEngine.open(quiet_gallery, world["model"])  # no calibration.json
    sims = window_vectors(world["model"], world["calls"]) @ _species_vectors(quiet_gallery).T
    middle = float(np.median(sims.max(axis=1)))
    with caplog.at_level("WARNING", logger="birdbridge.search.engine"):
        results, _ = engine.search_audio(world["calls"], top_k=4, scoring=Scoring(min_sim=middle))
        engine.search_audio(world["calls"][:1], top_k=4)
    warnings = [r.getMessage() for r in caplog.records if "has no calibration" in r.getMessage()]
    assert len(warnings) == 1 and f"birdbridge calibrate --model {world['model']}" in warnings[0]
    assert {r.ranked_by for r in results} == {"similarity"} and results[0].threshold == pytest.approx(middle)
    found = hits(results)
    assert found and all(h.confidence is None and h.score == h.similarity >= middle for h in found)
    windows = [w for r in results for w in r.windows]
    assert any(not w.species for w in windows)  # the windows whose best similarity is below the threshold
    assert all(w.background == "static" for w in windows if not w.species)

    out = cli("search", world["calls"][0].parent, "-m", world["model"], "-g", quiet_gallery, "--format", "json")
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("has no calibration") == 1 and "birdbridge calibrate --model" in out.stderr
    data = json.loads(out.stdout)
    assert {d["ranked_by"] for d in data} == {"similarity"} and {d["threshold"] for d in data} == {0.5}
    assert all(h["confidence"] is None for d in data for w in d["windows"] for h in w["species"])


def test_galleries_without_background_still_search(world, bare_gallery, tmp_path, caplog, capsys) -> None:
    from birdbridge.gallery import Gallery, build_gallery
    from birdbridge.search import SearchEngine
    from birdbridge.species.background import BackgroundVocabulary

    assert Gallery.open(world["gallery"]).background()[0].labels == BackgroundVocabulary().labels  # index's default
    assert Gallery.open(bare_gallery).background() is None
    info = run(capsys, "gallery", "info", bare_gallery)
    assert "none: searches tell no wind or rain from birds" in " ".join(info.stdout.split())
    engine = SearchEngine.open(bare_gallery, world["calibrated"])
    assert engine.info()["gallery"]["background"] == [] and engine.info()["calibrated"] is True
    with caplog.at_level("WARNING", logger="birdbridge.search.engine"):
        results, _ = engine.search_audio([world["mixed"]], top_k=2)
        engine.search_audio([world["mixed"]], top_k=2)
    notes = [r.getMessage() for r in caplog.records if "no background vocabulary" in r.getMessage()]
    assert len(notes) == 1 and f"birdbridge gallery background {bare_gallery}" in notes[0]
    assert all(w.background is None for w in results[0].windows) and hits(results)
    none = tmp_path / "none"
    build_gallery([world["photos"]], none, str(world["teacher"]), progress=False, background=False)
    assert Gallery.open(none).background() is None


def test_a_damaged_background_vocabulary_is_refused(world, tmp_path) -> None:
    from birdbridge.search import SearchEngine

    gallery = tmp_path / "gallery"
    shutil.copytree(world["gallery"], gallery)
    np.save(gallery / "background.npy", np.zeros((8, 4), np.float32))
    with pytest.raises(BirdbridgeError, match=r"does not match background\.json.*birdbridge gallery background"):
        SearchEngine.open(gallery, world["calibrated"])
    shutil.copy(world["gallery"] / "background.npy", gallery / "background.npy")
    header = json.loads((gallery / "background.json").read_text())
    (gallery / "background.json").write_text(json.dumps({**header, "teacher_fingerprint": "someone-else"}))
    with pytest.raises(BirdbridgeError, match="made with another teacher"):
        SearchEngine.open(gallery, world["calibrated"])


# ------------------------------------------------------------------------------------------ results


def test_summary_uses_confidences_and_results_round_trip() -> None:
    from birdbridge.search.results import FileResult, SpeciesHit, WindowResult

    def hit(key: str, score: float, confidence: float | None) -> SpeciesHit:
        return SpeciesHit(key, key, None, None, score, 0.3, True, confidence)

    result = FileResult("a.wav", 3.0, [
        WindowResult(0, 0, 1, [hit("a", 0.9, 0.2), hit("b", 0.1, 0.6)]),
        WindowResult(1, 1, 2, [], [], "wind"),
        WindowResult(2, 2, 3, [hit("a", 0.5, 0.7)]),
    ], "softmax", 0.05)
    assert [(h.key, h.confidence) for h in result.summary()] == [("a", 0.7), ("b", 0.6)]
    assert FileResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert [w["index"] for w in result.to_dict(all_windows=False)["windows"]] == [0, 2]
    assert result.to_dict()["summary"]["background"] == {"wind": 1}


def test_cli_defaults_are_the_python_defaults() -> None:
    import inspect

    from birdbridge.cli.search_cmd import search_cmd
    from birdbridge.search import search

    cli_defaults = inspect.signature(search_cmd).parameters
    for name in ("score", "min_conf", "sensitivity", "min_sim", "min_score"):
        assert cli_defaults[name].default == inspect.signature(search).parameters[name].default, name
