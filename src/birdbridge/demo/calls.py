"""Synthetic bird calls: chirps with harmonics, flutter and buzz, in noise, with known call times.

A *call* is a sequence of notes following a species' :class:`~birdbridge.demo.traits.AcousticTraits`;
a *recording* repeats calls at random offsets over coloured background noise at a random SNR, and
sometimes adds distractors (broadband clicks, a faint call of another species). Every recording is a
different individual (pitch and tempo jitter) and every note varies a little.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from birdbridge.demo.traits import AcousticTraits

__all__ = ["CallRecording", "coloured_noise", "render_call", "render_call_box", "synth_call"]

_MIN_HZ = 150.0
_MAX_FRACTION = 0.45  # highest synthesised frequency, as a fraction of the sample rate
_EDGE_S = 0.03  # calls start and end at least this far from the clip's edges


@dataclass(frozen=True)
class CallRecording:
    """One synthetic recording and where the target species calls in it (seconds)."""

    audio: np.ndarray  # float32 mono, peak below 1
    sample_rate: int
    onsets: tuple[float, ...]
    offsets: tuple[float, ...]
    snr_db: float | None  # call power over noise power, None without noise
    distractors: tuple[str, ...]  # "clicks", "other-species"

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


@dataclass(frozen=True)
class _Note:
    start_s: float  # from the call's onset
    dur_s: float
    hz: float  # centre frequency
    amp: float


def _plan_call(t: AcousticTraits, rng: np.random.Generator, pitch: float, tempo: float) -> list[_Note]:
    n = t.n_notes
    notes, start = [], 0.0
    gap = t.gap_s * tempo
    for k in range(n):
        hz = pitch * 2.0 ** (t.step_oct * (k - (n - 1) / 2) + rng.normal(0.0, 0.012))
        dur = t.note_s * tempo * rng.uniform(0.9, 1.1)
        notes.append(_Note(start, dur, hz, rng.uniform(0.75, 1.0)))
        start += dur + gap * rng.uniform(0.85, 1.15)
        gap *= t.gap_ratio
    return notes


def _fit(notes: list[_Note], max_s: float) -> list[_Note]:
    """Drop trailing notes (or shorten a lone note) so the call lasts at most ``max_s``."""
    while len(notes) > 1 and notes[-1].start_s + notes[-1].dur_s > max_s:
        notes = notes[:-1]
    first = notes[0]
    if first.dur_s > max_s:
        notes = [_Note(first.start_s, max(max_s, 0.01), first.hz, first.amp)]
    return notes


def _render_note(note: _Note, t: AcousticTraits, rng: np.random.Generator, sr: int) -> np.ndarray:
    n = max(8, round(note.dur_s * sr))
    time = np.arange(n) / sr
    u = time / (n / sr)
    hz = np.clip(note.hz * 2.0 ** (t.sweep_oct * (u - 0.5)), _MIN_HZ, _MAX_FRACTION * sr)
    phase = 2 * np.pi * np.cumsum(hz) / sr + rng.uniform(0, 2 * np.pi)
    x = np.sin(phase)
    top = float(hz.max())
    for k, a in ((2, t.harmonic2), (3, t.harmonic3)):
        if a > 0.01 and k * top < _MAX_FRACTION * sr:
            x += a * np.sin(k * phase)
    if t.noisiness > 0.01:  # buzz: multiply by slowly varying noise, spreading energy over +-bandwidth
        knots = rng.standard_normal(math.ceil(note.dur_s * 2 * t.bandwidth_hz) + 2)
        buzz = np.interp(u * (len(knots) - 1), np.arange(len(knots)), knots)
        x *= (1.0 - t.noisiness) + t.noisiness * 1.5 * buzz
    if t.am_depth > 0.01:
        x *= 1.0 - t.am_depth * 0.5 * (1.0 - np.cos(2 * np.pi * t.am_rate_hz * time + rng.uniform(0, 2 * np.pi)))
    envelope = np.sin(np.pi * u) ** 0.6
    return note.amp * envelope * x / (1.0 + t.harmonic2 + t.harmonic3)


def _render(notes: list[_Note], t: AcousticTraits, rng: np.random.Generator, sr: int) -> np.ndarray:
    last = notes[-1]
    out = np.zeros(round((last.start_s + last.dur_s) * sr) + 8)
    for note in notes:
        x = _render_note(note, t, rng, sr)
        i = round(note.start_s * sr)
        out[i : i + len(x)] += x[: len(out) - i]
    return out


def _band(notes: list[_Note], t: AcousticTraits, sr: int) -> tuple[float, float]:
    """The frequency box of a call: its notes' sweeps, visible harmonics (>= -20 dB), buzz and flutter."""
    top = _MAX_FRACTION * sr
    half = abs(t.sweep_oct) / 2
    low = min(min(max(n.hz * 2.0**-half, _MIN_HZ), top) for n in notes)
    high = max(min(max(n.hz * 2.0**half, _MIN_HZ), top) for n in notes)
    for k, a in ((2, t.harmonic2), (3, t.harmonic3)):
        if a >= 0.1 and k * high < top:
            high = max(high, k * high)
    margin = max(t.bandwidth_hz if t.noisiness > 0.05 else 0.0, t.am_rate_hz if t.am_depth > 0.05 else 0.0)
    return max(0.0, low - margin), min(sr / 2, high + margin)


def render_call_box(
    traits: AcousticTraits,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    *,
    pitch_factor: float = 1.0,
    tempo_factor: float = 1.0,
    max_s: float | None = None,
) -> tuple[np.ndarray, float, float]:
    """One clean call (float64, peak about 1) of an individual with the given pitch and tempo factors, and
    its frequency box: ``(audio, low_hz, high_hz)``. ``max_s`` drops trailing notes (or shortens a lone one)."""
    notes = _plan_call(traits, rng, traits.pitch_hz * pitch_factor, tempo_factor)
    if max_s is not None:
        notes = _fit(notes, max_s)
    return _render(notes, traits, rng, sample_rate), *_band(notes, traits, sample_rate)


def render_call(traits: AcousticTraits, rng: np.random.Generator, sample_rate: int = 16000,
                **options: float | None) -> np.ndarray:
    """One clean call (float64, peak about 1): :func:`render_call_box` (same options) without the box."""
    return render_call_box(traits, rng, sample_rate, **options)[0]


def coloured_noise(n: int, rng: np.random.Generator, sample_rate: int, exponent: float) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    size = 1 << max(0, n - 1).bit_length()  # a power of two: fast FFTs whatever ``n`` is
    white = rng.standard_normal((2, size // 2 + 1))  # the spectrum of white noise
    freqs = np.maximum(np.fft.rfftfreq(size, 1.0 / sample_rate), 20.0)
    noise = np.fft.irfft((white[0] + 1j * white[1]) * freqs ** (-exponent / 2), size)[:n]
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def _clicks(n: int, rng: np.random.Generator, sr: int, level: float) -> np.ndarray:
    out = np.zeros(n)
    for _ in range(int(rng.integers(1, 6))):
        length = round(rng.uniform(0.002, 0.01) * sr)
        start = int(rng.integers(0, max(1, n - length)))
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.25 * length))
        seg = out[start : start + length]
        seg += level * rng.uniform(0.5, 2.0) * burst[: len(seg)]
    return out


def synth_call(
    traits: AcousticTraits,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    duration_s: float = 2.0,
    *,
    snr_db: tuple[float, float] | None = (0.0, 20.0),
    others: Sequence[AcousticTraits] = (),
    click_p: float = 0.25,
    other_p: float = 0.25,
    noise_exponent: tuple[float, float] = (1.0, 2.0),
    pitch_jitter_oct: float = 0.04,
    tempo_jitter_oct: float = 0.08,
) -> CallRecording:
    """A recording of ``duration_s`` with one or more calls of a random individual of the species.

    Calls start at a random offset and repeat after ``call_gap_s`` (jittered) while they fit; the
    first call is shortened if the clip is too short for it. The individual's pitch and tempo are
    jittered by ``2 ** N(0, *_jitter_oct)``. ``snr_db`` is a range: the recording's SNR (power
    during calls over noise power) is uniform in it; None gives no noise. The noise's power spectrum
    falls as 1/f**e, e uniform in ``noise_exponent`` (1: pink, 2: brown). With probability
    ``click_p`` a few broadband clicks are added, and with probability ``other_p`` (if ``others`` is
    not empty) one faint call of a random species from ``others``, 8-20 dB below the target's calls.
    The onsets and offsets are those of the target's calls only.
    """
    sr = sample_rate
    n = round(duration_s * sr)
    if n < round(4 * _EDGE_S * sr):
        raise ValueError(f"duration {duration_s} s is too short for a call")
    pitch = 2.0 ** rng.normal(0.0, pitch_jitter_oct)
    tempo = 2.0 ** rng.normal(0.0, tempo_jitter_oct)
    signal = np.zeros(n)
    onsets: list[float] = []
    offsets: list[float] = []
    start_s = rng.uniform(_EDGE_S, max(_EDGE_S, min(0.6, 0.4 * duration_s)))
    while True:
        room = duration_s - _EDGE_S - start_s
        notes = _plan_call(traits, rng, traits.pitch_hz * pitch * 2.0 ** rng.normal(0.0, 0.01), tempo)
        last = notes[-1]
        if last.start_s + last.dur_s > room:
            if onsets:
                break
            notes = _fit(notes, room)
        call = _render(notes, traits, rng, sr) * rng.uniform(0.7, 1.0)
        i = round(start_s * sr)
        signal[i : i + len(call)] += call[: n - i]
        end_s = start_s + notes[-1].start_s + notes[-1].dur_s
        onsets.append(round(start_s, 4))
        offsets.append(round(min(end_s, duration_s), 4))
        start_s = end_s + traits.call_gap_s * tempo * rng.uniform(0.7, 1.4)

    spans = np.concatenate(
        [np.arange(round(a * sr), min(n, round(b * sr))) for a, b in zip(onsets, offsets, strict=True)]
    )
    call_rms = max(float(np.sqrt(np.mean(signal[spans] ** 2))), 1e-9)
    signal /= call_rms
    distractors: list[str] = []
    if rng.random() < click_p:
        signal += _clicks(n, rng, sr, level=1.0)
        distractors.append("clicks")
    if others and rng.random() < other_p:
        other = others[int(rng.integers(len(others)))]
        faint = render_call(other, rng, sr, pitch_factor=2.0 ** rng.normal(0.0, pitch_jitter_oct),
                            max_s=duration_s)
        faint *= 10 ** (rng.uniform(-20.0, -8.0) / 20) / max(float(np.sqrt(np.mean(faint**2))), 1e-9)
        at = int(rng.integers(-len(faint) // 2, n - len(faint) // 2))
        lo, hi = max(0, at), min(n, at + len(faint))
        signal[lo:hi] += faint[lo - at : hi - at]
        distractors.append("other-species")
    snr = None
    if snr_db is not None:
        snr = float(rng.uniform(*snr_db))
        signal += coloured_noise(n, rng, sr, rng.uniform(*noise_exponent)) * 10 ** (-snr / 20)
    signal *= rng.uniform(0.3, 0.9) / max(float(np.abs(signal).max()), 1e-9)
    return CallRecording(signal.astype(np.float32), sr, tuple(onsets), tuple(offsets), snr, tuple(distractors))
