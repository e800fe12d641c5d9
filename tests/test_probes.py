"""Probes: the logistic fit against scikit-learn (with and without the text prior), probes trained on an archive's
labels with cross-validated AP, the text prior with one label, detections with calibrated confidences in search's
formats, and probes of another teacher refused."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

import archive_fixtures as fx
from birdbridge.archive import Archive, LabelSpan
from birdbridge.archive.metadata import RecordingMeta
from birdbridge.errors import BirdbridgeError
from birdbridge.probes.apply import detections, score_archive
from birdbridge.probes.logistic import fit_logistic
from birdbridge.probes.train import ProbeSet, labelled_examples, train_probes
from birdbridge.search.formats import format_text
from cli_fixtures import run

sklearn = pytest.importorskip("sklearn.linear_model")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("l2", [1.0, 0.05])
def test_the_logistic_fit_is_scikit_learns(l2) -> None:
    rng = np.random.default_rng(1)
    x = unit(rng.standard_normal((120, 24)))
    y = x @ rng.standard_normal(24) + 0.2 * rng.standard_normal(120) > 0.1
    fit = fit_logistic(x, y, l2=l2)
    ref = sklearn.LogisticRegression(C=1 / l2, tol=1e-12, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(fit.weights, ref.coef_[0], atol=1e-5)
    assert fit.intercept == pytest.approx(ref.intercept_[0], abs=1e-5)
    # the prior: scikit-learn on [t.x / sqrt(prior_weight), x] is the same problem
    prior, weight = unit(rng.standard_normal(24)), 0.01
    fit = fit_logistic(x, y, l2=l2, prior=prior, prior_weight=weight)
    augmented = np.concatenate([(x @ prior)[:, None] / np.sqrt(weight), x], axis=1)
    ref = sklearn.LogisticRegression(C=1 / l2, tol=1e-12, max_iter=10_000).fit(augmented, y)
    scale = ref.coef_[0][0] / np.sqrt(weight)
    np.testing.assert_allclose(fit.weights, scale * prior + ref.coef_[0][1:], atol=1e-5)
    assert fit.prior_scale == pytest.approx(scale, abs=1e-4)
    with pytest.raises(BirdbridgeError, match="needs positive and negative examples, got 0 positive"):
        fit_logistic(x, np.zeros(120, bool))


CLASSES = ("Pica hudsonia", "Corvus corax", "Turdus migratorius")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clip):
    """An archive in the tiny teacher's space: 40 files x 10 windows; windows of class c (a tenth each) lie near the
    teacher's text embedding of species c, the rest is noise. Truth by row."""
    from birdbridge.embed import embed_species
    from birdbridge.models.loader import load_teacher
    from birdbridge.store.vector_store import teacher_meta

    teacher = load_teacher(str(tiny_clip))
    texts = embed_species(list(CLASSES), teacher)
    rng = np.random.default_rng(0)
    n, dim = 400, texts.shape[1]
    truth = np.where(rng.random(n) < 0.3, rng.integers(0, len(CLASSES), n), -1)  # -1: no bird
    vectors = rng.standard_normal((n, dim)) / np.sqrt(dim) * 0.6
    for c in range(len(CLASSES)):
        vectors[truth == c] += texts[c]
    files = [(f"/data/s{i:02d}.wav", RecordingMeta("2024-05-01", "05:00:00", "A")) for i in range(40)]
    folder = tmp_path_factory.mktemp("probes") / "archive"
    fx.synthetic_archive(folder, unit(vectors).astype(np.float32), files, 10, teacher=teacher_meta(teacher,
                                                                                                   str(tiny_clip)))
    return {"folder": folder, "truth": truth, "texts": texts, "teacher": tiny_clip}


def label(archive: Archive, truth: np.ndarray, per_class: int, seed: int = 0, who: str = "test") -> None:
    rng = np.random.default_rng(seed)
    spans = []
    for c, name in enumerate(CLASSES):
        for row in rng.choice(np.flatnonzero(truth == c), per_class, replace=False):
            w = archive.record(int(row))
            spans.append(LabelSpan(archive.file(w.file).path, w.start_s, w.end_s, name, True, exact=True))
    spans += [LabelSpan(archive.file(archive.record(int(r)).file).path, archive.record(int(r)).start_s,
                        archive.record(int(r)).end_s, CLASSES[0], False, exact=True)
              for r in np.flatnonzero(truth == -1)[:3]]
    archive.add_labels(spans, who=who)


def ap_against_truth(archive: Archive, vector: np.ndarray, positives: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(positives, archive.vectors.astype(np.float32) @ vector))


def test_probes_from_labels_with_cross_validated_ap_and_detections(world, tmp_path, capsys) -> None:
    import shutil

    folder = tmp_path / "archive"
    shutil.copytree(world["folder"], folder)
    archive = Archive.open(folder)
    truth = world["truth"]
    label(archive, truth, 8)
    examples = labelled_examples(archive)
    assert {k: (len(p), len(n)) for k, (p, n) in examples.items()} == {
        CLASSES[0]: (8, 16 + 3), CLASSES[1]: (8, 16), CLASSES[2]: (8, 16)}  # others' yes, and the no labels
    probes = train_probes(archive, background=30)
    assert probes.labels == sorted(CLASSES)
    for c, name in enumerate(CLASSES):
        probe = probes[name]
        # held out among hard negatives (the other species, near in this teacher) and background draws that are
        # sometimes the species: well above chance (8 of ~57), and the whole archive ranks almost perfectly
        chance = probe.positives / (probe.positives + probe.negatives)
        assert probe.cv_folds == 5 and probe.cv_ap is not None and probe.cv_ap > 3 * chance
        assert ap_against_truth(archive, probe.vector, truth == c) > 0.9
        assert np.linalg.norm(probe.vector) == pytest.approx(1.0, abs=1e-5)
    path = probes.write(folder / "probes.json")
    again = ProbeSet.read(path)
    np.testing.assert_allclose(again.matrix(), probes.matrix(), atol=1e-6)
    assert again[CLASSES[1]].calibration == probes[CLASSES[1]].calibration

    # detections: every window x probe whose calibrated confidence reaches min_conf, and only those
    scores = score_archive(archive, again, min_conf=0.5, chunk_rows=64)
    cos = archive.vectors.astype(np.float32) @ again.matrix().T
    conf = np.stack([p.calibration.confidence(cos[:, j]) for j, p in enumerate(again.probes)], axis=1)
    expected = sorted(zip(*np.nonzero(conf >= 0.5), strict=True))
    assert sorted(zip(scores.rows.tolist(), scores.probe.tolist(), strict=True)) == [
        (int(r), int(j)) for r, j in expected]
    np.testing.assert_allclose(scores.confidence, conf[scores.rows, scores.probe], rtol=1e-6)
    detected = {c: set(scores.rows[scores.probe == again.labels.index(name)].tolist())
                for c, name in enumerate(CLASSES)}
    for c in range(len(CLASSES)):  # mostly right
        assert len(detected[c] & set(np.flatnonzero(truth == c).tolist())) >= 0.8 * len(detected[c]) > 0
    results = detections(archive, again, min_conf=0.5)
    assert len(results) == len(archive.files())
    rows = list(csv.DictReader(io.StringIO(format_text("csv", results, n_images=0, band_hz=(0, 8000)))))
    assert len(rows) == len(scores.rows)
    assert {r["Scientific name"] for r in rows} <= set(CLASSES)
    assert all(float(r["Confidence"]) >= 0.5 for r in rows)

    out = run(capsys, "archive", "probe", "train", folder, "--labels", f"{CLASSES[0]},{CLASSES[1]}", "--json",
              "--background", "30")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert sorted(report["probes"]) == sorted(CLASSES[:2]) and report["file"] == str(folder / "probes.json")
    assert report["probes"][CLASSES[0]]["cv_ap"] == pytest.approx(probes[CLASSES[0]].cv_ap)
    raven = tmp_path / "detections.txt"
    applied = run(capsys, "archive", "probe", "apply", folder, "-o", raven, "-f", "raven", "--min-conf", "0.5")
    assert applied.returncode == 0, applied.stderr
    assert "detections" in applied.stdout and raven.read_text().startswith("Selection\tView")
    unknown = run(capsys, "archive", "probe", "train", folder, "--labels", "Nope")
    assert unknown.returncode == 1 and "has no labels ['Nope']" in unknown.stderr


def test_the_text_prior_with_one_label_per_class(world, tmp_path) -> None:
    import shutil

    folder = tmp_path / "archive"
    shutil.copytree(world["folder"], folder)
    archive = Archive.open(folder)
    truth = world["truth"]
    label(archive, truth, 1, seed=3)
    plain = train_probes(archive, background=30)
    prior = train_probes(archive, background=30, text_prior=True)
    assert prior.settings["text_prior"] and all(p.text_prior and p.prior_scale > 0 for p in prior.probes)
    assert all(p.cv_ap is None for p in prior.probes)  # one positive: nothing to cross-validate
    for c, name in enumerate(CLASSES):
        # the prior keeps the text direction that one label cannot give
        assert float(prior[name].vector @ world["texts"][c]) > float(plain[name].vector @ world["texts"][c])
        assert ap_against_truth(archive, prior[name].vector, truth == c) >= ap_against_truth(
            archive, plain[name].vector, truth == c) - 0.01


def test_probes_of_another_teacher_are_refused(world) -> None:
    archive = Archive.open(world["folder"])
    probes = ProbeSet({**fx.TEACHER}, [])
    with pytest.raises(BirdbridgeError, match="embeddings of different teachers cannot be compared"):
        score_archive(archive, probes)


def text_probes(world, labels: dict[str, int]) -> ProbeSet:
    """Probes without training: each label's vector is its class's text embedding, one calibration for all."""
    from birdbridge.models.calibration import Calibration
    from birdbridge.probes.train import Probe

    calibration = Calibration(slope=12.0, intercept=-6.0)
    probes = [Probe(label, unit(world["texts"][c]), calibration, 1, 1, None, 0, False) for label, c in labels.items()]
    return ProbeSet(Archive.open(world["folder"]).teacher, probes)


def test_apply_with_a_place_a_species_list_a_rank_and_a_locale(world, tmp_path, capsys) -> None:
    import shutil

    from birdbridge.probes.apply import apply_probes
    from birdbridge.species.where import RangeFilter

    folder = tmp_path / "archive"
    shutil.copytree(world["folder"], folder)
    archive = Archive.open(folder)
    calgary = archive.files()[0]  # BirdNET's range model expects the magpie in Calgary, not in Ithaca (in May)
    archive.set_recording_meta({calgary.path: RecordingMeta(calgary.date, calgary.time, calgary.site, 51.05, -114.07)})
    probes = text_probes(world, {"Pica hudsonia_Black-billed Magpie": 0, CLASSES[1]: 1, CLASSES[2]: 2, "wind": 0})
    plain = score_archive(archive, probes, min_conf=0.5)

    def pairs(scores, label=None):
        return {(int(r), scores.columns[int(j)].label) for r, j in zip(scores.rows, scores.probe, strict=True)
                if label is None or scores.columns[int(j)].label == label}

    magpie = "Pica hudsonia_Black-billed Magpie"
    in_calgary = {(r, lab) for r, lab in pairs(plain, magpie) if calgary.first_row <= r < calgary.first_row + 10}
    assert pairs(plain, magpie) - in_calgary and in_calgary  # the test can tell the two apart
    placed = score_archive(archive, probes, min_conf=0.5, where=RangeFilter(42.48, -76.45, "auto"))
    assert pairs(placed) == pairs(plain) - (pairs(plain, magpie) - in_calgary)  # "wind" is no species: kept
    assert placed.removed == len(pairs(plain, magpie) - in_calgary)
    listed = score_archive(archive, probes, min_conf=0.5, where=[CLASSES[1]])
    assert pairs(listed) == pairs(plain, CLASSES[1]) | pairs(plain, "wind")

    # at genus rank: a genus's confidence is the noisy-OR of its species' (two crows here), its cosine the best
    crows = text_probes(world, {"Corvus corax": 1, "Corvus brachyrhynchos": 0, CLASSES[2]: 2})
    genus = score_archive(archive, crows, min_conf=0.5, rank="genus")
    cos = archive.vectors.astype(np.float32) @ crows.matrix().T
    conf = np.stack([p.confidence(cos[:, j]) for j, p in enumerate(crows.probes)], axis=1)
    corvus = 1 - (1 - conf[:, 0]) * (1 - conf[:, 1])
    columns = {c.label: j for j, c in enumerate(genus.columns)}
    assert genus.columns[columns["Corvus"]].rank == "genus"
    rows = genus.rows[genus.probe == columns["Corvus"]]
    np.testing.assert_array_equal(rows, np.flatnonzero(corvus >= 0.5))
    np.testing.assert_allclose(genus.confidence[genus.probe == columns["Corvus"]], corvus[rows], rtol=1e-5)
    np.testing.assert_allclose(genus.cosine[genus.probe == columns["Corvus"]], cos[rows, :2].max(axis=1), rtol=1e-5)
    assert (corvus >= 0.5).sum() > max((conf[:, 0] >= 0.5).sum(), (conf[:, 1] >= 0.5).sum())  # evidence adds up

    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "de.txt").write_text("Corvus corax_Kolkrabe\n")
    from birdbridge.species.common_names import CommonNames

    found = apply_probes(archive, probes, min_conf=0.5, locale="de", names=CommonNames.load(labels))
    named = {h.key: h.common_name for r in found.results for w in r.windows for h in w.species}
    assert named == {magpie: "Black-billed Magpie", CLASSES[1]: "Kolkrabe", CLASSES[2]: CLASSES[2], "wind": None}
    path = tmp_path / "probes.json"
    probes.write(path)
    args = ["archive", "probe", "apply", folder, "-p", path, "-f", "csv", "--min-conf", "0.5"]
    out = run(capsys, *args, "-o", tmp_path / "d.csv", "--lat", "42.48", "--lon", "-76.45", "--week", "auto",
              "--locale", "de", "--labels-dir", labels)
    assert out.returncode == 0, out.stderr
    assert f"{placed.removed:,} detections of species not expected there and then removed" in out.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "d.csv").read_text())))
    assert len(rows) == len(pairs(placed)) and "Kolkrabe" in {r["Common name"] for r in rows}
    for option, value, message in (("--week", "0", "--week: week 0 is out of range"),
                                   ("--lat", "91", "--lat: latitude 91.0 is out of range"),
                                   ("--locale", "xx", "--locale: no names in 'xx'")):
        given = {"--lat": "42.48", "--lon": "-76.45", "--week": "20", option: value}
        bad = run(capsys, *args, "-o", tmp_path / "e.csv", *[x for pair in given.items() for x in pair])
        assert bad.returncode == 1 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
