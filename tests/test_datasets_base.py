"""The Dataset model: validation, splits, selection, species subsets, summary and file checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from birdbridge.datasets import AudioItem, Dataset, ImageItem, VideoItem
from birdbridge.errors import BirdbridgeError
from birdbridge.species import taxonomy_from_names

TAX = taxonomy_from_names(
    [("Pica hudsonia", "Black-billed Magpie"), ("Turdus migratorius", "American Robin"), ("Anas platyrhynchos", None)]
)


def make(tmp_path: Path) -> Dataset:
    audio = [
        AudioItem("a1", tmp_path / "a1.wav", "Turdus migratorius", "train", 3.0, {"site": "x"}),
        AudioItem("a2", tmp_path / "a2.wav", "Pica hudsonia", "zeta"),
        AudioItem("a3", tmp_path / "a3.wav", "Pica hudsonia", "test"),
        AudioItem("a4", tmp_path / "a4.wav", "Turdus migratorius", "val"),
    ]
    images = [ImageItem("i1", tmp_path / "i1.jpg", "Anas platyrhynchos", "train", source="inat")]
    videos = [VideoItem("v1", tmp_path / "v1.mp4", "Pica hudsonia", "test", fps=30.0)]
    return Dataset("toy", tmp_path, TAX, audio, images, videos)


def test_splits_and_selection(tmp_path):
    ds = make(tmp_path)
    assert ds.splits() == {
        "audio": {"train": 1, "val": 1, "test": 1, "zeta": 1},
        "images": {"train": 1},
        "videos": {"test": 1},
    }
    assert list(ds.splits()["audio"]) == ["train", "val", "test", "zeta"]
    assert ds.split_names() == ["train", "val", "test", "zeta"]
    assert [a.id for a in ds.audio_split("train", "test")] == ["a1", "a3"]
    assert len(ds.audio_split()) == 4 and ds.images_split("test") == [] and len(ds.videos_split("test")) == 1
    with pytest.raises(BirdbridgeError, match=r"no split 'tset'.*train, val, test, zeta"):
        ds.audio_split("tset")


def test_species_in(tmp_path):
    ds = make(tmp_path)
    assert ds.species_in(ds.audio) == ["Pica hudsonia", "Turdus migratorius"]  # taxonomy order
    assert ds.species_in(ds.images) == ["Anas platyrhynchos"]


def test_validation(tmp_path):
    with pytest.raises(BirdbridgeError, match="audio item 'x' has species 'American Robin'"):
        Dataset("d", tmp_path, TAX, [AudioItem("x", tmp_path / "x.wav", "American Robin", "train")])
    twice = [AudioItem("x", tmp_path / f"{i}.wav", "Pica hudsonia", "train") for i in range(2)]
    with pytest.raises(BirdbridgeError, match="two audio items have the id 'x'"):
        Dataset("d", tmp_path, TAX, twice)


def test_items_are_hashable_values(tmp_path):
    a = AudioItem("a", tmp_path / "a.wav", "Pica hudsonia", "train", meta={"k": [1]})
    b = AudioItem("a", tmp_path / "a.wav", "Pica hudsonia", "train", meta={"k": [1]})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != AudioItem("a", tmp_path / "a.wav", "Pica hudsonia", "train", meta={"k": [2]})


def test_summary(tmp_path):
    text = make(tmp_path).summary()
    lines = text.splitlines()
    assert lines[0] == "dataset  toy" and lines[2] == "species  3"
    assert lines[4].split() == ["items", "species", "train", "val", "test", "zeta"]
    assert lines[5].split() == ["audio", "4", "2", "1", "1", "1", "1"]
    assert lines[6].split() == ["images", "1", "1", "1", "-", "-", "-"]
    assert lines[7].split() == ["videos", "1", "1", "-", "-", "1", "-"]
    assert repr(make(tmp_path)) == "Dataset('toy', 3 species, 4 audio, 1 images, 1 videos)"


def test_check_files(tmp_path):
    ds = make(tmp_path)
    (tmp_path / "a1.wav").write_bytes(b"RIFF")
    (tmp_path / "a2.wav").mkdir()
    (tmp_path / "a3.wav").write_bytes(b"")
    problems = dict(ds.check_files())
    assert str(tmp_path / "a1.wav") not in problems
    assert problems[str(tmp_path / "a2.wav")] == "not a file"
    assert problems[str(tmp_path / "a3.wav")] == "empty file"
    assert problems[str(tmp_path / "v1.mp4")] == "missing" and len(problems) == 5
    assert len(ds.check_files(limit=2)) == 2
