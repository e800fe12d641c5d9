"""The offline demo end to end on a smaller world, with the paper's inequalities asserted."""

from __future__ import annotations

import json

import pytest

from birdbridge.demo.run import DemoSettings, run_demo

SMALL = DemoSettings(species=24, recordings_per_species=16, images_per_species=16, teacher_epochs=(30, 15),
                     student_epochs=(50, 25), distill_epochs=35, batch_size=16, seed=0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    return out, run_demo(out, SMALL, progress=False, log=lambda _: None)


def test_distillation_beats_the_baselines(demo) -> None:
    _, results = demo
    methods = results["methods"]
    ours = methods["text distillation (birdbridge)"]
    assert ours["a2i_map"] >= 3 * methods["random projection"]["a2i_map"]
    assert ours["a2i_map"] > methods["text-embedding mapping"]["a2i_map"]
    assert ours["knn_acc"] >= methods["undistilled (student)"]["knn_acc"] - 5
    assert all(results["checks"].values())


def test_output_folder(demo) -> None:
    out, results = demo
    for rel in ("results.json", "report.md", "figures/a2i_map.png", "figures/embeddings.png",
                "world/taxonomy.csv", "world/audio.csv", "world/images.csv", "world/dataset.yaml",
                "models/teacher/open_clip_config.json", "models/teacher/open_clip_model.safetensors",
                "models/student/config.json", "models/student/model.safetensors", "models/student/vocab.json",
                "distill/model/birdbridge.json", "distill/model/head.safetensors", "distill/metrics.csv",
                "gallery/gallery.json", "gallery/vectors.f16", "gallery/images.sqlite", "gallery/species.json"):
        assert (out / rel).exists(), rel
    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"] == results["methods"]
    assert "text distillation (birdbridge)" in (out / "report.md").read_text()


def test_trained_student_works_from_the_cli(demo, tmp_path) -> None:
    import subprocess
    import sys

    out, _ = demo
    result = subprocess.run(
        [sys.executable, "-m", "birdbridge", "embed", "audio", "--model", str(out / "distill" / "model"),
         str(out / "world" / "audio"), "--pool", "-o", str(tmp_path / "e.parquet")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 384 × 64 embeddings" in result.stderr
