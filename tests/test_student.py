"""The CLAP student: same embeddings as transformers' ClapModel, deterministic, batch-independent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import ClapFeatureExtractor, ClapModel

from birdbridge.errors import ModelFormatError
from birdbridge.models.student import AudioStudent


@pytest.fixture(scope="module")
def student(tiny_clap) -> AudioStudent:
    return AudioStudent.from_folder(tiny_clap, device="cpu")


def clips(student: AudioStudent, n: int = 5) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (0.1 * rng.standard_normal((n, student.window_samples))).astype(np.float32)


def test_matches_transformers_clap(student, tiny_clap) -> None:
    x = clips(student)
    ours = student.embed(x)
    model = ClapModel.from_pretrained(tiny_clap).eval()
    fe = ClapFeatureExtractor.from_pretrained(tiny_clap)
    features = fe(list(x), sampling_rate=student.sample_rate, truncation="rand_trunc", return_tensors="pt")
    with torch.no_grad():
        ref = model.get_audio_features(input_features=features["input_features"])
    ref = getattr(ref, "pooler_output", ref)
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-4


def test_deterministic_and_batch_independent(student) -> None:
    x = clips(student, 6)
    a = student.embed(x, batch_size=4)
    b = student.embed(x, batch_size=4)
    singles = np.concatenate([student.embed(x[i : i + 1]) for i in range(len(x))])
    assert np.array_equal(a, b)
    assert np.abs(a - singles).max() < 1e-5
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_wrong_window_length_is_refused(student) -> None:
    with pytest.raises(ValueError, match="samples"):
        student.embed(np.zeros((1, student.window_samples - 1), np.float32))


def test_fused_model_is_refused(tiny_clap, tmp_path) -> None:
    folder = tmp_path / "fused"
    shutil.copytree(tiny_clap, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["audio_config"]["enable_fusion"] = True
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match="fused"):
        AudioStudent.from_folder(folder)


def test_missing_weights_named(tiny_clap, tmp_path) -> None:
    folder = tmp_path / "noweights"
    shutil.copytree(tiny_clap, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match=r"noweights.*weights"):
        AudioStudent.from_folder(folder)


def test_corrupt_weights_named(tiny_clap, tmp_path) -> None:
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_clap, folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFormatError, match="corrupt"):
        AudioStudent.from_folder(folder)


def test_a_student_folder_saved_before_the_head_moved_to_models_loads(tmp_path) -> None:
    """tests/data/student-v1-mlp was written by ``save_distilled_student`` when the projection head lived in
    ``birdbridge.train.heads`` (a small CLAP from ``build_small_clap``, an MLP head, seed 0); its
    expected.json holds the embedding that code gave a 1 kHz tone (tests/test_layers.py keeps models/ from
    importing the trainer)."""
    from birdbridge.models.distilled import load_distilled_student
    from birdbridge.models.heads import ProjectionHead

    folder = Path(__file__).parent / "data" / "student-v1-mlp"
    expected = json.loads((folder / "expected.json").read_text())
    loaded = load_distilled_student(folder, device="cpu")
    assert isinstance(loaded.head, ProjectionHead) and loaded.head.describe()["type"] == "mlp"
    t = np.arange(loaded.window_samples, dtype=np.float32) / loaded.frontend_config.sample_rate
    wave = (expected["amplitude"] * np.sin(2 * np.pi * expected["tone_hz"] * t)).astype(np.float32)
    np.testing.assert_allclose(loaded.embed(wave[None])[0], expected["embedding"], atol=1e-5)
