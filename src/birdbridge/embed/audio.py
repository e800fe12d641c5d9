"""Recordings -> embeddings: windows streamed from files, batched through the student.

Work can be bounded (:class:`~birdbridge.audio.windows.WindowLimits`: checked from each header before
decoding, and again while decoding) and cancelled (a ``threading.Event`` checked between batches).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from birdbridge.audio import AudioError, WindowSpec, iter_windows, repeat_pad, scan_audio_files
from birdbridge.audio.windows import WindowLimits, count_windows, declared_length, iter_array_windows
from birdbridge.embed.table import EmbeddingTable, skipped
from birdbridge.errors import BirdbridgeError, Failure, InputError
from birdbridge.models.loader import load_student
from birdbridge.models.student import AudioStudent
from birdbridge.utils.prefetch import batched, prefetch
from birdbridge.utils.progress import progress_bar

AudioInput = str | os.PathLike[str] | np.ndarray


class Cancelled(BirdbridgeError):
    """The caller's ``cancel`` event was set: the work stopped between two batches."""


def window_spec_for(
    student: AudioStudent, window_s: float | None, hop_s: float | None, min_tail_s: float = 1.0
) -> WindowSpec:
    """Segments of ``window_s`` (default: the model's window), each padded to the model's window."""
    window_s = float(window_s or student.window_s)
    if window_s > student.window_s + 1e-9:
        raise InputError("window",
            f"{window_s:g} s is longer than the model's {student.window_s:g} s input",
            f"use a window of at most {student.window_s:g} s"
        )
    return WindowSpec(window_s=window_s, hop_s=hop_s, min_tail_s=min(min_tail_s, window_s))


def embed_audio_windows(
    inputs: AudioInput | Sequence[AudioInput],
    model: str | os.PathLike[str] | AudioStudent = "biolingual",
    *,
    window_s: float | None = None,
    hop_s: float | None = None,
    min_tail_s: float = 1.0,
    sample_rate: int | None = None,
    batch_size: int = 16,
    device: str | None = None,
    progress: bool | None = None,
    skip_errors: bool = True,
    limits: WindowLimits | None = None,
    cancel: threading.Event | None = None,
    channel: int | None = None,
    backend: str = "torch",
    precision: str = "fp32",
) -> EmbeddingTable:
    """Embed every window of every input. Files in folders are found recursively. ``channel``: of files, that
    channel only (counted from 0; a file without it fails), else the channels' mean. ``backend`` and ``precision``:
    what runs a model given by name (:mod:`birdbridge.models.backends`).

    A bad file is skipped and listed in ``failures`` (or raises if ``skip_errors`` is false); rows of
    a file that fails part-way are dropped, every other result is kept.

    Raises:
        LimitExceeded: past a bound of ``limits`` (the whole call stops: it is the call that is too big).
        Cancelled: ``cancel`` was set; it is checked before each batch of ``batch_size`` windows.
    """
    student = load_audio_student(model, device, backend=backend, precision=precision)
    spec = window_spec_for(student, window_s, hop_s, min_tail_s)
    if limits is not None:
        limits.check_hop(spec.step_s)
    sources, unreadable = expand_inputs(inputs, sample_rate)
    if unreadable and not skip_errors:
        raise BirdbridgeError(unreadable[0].message)
    total = _count_windows(sources, spec, limits)
    max_s = None if limits is None else limits.max_audio_s

    vectors: list[np.ndarray] = []
    rows: list[tuple[int, str, float, float]] = []
    failures: dict[int, Failure] = {}
    stream = prefetch(_window_stream(sources, student.sample_rate, spec, sample_rate, max_s, channel),
                      depth=2 * batch_size)
    seen = 0
    with progress_bar("Embedding audio", total, progress) as bar:
        for batch in batched(stream, batch_size):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"cancelled after {len(rows)} windows")
            seen += sum(error is None for _, _, error in batch)
            if limits is not None:
                limits.check_windows(seen, spec, decoding=True)
            good = []
            for index, window, error in batch:
                if error is not None:
                    if not skip_errors:
                        raise error
                    failures[index] = Failure(_name(sources[index], index), str(error))
                else:
                    good.append((index, window))
            if good:
                waves = np.stack([model_input(w, student.sample_rate, student.window_samples) for _, w in good])
                vectors.append(student.embed(waves, batch_size=batch_size))
                rows.extend((i, w.source, w.start_s, w.end_s) for i, w in good)
            bar.advance(len(batch))
    keep = [k for k, row in enumerate(rows) if row[0] not in failures]
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, student.embed_dim), np.float32)
    return EmbeddingTable(
        vectors=matrix[keep],
        names=[rows[k][1] for k in keep],
        start_s=np.array([rows[k][2] for k in keep], dtype=np.float64),
        end_s=np.array([rows[k][3] for k in keep], dtype=np.float64),
        failures=[*unreadable, *(failures[i] for i in sorted(failures))],
        meta=embed_meta(student, spec),
    )


def load_audio_student(model: str | os.PathLike[str] | AudioStudent, device: str | None = None, *,
                       backend: str = "torch", precision: str = "fp32") -> AudioStudent:
    """``model`` itself if it is loaded, else the student it names (run by ``backend`` at ``precision``)."""
    return (model if isinstance(model, AudioStudent)
            else load_student(model, device, backend=backend, precision=precision))


def embed_meta(student: AudioStudent, spec: WindowSpec) -> dict:
    """What made a table of window embeddings: the model and the windows."""
    return {"kind": "audio", "model": student.name, "fingerprint": student.fingerprint, **student.backend,
            "window_s": spec.window_s, "hop_s": spec.hop_s or spec.window_s}


def embed_audio(
    inputs: AudioInput | Sequence[AudioInput],
    model: str | os.PathLike[str] | AudioStudent = "biolingual",
    *,
    window_s: float | None = None,
    hop_s: float | None = None,
    sample_rate: int | None = None,
    pool: str = "mean",
    batch_size: int = 16,
    device: str | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """float32 L2-normalised embeddings in input order: one per input (``pool="mean"`` over its
    windows), or one per window (``pool="none"``). A bad input raises ``AudioError`` naming it."""
    table = embed_audio_windows(
        inputs, model, window_s=window_s, hop_s=hop_s, sample_rate=sample_rate,
        batch_size=batch_size, device=device, progress=progress, skip_errors=False,
    )
    if pool == "none":
        return table.vectors
    if pool != "mean":
        raise BirdbridgeError(f"pool must be 'mean' or 'none', not {pool!r}")
    return table.pooled().vectors


def expand_inputs(inputs: AudioInput | Sequence[AudioInput], sample_rate: int | None
                  ) -> tuple[list[Path | np.ndarray], list[Failure]]:
    """The sources, and the entries of input folders that could not be read."""
    if isinstance(inputs, (str, os.PathLike, np.ndarray)):
        inputs = [inputs]
    out: list[Path | np.ndarray] = []
    unreadable: list[Failure] = []
    for item in inputs:
        if isinstance(item, np.ndarray):
            if sample_rate is None:
                raise BirdbridgeError("audio given as arrays needs sample_rate=...")
            out.append(item)
        elif Path(item).is_dir():
            found = scan_audio_files([item])
            out.extend(found.files)
            unreadable += skipped(found.problems)
        else:  # a missing file is kept, to fail (and be reported) on its own
            out.append(Path(item))
    if not out and not unreadable:
        raise BirdbridgeError("no audio inputs given")
    return out, unreadable


def _name(source: Path | np.ndarray, index: int) -> str:
    return str(source) if isinstance(source, Path) else f"array[{index}]"


def _count_windows(sources: list[Path | np.ndarray], spec: WindowSpec, limits: WindowLimits | None) -> int | None:
    """Windows of all inputs, from their headers (nothing is decoded); checks ``limits`` against them."""
    total = 0
    for source in sources:
        if isinstance(source, np.ndarray):
            continue
        try:
            _, seconds = declared_length(source)
        except AudioError:
            seconds = None  # fails (and is reported) when it is decoded
        if seconds is None:  # no length in the header: counted, and bounded, while decoding
            total += 1
            continue
        if limits is not None:
            limits.check_audio(str(source), seconds)
        total += count_windows(seconds, spec)
    if limits is not None:
        limits.check_windows(total, spec)
    return total or None


def _window_stream(
    sources: list[Path | np.ndarray], model_rate: int, spec: WindowSpec, array_rate: int | None,
    max_s: float | None = None, channel: int | None = None,
) -> Iterator[tuple[int, object, AudioError | None]]:
    """(input index, window, None) per window; (input index, None, error) when an input fails."""
    import soxr

    for index, source in enumerate(sources):
        try:
            if isinstance(source, np.ndarray):
                samples = _check_array(source, index)
                if array_rate != model_rate:
                    samples = soxr.resample(samples, array_rate, model_rate, quality="HQ").astype(np.float32)
                windows = iter_array_windows(samples, model_rate, spec, _name(source, index), max_s=max_s)
            else:
                windows = iter_windows(source, model_rate, spec, max_s=max_s, channel=channel)
            for window in windows:
                yield index, window, None
        except AudioError as exc:
            yield index, None, exc


def _check_array(samples: np.ndarray, index: int) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1 if samples.shape[1] < samples.shape[0] else 0)
    if samples.ndim != 1 or samples.size == 0:
        raise AudioError(f"array[{index}]", "empty or not a 1-D/2-D signal")
    if not np.isfinite(samples).all():
        raise AudioError(f"array[{index}]", "contains NaN or Inf samples")
    return samples


def file_windows(path: str | os.PathLike[str], sample_rate: int, window_samples: int, spec: WindowSpec,
                 channel: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every window of one recording as the model takes it (float32 [n, window_samples]), with the windows' start and
    end times; what :func:`embed_audio_windows` embeds of that file. Raises ``AudioError`` naming the file."""
    windows = list(iter_windows(Path(path), sample_rate, spec, channel=channel))
    waves = np.zeros((len(windows), window_samples), np.float32)
    for i, window in enumerate(windows):
        waves[i] = model_input(window, sample_rate, window_samples)
    return (waves, np.array([w.start_s for w in windows], dtype=np.float64),
            np.array([w.end_s for w in windows], dtype=np.float64))


def model_input(window, sample_rate: int, window_samples: int) -> np.ndarray:
    """A window as the model takes it: its real audio repeated to the model's input length."""
    return repeat_pad(_real(window, sample_rate), window_samples)


def _real(window, sample_rate: int) -> np.ndarray:
    """The real audio of a window, without the padding the window helper added."""
    n = max(1, round((window.end_s - window.start_s) * sample_rate))
    return window.samples[:n]
