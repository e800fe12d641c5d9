"""Video decoding with PyAV: container facts, frames sampled by timestamp, the sound track, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from birdbridge.errors import InputError
from birdbridge.video import (
    VideoError,
    iter_frames,
    iter_video_audio,
    read_video_audio,
    sample_frames,
    video_info,
)
from video_fixtures import corrupt_audio, flat, frame_index, tone_burst, write_video

MP4 = "mov,mp4,m4a,3gp,3g2,mj2"
# uneven gaps (seconds): 100, 50, 200, 100, 300, 50 ms, ...
VFR_TIMES = np.cumsum([0.0, 0.1, 0.05, 0.2, 0.1, 0.3, 0.05, 0.15, 0.1, 0.25, 0.05, 0.2, 0.1, 0.15, 0.05]).round(4)


def _nearest(frame_times: np.ndarray, fps: float, end: float) -> list[float]:
    """Reference: for each k / fps < end the nearest frame time (ties to the earlier), each frame once."""
    out: list[float] = []
    k = 0
    while k / fps < end - 1e-9:
        d = np.abs(frame_times - k / fps)
        t = float(frame_times[int(np.flatnonzero(d <= d.min() + 1e-9)[0])])
        if not out or out[-1] != t:
            out.append(t)
        k += 1
    return out


@pytest.fixture(scope="module")
def cfr(tmp_path_factory) -> Path:
    """3 s at 10 fps, 64 x 48, stereo sound at 22.05 kHz: a 1 kHz burst from 1.0 to 1.4 s, louder on the left."""
    sr = 22_050
    left = tone_burst(3.0, sr, 1.0, 1.4, amp=0.6)
    audio = np.stack([left, left / 3], axis=1)  # mean: 0.4 amplitude
    return write_video(tmp_path_factory.mktemp("video") / "cfr.mp4", 30, 10, audio=audio, sample_rate=sr)


@pytest.fixture(scope="module")
def vfr(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "vfr.mp4", times=list(VFR_TIMES))


# ------------------------------------------------------------------------------------------- facts


def test_info_of_a_constant_rate_video(cfr: Path) -> None:
    info = video_info(cfr)
    assert info.path == cfr and info.container == MP4
    assert info.frame_count == 30 and info.fps == pytest.approx(10.0)
    assert (info.width, info.height) == (64, 48)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.has_audio and info.audio_rate == 22_050 and info.audio_channels == 2
    assert not info.variable_frame_rate and info.warning is None
    assert info.min_interval_s == pytest.approx(0.1) == info.max_interval_s


def test_info_reports_a_variable_frame_rate(vfr: Path) -> None:
    info = video_info(vfr)
    assert info.variable_frame_rate and info.frame_count == len(VFR_TIMES) and not info.has_audio
    assert info.fps == pytest.approx((len(VFR_TIMES) - 1) / VFR_TIMES[-1], rel=1e-3)
    assert info.min_interval_s == pytest.approx(0.05, abs=1e-3) and info.max_interval_s == pytest.approx(0.3, abs=1e-3)
    assert str(vfr) in info.warning and "variable frame rate" in info.warning and "50.0-300.0 ms" in info.warning


def test_timestamp_jitter_within_tolerance_is_constant_rate(tmp_path: Path) -> None:
    jitter = np.random.default_rng(0).uniform(-0.002, 0.002, 20)  # +-2 ms on 100 ms intervals
    path = write_video(tmp_path / "jitter.mp4", times=list(np.arange(20) * 0.1 + jitter + 0.002))
    info = video_info(path)
    assert not info.variable_frame_rate and info.frame_count == 20


# ------------------------------------------------------------------------------------------- frames


@pytest.mark.parametrize("fps", [2.0, 3.0, 10.0, 50.0])
def test_sampled_frames_are_the_nearest_by_timestamp(cfr: Path, fps: float) -> None:
    images, times = sample_frames(cfr, fps)
    all_times = np.arange(30) / 10
    assert times.dtype == np.float64 and len(images) == len(times)
    np.testing.assert_allclose(times, _nearest(all_times, fps, 3.0), atol=1e-6)
    assert [frame_index(im) for im in images] == [round(t * 10) for t in times]
    assert all(im.mode == "RGB" and im.size == (64, 48) for im in images)
    if fps >= 10:
        assert len(images) == 30  # every frame once, never repeated


def test_sample_times_and_max_frames(cfr: Path) -> None:
    _, times = sample_frames(cfr, 2)
    np.testing.assert_allclose(times, [0, 0.5, 1, 1.5, 2, 2.5], atol=1e-6)
    images, times = sample_frames(cfr, 10, max_frames=4)
    np.testing.assert_allclose(times, [0, 0.1, 0.2, 0.3], atol=1e-6)
    assert [frame_index(im) for im in images] == [0, 1, 2, 3]
    lazy = iter_frames(cfr, 1)
    assert next(lazy)[0] == 0.0
    lazy.close()


def test_variable_frame_rate_is_sampled_by_timestamp(vfr: Path) -> None:
    end = video_info(vfr).duration_s
    for fps in (1.0, 4.0, 7.0):
        images, times = sample_frames(vfr, fps)
        np.testing.assert_allclose(times, _nearest(VFR_TIMES, fps, end), atol=1e-4)
        assert [frame_index(im) for im in images] == [int(np.argmin(np.abs(VFR_TIMES - t))) for t in times]


def test_a_coloured_frame_is_sampled_at_its_time(tmp_path: Path) -> None:
    red = (200, 30, 30)
    cfr = write_video(tmp_path / "red.mp4", 30, 10, frame=lambda i: flat(red if i == 12 else (90, 90, 90)))
    images, times = sample_frames(cfr, 5)
    reds = [t for im, t in zip(images, times, strict=True) if _is_colour(im, red)]
    assert reds == [pytest.approx(1.2)]
    # variable rate: the red frame is the one at 0.75 s (index 5); sampling at 4 fps targets 0.75 s
    vfr = write_video(tmp_path / "red_vfr.mp4", times=list(VFR_TIMES),
                      frame=lambda i: flat(red if i == 5 else (90, 90, 90)))
    assert VFR_TIMES[5] == pytest.approx(0.75)
    images, times = sample_frames(vfr, 4)
    reds = [t for im, t in zip(images, times, strict=True) if _is_colour(im, red)]
    assert reds == [pytest.approx(0.75, abs=1e-4)]


def _is_colour(image: Image.Image, rgb: tuple[int, int, int]) -> bool:
    return bool(np.abs(np.asarray(image, dtype=float).mean(axis=(0, 1)) - rgb).max() < 12)


def test_mpeg4_and_matroska_decode_too(tmp_path: Path) -> None:
    path = write_video(tmp_path / "m.mkv", 20, 8, video_codec="mpeg4", container_format="matroska")
    info = video_info(path)
    assert info.container == "matroska,webm" and info.frame_count == 20 and info.fps == pytest.approx(8.0)
    images, times = sample_frames(path, 2)
    np.testing.assert_allclose(times, [0, 0.5, 1, 1.5, 2], atol=2e-3)  # Matroska stores milliseconds
    assert [frame_index(im) for im in images] == [0, 4, 8, 12, 16]


# ------------------------------------------------------------------------------------------- sound


def test_sound_is_mono_mean_resampled_and_aligned(cfr: Path) -> None:
    x = read_video_audio(cfr, 16_000)
    assert x.dtype == np.float32 and x.ndim == 1
    assert len(x) == 48_000  # the track's stated 3 s, without the encoder's padding
    t = np.arange(len(x)) / 16_000
    inside, outside = (t >= 1.02) & (t < 1.38), (t < 0.95) | (t > 1.45)
    rms = float(np.sqrt(np.mean(x[inside] ** 2)))
    assert rms == pytest.approx(0.4 / np.sqrt(2), rel=0.05)  # mean of 0.6 and 0.2 amplitude channels
    assert np.sqrt(np.mean(x[outside] ** 2)) < 0.01 * rms
    onset = np.flatnonzero(np.abs(x) > 0.2)[0] / 16_000
    assert onset == pytest.approx(1.0, abs=0.005)
    native = read_video_audio(cfr, 22_050)
    assert len(native) == 66_150
    blocks = list(iter_video_audio(cfr, 16_000))
    np.testing.assert_array_equal(np.concatenate(blocks), x)


def test_float_pcm_sound_is_read_exactly(tmp_path: Path) -> None:
    x = tone_burst(1.0, 8000, 0.2, 0.6, amp=0.25)
    path = write_video(tmp_path / "pcm.mov", 8, 8, audio=x, sample_rate=8000, audio_codec="pcm_f32le",
                       audio_format="flt", video_codec="mpeg4")
    np.testing.assert_array_equal(read_video_audio(path, 8000), x)


# ------------------------------------------------------------------------------------------- bad input


def _truncated(tmp_path: Path, faststart: bool) -> Path:
    whole = write_video(tmp_path / f"whole{int(faststart)}.mp4", 30, 10, faststart=faststart)
    data = whole.read_bytes()
    path = tmp_path / f"truncated{int(faststart)}.mp4"
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


def _bad(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A bad input and (part of) the problem its VideoError must state."""
    if kind == "missing":
        return tmp_path / "nope.mp4", "file not found"
    if kind == "folder":
        (tmp_path / "clips").mkdir()
        return tmp_path / "clips", "is a folder"
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "is empty"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(20_000))
        return path, "not a readable video"
    if kind == "text":
        path.write_text("this is a list of birds, not a video\n" * 20)
        return path, "text file"
    if kind == "image":
        flat((10, 200, 10)).save(path, format="PNG")
        return path, "still image"
    if kind == "truncated":
        return _truncated(tmp_path, faststart=False), "probably truncated"
    if kind == "truncated_faststart":
        return _truncated(tmp_path, faststart=True), "truncated"
    if kind == "sound_only":
        sound = write_video(path, audio=tone_burst(1.0, 16_000, 0.1, 0.5), video=False)
        return sound, "no video stream (only sound: aac)"
    raise AssertionError(kind)


BAD = ["missing", "folder", "empty", "random", "text", "image", "truncated", "truncated_faststart", "sound_only"]


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("reader", ["info", "frames"])
def test_bad_videos_raise_errors_naming_the_file(tmp_path: Path, kind: str, reader: str) -> None:
    path, problem = _bad(kind, tmp_path)
    with pytest.raises(VideoError) as caught:
        video_info(path) if reader == "info" else sample_frames(path, 2)
    error = caught.value
    assert isinstance(error, InputError) and error.source == str(path)
    assert str(error).startswith(f"{path}: ") and problem in str(error), str(error)


def test_sound_errors_name_the_file(tmp_path: Path, cfr: Path) -> None:
    silent = write_video(tmp_path / "silent.mp4", 10, 10)
    with pytest.raises(VideoError, match=r"silent\.mp4: has no audio track \(a video without sound\)"):
        read_video_audio(silent, 16_000)
    broken = corrupt_audio(cfr, tmp_path / "broken.mp4")
    assert video_info(broken).frame_count == 30  # the pictures are fine
    with pytest.raises(VideoError, match=r"broken\.mp4: its audio track cannot be decoded"):
        read_video_audio(broken, 16_000)
    x = tone_burst(1.0, 8000, 0.2, 0.6)
    x[5000] = np.nan
    nan = write_video(tmp_path / "nan.mov", 8, 8, audio=x, sample_rate=8000, audio_codec="pcm_f32le",
                      audio_format="flt", video_codec="mpeg4")
    with pytest.raises(VideoError, match=r"nan\.mov: its audio track holds NaN samples, the first at 0\.625 s"):
        read_video_audio(nan, 8000)
    with pytest.raises(VideoError, match="invalid target sample rate"):
        read_video_audio(cfr, 0)
    with pytest.raises(VideoError, match="file not found"):
        read_video_audio(tmp_path / "gone.mp4", 16_000)


@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf"), "x"])
def test_invalid_sampling_rates(cfr: Path, fps) -> None:
    with pytest.raises(VideoError, match="invalid sampling rate"):
        sample_frames(cfr, fps)
