"""`birdbridge evaluate`: baselines checked in isolation, and the runner against a recomputation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from birdbridge.embed import embed_audio, embed_images
from birdbridge.errors import BirdbridgeError
from birdbridge.evaluate import baselines as B
from birdbridge.evaluate.metrics import retrieval_metrics
from birdbridge.evaluate.runner import EvalSettings, evaluate
from cli_fixtures import run
from train_fixtures import SPECIES, corpus, make_tone_dataset


def test_text_mapping_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6))
    w = rng.standard_normal((6, 4))
    y = x @ w + 0.5
    mapping = B.fit_text_mapping(x, y, ridge=1e-8)
    assert np.allclose(mapping[:-1], w, atol=1e-6) and np.allclose(mapping[-1], 0.5, atol=1e-6)
    out = B.apply_text_mapping(x[:3], mapping)
    assert np.allclose(out, (y[:3]) / np.linalg.norm(y[:3], axis=1, keepdims=True), atol=1e-5)


def test_chain_and_random_projection() -> None:
    student_text = np.eye(3, dtype=np.float32)
    teacher_text = np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32)
    audio = np.array([[0, 0, 1], [1, 0, 0]], np.float32)  # sure of species 2, then 0
    out = B.zero_shot_chain(audio, student_text, teacher_text, scale=1000)
    assert np.allclose(out, teacher_text[[2, 0]], atol=1e-5)
    r1 = B.random_projection(audio, 5, seed=1)
    assert r1.shape == (2, 5) and np.allclose(r1, B.random_projection(audio, 5, seed=1))
    assert not np.allclose(r1, B.random_projection(audio, 5, seed=2))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from birdbridge.models.standins import build_small_clap, build_small_clip

    root = tmp_path_factory.mktemp("eval")
    make_tone_dataset(root / "data", per_species=8, test_per_species=3)
    rows = ["path,species,split"]
    rng = np.random.default_rng(0)
    (root / "data" / "images").mkdir()
    for s, (sci, common, _) in enumerate(SPECIES):
        for i in range(4):
            pixels = np.clip(40 * s + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "data" / "images" / f"{s}_{i}.png")
            rows.append(f"images/{s}_{i}.png,{sci}_{common},test")
    (root / "data" / "images.csv").write_text("\n".join(rows) + "\n")
    (root / "data" / "dataset.yaml").write_text("type: manifest\nname: tones\naudio: audio.csv\nimages: images.csv\n")
    student = build_small_clap(root / "student", corpus=corpus())
    teacher = build_small_clip(root / "teacher")
    return {"dataset": root / "data" / "dataset.yaml", "student": student, "teacher": teacher}


def test_runner_matches_a_direct_recomputation(world) -> None:
    """Use the undistilled CLAP through the mapping baseline's shape: a2i MAP of 'random projection'
    recomputed from the public embedding API must equal the runner's figure."""
    settings = EvalSettings(bootstrap=50)
    results = evaluate({}, world["dataset"], teacher=str(world["teacher"]), base_student=str(world["student"]),
                       settings=settings).to_dict()
    methods = results["methods"]
    assert set(methods) == {"random projection", "text-embedding mapping", "zero-shot chain", "undistilled (student)"}
    assert "a2i_map" not in methods["undistilled (student)"] and "knn_acc" in methods["undistilled (student)"]

    from birdbridge.datasets import load_dataset

    ds = load_dataset(world["dataset"])
    queries = ds.audio_split("test")
    audio = embed_audio([q.path for q in queries], world["student"])
    projected = B.random_projection(np.vstack([audio, embed_audio([t.path for t in ds.audio_split("train")],
                                                                   world["student"])]), 24, seed=0)[: len(audio)]
    images = embed_images([i.path for i in ds.images], world["teacher"])
    ref = retrieval_metrics(projected, [q.species for q in queries], images, [i.species for i in ds.images])
    assert methods["random projection"]["a2i_map"] == pytest.approx(ref.map, abs=1e-4)
    lo, hi = results["ci"]["random projection"]["a2i_map"]
    assert lo <= methods["random projection"]["a2i_map"] <= hi
    assert set(results["per_species"]["random projection"]) == {sci for sci, _, _ in SPECIES}
    # Audio→text: against one text per species and form, as BioCLIP writes them.
    from birdbridge.models.loader import load_teacher
    from birdbridge.species import PromptSpec, species_prompts

    spec = PromptSpec(forms=settings.text_forms, templates="none")
    texts = [(p, sp.key) for sp in ds.taxonomy for p in species_prompts(sp, spec)]
    text_vectors = load_teacher(str(world["teacher"])).encode_texts([t for t, _ in texts]).numpy()
    a2t = retrieval_metrics(projected, [q.species for q in queries], text_vectors, [k for _, k in texts])
    for key, value in (("a2t_map", a2t.map), ("a2t_r1", a2t.recall[1]), ("a2t_r5", a2t.recall[5]),
                       ("a2t_r10", a2t.recall[10])):
        assert methods["random projection"][key] == pytest.approx(value, abs=1e-4), key


def test_cli_writes_results_json(world, tmp_path, capsys) -> None:
    out = tmp_path / "results.json"
    result = run(capsys, "evaluate", "-d", world["dataset"], "--teacher", world["teacher"], "--base-student",
                 world["student"], "--baselines", "random,chain", "--bootstrap", "20", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "random projection" in result.stdout and "A→I MAP" in result.stdout
    data = json.loads(out.read_text())
    assert set(data["methods"]) == {"random projection", "zero-shot chain"}
    assert 0 <= data["methods"]["zero-shot chain"]["a2i_map"] <= 100


def test_clear_errors(world) -> None:
    with pytest.raises(BirdbridgeError, match="unknown baseline"):
        evaluate({}, world["dataset"], teacher=str(world["teacher"]), base_student=str(world["student"]),
                 baselines=("bogus",))
    with pytest.raises(BirdbridgeError, match="no teacher"):
        evaluate({}, world["dataset"], base_student=str(world["student"]))
    with pytest.raises(BirdbridgeError, match="split"):
        evaluate({}, world["dataset"], teacher=str(world["teacher"]), base_student=str(world["student"]),
                 settings=EvalSettings(split="nope"))


def test_methods_have_stable_ids_and_display_names(world, tmp_path) -> None:
    from birdbridge.evaluate.results import EvalResult

    student = str(world["student"])
    result = evaluate({"mine": student}, world["dataset"], teacher=str(world["teacher"]), base_student=student,
                      baselines=("random", "undistilled"), settings=EvalSettings(bootstrap=20))
    assert list(result.methods) == ["distilled", "random_projection", "undistilled"]  # a lone model is `distilled`
    assert [m.name for m in result.methods.values()] == ["mine", "random projection", "undistilled (student)"]
    assert result.method("random_projection").ci["a2i_map"][0] <= result.method("random_projection").metrics["a2i_map"]
    data = result.to_dict()
    assert set(data["methods"]) == set(data["per_species"]) == {"mine", "random projection", "undistilled (student)"}
    assert data["method_ids"] == {"distilled": "mine", "random_projection": "random projection",
                                  "undistilled": "undistilled (student)"}
    assert data["models"] == {"mine": student}
    back = EvalResult.from_dict(json.loads(result.write(tmp_path / "results.json").read_text()))
    assert back == result
    written_before_ids = {k: v for k, v in data.items() if k != "method_ids"}
    assert EvalResult.from_dict(written_before_ids).methods == result.methods

    several = evaluate({"a": student, "b": student}, world["dataset"], teacher=str(world["teacher"]), baselines=(),
                       settings=EvalSettings(bootstrap=0))
    assert list(several.methods) == ["a", "b"] and several.method("a").metrics == several.method("b").metrics
    with pytest.raises(BirdbridgeError, match="taken by baselines"):
        evaluate({"random projection": student, "b": student}, world["dataset"], teacher=str(world["teacher"]),
                 base_student=student)


def test_the_demo_report_reads_results_written_before_ids(tmp_path) -> None:
    """A demo's results.json from before method ids: the report still reads it, by id."""
    from birdbridge.demo.report import write_report
    from birdbridge.evaluate.results import EvalResult

    names = ["text distillation (birdbridge)", "random projection", "text-embedding mapping", "zero-shot chain",
             "undistilled (biolingual)"]
    old = {
        "methods": {name: {"a2i_map": 50.0 - 10 * i, "n_queries": 4.0} for i, name in enumerate(names)},
        "ci": {names[0]: {"a2i_map": [40.0, 60.0]}},
        "per_species": {name: {} for name in names},
        "dataset": {"name": "demo", "root": "world", "species": 3, "queries": 4, "knn_references": 8,
                    "gallery_images": 6, "text_gallery": 12},
        "teacher": {"ref": "models/teacher", "name": "teacher", "fingerprint": "abc"},
        "base_student": "models/student", "models": {names[0]: "distill/model"},
        "settings": {"split": "test", "class_forms": ["taxonomic_common"]}, "failures": [], "checks": {},
    }
    result = EvalResult.from_dict(old)
    assert list(result.methods) == ["distilled", "random_projection", "text_mapping", "zero_shot_chain",
                                    "undistilled"]
    assert result.method("distilled").ci["a2i_map"] == (40.0, 60.0) and result.models == {"distilled": "distill/model"}
    report = write_report(tmp_path, old, {}, {}).read_text()
    assert "| text distillation (birdbridge) | 50.0 |" in report and "| undistilled (biolingual) | 10.0 |" in report
    assert "Queries: 4 test recordings; gallery: 6 test pictures; 3 species." in report
    assert "## Every direction" not in report  # nothing to show from a file without directions


def test_reports_show_the_directions_and_the_seen_and_unseen_species(tmp_path) -> None:
    """The demo's Markdown and the terminal tables give each direction's species / genus / family MAP, and with a
    holdout each group's figures; results.json keeps them under stable keys."""
    from rich.console import Console

    from birdbridge.demo.report import write_report
    from birdbridge.evaluate.report import direction_table, group_table
    from birdbridge.evaluate.results import DatasetSummary, EvalResult, HoldoutSummary, MethodResult, TeacherSummary

    ours = {f"{d}/{r}/map": v for d, base in (("a2i", 40.0), ("t2a", 30.0)) for r, v in
            (("species", base), ("genus", base + 10), ("family", base + 20))}
    method = MethodResult("distilled", "ours", {"a2i_map": 40.0, "n_queries": 4.0}, directions=ours,
                          groups={"seen": {"a2i_map": 45.0, **ours}, "unseen": {"a2i_map": 12.5}})
    plain = MethodResult("undistilled", "plain", {"knn_acc": 70.0}, groups={"seen": {"knn_acc": 71.0}})
    result = EvalResult({"distilled": method, "undistilled": plain}, DatasetSummary("demo", "world", 3, 4, 8, 6, 12),
                        TeacherSummary("t", "t", "abc"), None, {}, EvalSettings(),
                        teacher_directions={"i2t/species/map": 70.0, "i2t/genus/map": 80.0, "i2t/family/map": 90.0},
                        holdout=HoldoutSummary(["Pica hudsonia"], "model", 2, 1))
    saved = result.to_dict()
    assert saved["directions"]["methods"]["ours"]["t2a/genus/map"] == 40.0
    assert saved["groups"]["unseen"]["methods"]["ours"] == {"a2i_map": 12.5}
    report = write_report(tmp_path, {**saved, "checks": {}}, {}, {}).read_text()
    assert "| method (species / genus / family) | A→I MAP | T→A MAP | I→T MAP |" in report
    assert "| ours | 40.0 / 50.0 / 60.0 | 30.0 / 40.0 / 50.0 | — |" in report
    assert "| teacher alone (ceiling) | — | — | 70.0 / 80.0 / 90.0 |" in report
    assert "1 of 3 species were held out of distillation: Pica hudsonia." in report and "| ours | 12.5 |" in report
    assert "| plain | — | — |\n" not in report  # the seen grid (A→I, T→A) has no row for a method without directions
    console = Console(width=200, record=True)
    console.print(direction_table(result), group_table(result))
    text = console.export_text()
    assert "40.0 / 50.0 / 60.0" in text and "ours: unseen" in text and "12.50" in text
