"""Spectrogram pictures for the web page: log-magnitude STFT (numpy) drawn with a colour map (Pillow).

The picture's width is proportional to the duration (``px_per_second``) up to ``max_width``; longer
recordings are drawn at ``max_width`` with the frames spread evenly over the recording. Only the first
``max_seconds`` (from ``offset_s``) are drawn. Low frequencies are at the bottom.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from birdbridge.audio.io import read_audio
from birdbridge.audio.windows import declared_length

__all__ = ["Spectrogram", "render_spectrogram", "spectrogram_png"]

# Anchor colours of a perceptually ordered dark-blue → purple → orange → pale-yellow map ("magma"-like).
_ANCHORS = np.array(
    [
        (0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122),
        (229, 80, 100), (251, 135, 97), (254, 194, 135), (252, 253, 191),
    ],
    dtype=np.float64,
)


def _colour_table(n: int = 256) -> np.ndarray:
    """``[n, 3]`` uint8 colours interpolated between the anchors."""
    pos = np.linspace(0.0, 1.0, len(_ANCHORS))
    x = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(x, pos, _ANCHORS[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


_COLOURS = _colour_table()


@dataclass(frozen=True)
class Spectrogram:
    """A rendered spectrogram: PNG bytes, its size, and the seconds of audio it covers."""

    png: bytes
    width: int
    height: int
    seconds: float
    max_hz: float


def _frames(x: np.ndarray, n_fft: int, n_cols: int) -> np.ndarray:
    """``[n_cols, n_fft]`` Hann-windowed frames centred evenly over ``x`` (zero-padded at the ends)."""
    half = n_fft // 2
    padded = np.pad(x, (half, half))
    centres = np.linspace(0, len(x), n_cols, endpoint=False) + len(x) / (2 * n_cols)
    starts = np.clip(centres.round().astype(np.int64), 0, len(x))  # start in padded = centre in x
    idx = starts[:, None] + np.arange(n_fft)[None, :]
    return padded[idx] * np.hanning(n_fft).astype(np.float32)


def render_spectrogram(
    path: str | os.PathLike[str],
    *,
    max_seconds: float = 600.0,
    offset_s: float = 0.0,
    height: int = 160,
    px_per_second: float = 60.0,
    max_width: int = 1600,
    min_width: int = 240,
    sample_rate: int = 22_050,
    n_fft: int = 512,
    dynamic_range_db: float = 80.0,
) -> Spectrogram:
    """Draw ``max_seconds`` of a recording from ``offset_s`` (default: its start) as a spectrogram.

    Raises:
        AudioError: the file cannot be read (see :func:`birdbridge.audio.io.read_audio`).
    """
    # No empty band above the file's Nyquist. The header is enough: only max_seconds are decoded, whatever the file.
    sample_rate = min(sample_rate, declared_length(path)[0])
    x = read_audio(path, sample_rate, offset_s=offset_s, duration_s=max_seconds)
    seconds = len(x) / sample_rate
    width = int(min(max_width, max(min_width, round(seconds * px_per_second))))
    frames = _frames(x, n_fft, width)
    power = np.abs(np.fft.rfft(frames, axis=1)).astype(np.float32) ** 2  # [width, n_fft // 2 + 1]
    db = 10.0 * np.log10(np.maximum(power, 1e-12))
    top = float(db.max())
    # Black is 10 dB below the median level (mostly background noise, so it stays dim but visible), at least
    # 30 dB and at most ``dynamic_range_db`` below the loudest.
    floor = min(max(top - dynamic_range_db, float(np.median(db)) - 10.0), top - 30.0)
    level = np.clip((db - floor) / (top - floor), 0.0, 1.0)
    rows = level.T[::-1]  # frequency bins as rows, low frequencies at the bottom
    grey = Image.fromarray((rows * 255).round().astype(np.uint8))
    grey = grey.resize((width, height), Image.Resampling.BILINEAR)
    rgb = Image.fromarray(_COLOURS[np.asarray(grey)])
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG", optimize=True)
    return Spectrogram(buffer.getvalue(), width, height, seconds, sample_rate / 2)


def spectrogram_png(path: str | os.PathLike[str], *, max_seconds: float = 600.0, height: int = 160,
                    offset_s: float = 0.0) -> bytes:
    """PNG bytes of :func:`render_spectrogram` with the default size settings."""
    return render_spectrogram(path, max_seconds=max_seconds, height=height, offset_s=offset_s).png
