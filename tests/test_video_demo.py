"""The demo world's videos: the bird in view for part of each clip, calling only then; files and manifests."""

from __future__ import annotations

import colorsys
import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from birdbridge.datasets import load_dataset
from birdbridge.demo.pictures import LIGHTING_RANGE
from birdbridge.demo.traits import BODY_MIN_CHROMA, VisualTraits
from birdbridge.demo.videos import available_codec, write_mp4
from birdbridge.demo.world import VIDEO_COLUMNS, World, WorldConfig, generate_world
from birdbridge.video import read_video_audio, sample_frames, video_info
from video_fixtures import flat

SMALL = WorldConfig(
    n_orders=1, families_per_order=1, genera_per_family=2, species_per_genus=2,
    recordings_per_species=2, images_per_species=2, videos_per_species=3, seed=3,
)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return generate_world(tmp_path_factory.mktemp("demo") / "world", SMALL)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _body_share(image, traits: VisualTraits) -> float:
    """Fraction of pixels with the species' body colour: its hue and a chroma no background reaches."""
    a = np.asarray(image, dtype=np.float64) / 255
    mx, mn = a.max(axis=2), a.min(axis=2)
    c = np.maximum(mx - mn, 1e-9)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    hue = np.where(mx == r, ((g - b) / c) % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4)) / 6
    d = np.abs(hue - colorsys.rgb_to_hsv(*(v / 255 for v in traits.colour("body")))[0])
    body = (np.minimum(d, 1 - d) < 0.07) & (255 * (mx - mn) >= BODY_MIN_CHROMA * LIGHTING_RANGE[0])
    return float(body.mean())


def test_videos_files_and_manifest(world: World) -> None:
    root = world.root
    assert {p.name for p in root.iterdir()} >= {"videos", "videos.csv"}
    descriptor = yaml.safe_load((root / "dataset.yaml").read_text())
    assert descriptor["videos"] == "videos.csv"
    with open(root / "videos.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == VIDEO_COLUMNS and len(rows) == len(world.videos) == 12
    assert available_codec(("libx264", "mpeg4")) == "libx264"
    for row, item in zip(rows, world.videos, strict=True):
        sp = world.taxonomy[world.taxonomy.index(item.species)]
        assert item.path == f"videos/{sp.code}/{item.id}.mp4" == row["path"]
        assert item.id == f"{sp.code}-vid{item.id[-3:]}"
        info = video_info(world.path(item))
        assert info.frame_count == item.frame_count == int(row["frame_count"])
        assert info.fps == pytest.approx(8.0) == item.fps and not info.variable_frame_rate
        assert (info.width, info.height) == (64, 64) and (info.audio_rate, info.audio_channels) == (16000, 1)
        assert item.duration_s == pytest.approx(item.frame_count / 8) and 4.0 <= item.duration_s <= 6.0
        assert info.duration_s == pytest.approx(item.duration_s, abs=0.07)
        shown = (item.visible_end - item.visible_start) / item.duration_s
        assert 0.2 - 1 / item.frame_count <= shown <= 0.35 + 1 / item.frame_count
        assert item.call_onsets and len(item.call_onsets) == len(item.call_offsets)
        assert all(item.visible_start <= a < b <= item.visible_end
                   for a, b in zip(item.call_onsets, item.call_offsets, strict=True))
        assert float(row["target_second"]) == item.target_second and row["reliable_audio"] == "true"
    for sp in world.taxonomy:
        assert sorted(v.split for v in world.videos if v.species == sp.key) == ["test", "train", "train"]


def test_the_bird_is_in_view_only_inside_its_interval(world: World) -> None:
    for item in world.videos:
        traits = world.visual_traits(item.species)
        images, times = sample_frames(world.path(item), item.fps)
        assert len(images) == item.frame_count
        np.testing.assert_allclose(times, np.arange(item.frame_count) / item.fps, atol=1e-6)
        for image, t in zip(images, times, strict=True):
            share = _body_share(image, traits)
            if item.visible_start - 1e-6 <= t < item.visible_end - 1e-6:
                assert share > 0.003, (item.id, t)  # at least a dozen body pixels, even half hidden by leaves
            else:
                assert share < 0.001, (item.id, t)  # compression leaves no bird colour behind


def test_calls_are_heard_at_their_times_and_only_noise_elsewhere(world: World) -> None:
    for item in world.videos:
        x = read_video_audio(world.path(item), 16000)
        assert len(x) == round(item.duration_s * 16000)
        t = np.arange(len(x)) / 16000
        calls = np.zeros(len(x), bool)
        for a, b in zip(item.call_onsets, item.call_offsets, strict=True):
            calls |= (t >= a) & (t < b)
        hidden = (t < item.visible_start) | (t >= item.visible_end)
        assert np.mean(x[calls] ** 2) > 1.5 * np.mean(x[hidden] ** 2), item.id  # SNR >= 0 dB, after AAC


def test_world_with_videos_round_trips_and_loads_as_a_dataset(world: World) -> None:
    loaded = World.load(world.root)
    assert loaded.config == SMALL and loaded.videos == world.videos
    assert len(loaded.video_items("test")) == 4
    dataset = load_dataset(world.root)
    assert [(v.id, v.species, v.split, v.fps, v.frame_count, v.duration_s) for v in dataset.videos] == [
        (v.id, v.species, v.split, v.fps, v.frame_count, v.duration_s) for v in world.videos
    ]
    for video, item in zip(dataset.videos, world.videos, strict=True):
        assert Path(video.path).resolve() == world.path(item).resolve()
        assert video.target_second == item.target_second and video.reliable_audio is True
        assert float(video.meta["visible_start"]) == item.visible_start
        assert float(video.meta["visible_end"]) == item.visible_end
        assert tuple(float(v) for v in video.meta["call_onsets"].split()) == item.call_onsets


def test_videos_are_deterministic_and_redressed_by_the_visual_seed(world: World, tmp_path: Path) -> None:
    again = generate_world(tmp_path / "again", SMALL, workers=2)
    assert _files(again.root) == _files(world.root)
    redressed = generate_world(tmp_path / "redressed", dataclasses.replace(SMALL, visual_seed=11))
    old, new = _files(world.root), _files(redressed.root)
    assert old["videos.csv"] == new["videos.csv"]  # same timing and calls
    assert all(old[p] != new[p] for p in old if p.startswith("videos/"))
    assert all(old[p] == new[p] for p in old if p.startswith("audio"))


def test_no_videos_by_default(tmp_path: Path) -> None:
    assert WorldConfig().videos_per_species == 0
    small = dataclasses.replace(SMALL, videos_per_species=0)
    plain = generate_world(tmp_path / "plain", small)
    assert not plain.videos and not (plain.root / "videos.csv").exists() and not (plain.root / "videos").exists()
    assert "videos" not in yaml.safe_load((plain.root / "dataset.yaml").read_text())
    assert "video_fps" not in (plain.root / "world.json").read_text()
    assert load_dataset(plain.root).videos == []
    for bad in ({"video_fps": 0.5}, {"video_visible": (0.0, 0.3)}, {"video_visible": (0.5, 0.3)},
                {"video_s": (6.0, 4.0)}, {"video_s": (1.0, 2.0)}, {"videos_per_species": -1}):
        with pytest.raises(ValueError):
            dataclasses.replace(SMALL, **bad)


def test_mpeg4_fallback_writes_a_readable_video(tmp_path: Path) -> None:
    frames = [flat((30 + 20 * i, 90, 160), (64, 64)) for i in range(8)]
    path = tmp_path / "fallback.mp4"
    write_mp4(path, frames, 4.0, np.zeros(16000, np.float32), 16000, video_codec="mpeg4")
    info = video_info(path)
    assert info.frame_count == 8 and info.fps == pytest.approx(4.0) and info.has_audio
    images, _ = sample_frames(path, 4)
    assert [round(float(np.asarray(im)[..., 0].mean())) for im in images] == pytest.approx(
        [30 + 20 * i for i in range(8)], abs=6)
