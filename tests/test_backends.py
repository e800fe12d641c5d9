"""Inference backends of the student's tower: ONNX Runtime and int8 against torch fp32, the ONNX cache (keyed by
the model's weights, damaged files rebuilt), the fallback when an export fails, and ``--backend`` from the CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import archive_fixtures as fx
from audio_fixtures import tone, write_wav
from birdbridge.models import backends
from birdbridge.models.backends import BackendWarning, with_backend
from birdbridge.models.loader import load_student
from cli_fixtures import run
from extras import need_extra

need_extra("onnxruntime", "onnx")


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tiny_clap, tiny_clip):
    return fx.make_student(tmp_path_factory.mktemp("backends") / "student", tiny_clap, tiny_clip)


@pytest.fixture(scope="module")
def waves():
    rng = np.random.default_rng(0)
    freqs = (400, 900, 1800, 3500, 6000)
    return np.stack([tone(1.0, fx.SR, f) + 0.05 * rng.standard_normal(fx.SR).astype(np.float32) for f in freqs])


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize(("backend", "precision", "floor"),
                         [("onnx", "fp32", 0.999), ("onnx", "int8", 0.99), ("torch", "int8", 0.99)])
def test_each_backend_matches_torch_fp32(student_dir, waves, backend, precision, floor) -> None:
    student = load_student(student_dir, "cpu")
    reference = student.embed(waves)
    view = with_backend(student, backend, precision)  # the session's cache: int8 and the CLI test reuse the export
    assert view.backend["backend"] == backend and view.backend["precision"] == precision
    assert student.backend["backend"] == "torch" and student.runner is None  # the loaded model is unchanged
    out = view.embed(waves, batch_size=2)  # batches other than the export's example
    assert out.shape == reference.shape
    assert _cosines(out, reference).min() >= floor
    assert (out.argmax(1) == reference.argmax(1)).mean() >= 0.8 or precision == "fp32"
    if precision == "fp32":
        assert np.allclose(out, reference, atol=1e-4)


def test_the_cache_is_keyed_by_the_weights_and_rebuilds_a_damaged_file(student_dir, waves, tmp_path, caplog) -> None:
    student = load_student(student_dir, "cpu")
    first = with_backend(student, "onnx", cache=tmp_path).runner.path
    again = with_backend(student, "onnx", cache=tmp_path).runner.path
    assert again == first and len(list(tmp_path.glob("*.onnx"))) == 1

    exports = []
    real_export = backends.export_onnx
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backends, "export_onnx", lambda *a: exports.append(1) or real_export(*a))
        weight = student.head.net.weight
        saved = weight.detach().clone()
        with torch.no_grad():  # the same fingerprint, other weights in memory: never the stale file
            weight.add_(0.5)
        try:
            changed = with_backend(student, "onnx", cache=tmp_path)
            assert changed.runner.path != first and exports == [1]
            assert np.allclose(changed.embed(waves), student.embed(waves), atol=1e-4)
        finally:
            with torch.no_grad():
                weight.copy_(saved)

        first.write_bytes(first.read_bytes()[:-100] + b"\0" * 100)  # damaged on disk: rebuilt, with a message
        rebuilt = with_backend(student, "onnx", cache=tmp_path)
    assert rebuilt.runner.path == first and exports == [1, 1]
    assert f"cached ONNX file {first} does not match" in caplog.text
    assert np.allclose(rebuilt.embed(waves), student.embed(waves), atol=1e-4)


def test_a_failed_export_falls_back_to_torch_with_one_warning(student_dir, waves, tmp_path, monkeypatch) -> None:
    def broken(student, path):
        raise backends.ExportFailed("RuntimeError: unsupported operator")

    monkeypatch.setattr(backends, "export_onnx", broken)
    student = load_student(student_dir, "cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        view = with_backend(student, "onnx", "int8", cache=tmp_path)
    ours = [w for w in caught if issubclass(w.category, BackendWarning)]
    assert len(ours) == 1 and student.name in str(ours[0].message) and "unsupported operator" in str(ours[0].message)
    assert view.backend["backend"] == "torch" and view.backend["precision"] == "int8"
    assert _cosines(view.embed(waves), student.embed(waves)).min() >= 0.99
    assert not list(tmp_path.glob("*.onnx"))


def test_bad_options_and_a_missing_runtime_say_what_to_do(student_dir, monkeypatch) -> None:
    from birdbridge.errors import BirdbridgeError

    student = load_student(student_dir, "cpu")
    with pytest.raises(BirdbridgeError, match=r"--backend.*tensorrt.*auto, torch, onnx"):
        with_backend(student, "tensorrt")
    with pytest.raises(BirdbridgeError, match=r"--precision.*fp16.*fp32, int8"):
        with_backend(student, "onnx", "fp16")
    monkeypatch.setattr(backends, "onnx_available", lambda: False)
    with pytest.raises(BirdbridgeError, match=r"pip install 'birdbridge\[onnx\]'"):
        with_backend(student, "onnx")
    assert with_backend(student, "auto") is student  # auto without ONNX Runtime: torch


def test_the_commands_run_the_backend_asked_for_and_record_it(student_dir, tmp_path, capsys, monkeypatch,
                                                              tiny_clip) -> None:
    from PIL import Image

    from birdbridge.gallery.build import build_gallery
    from birdbridge.search.params import PARAMS_FILE

    monkeypatch.delenv("BIRDBRIDGE_BACKEND", raising=False)
    recordings = tmp_path / "rec"
    for i, freq in enumerate((500.0, 2000.0)):
        write_wav(recordings / f"r{i}.wav", tone(2.0, fx.SR, freq), fx.SR)
    for i, name in enumerate(("Pica hudsonia_Black-billed Magpie", "Turdus migratorius_American Robin")):
        (tmp_path / "photos" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32), (200 * i, 80, 40)).save(tmp_path / "photos" / name / "0.png")
    gallery = tmp_path / "gallery"
    build_gallery([tmp_path / "photos"], gallery, str(tiny_clip), progress=False)

    result = run(capsys, "search", recordings, "-g", gallery, "-m", student_dir, "--backend", "onnx",
                 "--format", "json", "-o", tmp_path / "results")
    assert result.returncode == 0, result.stderr
    params = json.loads((tmp_path / "results" / PARAMS_FILE).read_text())
    assert params["model"]["backend"]["backend"] == "onnx" and params["model"]["backend"]["precision"] == "fp32"
    from birdbridge.search import SearchEngine  # as `serve` opens it: /api/info names what runs

    info = SearchEngine.open(gallery, student_dir, backend="onnx", precision="int8").info()
    assert (info["backend"]["backend"], info["backend"]["precision"]) == ("onnx", "int8")

    out = tmp_path / "emb.parquet"
    result = run(capsys, "embed", "audio", recordings, "-o", out, "-m", student_dir, "--backend", "onnx",
                 "--precision", "int8")
    assert result.returncode == 0, result.stderr
    from birdbridge.embed.writers import read_table

    meta = read_table(out).meta
    assert (meta["backend"], meta["precision"]) == ("onnx", "int8") and meta["runtime"].startswith("onnxruntime")

    archive = tmp_path / "archive"
    result = run(capsys, "archive", "build", archive, recordings, "-m", student_dir)  # auto: onnx when installed
    assert result.returncode == 0, result.stderr
    assert "audio tower: onnx fp32" in result.stdout
    build = json.loads((archive / "archive.json").read_text())["build"]
    assert build["backend"]["backend"] == "onnx" and build["backend"]["precision"] == "fp32"


def test_onnx_runs_windows_in_parallel_and_a_window_does_not_depend_on_its_batch(student_dir, waves) -> None:
    student = load_student(student_dir, "cpu")
    view = with_backend(student, "onnx", "int8")
    runner = view.runner
    assert runner.workers == max(1, torch.get_num_threads())
    runner.workers = 2
    together = view.embed(waves, batch_size=5)  # two windows at a time on two threads
    runner.workers = 1
    alone = np.concatenate([view.embed(w) for w in waves])  # each window a batch of its own, one thread
    assert np.array_equal(together, alone)  # int8 too: dynamic quantisation's scales are a window's own


def test_another_int8_recipe_gets_another_cached_file(student_dir, waves, tmp_path, monkeypatch) -> None:
    student = load_student(student_dir, "cpu")
    first = with_backend(student, "onnx", "int8", cache=tmp_path).runner.path
    monkeypatch.setitem(backends.INT8_RECIPE, "per_channel", True)
    other = with_backend(student, "onnx", "int8", cache=tmp_path)
    assert other.runner.path != first and json.loads(other.runner.path.with_suffix(".json").read_text())["recipe"][
        "per_channel"] is True
    assert len(list(tmp_path.glob("*-fp32-*.onnx"))) == 1  # the fp32 export is shared: only the quantisation reran
    assert _cosines(other.embed(waves), student.embed(waves)).min() >= 0.99
