"""Cached teacher embeddings of sampled video frames, the batch job, and the cached sound track."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from birdbridge.audio.io import read_audio
from birdbridge.datasets import VideoItem
from birdbridge.models.loader import load_teacher
from birdbridge.utils.array_cache import cache_root
from birdbridge.video import (
    VideoError,
    frame_embeddings,
    read_video_audio,
    sample_frames,
    video_audio_cache,
    video_batch_embeddings,
)
from video_fixtures import flat, tone_burst, write_video


class CountingTeacher:
    """A teacher that counts the images it embeds; ``fingerprint`` can be changed to stand for new weights."""

    def __init__(self, teacher, fingerprint: str | None = None) -> None:
        self.teacher = teacher
        self.fingerprint = fingerprint or teacher.fingerprint
        self.embed_dim = teacher.embed_dim
        self.images = 0

    def preprocess(self, image):
        return self.teacher.preprocess(image)

    def encode_images(self, images, batch_size: int = 32):
        self.images += len(images)
        return self.teacher.encode_images(images, batch_size=batch_size)


@pytest.fixture(scope="module")
def teacher(tiny_clip):
    return load_teacher(tiny_clip, device="cpu")


def _colourful(i: int):
    rng = np.random.default_rng(i)
    return flat(tuple(int(v) for v in rng.integers(30, 220, 3)))


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    """2 s at 10 fps whose frames have different colours, with sound."""
    return write_video(tmp_path / "clip.mp4", 20, 10, frame=_colourful, audio=tone_burst(2.0, 16_000, 0.5, 1.0))


def test_frame_embeddings_match_the_teacher_and_are_cached(clip: Path, teacher) -> None:
    counting = CountingTeacher(teacher)
    first = frame_embeddings(clip, counting, 4, batch_size=3)
    images, times = sample_frames(clip, 4)
    assert counting.images == len(images) == len(first) == 8
    assert first.times.dtype == np.float32 and first.vectors.dtype == np.float32
    assert first.vectors.shape == (8, teacher.embed_dim) and first.dim == teacher.embed_dim
    np.testing.assert_allclose(first.times, times, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(first.vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first.vectors, teacher.encode_images(images).numpy(), atol=1e-5)
    again = frame_embeddings(clip, counting, 4)
    assert counting.images == 8  # from the cache: the teacher did not run
    np.testing.assert_array_equal(again.vectors, first.vectors)
    np.testing.assert_array_equal(again.times, first.times)
    assert len(list((cache_root() / "video_frames").glob("*.npy"))) >= 1


def test_a_new_teacher_rate_or_file_misses_the_cache(clip: Path, teacher) -> None:
    counting = CountingTeacher(teacher)
    frame_embeddings(clip, counting, 4)
    assert counting.images == 8
    retrained = CountingTeacher(teacher, fingerprint="other-weights")
    frame_embeddings(clip, retrained, 4)
    assert retrained.images == 8  # another teacher never gets the first one's frames
    frame_embeddings(clip, counting, 2)
    assert counting.images == 8 + 4  # another rate is another set of frames
    frame_embeddings(clip, counting, 4, cache=False)
    assert counting.images == 8 + 4 + 8
    write_video(clip, 10, 10, frame=_colourful)  # the video is replaced: 1 s now
    os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 10**9))
    replaced = frame_embeddings(clip, counting, 4)
    assert counting.images == 8 + 4 + 8 + 4 and len(replaced) == 4


def test_a_corrupt_cache_entry_is_recomputed(clip: Path, teacher) -> None:
    counting = CountingTeacher(teacher)
    first = frame_embeddings(clip, counting, 4)
    folder = cache_root() / "video_frames"
    for npy in folder.glob("*.npy"):
        npy.write_bytes(b"not an array")
    again = frame_embeddings(clip, counting, 4)
    assert counting.images == 16
    np.testing.assert_allclose(again.vectors, first.vectors, atol=1e-6)
    for meta in folder.glob("*.json"):  # frame times that do not fit the vectors
        meta.write_text(meta.read_text().replace('"times": [', '"times": [9.5, '))
    third = frame_embeddings(clip, counting, 4)
    assert counting.images == 24
    np.testing.assert_array_equal(third.times, first.times)
    assert frame_embeddings(clip, counting, 4).times.shape == (8,) and counting.images == 24


def test_batch_skips_bad_videos_and_keeps_the_rest(tmp_path: Path, clip: Path, teacher) -> None:
    other = write_video(tmp_path / "other.mp4", 15, 5, frame=_colourful)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(1).bytes(4000))
    sound_only = write_video(tmp_path / "sound.mp4", audio=tone_burst(1.0, 16_000, 0.1, 0.5), video=False)
    items = [
        VideoItem("a", clip, "Pica hudsonia", "train"),
        garbage,
        str(other),
        VideoItem("gone", tmp_path / "gone.mp4", "Pica hudsonia", "test"),
        sound_only,
    ]
    seen: list[tuple[int, int]] = []
    results, failures = video_batch_embeddings(items, teacher, 2, progress=lambda d, t: seen.append((d, t)))
    assert list(results) == ["a", str(other)]
    assert len(results["a"]) == 4 and len(results[str(other)]) == 6
    assert [f.source for f in failures] == [str(garbage), "gone", str(sound_only)]
    assert str(garbage) in failures[0].message and "not a readable video" in failures[0].message
    assert "gone.mp4: file not found" in failures[1].message
    assert "no video stream" in failures[2].message
    assert seen == [(i, 5) for i in range(1, 6)]


def test_sound_cache_holds_the_decoded_track(clip: Path, tmp_path: Path) -> None:
    path = video_audio_cache(clip, 16_000)
    assert path.parent == cache_root() / "video_audio" and path.suffix == ".wav"
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "FLOAT")
    np.testing.assert_array_equal(read_audio(path), read_video_audio(clip, 16_000))
    crop = read_audio(path, offset_s=0.5, duration_s=0.5)  # what a training loader does
    assert len(crop) == 8000 and np.sqrt(np.mean(crop**2)) > 0.3
    stamp = path.stat().st_mtime_ns
    assert video_audio_cache(clip, 16_000) == path and path.stat().st_mtime_ns == stamp  # not decoded again
    assert video_audio_cache(clip, 48_000) != path
    path.write_bytes(b"broken")
    assert video_audio_cache(clip, 16_000) == path and sf.info(path).frames == 32_000
    silent = write_video(tmp_path / "silent.mp4", 10, 10)
    with pytest.raises(VideoError, match=r"silent\.mp4: has no audio track \(a video without sound\)"):
        video_audio_cache(silent, 16_000)
    assert not list((cache_root() / "video_audio").glob(".*.tmp"))
