"""Synthetic soundscapes: minutes of changing backgrounds in which the world's birds call now and then.

A soundscape is cut into 5 s windows (BirdSet's evaluation grid). A share of them, drawn from a range
(by default 50-70%), holds no bird at all; every other window holds the start of a *bout*: one to five
calls of one individual of a species from the recording's local community (3-8 species, some common,
some rare). A bout may run on into the next window only if that window holds birds too, so bird-free
windows stay free under any overlap rule, and every window with birds holds at least one whole call.
With probability ``overlap_p`` a second species starts a bout during the first call of a bout, so two
species call at once. Calls come from :func:`~birdbridge.demo.calls.render_call_box` (the species'
traits, an individual's pitch and tempo), each at an SNR (call power over the local background power)
drawn uniformly from a range.

Under the calls, backgrounds (:mod:`birdbridge.demo.backgrounds`) change every 10-40 s, from one class
to a different one, with 2 s equal-power cross-fades, over a faint white noise floor. The truth is kept as
:class:`SoundscapeCall` rows (one per call, its frequency box from the call's notes) and
:class:`BackgroundSegment` rows (boundaries at the middle of the cross-fades).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from birdbridge.demo.backgrounds import BACKGROUND_CLASSES, FLOOR_DB, LEVEL_DB, noise_floor, synth_background
from birdbridge.demo.calls import render_call_box
from birdbridge.demo.traits import AcousticTraits

__all__ = [
    "RAVEN_COLUMNS",
    "WINDOW_S",
    "BackgroundSegment",
    "Soundscape",
    "SoundscapeCall",
    "SoundscapeItem",
    "Window",
    "raven_table",
    "render_soundscape",
    "windows",
]

WINDOW_S = 5.0
"""Length (and hop) of the evaluation windows the bird-free share is planned on."""
RAVEN_COLUMNS = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                 "High Freq (Hz)", "Species")
FADE_S = 2.0
_EDGE_S = 0.1  # a bout's first call lies this far inside its window


@dataclass(frozen=True)
class SoundscapeCall:
    """One call: its time span (s), frequency box (Hz), species (scientific name) and SNR (dB)."""

    begin_s: float
    end_s: float
    low_hz: float
    high_hz: float
    species: str
    snr_db: float


@dataclass(frozen=True)
class BackgroundSegment:
    """A stretch of one background class; ``level_db`` is its RMS level in dBFS."""

    start_s: float
    end_s: float
    label: str
    level_db: float


@dataclass(frozen=True)
class Window:
    """One evaluation window: the species heard in it and the background covering most of it."""

    start_s: float
    end_s: float
    species: frozenset[str]
    background: str


@dataclass(frozen=True, eq=False)
class Soundscape:
    """A rendered soundscape and its truth; ``community`` lists the species that may call in it."""

    audio: np.ndarray  # float32 mono, peak below 1
    sample_rate: int
    calls: tuple[SoundscapeCall, ...]
    backgrounds: tuple[BackgroundSegment, ...]
    community: tuple[str, ...]
    floor_db: float  # the level of the noise floor under the backgrounds, dBFS

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


@dataclass(frozen=True)
class SoundscapeItem:
    """One soundscape of a world; ``path`` is relative to the world folder."""

    id: str
    path: str
    split: str  # "valid" (to calibrate on) or "test"
    duration_s: float
    calls: tuple[SoundscapeCall, ...]
    backgrounds: tuple[BackgroundSegment, ...]
    community: tuple[str, ...]
    floor_db: float

    @property
    def selections_path(self) -> str:
        """The Raven selection table beside the recording (relative to the world folder)."""
        return self.path.removesuffix(".wav") + ".Table.1.selections.txt"

    @property
    def truth_path(self) -> str:
        """The JSON truth beside the recording: backgrounds, calls with SNRs, community."""
        return self.path.removesuffix(".wav") + ".truth.json"

    def windows(self, window_s: float = WINDOW_S, hop_s: float = WINDOW_S, min_overlap_s: float = 0.5) -> list[Window]:
        return windows(self.duration_s, self.calls, self.backgrounds, window_s, hop_s, min_overlap_s)


def windows(
    duration_s: float,
    calls: Sequence[SoundscapeCall],
    backgrounds: Sequence[BackgroundSegment],
    window_s: float = WINDOW_S,
    hop_s: float = WINDOW_S,
    min_overlap_s: float = 0.5,
) -> list[Window]:
    """The whole windows of a soundscape with their labels.

    A window holds a species if one of its calls overlaps it by ``min_overlap_s`` or by the whole call,
    whichever is shorter (a 0.2 s call inside a window counts).
    """
    out = []
    n = math.floor((duration_s - window_s) / hop_s + 1e-9) + 1 if duration_s >= window_s else 0
    for k in range(n):
        a, b = k * hop_s, k * hop_s + window_s
        species = frozenset(
            c.species for c in calls
            if min(b, c.end_s) - max(a, c.begin_s) >= min(min_overlap_s, c.end_s - c.begin_s) - 1e-9
            and min(b, c.end_s) > max(a, c.begin_s)
        )
        cover = {}
        for s in backgrounds:
            cover[s.label] = cover.get(s.label, 0.0) + max(0.0, min(b, s.end_s) - max(a, s.start_s))
        out.append(Window(round(a, 4), round(b, 4), species, max(cover, key=cover.get) if cover else ""))
    return out


def raven_table(calls: Sequence[SoundscapeCall]) -> str:
    """A Raven selection table (tab-separated), one selection per call, in the order given."""
    lines = ["\t".join(RAVEN_COLUMNS)]
    for i, c in enumerate(calls, start=1):
        lines.append("\t".join((str(i), "Spectrogram 1", "1", f"{c.begin_s:.4f}", f"{c.end_s:.4f}", f"{c.low_hz:.1f}",
                                f"{c.high_hz:.1f}", c.species)))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ render

def _segments(duration_s: float, rng: np.random.Generator, segment_s: tuple[float, float],
              classes: Sequence[str]) -> list[tuple[float, float, str, float]]:
    """Background stretches ``(start, end, class, level_db)``: lengths in ``segment_s``, no class twice running."""
    bounds = [0.0]
    while duration_s - bounds[-1] > segment_s[1]:
        bounds.append(bounds[-1] + rng.uniform(*segment_s))
    if len(bounds) > 1 and duration_s - bounds[-1] < segment_s[0] / 2:  # no stub at the end
        bounds.pop()
    bounds.append(duration_s)
    out: list[tuple[float, float, str, float]] = []
    for a, b in itertools.pairwise(bounds):
        choices = [c for c in classes if not out or c != out[-1][2]] or list(classes)
        label = choices[int(rng.integers(len(choices)))]
        out.append((round(a, 4), round(b, 4), label, float(rng.uniform(*LEVEL_DB[label]))))
    return out


def _background(n: int, sr: int, rng: np.random.Generator, segments: Sequence[tuple[float, float, str, float]],
                fade_s: float) -> np.ndarray:
    """The segments' sounds over the noise floor, with equal-power cross-fades of ``fade_s`` centred on their
    boundaries (segments are longer than the fades)."""
    out = noise_floor(n, rng).astype(np.float64)
    half = round(fade_s * sr / 2)
    ramp = np.sin(0.5 * np.pi * (np.arange(2 * half) + 0.5) / (2 * half)) if half else np.ones(0)
    for k, (a, b, label, level_db) in enumerate(segments):
        first, last = k == 0, k == len(segments) - 1
        lo, hi = round(a * sr) - (0 if first else half), round(b * sr) + (0 if last else half)
        x = synth_background(label, hi - lo, sr, rng, level_db).astype(np.float64)
        if not first:
            x[: 2 * half] *= ramp
        if not last:
            x[len(x) - 2 * half :] *= ramp[::-1]
        out[lo:hi] += x
    return out


@dataclass
class _Placed:
    start: int  # sample
    audio: np.ndarray
    species: str
    low_hz: float
    high_hz: float


def _bout(
    traits: AcousticTraits,
    species: str,
    rng: np.random.Generator,
    sr: int,
    starts: tuple[float, float],
    first_end: float,
    limit_s: float,
) -> list[_Placed]:
    """1-5 calls of one individual: the first starts in ``starts`` and ends by ``first_end`` (shortened
    if need be); later calls follow after the species' call gap while they end by ``limit_s``."""
    pitch = 2.0 ** rng.normal(0.0, 0.04)
    tempo = 2.0 ** rng.normal(0.0, 0.08)
    audio, low_hz, high_hz = render_call_box(traits, rng, sr, pitch_factor=pitch, tempo_factor=tempo,
                                             max_s=max(0.05, first_end - starts[0]))
    length = len(audio) / sr
    start_s = rng.uniform(starts[0], max(starts[0], min(starts[1], first_end - length)))
    placed = [_Placed(round(start_s * sr), audio, species, low_hz, high_hz)]
    end_s = start_s + length
    for _ in range(int(rng.integers(0, 5))):
        start_s = end_s + traits.call_gap_s * tempo * rng.uniform(0.7, 1.4)
        audio, low_hz, high_hz = render_call_box(traits, rng, sr, pitch_factor=pitch * 2.0 ** rng.normal(0.0, 0.01),
                                                 tempo_factor=tempo)
        if start_s + len(audio) / sr > limit_s:
            break
        placed.append(_Placed(round(start_s * sr), audio, species, low_hz, high_hz))
        end_s = start_s + len(audio) / sr
    return placed


def _n_free(n_windows: int, bird_free: tuple[float, float], rng: np.random.Generator) -> int:
    """A number of bird-free windows whose share lies in ``bird_free`` (the closest one if none does)."""
    fits = [k for k in range(n_windows + 1) if bird_free[0] - 1e-9 <= k / n_windows <= bird_free[1] + 1e-9]
    if not fits:
        middle = (bird_free[0] + bird_free[1]) / 2 * n_windows
        fits = [min(range(n_windows + 1), key=lambda k: abs(k - middle))]
    return int(fits[int(rng.integers(len(fits)))])


def render_soundscape(
    species: Sequence[str],
    traits: Sequence[AcousticTraits],
    rng: np.random.Generator,
    sample_rate: int = 16000,
    duration_s: float = 120.0,
    *,
    bird_free: tuple[float, float] = (0.5, 0.7),
    snr_db: tuple[float, float] = (0.0, 20.0),
    overlap_p: float = 0.3,
    community: tuple[int, int] = (3, 8),
    segment_s: tuple[float, float] = (10.0, 40.0),
    classes: Sequence[str] = BACKGROUND_CLASSES,
    fade_s: float = FADE_S,
) -> Soundscape:
    """A soundscape of ``duration_s`` (a whole number of :data:`WINDOW_S` windows) over the given species.

    ``species`` are the names written into the truth, ``traits`` their acoustic traits (same order).
    """
    sr = sample_rate
    if segment_s[0] < 2 * fade_s or segment_s[0] > segment_s[1]:
        raise ValueError(f"segment_s must be (min, max) with min >= 2 * fade_s, got {segment_s}")
    n_windows = round(duration_s / WINDOW_S)
    if n_windows < 1 or abs(n_windows * WINDOW_S - duration_s) > 1e-6:
        raise ValueError(f"duration_s must be a whole number of {WINDOW_S:g} s windows, got {duration_s}")
    if len(species) != len(traits) or not species:
        raise ValueError("species and traits must be non-empty and of the same length")
    n = round(duration_s * sr)
    segments = _segments(duration_s, rng, segment_s, classes)
    background = _background(n, sr, rng, segments, fade_s)

    size = int(rng.integers(min(community[0], len(species)), min(community[1], len(species)) + 1))
    members = np.sort(rng.choice(len(species), size, replace=False))
    weights = np.exp(rng.normal(0.0, 1.0, size))  # some species common, some rare
    weights /= weights.sum()
    active = np.zeros(n_windows, dtype=bool)
    active[rng.choice(n_windows, n_windows - _n_free(n_windows, bird_free, rng), replace=False)] = True

    placed: list[_Placed] = []
    for w in np.flatnonzero(active):
        run_end = w + 1
        while run_end < n_windows and active[run_end]:
            run_end += 1
        limit = min(run_end * WINDOW_S, duration_s) - _EDGE_S  # bouts may run on through windows with birds
        window = (w * WINDOW_S + _EDGE_S, (w + 1) * WINDOW_S - _EDGE_S)
        first = int(rng.choice(members, p=weights))
        bout = _bout(traits[first], species[first], rng, sr, window, window[1], limit)
        placed += bout
        if size > 1 and rng.random() < overlap_p:  # a second species joins during the first call
            second = int(rng.choice([m for m in members if m != first]))
            begin, length = bout[0].start / sr, len(bout[0].audio) / sr
            placed += _bout(traits[second], species[second], rng, sr, (begin, begin + 0.7 * length), window[1], limit)

    mix = background.copy()
    calls: list[SoundscapeCall] = []
    for p in placed:
        x = p.audio[: n - p.start]
        span = slice(p.start, p.start + len(x))
        call_rms = max(float(np.sqrt(np.mean(x**2))), 1e-12)
        bg_rms = max(float(np.sqrt(np.mean(background[span] ** 2))), 1e-12)
        snr = float(rng.uniform(*snr_db))
        mix[span] += x * (bg_rms * 10 ** (snr / 20) / call_rms)
        calls.append(SoundscapeCall(round(p.start / sr, 4), round((p.start + len(x)) / sr, 4), round(p.low_hz, 1),
                                    round(p.high_hz, 1), p.species, round(snr, 2)))
    peak = float(np.abs(mix).max())
    gain = min(1.0, 0.95 / peak) if peak > 0 else 1.0
    gain_db = 20 * math.log10(gain)  # the whole recording is turned down if its peak would reach 0.95
    backgrounds = tuple(BackgroundSegment(a, b, label, round(level + gain_db, 2)) for a, b, label, level in segments)
    order = sorted(range(len(calls)), key=lambda i: (calls[i].begin_s, calls[i].species))
    return Soundscape((mix * gain).astype(np.float32), sr, tuple(calls[i] for i in order), backgrounds,
                      tuple(species[m] for m in members), round(FLOOR_DB + gain_db, 2))
