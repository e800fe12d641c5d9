"""Reading videos with PyAV (ffmpeg): container facts, frames sampled by timestamp, the sound track.

Times are seconds from the start of the video (the earliest start of its streams), taken from the
frames' presentation timestamps (PTS), never from frame indices, so variable-frame-rate videos are
sampled correctly. Sample ``k / sample_rate`` of :func:`read_video_audio` is on the same clock.

Decoding streams: :func:`sample_frames` holds one decoded frame besides the frames it keeps, and
:func:`iter_video_audio` one block of sound. Every failure is a :class:`VideoError` naming the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import soxr
from PIL import Image

from birdbridge.audio.io import RESAMPLE_QUALITY
from birdbridge.errors import InputError
from birdbridge.utils.input_files import check_input_file, looks_like_text, read_head

__all__ = [
    "VFR_TOLERANCE",
    "VIDEO_EXTENSIONS",
    "VideoError",
    "VideoInfo",
    "check_fps",
    "check_video_file",
    "iter_frames",
    "iter_video_audio",
    "read_video_audio",
    "sample_frames",
    "video_info",
]

PathLike = str | os.PathLike[str]

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ogv", ".3gp", ".ts", ".mts"}
)
"""File name extensions (lowercase, with the dot) of common video files."""

VFR_TOLERANCE = 0.1
"""A frame interval differing from the median interval by more than this fraction (and by more than
1.5 ticks of the stream's time base, to ignore timestamp rounding) marks a variable frame rate. With
fewer than three frames, a container whose nominal and average rates differ by more than 2% does."""
_RATE_TOLERANCE = 0.02
_TIE_S = 1e-9  # frames this close to equally near a sample time are a tie (the earlier wins)
_AV_TIME_BASE = 1_000_000  # container.duration and container.start_time are in microseconds
_AUDIO_BLOCK_S = 10.0  # about this much sound per block of iter_video_audio
_STILL_FORMATS = ("image2", "tty")  # and every "*_pipe" demuxer (png_pipe, jpeg_pipe, ...)
_HINT_REENCODE = "check that the file is a complete video; re-download or re-copy it, or re-encode it as MP4 (H.264)"


class VideoError(InputError):
    """A video file that cannot be read, or that lacks what was asked of it (frames, sound)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds (see :func:`video_info`). ``fps`` is the average rate over the frames' timestamps."""

    path: Path
    duration_s: float
    fps: float | None
    frame_count: int | None
    width: int
    height: int
    has_audio: bool
    audio_rate: int | None
    audio_channels: int | None
    variable_frame_rate: bool
    container: str
    min_interval_s: float | None = None  # shortest and longest gap between consecutive frames
    max_interval_s: float | None = None

    @property
    def warning(self) -> str | None:
        """A line to show the user about the video (a variable frame rate), or None."""
        if not self.variable_frame_rate:
            return None
        gaps = ""
        if self.min_interval_s is not None and self.max_interval_s is not None:
            gaps = f", frame intervals {1000 * self.min_interval_s:.1f}-{1000 * self.max_interval_s:.1f} ms"
        rate = f" (average {self.fps:.3f} fps{gaps})" if self.fps else ""
        return (
            f"{self.path}: variable frame rate{rate}; frames are sampled by their timestamps, "
            "so sampled frames are not evenly spaced"
        )


# ---------------------------------------------------------------------------------------------------
# Opening


def check_video_file(path: PathLike) -> Path:
    """``path`` as a Path after checking it is an existing, non-empty, readable file (else VideoError)."""
    return check_input_file(path, VideoError, kind="a video file", noun="video", folder_hint="give the video files")


def _ffmpeg_message(error: BaseException) -> str:
    message = getattr(error, "strerror", None) or str(error)
    return str(message).strip().rstrip(".")


def _open_error(path: Path, error: BaseException) -> VideoError:
    head = read_head(path)
    ffmpeg = _ffmpeg_message(error)
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return VideoError(
            path,
            f"is an MP4/QuickTime file that cannot be read (ffmpeg: {ffmpeg}); it is probably truncated or damaged",
            "the download or copy was probably incomplete; get the file again",
        )
    if looks_like_text(head):
        return VideoError(path, "is a text file, not a video", "give a video file such as MP4")
    return VideoError(path, f"is not a readable video file (ffmpeg: {ffmpeg})", _HINT_REENCODE)


@contextmanager
def _open(path: Path) -> Iterator[Any]:
    """An input container; opening errors become VideoErrors naming ``path``."""
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except av.FFmpegError as e:
        raise _open_error(path, e) from e
    except (OSError, UnicodeDecodeError) as e:  # pragma: no cover - checked by check_video_file first
        raise VideoError(path, f"cannot be opened ({e})", _HINT_REENCODE) from e
    try:
        yield container
    finally:
        container.close()


def _is_still(container: Any) -> bool:
    """ffmpeg opens pictures (and text, as ANSI art) as one-frame videos; they are not videos here."""
    name = container.format.name
    return name in _STILL_FORMATS or name.endswith("_pipe")


def _video_stream(path: Path, container: Any) -> Any:
    """The first video stream that is not cover art; VideoError if there is none."""
    if _is_still(container):
        raise VideoError(
            path, f"is a still image ({container.format.name}), not a video", "give a video file such as MP4"
        )
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    if not container.streams.audio:  # e.g. an MP4 cut before its index: only a stray data stream is left
        raise VideoError(
            path, "holds no readable video or audio stream; it is probably truncated or damaged",
            "the download or copy was probably incomplete; get the file again",
        )
    audio = [s.codec_context.name for s in container.streams.audio]
    what = f" (only sound: {', '.join(audio)})" if audio else ""
    raise VideoError(
        path, f"has no video stream{what}", "give a video file; sound-only files go to the audio commands"
    )


def _audio_stream(path: Path, container: Any) -> Any:
    if not container.streams.audio:
        raise VideoError(
            path, "has no audio track (a video without sound)", "use videos with sound, or leave this one out"
        )
    return container.streams.audio[0]


def _origin(container: Any) -> float:
    """Seconds of the container's start on the streams' clocks (0 for most files)."""
    start = container.start_time
    return start / _AV_TIME_BASE if start is not None else 0.0


def _stream_end(stream: Any, origin: float) -> float | None:
    """End of a stream in seconds from the video's start, if its header says."""
    if stream.duration is None or stream.time_base is None:
        return None
    start = stream.start_time if stream.start_time is not None else 0
    return float((start + stream.duration) * stream.time_base) - origin


# ---------------------------------------------------------------------------------------------------
# Facts


def _frame_rate_facts(times: np.ndarray, tick: float) -> tuple[float | None, bool, float | None, float | None]:
    """(average fps, variable?, shortest, longest interval) of sorted frame times."""
    if len(times) < 2:
        return None, False, None, None
    gaps = np.diff(times)
    span = float(times[-1] - times[0])
    fps = (len(times) - 1) / span if span > 0 else None
    median = float(np.median(gaps))
    allowed = max(VFR_TOLERANCE * median, 1.5 * tick)
    variable = bool(np.any(np.abs(gaps - median) > allowed))
    return fps, variable, float(gaps.min()), float(gaps.max())


def video_info(path: PathLike) -> VideoInfo:
    """Read a video's facts; the packets of its video stream are read (not decoded) to time every frame.

    ``frame_count`` and ``fps`` come from the packets' timestamps; ``variable_frame_rate`` is set when the
    frame intervals are not constant within :data:`VFR_TOLERANCE` (see there); :attr:`VideoInfo.warning`
    then gives a line to show.

    Raises:
        VideoError: missing, empty or non-video file, a still image, no video stream, or a corrupt or
            truncated container (fewer packets than its index lists, or a read error).
    """
    p = check_video_file(path)
    with _open(p) as container:
        stream = _video_stream(p, container)
        origin = _origin(container)
        tb = stream.time_base or Fraction(1, _AV_TIME_BASE)
        pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is not None:
                    pts.append(stamp)
                else:  # pragma: no cover - streams without any timestamps are rare
                    pts.append(pts[-1] + 1 if pts else 0)
        except av.FFmpegError as e:
            raise VideoError(
                p, f"cannot be read after {len(pts)} frames (ffmpeg: {_ffmpeg_message(e)}); it is probably damaged",
                _HINT_REENCODE,
            ) from e
        listed = stream.frames or 0
        if not pts:
            raise VideoError(p, "holds no video frames", _HINT_REENCODE)
        if listed and len(pts) < listed:
            raise VideoError(
                p, f"is truncated: its index lists {listed} video frames but only {len(pts)} can be read",
                "the download or copy was probably incomplete; get the file again",
            )
        times = np.sort(np.array(pts, dtype=np.float64)) * float(tb) - origin
        fps, variable, shortest, longest = _frame_rate_facts(times, float(tb))
        nominal, average = stream.base_rate, stream.average_rate
        if len(times) < 3 and nominal and average and abs(float(nominal) / float(average) - 1) > _RATE_TOLERANCE:
            variable = True  # too few frames to judge by their intervals: trust the container's rates
        if fps is None and average:
            fps = float(average)
        if container.duration is not None:
            duration = container.duration / _AV_TIME_BASE
        else:  # pragma: no cover - every demuxer we read gives a duration
            end = _stream_end(stream, origin)
            duration = end if end is not None else float(times[-1]) + (1.0 / fps if fps else 0.0)
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=p,
            duration_s=float(duration),
            fps=fps,
            frame_count=len(pts),
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            has_audio=audio is not None,
            audio_rate=int(audio.codec_context.sample_rate) if audio is not None else None,
            audio_channels=int(audio.codec_context.layout.nb_channels) if audio is not None else None,
            variable_frame_rate=variable,
            container=container.format.name,
            min_interval_s=shortest,
            max_interval_s=longest,
        )


# ---------------------------------------------------------------------------------------------------
# Frames


def check_fps(path: PathLike, fps: float) -> float:
    """``fps`` as a float after checking it is a finite rate above 0 (else VideoError naming ``path``)."""
    try:
        rate = float(fps)
    except (TypeError, ValueError):
        rate = float("nan")
    if isinstance(fps, bool) or not (math.isfinite(rate) and rate > 0):
        raise VideoError(path, f"invalid sampling rate {fps!r} frames per second", "give a rate above 0")
    return rate


def iter_frames(path: PathLike, fps: float, *, max_frames: int | None = None) -> Iterator[tuple[float, Image.Image]]:
    """Yield ``(time_s, RGB image)`` for the frames :func:`sample_frames` picks, decoding as it goes.

    The file is opened on the first ``next()``; arguments are checked at once.
    """
    p = check_video_file(path)
    rate = check_fps(p, fps)
    if max_frames is not None and max_frames < 1:
        raise VideoError(p, f"invalid max_frames {max_frames!r}", "give 1 or more, or None")
    return _sampled(p, rate, max_frames)


def _sampled(path: Path, rate: float, max_frames: int | None) -> Iterator[tuple[float, Image.Image]]:
    """Nearest decoded frame to each time k / rate (k = 0, 1, ...) before the video's end, each frame once.

    Frames arrive in presentation order; a target is settled as soon as a frame at or after it is seen,
    by comparing that frame with the one before it (ties go to the earlier frame).
    """
    with _open(path) as container:
        stream = _video_stream(path, container)
        stream.thread_type = "AUTO"
        origin = _origin(container)
        end = _stream_end(stream, origin)
        if end is None and container.duration is not None:
            end = container.duration / _AV_TIME_BASE
        k = 0  # index of the next sample time
        emitted = 0
        last_time: float | None = None  # time of the last frame yielded
        prev: tuple[float, Any] | None = None
        decoded = 0
        fallback = float(stream.average_rate or 25)

        def take(time: float, frame: Any) -> tuple[float, Image.Image] | None:
            nonlocal last_time, emitted
            if last_time is not None and time == last_time:
                return None
            last_time, emitted = time, emitted + 1
            return time, frame.to_image()

        try:
            for frame in container.decode(stream):
                decoded += 1
                time = (frame.time - origin) if frame.time is not None else (decoded - 1) / fallback
                while k / rate <= time and (end is None or k / rate < end):
                    target = k / rate
                    k += 1
                    earlier = prev is not None and target - prev[0] <= time - target + _TIE_S
                    pick = prev if earlier else (time, frame)
                    out = take(*pick)
                    if out is not None:
                        yield out
                        if max_frames is not None and emitted >= max_frames:
                            return
                prev = (time, frame)
        except av.FFmpegError as e:
            where = f"{prev[0]:.3f} s" if prev is not None else "the start"
            raise VideoError(
                path, f"cannot be decoded after {where} (ffmpeg: {_ffmpeg_message(e)}); it is probably truncated "
                "or damaged", _HINT_REENCODE,
            ) from e
        if prev is None:
            raise VideoError(path, "holds no decodable video frames", _HINT_REENCODE)
        listed = stream.frames or 0
        if listed and decoded < listed:
            raise VideoError(
                path, f"is truncated: decoding stopped after {decoded} of the {listed} frames its index lists "
                f"(at {prev[0]:.3f} s)", "the download or copy was probably incomplete; get the file again",
            )
        if end is None or k / rate < end:  # sample times after the last frame: the last frame
            out = take(*prev)
            if out is not None:
                yield out


def sample_frames(
    path: PathLike, fps: float, *, max_frames: int | None = None
) -> tuple[list[Image.Image], np.ndarray]:
    """Frames at ``fps``: for each time ``k / fps`` before the video's end, the decoded frame nearest to it.

    Returns the RGB images in time order and their timestamps (float64 seconds from the video's start,
    from the frames' PTS, so right for variable frame rates). A frame is returned once even when it is
    the nearest to several sample times (sampling faster than the video gives each frame once). Only
    the sampled frames are kept in memory. ``max_frames`` stops after that many.

    Raises:
        VideoError: as :func:`video_info`, an invalid ``fps``, or a decoding error (naming the time).
    """
    images: list[Image.Image] = []
    times: list[float] = []
    for time, image in iter_frames(path, fps, max_frames=max_frames):
        times.append(time)
        images.append(image)
    return images, np.asarray(times, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------
# Sound


def _check_rate(path: PathLike, sample_rate: int) -> None:
    if not isinstance(sample_rate, int | np.integer) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise VideoError(path, f"invalid target sample rate {sample_rate!r}", "give a whole number of Hz")


def iter_video_audio(path: PathLike, sample_rate: int) -> Iterator[np.ndarray]:
    """Decode a video's first audio track block by block: float32 mono (mean of channels) at ``sample_rate``.

    Sample ``i`` of the concatenated blocks is at ``i / sample_rate`` seconds on the video's clock (a track
    starting late is preceded by silence; encoder padding after the track's stated end is dropped).
    Resampling is soxr's streaming resampler, whose output equals one-shot ``soxr.resample``.
    Arguments are checked at once; the file is opened on the first ``next()``.

    Raises:
        VideoError: as :func:`video_info` for the container; no audio track; an audio track that cannot
            be decoded or holds no samples; NaN or infinite samples.
    """
    p = check_video_file(path)
    _check_rate(p, sample_rate)
    return _audio_blocks(p, int(sample_rate))


def _audio_blocks(path: Path, sample_rate: int) -> Iterator[np.ndarray]:
    with _open(path) as container:
        stream = _audio_stream(path, container)
        origin = _origin(container)
        end = _stream_end(stream, origin)
        rate: int | None = None
        limit: int | None = None  # input samples up to the track's stated end
        position = 0  # input samples produced so far (including leading silence)
        resampler: Any = None
        converter: Any = None
        pending: list[np.ndarray] = []
        pending_n = 0

        def flush(last: bool) -> np.ndarray:
            nonlocal pending, pending_n
            x = np.concatenate(pending) if pending else np.zeros(0, np.float32)
            pending, pending_n = [], 0
            if rate == sample_rate:
                return x
            return resampler.resample_chunk(x, last=last)

        def add(converted: Any) -> None:
            nonlocal position, pending_n
            data = converted.to_ndarray()
            mono = data[0].astype(np.float32, copy=True) if data.shape[0] == 1 else data.mean(axis=0, dtype=np.float32)
            if limit is not None:
                mono = mono[: max(0, limit - position)]
            _check_finite(path, mono, position, rate)
            position += len(mono)
            pending.append(mono)
            pending_n += len(mono)

        try:
            for frame in container.decode(stream):
                if rate is None:
                    rate = int(frame.sample_rate)
                    converter = av.AudioResampler(format="fltp", rate=rate)
                    if rate != sample_rate:
                        resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)
                    limit = round(end * rate) if end is not None else None
                    lead = round((frame.time - origin) * rate) if frame.time is not None else 0
                    if lead > 0:  # the sound starts after the video: silence until then
                        pending.append(np.zeros(lead, np.float32))
                        pending_n, position = lead, lead
                for converted in converter.resample(frame):
                    add(converted)
                if pending_n >= _AUDIO_BLOCK_S * rate:
                    out = flush(last=False)
                    if out.size:
                        yield out
            if converter is not None:
                for converted in converter.resample(None):
                    add(converted)
        except av.FFmpegError as e:
            at = position / rate if rate else 0.0
            raise VideoError(
                path, f"its audio track cannot be decoded after {at:.3f} s (ffmpeg: {_ffmpeg_message(e)})",
                "the sound is damaged; re-encode the video or leave it out",
            ) from e
        if rate is None or position == 0:
            raise VideoError(path, "its audio track holds no samples", "use videos with sound, or leave this one out")
        out = flush(last=True)
        if out.size:
            yield out


def _check_finite(path: Path, x: np.ndarray, position: int, rate: int) -> None:
    finite = np.isfinite(x)
    if finite.all():
        return
    bad = int(np.flatnonzero(~finite)[0])
    kind = "NaN" if np.isnan(x[bad]) else "infinite"
    raise VideoError(
        path,
        f"its audio track holds {kind} samples, the first at {(position + bad) / rate:.3f} s",
        "the floating-point sound is damaged; re-encode the video's sound, e.g. as AAC or 16-bit PCM",
    )


def read_video_audio(path: PathLike, sample_rate: int) -> np.ndarray:
    """A video's sound as float32 mono at ``sample_rate`` (see :func:`iter_video_audio`), whole in memory.

    Raises:
        VideoError: "has no audio track (a video without sound)", a broken audio track, NaN/Inf samples.
    """
    blocks = list(iter_video_audio(path, sample_rate))
    x = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    if x.size == 0:
        raise VideoError(path, "its audio track is too short to resample", "use a longer video")
    return np.ascontiguousarray(x, dtype=np.float32)
