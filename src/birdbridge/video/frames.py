"""Teacher image embeddings of sampled video frames, and video sound tracks as WAV files, cached on disk.

Both caches live in ``$BIRDBRIDGE_CACHE`` (default ``~/.cache/birdbridge``) and are keyed by the video
file's resolved path, size and modification time (so an edited or replaced video is never served from
the cache) plus a format version; frame embeddings also by the teacher's weights fingerprint and the
sampling rate, the sound by its sample rate. Entries are written atomically; one that cannot be read
is recomputed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import soundfile as sf

from birdbridge.errors import Failure, InputError
from birdbridge.utils.array_cache import cache_root, cached_entry, identity_key
from birdbridge.utils.atomic import atomic_path, write_json
from birdbridge.utils.progress import progress_bar
from birdbridge.video.decode import check_fps, check_video_file, iter_frames, iter_video_audio, video_info

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from birdbridge.models.teacher import Teacher

__all__ = ["FORMAT_VERSION", "FrameEmbeddings", "frame_embeddings", "video_audio_cache", "video_batch_embeddings"]

FORMAT_VERSION = 2
"""Part of every cache key; raised when sampling or storage changes, so old entries are never reused."""

PathLike = str | os.PathLike[str]


class VideoSource(Protocol):
    """A video with an id, such as a :class:`~birdbridge.datasets.VideoItem`."""

    id: str
    path: Path


VideoInput = VideoSource | str | os.PathLike[str]
Progress = Callable[[int, int], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FrameEmbeddings:
    """Sampled frames of one video: ``times`` float32 [F] (seconds), ``vectors`` float32 [F, D] (unit rows),
    and a line to show about the video (a variable frame rate), if any."""

    times: np.ndarray
    vectors: np.ndarray
    warning: str | None = None

    def __len__(self) -> int:
        return len(self.times)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def _as_teacher(teacher: Teacher | PathLike) -> Teacher:
    if isinstance(teacher, str | os.PathLike):
        from birdbridge.models.loader import load_teacher

        return load_teacher(teacher)
    return teacher


def _file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"file": str(path.resolve()), "size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


def _batches(frames: Iterator[tuple[float, Image.Image]], teacher: Teacher, size: int) -> Iterator[
        tuple[list[float], torch.Tensor]]:
    import torch

    times: list[float] = []
    pixels: list[torch.Tensor] = []
    for time, image in frames:
        times.append(time)
        pixels.append(teacher.preprocess(image))
        if len(pixels) == size:
            yield times, torch.stack(pixels)
            times, pixels = [], []
    if pixels:
        yield times, torch.stack(pixels)


def _embed(path: Path, teacher: Teacher, fps: float, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(times, vectors) of the frames sampled at ``fps``, embedded a batch at a time as they are decoded."""
    times: list[float] = []
    vectors: list[np.ndarray] = []
    for batch_times, pixels in _batches(iter_frames(path, fps), teacher, batch_size):
        times += batch_times
        vectors.append(teacher.encode_images(pixels, batch_size=batch_size).numpy().astype(np.float32, copy=False))
    return np.asarray(times, dtype=np.float32), np.concatenate(vectors)


def _cached_times(meta: Mapping[str, Any], rows: int) -> np.ndarray | None:
    """The stored frame times if they fit the stored vectors (finite, non-decreasing, one per row)."""
    try:
        times = np.asarray(meta["times"], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        return None
    if times.shape != (rows,) or not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0):
        return None
    return times


def frame_embeddings(
    path: PathLike, teacher: Teacher | PathLike, fps: float, *, cache: bool = True, batch_size: int = 32
) -> FrameEmbeddings:
    """L2-normalised teacher image embeddings of the frames :func:`~birdbridge.video.sample_frames` picks.

    Computed once and cached in ``$BIRDBRIDGE_CACHE/video_frames/``, keyed by the teacher's fingerprint,
    ``fps``, the video's resolved path, size and modification time, and :data:`FORMAT_VERSION`. Frames
    are embedded ``batch_size`` at a time as they are decoded, so a long video needs little memory.
    ``teacher`` is a loaded :class:`~birdbridge.models.teacher.Teacher` or anything ``load_teacher`` takes.

    Raises:
        VideoError: the video cannot be read (see :func:`~birdbridge.video.video_info`) or ``fps`` is invalid.
    """
    p = check_video_file(path)
    rate = check_fps(p, fps)
    model = _as_teacher(teacher)
    identity = {"kind": "video_frames", "version": FORMAT_VERSION, "model_fingerprint": model.fingerprint,
                "fps": rate, **_file_identity(p)}
    folder = cache_root() / "video_frames" if cache else None

    def compute() -> tuple[np.ndarray, dict[str, Any]]:
        times, vectors = _embed(p, model, rate, max(1, int(batch_size)))
        return vectors, {"times": [float(t) for t in times], "warning": video_info(p).warning}

    vectors, meta = cached_entry(folder, identity, compute, what="video frame embedding")
    times = _cached_times(meta, len(vectors))
    if times is None:  # a damaged entry whose arrays passed the checks: drop it and compute again
        log.warning("video frame cache for %s has unusable frame times; recomputing", p)
        assert folder is not None  # a fresh computation always has matching times
        (folder / f"{identity_key(identity)}.json").unlink(missing_ok=True)
        vectors, meta = cached_entry(folder, identity, compute, what="video frame embedding")
        times = _cached_times(meta, len(vectors))
    return FrameEmbeddings(times=times, vectors=np.ascontiguousarray(vectors, dtype=np.float32),
                           warning=meta.get("warning"))


def _key(item: VideoInput) -> tuple[str, Path]:
    if isinstance(item, str | os.PathLike):
        return str(item), Path(item)
    return item.id, Path(item.path)


def video_batch_embeddings(
    items: Sequence[VideoInput],
    teacher: Teacher | PathLike,
    fps: float,
    *,
    progress: bool | Progress | None = None,
    cache: bool = True,
    batch_size: int = 32,
) -> tuple[dict[str, FrameEmbeddings], list[Failure]]:
    """:func:`frame_embeddings` of many videos; a video that cannot be read is skipped and reported.

    Results are keyed by the item's id (a :class:`~birdbridge.datasets.VideoItem`) or the path as given,
    in input order. Failures carry the same key and the error message (which names the file).
    ``progress`` is a bar switch (True, False, None = on a terminal for long work) or a callable
    ``progress(done, total)``.
    """
    model = _as_teacher(teacher)
    results: dict[str, FrameEmbeddings] = {}
    failures: list[Failure] = []
    total = len(items)
    show = None if callable(progress) else progress
    with progress_bar("Embedding video frames", total, show) as bar:
        for done, item in enumerate(items, start=1):
            key, path = _key(item)
            try:
                results[key] = frame_embeddings(path, model, fps, cache=cache, batch_size=batch_size)
            except InputError as exc:  # VideoError, or an invalid image inside the teacher's preprocessing
                failures.append(Failure(key, str(exc)))
            bar.advance()
            if callable(progress):
                progress(done, total)
    return results, failures


def video_audio_cache(path: PathLike, sample_rate: int) -> Path:
    """A float32 mono WAV of the video's sound at ``sample_rate``, decoded once into the cache.

    The file is ``$BIRDBRIDGE_CACHE/video_audio/<key>.wav`` (key: the video's resolved path, size and
    modification time, the rate and :data:`FORMAT_VERSION`), written atomically and streamed, so training
    loaders can read random crops with :func:`birdbridge.audio.io.read_audio`; its samples equal
    :func:`~birdbridge.video.read_video_audio`'s.

    Raises:
        VideoError: no audio track ("a video without sound"), a broken audio track, or an unreadable video.
    """
    p = check_video_file(path)
    identity = {"kind": "video_audio", "version": FORMAT_VERSION, "sample_rate": int(sample_rate),
                **_file_identity(p)}
    target = cache_root() / "video_audio" / f"{identity_key(identity)}.wav"
    if target.is_file():
        try:
            info = sf.info(str(target))
            if info.samplerate == sample_rate and info.channels == 1 and info.frames > 0:
                return target
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            log.warning("cached sound %s of %s is unusable (%s); decoding again", target, p, exc)
    blocks = iter_video_audio(p, sample_rate)
    with atomic_path(target) as tmp, sf.SoundFile(str(tmp), "w", samplerate=int(sample_rate), channels=1,
                                                  subtype="FLOAT", format="WAV") as out:
        for block in blocks:
            out.write(block)
    try:  # what the WAV was decoded from, for people looking into the cache
        write_json(target.with_suffix(".json"), {**identity, "key": target.stem})
    except OSError as exc:  # pragma: no cover - the WAV is what matters
        log.warning("could not write %s (%s)", target.with_suffix(".json"), exc)
    return target
