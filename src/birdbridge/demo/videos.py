"""Synthetic bird videos with sound: the bird is in view for part of a clip and calls only while in view.

A clip keeps one :class:`~birdbridge.demo.pictures.Scene` throughout. One individual of the species is
drawn in the frames of a contiguous *visible interval* (a fraction of the clip), with a small pose
jitter per frame; every other frame shows the scene alone, with fresh sensor noise. The species' calls
(:func:`~birdbridge.demo.calls.synth_call` notes) all lie inside the visible interval; coloured
background noise at a random SNR covers the whole clip. So the sound at a time says whether the bird
is in the frames at that time, which is what frame selection (nearest frame, several frames) can use.

Clips are encoded as MP4 with PyAV: H.264 (``libx264``; ``mpeg4`` if the bundled ffmpeg lacks it),
yuv420p, and AAC mono sound. Frame ``i`` is shown from ``i / fps`` seconds; with the same generator
state the same bytes are written.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from birdbridge.demo.calls import coloured_noise, synth_call
from birdbridge.demo.pictures import Pose, draw_background, draw_bird, random_pose, random_scene
from birdbridge.demo.traits import AcousticTraits, VisualTraits

__all__ = [
    "AUDIO_CODECS",
    "VIDEO_CODECS",
    "VideoClip",
    "VideoItem",
    "available_codec",
    "render_clip",
    "write_clip",
    "write_mp4",
]

VIDEO_CODECS = ("libx264", "mpeg4")
"""Video encoders in order of preference; the first the bundled ffmpeg has is used."""
AUDIO_CODECS = ("aac", "libopus", "libmp3lame")
"""Audio encoders (all muxable into MP4) in order of preference."""
_VIDEO_OPTIONS = {"libx264": {"crf": "18", "preset": "fast", "threads": "1"}, "mpeg4": {"threads": "1"}}
_AUDIO_BITRATE = 64_000


@dataclass(frozen=True)
class VideoItem:
    """One demo video; ``path`` is relative to the world folder; times in seconds from its start."""

    id: str
    path: str
    species: str  # scientific name
    split: str
    fps: float
    frame_count: int
    duration_s: float
    visible_start: float  # the bird is drawn in the frames shown from visible_start to visible_end
    visible_end: float
    call_onsets: tuple[float, ...]
    call_offsets: tuple[float, ...]

    @property
    def target_second(self) -> float:
        """The middle of the visible interval (SSW60's "when the bird is shown")."""
        return round((self.visible_start + self.visible_end) / 2, 4)


@dataclass(frozen=True, eq=False)
class VideoClip:
    """Frames and sound of one clip; frames ``visible[0]`` to ``visible[1] - 1`` show the bird."""

    frames: list[Image.Image]
    audio: np.ndarray  # float32 mono, peak below 1
    fps: float
    sample_rate: int
    visible: tuple[int, int]
    call_onsets: tuple[float, ...]
    call_offsets: tuple[float, ...]
    snr_db: float

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps

    @property
    def visible_start(self) -> float:
        return self.visible[0] / self.fps

    @property
    def visible_end(self) -> float:
        return self.visible[1] / self.fps


@functools.cache
def available_codec(candidates: tuple[str, ...]) -> str:
    """The first encoder of ``candidates`` that the bundled ffmpeg has."""
    for name in candidates:
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.codec.codec.UnknownCodecError, ValueError):
            continue
    raise RuntimeError(f"none of the encoders {', '.join(candidates)} is in PyAV's ffmpeg")


def _jitter(pose: Pose, rng: np.random.Generator) -> Pose:
    """The same bird a moment later: it shifts, leans and moves its tail, head and wings a little."""
    return dataclasses.replace(
        pose,
        x=pose.x + rng.normal(0.0, 0.012),
        y=pose.y + rng.normal(0.0, 0.008),
        scale=pose.scale * (1.0 + rng.normal(0.0, 0.02)),
        angle_deg=pose.angle_deg + rng.normal(0.0, 2.0),
        tail_deg=pose.tail_deg + rng.normal(0.0, 4.0),
        head_shift=pose.head_shift + rng.normal(0.0, 0.08),
        wing_deg=pose.wing_deg + rng.normal(0.0, 5.0),
    )


def render_clip(
    visual: VisualTraits,
    acoustic: AcousticTraits,
    rng: np.random.Generator,
    *,
    size: int = 64,
    fps: float = 8.0,
    duration_s: tuple[float, float] = (4.0, 6.0),
    visible_fraction: tuple[float, float] = (0.2, 0.35),
    sample_rate: int = 16000,
    snr_db: tuple[float, float] = (0.0, 20.0),
    picture_rng: np.random.Generator | None = None,
) -> VideoClip:
    """One clip of a random individual: length uniform in ``duration_s`` (whole frames), the bird in view
    for a contiguous run of frames (fraction uniform in ``visible_fraction``, at least one frame) at a
    random place, its calls inside that run, background noise at an SNR uniform in ``snr_db`` (call
    power over noise power) everywhere.

    ``rng`` draws the timing and the sound; ``picture_rng`` (default ``rng``) the pictures, so a world's
    ``visual_seed`` re-dresses its videos without moving their calls.
    """
    n = max(2, round(rng.uniform(*duration_s) * fps))
    shown = min(n, max(1, round(rng.uniform(*visible_fraction) * n)))
    first = int(rng.integers(0, n - shown + 1))
    visible = (first, first + shown)
    # sound: calls inside the visible interval, noise over the whole clip
    sr = sample_rate
    total = round(n / fps * sr)
    start, stop = round(visible[0] / fps * sr), round(visible[1] / fps * sr)
    calls = synth_call(acoustic, rng, sr, (stop - start) / sr, snr_db=None, click_p=0.0, other_p=0.0)
    signal = np.zeros(total)
    signal[start : start + len(calls.audio)] = calls.audio[: total - start]
    spans = np.concatenate([np.arange(start + round(a * sr), min(total, start + round(b * sr)))
                            for a, b in zip(calls.onsets, calls.offsets, strict=True)])
    signal /= max(float(np.sqrt(np.mean(signal[spans] ** 2))), 1e-9)
    snr = float(rng.uniform(*snr_db))
    signal += coloured_noise(total, rng, sr, rng.uniform(1.0, 2.0)) * 10 ** (-snr / 20)
    signal *= rng.uniform(0.3, 0.9) / max(float(np.abs(signal).max()), 1e-9)
    onsets = tuple(round(start / sr + t, 4) for t in calls.onsets)
    offsets = tuple(round(start / sr + t, 4) for t in calls.offsets)
    # pictures: one scene, one individual, a jittered pose per visible frame
    rng = rng if picture_rng is None else picture_rng
    scene = random_scene(rng, size)
    bird = visual.individual(rng)
    pose = random_pose(rng)
    frames: list[Image.Image] = []
    for i in range(n):
        if visible[0] <= i < visible[1]:
            frames.append(draw_bird(bird, rng, size, scene=scene, pose=_jitter(pose, rng), variation=0.0))
        else:
            frames.append(draw_background(rng, size, scene=scene))
    return VideoClip(frames, signal.astype(np.float32), float(fps), sr, visible, onsets, offsets, snr)


def write_mp4(
    path: str | os.PathLike[str],
    frames: Sequence[Image.Image],
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    *,
    video_codec: str | None = None,
    audio_codec: str | None = None,
) -> None:
    """Encode RGB ``frames`` (frame ``i`` at ``i / fps`` s) and optional mono ``audio`` as an MP4 file.

    Codecs default to the first of :data:`VIDEO_CODECS` / :data:`AUDIO_CODECS` the bundled ffmpeg has.
    Encoding is single-threaded, so the bytes depend on the input only.
    """
    if not frames:
        raise ValueError("a video needs at least one frame")
    width, height = frames[0].size
    vcodec = video_codec or available_codec(VIDEO_CODECS)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(os.fspath(path), mode="w", format="mp4") as container:
        video = container.add_stream(vcodec, rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.thread_count = 1
        video.options = dict(_VIDEO_OPTIONS.get(vcodec, {"threads": "1"}))
        if vcodec == "mpeg4":
            video.bit_rate = 40 * width * height  # about 160 kbit/s at 64 x 64: no visible blocking
        sound = None
        if audio is not None:
            sound = container.add_stream(audio_codec or available_codec(AUDIO_CODECS), rate=sample_rate,
                                         layout="mono")
            sound.bit_rate = _AUDIO_BITRATE
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_image(image.convert("RGB"))
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            samples = np.ascontiguousarray(np.asarray(audio, dtype=np.float32)[None, :])
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, 0
            container.mux(sound.encode(frame))
            container.mux(sound.encode(None))


def write_clip(path: str | os.PathLike[str], clip: VideoClip) -> None:
    """:func:`write_mp4` of a rendered clip (the parent folder is created)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, clip.frames, clip.fps, clip.audio, clip.sample_rate)
