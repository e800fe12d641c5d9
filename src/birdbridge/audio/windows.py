"""Cutting recordings into fixed-length analysis windows, the way CLAP-style models expect them.

Windowing rule (used by :func:`window_starts`, :func:`iter_windows` and :func:`windows_from_array`):

* A recording no longer than one window gives exactly one window, starting at 0.
* A longer recording gives windows starting at 0, hop, 2*hop, ... up to the first start from which a
  window reaches the end, that is ``n = ceil((duration - window) / hop) + 1`` windows. With
  ``hop > window`` the audio between windows is skipped, and a start at or past the end is not used.
* Only the last window can hold less than ``window_s`` of real audio. It is dropped when that real
  audio is shorter than ``min_tail_s``, unless it is the only window.
* Each window's samples are exactly ``round(window_s * sample_rate)`` long; a short window is filled
  by :func:`repeat_pad`, as transformers' ``ClapFeatureExtractor`` does for a short clip.

:func:`iter_windows` and :func:`windows_from_array` work on whole samples: window, hop and tail are
rounded to samples at the given rate, and ``start_s``/``end_s`` are sample positions divided by it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from birdbridge.audio.io import stream_audio
from birdbridge.errors import BirdbridgeError

if TYPE_CHECKING:
    from birdbridge.audio.io import PathLike

__all__ = [
    "Window",
    "WindowSpec",
    "WindowSpecError",
    "iter_windows",
    "random_crop",
    "repeat_pad",
    "window_starts",
    "windows_from_array",
]

_EPS = 1e-9  # seconds; absorbs float round-off in window_starts


class WindowSpecError(BirdbridgeError, ValueError):
    """Window or hop lengths that cannot be used."""


@dataclass(frozen=True)
class WindowSpec:
    """Window length, hop (None = the window length: no overlap) and shortest kept tail, in seconds."""

    window_s: float
    hop_s: float | None = None
    min_tail_s: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise WindowSpecError(f"window length must be a number of seconds above 0, not {self.window_s!r}")
        if self.hop_s is not None and not (math.isfinite(self.hop_s) and self.hop_s > 0):
            raise WindowSpecError(f"hop must be a number of seconds above 0 (or None), not {self.hop_s!r}")
        if not (math.isfinite(self.min_tail_s) and self.min_tail_s >= 0):
            raise WindowSpecError(f"minimum tail must be a number of seconds >= 0, not {self.min_tail_s!r}")

    @property
    def step_s(self) -> float:
        """The hop in seconds (``window_s`` when ``hop_s`` is None)."""
        return self.window_s if self.hop_s is None else self.hop_s

    def in_samples(self, sample_rate: int) -> tuple[int, int, int]:
        """(window, hop, min_tail) rounded to whole samples at ``sample_rate``."""
        if sample_rate <= 0:
            raise WindowSpecError(f"sample rate must be above 0 Hz, not {sample_rate!r}")
        window, hop = round(self.window_s * sample_rate), round(self.step_s * sample_rate)
        if window < 1 or hop < 1:
            raise WindowSpecError(
                f"window {self.window_s} s and hop {self.step_s} s must each be at least one sample "
                f"at {sample_rate} Hz"
            )
        return window, hop, round(self.min_tail_s * sample_rate)


@dataclass(frozen=True, eq=False)
class Window:
    """One analysis window of a recording.

    ``start_s``/``end_s`` bound the real audio covered (``end_s`` stops at the end of the recording);
    ``samples`` always has the full window length, repeat-padded when the real audio is shorter.
    """

    source: str
    index: int
    start_s: float
    end_s: float
    samples: np.ndarray = field(repr=False)

    @property
    def duration_s(self) -> float:
        """Seconds of real audio in the window."""
        return self.end_s - self.start_s


def repeat_pad(x: np.ndarray, n: int) -> np.ndarray:
    """Bring a 1-D clip to exactly ``n`` samples like ``ClapFeatureExtractor(padding="repeatpad")``.

    A shorter clip is repeated ``int(n / len(x))`` whole times and then zero-padded to ``n``
    (transformers' ``_get_input_mel``); a longer one is cut to its first ``n`` samples. An empty clip
    gives ``n`` zeros. The dtype is kept; the result never shares memory with ``x``.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"repeat_pad expects a 1-D array, got shape {x.shape}")
    if n < 1:
        raise ValueError(f"target length must be at least 1, not {n}")
    if len(x) >= n:
        return x[:n].copy()
    if len(x) == 0:
        return np.zeros(n, dtype=x.dtype)
    tiled = np.tile(x, int(n / len(x)))
    return np.pad(tiled, (0, n - len(tiled)), mode="constant", constant_values=0)


def random_crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Training-time ``rand_trunc``: a uniformly placed ``n``-sample crop; :func:`repeat_pad` if shorter."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"random_crop expects a 1-D array, got shape {x.shape}")
    if len(x) <= n:
        return repeat_pad(x, n)
    start = int(rng.integers(0, len(x) - n + 1))
    return x[start : start + n].copy()


def window_starts(duration_s: float, spec: WindowSpec) -> list[float]:
    """Start times in seconds of the windows of a recording lasting ``duration_s`` (see the module rule).

    A duration of 0 (or less) gives no windows.
    """
    if not duration_s > 0:
        return []
    window, hop = spec.window_s, spec.step_s
    if duration_s <= window + _EPS:
        return [0.0]
    n = math.ceil((duration_s - window) / hop - _EPS) + 1
    starts = [k * hop for k in range(n) if k * hop < duration_s - _EPS]
    tail = duration_s - starts[-1]
    if len(starts) > 1 and tail < window - _EPS and tail < spec.min_tail_s - _EPS:
        starts.pop()
    return starts


def iter_windows(
    path: PathLike, sample_rate: int, spec: WindowSpec, *, block_s: float = 60.0
) -> Iterator[Window]:
    """Stream a recording (see :func:`~birdbridge.audio.io.stream_audio`) and yield its windows in order.

    Holds at most about one window plus one block of samples, whatever the file's length. Gives the same
    windows as :func:`windows_from_array` on the whole file read at ``sample_rate``.

    Raises:
        AudioError: from decoding (when the failing block is reached).
        WindowSpecError: a window or hop shorter than one sample at ``sample_rate``.
    """
    spec.in_samples(sample_rate)  # fail early, before the file is opened
    return _windows(stream_audio(path, sample_rate, block_s=block_s), sample_rate, spec, str(path))


def windows_from_array(
    samples: np.ndarray, sample_rate: int, spec: WindowSpec, source: str = "<array>"
) -> list[Window]:
    """The windows of a mono signal held in memory (converted to float32)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"windows_from_array expects mono 1-D samples, got shape {x.shape}")
    return list(_windows([x], sample_rate, spec, source))


def _windows(
    blocks: Iterable[np.ndarray], sample_rate: int, spec: WindowSpec, source: str
) -> Iterator[Window]:
    """The windowing rule applied to consecutive blocks of a signal, with a rolling buffer.

    Every window that lies wholly inside the signal is yielded as soon as its samples have arrived; at
    the end, at most one window (the last) is partial. The buffer holds samples from the next window's
    start on: fewer than ``window`` samples between blocks, so at most ``window + block``.
    """
    window, hop, min_tail = spec.in_samples(sample_rate)
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # absolute index of buf[0]
    k = 0  # index of the next window

    def make(start: int, real: np.ndarray) -> Window:
        samples = real.copy() if len(real) == window else repeat_pad(real, window)
        end = start + len(real)
        return Window(source, k, start / sample_rate, end / sample_rate, samples)

    for block in blocks:
        if len(block) == 0:
            continue
        buf = np.concatenate((buf, np.asarray(block, dtype=np.float32)))
        total = buf_start + len(buf)
        while k * hop + window <= total:
            start = k * hop
            yield make(start, buf[start - buf_start : start - buf_start + window])
            k += 1
        drop = min(k * hop - buf_start, len(buf))  # samples before the next window's start
        if drop > 0:
            buf, buf_start = buf[drop:], buf_start + drop

    total = buf_start + len(buf)
    if total == 0:
        return
    last = 0 if total <= window else -(-(total - window) // hop)  # index of the final window
    if k > last:
        return  # the final window was whole and has been yielded
    start = k * hop  # k == last here: only the final window can be partial
    if start >= total:
        return  # hop > window: this start lies past the end
    real = total - start
    if k > 0 and real < min_tail:
        return
    yield make(start, buf[start - buf_start :])
