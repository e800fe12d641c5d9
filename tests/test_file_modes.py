"""Files others can read: everything birdbridge writes gets 0o666 minus the umask (as ``open(path, "w")``
would give), and a file this user may not read is reported as "permission denied", never as damaged.

Tests run as root, for whom ``chmod 000`` changes nothing, so unreadable files are simulated by making the
open/load call raise ``PermissionError`` (or, as safetensors does, a misleading ``FileNotFoundError``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audio_fixtures import write_wav
from birdbridge.errors import AudioError, BirdbridgeError, ImageError, InputError
from cli_fixtures import run

UMASKS = [0o022, 0o002, 0o077]


@pytest.fixture(params=UMASKS, ids=[f"umask{m:03o}" for m in UMASKS])
def umask(request) -> int:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def file_modes(root: Path) -> dict[str, int]:
    """Permission bits of every file under ``root`` (or of ``root`` itself), by relative path."""
    root = Path(root)
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
    assert files, f"nothing written under {root}"
    return {str(p.relative_to(root.parent if root.is_file() else root)): p.stat().st_mode & 0o777 for p in files}


def assert_usual_modes(root: Path, mask: int) -> None:
    """Files ``0o666 & ~mask``, folders below ``root`` ``0o777 & ~mask``, no temporary files left."""
    expected = 0o666 & ~mask
    wrong = {name: oct(mode) for name, mode in file_modes(root).items() if mode != expected}
    assert not wrong, f"expected {oct(expected)} under umask {oct(mask)}: {wrong}"
    below = list(Path(root).rglob("*")) if Path(root).is_dir() else []
    for folder in (p for p in below if p.is_dir()):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~mask, folder
    assert not [p.name for p in below if p.name.startswith(".")], "temporary files left"


class LinearHead(nn.Module):
    """A head with the saved description of birdbridge's linear projection head."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.net = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def describe(self) -> dict:
        return {"type": "linear", "in_dim": self.in_dim, "out_dim": self.out_dim, "hidden_dim": 1024, "dropout": 0.0}


@pytest.fixture(scope="module")
def distilled(tiny_clap, tmp_path_factory) -> Path:
    """A distilled student folder (under the default umask; the mode tests write their own)."""
    return _save_student(tiny_clap, tmp_path_factory.mktemp("distilled") / "student")


def _save_student(tiny_clap: Path, folder: Path) -> Path:
    from birdbridge.models.distilled import save_distilled_student
    from birdbridge.models.student import AudioStudent

    base = AudioStudent.from_folder(tiny_clap, device="cpu")
    student = AudioStudent(base.audio_model, base.audio_projection, base.frontend_config,
                           head=LinearHead(base.embed_dim, 16))
    return save_distilled_student(student, folder, teacher={"name": "test"})


# ------------------------------------------------------------------------------------- file modes


def test_umask_is_read_afresh(umask) -> None:
    from birdbridge.utils.atomic import current_umask, file_mode

    assert current_umask() == umask and file_mode() == 0o666 & ~umask


def test_atomic_writers(umask, tmp_path) -> None:
    from safetensors.torch import save_file

    from birdbridge.utils.array_cache import cached_array
    from birdbridge.utils.atomic import atomic_files, atomic_path, write_bytes, write_json, write_npy

    write_bytes(tmp_path / "a.bin", b"x")
    write_json(tmp_path / "b.json", {"x": 1})
    write_npy(tmp_path / "c.npy", np.zeros(3))
    with atomic_path(tmp_path / "d.safetensors") as tmp:  # safetensors replaces the file with its own 0600 one
        save_file({"w": torch.zeros(2)}, str(tmp))
    with atomic_path(tmp_path / "e.pt") as tmp:
        torch.save({"w": torch.zeros(2)}, tmp)
    with atomic_files(tmp_path / "f") as staging:
        (staging / "sub").mkdir()
        (staging / "sub" / "g.txt").write_text("g")
        save_file({"w": torch.zeros(2)}, str(staging / "h.safetensors"))
    cached_array(tmp_path / "cache", {"kind": "test"}, lambda: np.ones((2, 3), np.float32) / np.sqrt(3), lead=(2,))
    assert len(file_modes(tmp_path)) == 9
    assert_usual_modes(tmp_path, umask)


def test_atomic_files_leave_nothing_behind_on_failure(tmp_path) -> None:
    from birdbridge.utils.atomic import atomic_files

    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(RuntimeError), atomic_files(tmp_path) as staging:
        (staging / "old.json").write_text("half")
        raise RuntimeError("writer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
    assert (tmp_path / "old.json").read_text() == "{}"


def test_distilled_student_folder(umask, tiny_clap, tmp_path) -> None:
    """What `birdbridge train` writes as its model: model.safetensors and head.safetensors were 0600."""
    from birdbridge.models.distilled import load_distilled_student

    folder = _save_student(tiny_clap, tmp_path / "student")
    assert {"model.safetensors", "head.safetensors", "config.json", "birdbridge.json"} <= set(file_modes(folder))
    assert_usual_modes(folder, umask)
    assert load_distilled_student(folder, device="cpu").embed_dim == 16


def test_standin_and_demo_model_folders(umask, tmp_path) -> None:
    """The CLAP (with its tokenizer) and open_clip folders the tests and the demo build."""
    from birdbridge.models.standins import build_small_clap, build_small_clip

    clap = build_small_clap(tmp_path / "clap", corpus=["a bird sings", "Pica hudsonia"])
    clip = build_small_clip(tmp_path / "clip")
    assert {"model.safetensors", "vocab.json", "merges.txt", "preprocessor_config.json"} <= set(file_modes(clap))
    assert "open_clip_model.safetensors" in file_modes(clip)
    assert_usual_modes(tmp_path, umask)


def test_checkpoints(umask, tmp_path) -> None:
    from birdbridge.train.checkpoint import load_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path / "ckpt", 3, {"step": 3, "w": torch.ones(2)})
    assert_usual_modes(tmp_path / "ckpt", umask)
    assert load_checkpoint(path)["step"] == 3


def test_a_training_run_writes_files_others_can_read(tmp_path, tiny_clip) -> None:
    """`birdbridge train`, end to end, under umask 0o022: every file 0o644, every folder 0o755."""
    from birdbridge.models.standins import build_small_clap
    from birdbridge.train.config import load_config
    from birdbridge.train.loop import train
    from train_fixtures import corpus, make_tone_dataset

    manifest = make_tone_dataset(tmp_path / "data", per_species=4, test_per_species=1)
    student = build_small_clap(tmp_path / "student", corpus=corpus())
    out = tmp_path / "run"
    settings = {"data.dataset": manifest, "student": student, "teacher": tiny_clip, "output": out,
                "run.batch_size": 4, "run.epochs": 1, "run.checkpoint_every": 2, "data.num_workers": 0,
                "run.progress": "false"}
    old = os.umask(0o022)
    try:
        train(load_config(None, [f"{k}={v}" for k, v in settings.items()]))
    finally:
        os.umask(old)
    assert (out / "model" / "model.safetensors").is_file() and list((out / "checkpoints").glob("*.pt"))
    assert_usual_modes(out, 0o022)


# ------------------------------------------------------------------------- permission denied


def _denied(path: Path) -> PermissionError:
    return PermissionError(13, "Permission denied", str(path))


def deny_opening(monkeypatch, path: Path) -> None:
    """Make birdbridge's readability check meet ``PermissionError`` when it opens ``path``."""
    import builtins

    import birdbridge.utils.readable as readable

    def fake_open(name, *args, **kwargs):
        if Path(name) == path:
            raise _denied(path)
        return builtins.open(name, *args, **kwargs)

    monkeypatch.setattr(readable, "open", fake_open, raising=False)


def deny_access(monkeypatch, path: Path) -> None:
    """Make ``os.access`` say this user may not read ``path`` (as it would for another user's 0600 file)."""
    import birdbridge.utils.readable as readable

    real_access = os.access
    monkeypatch.setattr(readable.os, "access", lambda p, mode: Path(p) != path and real_access(p, mode))


def assert_permission_message(exc: BaseException, path: Path) -> None:
    message = str(exc)
    assert "permission denied" in message.lower(), message
    assert str(path) in message, message
    assert "permissions" in message and "chmod" in message, message
    assert "corrupt" not in message and "incomplete" not in message and "download" not in message, message


def test_loader_reports_an_unreadable_weights_file(distilled, monkeypatch) -> None:
    """Every model goes through the loader, which opens the folder's files before anything else."""
    from birdbridge.models.loader import clear_model_cache, load_student

    weights = distilled / "model.safetensors"
    deny_opening(monkeypatch, weights)
    clear_model_cache()
    with pytest.raises(InputError) as info:
        load_student(distilled, device="cpu")
    assert_permission_message(info.value, weights)
    clear_model_cache()


def test_transformers_load_of_unreadable_weights(tiny_clap, monkeypatch) -> None:
    """safetensors reports an unreadable file as "No such file or directory": the file itself is checked."""
    from transformers import ClapAudioModelWithProjection

    from birdbridge.models.student import AudioStudent

    weights = tiny_clap / "model.safetensors"

    def not_found(*args, **kwargs):
        raise FileNotFoundError(f"No such file or directory: {weights}")

    monkeypatch.setattr(ClapAudioModelWithProjection, "from_pretrained", not_found)
    deny_access(monkeypatch, weights)
    with pytest.raises(InputError) as info:
        AudioStudent.from_folder(tiny_clap, device="cpu")
    assert_permission_message(info.value, weights)


def test_unreadable_head(distilled, monkeypatch) -> None:
    import birdbridge.models.distilled as distilled_module

    head = distilled / "head.safetensors"

    def denied(path, *args, **kwargs):
        raise _denied(path)

    monkeypatch.setattr(distilled_module, "load_file", denied)
    with pytest.raises(InputError) as info:
        distilled_module.load_distilled_student(distilled, device="cpu")
    assert_permission_message(info.value, head)


def test_unreadable_teacher_weights(tiny_clip, monkeypatch) -> None:
    import safetensors.torch

    from birdbridge.models.teacher import Teacher

    weights = tiny_clip / "open_clip_model.safetensors"

    def not_found(path, *args, **kwargs):  # what safetensors really raises for an unreadable file
        raise FileNotFoundError(f"No such file or directory: {path}")

    monkeypatch.setattr(safetensors.torch, "load_file", not_found)
    deny_access(monkeypatch, weights)
    with pytest.raises(InputError) as info:
        Teacher.from_folder(tiny_clip, device="cpu")
    assert_permission_message(info.value, weights)


def test_unreadable_checkpoint(tmp_path, monkeypatch) -> None:
    from birdbridge.train.checkpoint import load_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path, 1, {"step": 1})

    def denied(p, *args, **kwargs):
        raise _denied(p)

    monkeypatch.setattr(torch, "load", denied)
    with pytest.raises(BirdbridgeError) as info:
        load_checkpoint(path)
    assert_permission_message(info.value, path)


def test_unreadable_picture_and_recording(tmp_path, monkeypatch) -> None:
    from PIL import Image

    import birdbridge.utils.input_files as input_files
    from birdbridge.audio import audio_info
    from birdbridge.embed.images import open_image

    picture, recording = tmp_path / "bird.png", tmp_path / "song.wav"
    Image.new("RGB", (4, 4)).save(picture)
    write_wav(recording, np.zeros(16_000, np.float32))

    def denied(path, *args, **kwargs):
        raise _denied(path)

    monkeypatch.setattr(Image, "open", denied)
    monkeypatch.setattr(input_files, "open", denied, raising=False)  # the shared input-file check opens it
    with pytest.raises(ImageError) as image_info:
        open_image(picture)
    assert_permission_message(image_info.value, picture)
    with pytest.raises(AudioError) as audio_info_:
        audio_info(recording)
    assert_permission_message(audio_info_.value, recording)


def test_cli_prints_permission_denied_without_traceback(distilled, tmp_path, monkeypatch, capsys) -> None:

    from birdbridge.models.loader import clear_model_cache

    write_wav(tmp_path / "song.wav", np.zeros(16_000, np.float32))
    config = distilled / "config.json"
    deny_opening(monkeypatch, config)
    clear_model_cache()
    result = run(capsys, "embed", "audio", "--model", distilled, tmp_path / "song.wav", "-o", tmp_path / "e.npy")
    clear_model_cache()
    err = result.stderr
    assert result.returncode == 1
    assert "permission denied" in err and "config.json" in err and "Traceback" not in err, err
    assert not (tmp_path / "e.npy").exists()
    assert json.loads(config.read_text())  # the file itself is fine
