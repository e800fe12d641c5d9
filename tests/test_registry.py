"""Presets, resolution of names/hub ids/folders, and the offline message."""

from __future__ import annotations

import pytest

from birdbridge.errors import ModelFormatError, ModelNotFoundError
from birdbridge.models.hub import resolve
from birdbridge.models.loader import detect_layout, load_student, load_teacher
from birdbridge.models.registry import get_preset, list_presets
from cli_fixtures import run


def test_presets() -> None:
    names = {p.name: p for p in list_presets()}
    assert names["biolingual"].hub_id == "davidrrobinson/BioLingual"
    assert names["biolingual"].kind == "audio-text" and names["biolingual"].sample_rate == 48_000
    assert names["biolingual"].window_s == 10.0 and names["biolingual"].embed_dim == 512
    assert names["bioclip-2"].hub_id == "imageomics/bioclip-2" and names["bioclip-2"].embed_dim == 768
    assert names["bioclip"].hub_id == "imageomics/bioclip" and names["bioclip"].embed_dim == 512
    assert get_preset("hf-hub:imageomics/bioclip-2").name == "bioclip-2"
    assert get_preset("BioCLIP-2").name == "bioclip-2"


def test_folder_layouts(tiny_clap, tiny_clip) -> None:
    assert detect_layout(tiny_clap) == "clap"
    assert detect_layout(tiny_clip) == "open_clip"
    assert resolve(str(tiny_clap)).folder == tiny_clap.resolve()


def test_unknown_folder_layout(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelFormatError, match="not a model folder"):
        detect_layout(tmp_path)


@pytest.mark.parametrize("ref", ["biolingual", "bioclip-2", "imageomics/bioclip", "hf-hub:someone/some-model"])
def test_offline_hub_gives_clear_message(ref) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve(ref)
    message = str(info.value)
    preset = get_preset(ref)
    hub_id = preset.hub_id if preset else ref.removeprefix("hf-hub:")
    assert hub_id in message
    assert f"hf download {hub_id}" in message and "HF_HOME" in message


def test_missing_local_folder() -> None:
    with pytest.raises(ModelNotFoundError, match="no such model folder"):
        resolve("./no/such/folder")


def test_wrong_kind_is_refused(tiny_clap, tiny_clip) -> None:
    with pytest.raises(Exception, match="image-text model"):
        load_student(tiny_clip)
    with pytest.raises(Exception, match="audio model"):
        load_teacher(tiny_clap)


def test_cli_models_lists_presets(capsys) -> None:
    out = run(capsys, "models")
    assert out.returncode == 0, out.stderr
    for name in ("biolingual", "bioclip-2", "bioclip", "davidrrobinson/BioLingual", "imageomics/bioclip-2"):
        assert name in out.stdout


def test_cli_offline_model_error_has_no_traceback(tmp_path, capsys) -> None:
    out = run(capsys, "embed", "text", "a bird", "--model", "bioclip-2", "--output", str(tmp_path / "x.npy"))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "imageomics/bioclip-2" in out.stderr and "hf download" in out.stderr
