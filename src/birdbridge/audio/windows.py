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

Windows and hops are between :data:`MIN_HOP_S` and :data:`MAX_WINDOW_S` / :data:`MAX_HOP_S` seconds.
:func:`count_windows` is arithmetic and :func:`window_starts` a lazy sequence, whatever the duration;
:class:`WindowLimits` bounds one call's work (windows, decoded seconds, hop) and raises
:class:`LimitExceeded` past a bound, from the header before decoding and again while decoding.

:func:`iter_windows` and :func:`windows_from_array` work on whole samples: window, hop and tail are
rounded to samples at the given rate, and ``start_s``/``end_s`` are sample positions divided by it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from birdbridge.audio.io import _Decoder, stream_audio
from birdbridge.errors import BirdbridgeError

if TYPE_CHECKING:
    from birdbridge.audio.io import PathLike

__all__ = [
    "MAX_HOP_S",
    "MAX_WINDOW_S",
    "MIN_HOP_S",
    "LimitExceeded",
    "Window",
    "WindowLimits",
    "WindowSpec",
    "WindowSpecError",
    "WindowStarts",
    "check_window_args",
    "count_windows",
    "declared_length",
    "iter_array_windows",
    "iter_windows",
    "random_crop",
    "repeat_pad",
    "window_starts",
    "windows_from_array",
]

MIN_HOP_S = 0.01
"""Shortest window or hop, in seconds: one frame of CLAP's spectrogram (480 samples at 48 kHz). Windows closer
together are near copies of each other; at 100 Hz or more it is also at least one sample."""
MAX_WINDOW_S = 600.0
"""Longest window, in seconds (a window is held in memory whole: 115 MB of float32 at 48 kHz)."""
MAX_HOP_S = 86_400.0
"""Longest hop, in seconds (a day: one window a day of a long deployment)."""

_EPS = 1e-9  # seconds; absorbs float round-off in count_windows
_DECODE_SLACK_S = 1.0  # decoded seconds allowed past max_audio_s (resampling may add a few samples)


class WindowSpecError(BirdbridgeError, ValueError):
    """Window or hop lengths that cannot be used."""


class LimitExceeded(BirdbridgeError):
    """More work than a bound of :class:`WindowLimits` allows.

    ``bound`` names the bound (``"max_windows"``, ``"max_audio_s"`` or ``"min_hop_s"``), ``limit`` is its
    value and ``needed`` what the call needed (for a bound passed while decoding: at least that much).
    """

    def __init__(self, bound: str, limit: float, needed: float, message: str) -> None:
        self.bound, self.limit, self.needed = bound, limit, needed
        super().__init__(message)


def _check_span(what: str, value: object, most: float) -> None:
    """A window or hop length must be a finite number of seconds from MIN_HOP_S to ``most``."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise WindowSpecError(f"{what} must be a number of seconds from {MIN_HOP_S:g} to {most:g}, not {value!r}")
    if value < MIN_HOP_S:
        raise WindowSpecError(
            f"{what} {value:g} s is too short: windows and hops are at least {MIN_HOP_S:g} s (MIN_HOP_S, one "
            "spectrogram frame; that is also at least one sample at any rate from 100 Hz)"
        )
    if value > most:
        raise WindowSpecError(f"{what} {value:g} s is too long: the most is {most:g} s")


def check_window_args(window_s: float | None, hop_s: float | None) -> None:
    """Refuse impossible ``--window``/``--hop`` values (None: the default) before any work is done.

    Raises:
        WindowSpecError: not a finite number, below :data:`MIN_HOP_S`, or above :data:`MAX_WINDOW_S`
            (window) / :data:`MAX_HOP_S` (hop).
    """
    if window_s is not None:
        _check_span("window length", window_s, MAX_WINDOW_S)
    if hop_s is not None:
        _check_span("hop", hop_s, MAX_HOP_S)


@dataclass(frozen=True)
class WindowSpec:
    """Window length, hop (None = the window length: no overlap) and shortest kept tail, in seconds.

    Window and hop are at least :data:`MIN_HOP_S`; the window at most :data:`MAX_WINDOW_S`, the hop at most
    :data:`MAX_HOP_S`. Other values raise :class:`WindowSpecError`.
    """

    window_s: float
    hop_s: float | None = None
    min_tail_s: float = 1.0

    def __post_init__(self) -> None:
        check_window_args(self.window_s, self.hop_s)
        if not (isinstance(self.min_tail_s, numbers.Real) and math.isfinite(self.min_tail_s) and self.min_tail_s >= 0):
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


def count_windows(duration_s: float, spec: WindowSpec) -> int:
    """How many windows a recording lasting ``duration_s`` gives (see the module rule): arithmetic, O(1).

    A duration of 0 (or less) gives no windows.
    """
    if not duration_s > 0:
        return 0
    if not math.isfinite(duration_s):
        raise WindowSpecError(f"a recording's duration must be a finite number of seconds, not {duration_s!r}")
    window, hop = spec.window_s, spec.step_s
    if duration_s <= window + _EPS:
        return 1
    n = math.ceil((duration_s - window) / hop - _EPS) + 1
    n = min(n, math.ceil((duration_s - _EPS) / hop))  # with hop > window a last start can lie past the end
    tail = duration_s - (n - 1) * hop
    if n > 1 and tail < window - _EPS and tail < spec.min_tail_s - _EPS:
        n -= 1
    return n


class WindowStarts(Sequence[float]):
    """The start times of :func:`window_starts`, computed on demand: O(1) memory and ``len``."""

    __slots__ = ("_hop", "_n")

    def __init__(self, n: int, hop_s: float) -> None:
        self._n, self._hop = n, hop_s

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        k = i + self._n if i < 0 else i
        if not 0 <= k < self._n:
            raise IndexError("window index out of range")
        return k * self._hop

    def __eq__(self, other: object) -> bool:
        if isinstance(other, WindowStarts):
            return len(self) == len(other) and (not len(self) or self._hop == other._hop)
        if isinstance(other, list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"WindowStarts(n={self._n}, hop_s={self._hop!r})"


def window_starts(duration_s: float, spec: WindowSpec) -> WindowStarts:
    """Start times in seconds of the windows of a recording lasting ``duration_s`` (see the module rule).

    A lazy sequence (``starts[k] == k * hop``), never a list of every start; its ``len`` is
    :func:`count_windows`. A duration of 0 (or less) gives no windows.
    """
    return WindowStarts(count_windows(duration_s, spec), spec.step_s)


def declared_length(path: PathLike) -> tuple[int, float | None]:
    """(sample rate, seconds) that a file's header (for MP3: its frame walk) declares, without decoding.

    The seconds are None when the header gives no length (e.g. a FLAC whose STREAMINFO holds 0 samples);
    :func:`~birdbridge.audio.io.audio_info` would then decode the whole file to count them.

    Raises:
        AudioError: missing, empty, unreadable or non-audio file.
    """
    with _Decoder(path) as d:
        frames = d.estimated_frames()
        rate = d.sample_rate
    return rate, None if frames is None else frames / rate


@dataclass(frozen=True)
class WindowLimits:
    """Bounds on one call's work; None leaves a bound off.

    ``max_windows`` counts the windows of all inputs of the call, ``max_audio_s`` the decoded seconds of
    each recording, ``min_hop_s`` is the shortest hop (the window, when no hop is given) allowed.
    Recordings are checked from their header before decoding and again while they are decoded (a header
    may lie or give no length): decoding stops within one block past a bound.
    """

    max_windows: int | None = None
    max_audio_s: float | None = None
    min_hop_s: float = MIN_HOP_S

    def __post_init__(self) -> None:
        if self.max_windows is not None and not (isinstance(self.max_windows, int) and self.max_windows >= 1):
            raise ValueError(f"max_windows must be a whole number >= 1 or None, not {self.max_windows!r}")
        if self.max_audio_s is not None and not (math.isfinite(self.max_audio_s) and self.max_audio_s > 0):
            raise ValueError(f"max_audio_s must be a number of seconds above 0 or None, not {self.max_audio_s!r}")
        if not (math.isfinite(self.min_hop_s) and self.min_hop_s >= 0):
            raise ValueError(f"min_hop_s must be a number of seconds >= 0, not {self.min_hop_s!r}")

    def check_hop(self, hop_s: float) -> None:
        """Raise :class:`LimitExceeded` (``min_hop_s``) for a hop shorter than ``min_hop_s``."""
        if hop_s < self.min_hop_s - _EPS:
            raise LimitExceeded("min_hop_s", self.min_hop_s, hop_s,
                                f"a hop of {hop_s:g} s is shorter than the {self.min_hop_s:g} s allowed (min_hop_s); "
                                f"use a hop of at least {self.min_hop_s:g} s")

    def check_audio(self, source: str, seconds: float, *, decoding: bool = False) -> None:
        """Raise :class:`LimitExceeded` (``max_audio_s``) for a recording longer than ``max_audio_s``."""
        limit = self.max_audio_s
        if limit is None or seconds <= limit + (_DECODE_SLACK_S if decoding else _EPS):
            return
        if decoding:
            lasts = f"holds at least {seconds:.1f} s of audio (its header declared less, or no length)"
        else:
            lasts = f"lasts {seconds:.1f} s"
        raise LimitExceeded("max_audio_s", limit, seconds,
                            f"{source}: the recording {lasts}, over the limit of {limit:g} s of audio per "
                            "recording (max_audio_s); send a shorter recording")

    def check_windows(self, count: int, spec: WindowSpec, *, decoding: bool = False) -> None:
        """Raise :class:`LimitExceeded` (``max_windows``) for more than ``max_windows`` windows."""
        limit = self.max_windows
        if limit is None or count <= limit:
            return
        needed = f"more than {limit}" if decoding else str(count)
        raise LimitExceeded("max_windows", limit, count,
                            f"{needed} windows ({spec.window_s:g} s every {spec.step_s:g} s) are needed, over the "
                            f"limit of {limit} windows per request (max_windows); use a longer hop or a shorter "
                            "recording")


def iter_windows(
    path: PathLike, sample_rate: int, spec: WindowSpec, *, block_s: float = 60.0, max_s: float | None = None,
    channel: int | None = None,
) -> Iterator[Window]:
    """Stream a recording (see :func:`~birdbridge.audio.io.stream_audio`) and yield its windows in order.

    Holds at most about one window plus one block of samples, whatever the file's length. Gives the same
    windows as :func:`windows_from_array` on the whole file read at ``sample_rate``. With ``max_s``,
    decoding stops with :class:`LimitExceeded` within one block past ``max_s`` seconds of audio. ``channel``: one
    channel (counted from 0) instead of their mean.

    Raises:
        AudioError: from decoding (when the failing block is reached).
        WindowSpecError: a window or hop shorter than one sample at ``sample_rate``.
        LimitExceeded: the recording holds more than ``max_s`` seconds.
    """
    spec.in_samples(sample_rate)  # fail early, before the file is opened
    blocks = stream_audio(path, sample_rate, block_s=block_s, channel=channel)
    return _windows(blocks, sample_rate, spec, str(path), max_s)


def iter_array_windows(
    samples: np.ndarray, sample_rate: int, spec: WindowSpec, source: str = "<array>", *, max_s: float | None = None
) -> Iterator[Window]:
    """The windows of a mono signal held in memory (converted to float32), one at a time."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"windows_from_array expects mono 1-D samples, got shape {x.shape}")
    spec.in_samples(sample_rate)
    return _windows([x], sample_rate, spec, source, max_s)


def windows_from_array(
    samples: np.ndarray, sample_rate: int, spec: WindowSpec, source: str = "<array>"
) -> list[Window]:
    """The windows of a mono signal held in memory (converted to float32), as a list."""
    return list(iter_array_windows(samples, sample_rate, spec, source))


def _windows(
    blocks: Iterable[np.ndarray], sample_rate: int, spec: WindowSpec, source: str, max_s: float | None = None
) -> Iterator[Window]:
    """The windowing rule applied to consecutive blocks of a signal, with a rolling buffer.

    Every window that lies wholly inside the signal is yielded as soon as its samples have arrived; at
    the end, at most one window (the last) is partial. The buffer holds samples from the next window's
    start on: fewer than ``window`` samples between blocks, so at most ``window + block``.
    """
    window, hop, min_tail = spec.in_samples(sample_rate)
    limits = None if max_s is None else WindowLimits(max_audio_s=max_s)
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
        block = np.asarray(block, dtype=np.float32)
        buf = np.concatenate((buf, block)) if len(buf) else block  # windows copy their samples out of it
        total = buf_start + len(buf)
        if limits is not None:
            limits.check_audio(source, total / sample_rate, decoding=True)
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
