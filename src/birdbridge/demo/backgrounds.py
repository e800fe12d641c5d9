"""Synthetic non-bird sounds: one generator per background class, each with its own spectral signature.

Every generator is ``fn(n_samples, sample_rate, rng, level) -> float32`` and returns sound whose RMS is
``level`` (linear; :data:`LEVEL_DB` holds each class's usual range in dBFS). All work is done on whole
arrays (noise shaped in the frequency domain, tones from phase arrays; low sounds at a lower rate), so
minutes of sound take a fraction of a second.

- ``wind``: low-passed noise (cut-off 100-250 Hz) under slow gusts: the lowest spectral centroid;
- ``rain``: a broadband hiss bed with dense random drops (crackle): the flattest spectrum;
- ``water``: running water: noise in a band around 0.5-1.2 kHz, gurgling at 12-30 Hz, with bubbles;
- ``insects``: a chorus of 2-4 narrow-band tones at 0.28-0.42 of the sample rate, pulsed at steady rates;
- ``frogs``: 1-4 croaking individuals: harmonic pulse trains at 300-1200 Hz, a croak every 0.8-2.5 s;
- ``voices``: distant speech: harmonic (pitch 95-230 Hz), formant-shaped syllables, 3-6 a second, in phrases;
- ``engine``: a low harmonic drone (firing rate 25-60 Hz) with rumble, swelling as it passes;
- ``silence``: a recorder's own noise floor: faint noise between white and pink.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "BACKGROUNDS",
    "BACKGROUND_CLASSES",
    "DESCRIPTIONS",
    "FLOOR_DB",
    "LEVEL_DB",
    "background_clip",
    "engine",
    "frogs",
    "insects",
    "noise_floor",
    "rain",
    "silence",
    "synth_background",
    "voices",
    "water",
    "wind",
]

Generator = Callable[[int, int, np.random.Generator, float], np.ndarray]


# ------------------------------------------------------------------------------------------ helpers

_TWO_PI = 2.0 * np.pi
Gain = Callable[[np.ndarray], np.ndarray]  # amplitude response at the given frequencies (Hz)


@functools.cache
def _fast_len(n: int) -> int:
    """The smallest 5-smooth number (2**a * 3**b * 5**c) of at least ``n``: a fast FFT size."""
    best, p5 = 1 << max(0, n - 1).bit_length(), 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35 << max(0, (n - 1) // p35).bit_length()  # the smallest power-of-two multiple >= n
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


Part = tuple[np.ndarray | None, Gain, float | None]  # (signal or None for noise, gain, RMS weight or None)


def _shape(n: int, sr: int, rng: np.random.Generator, *parts: Part) -> np.ndarray:
    """The sum of ``parts`` ``(signal, gain, weight)``, each filtered (zero phase) by its ``gain``; float32.

    A ``None`` signal stands for Gaussian noise with that spectrum. With a ``weight``, a part is scaled
    to that RMS (after filtering); without, it is left as it comes. One inverse FFT for all parts.
    """
    size = _fast_len(n + sr // 10)  # room for the filters' tails, so nothing wraps round
    freqs = np.fft.rfftfreq(size, 1.0 / sr).astype(np.float32)
    total = np.zeros(len(freqs), dtype=np.complex64)
    for x, gain, weight in parts:
        if x is None:  # white noise, drawn in the frequency domain
            spectrum = np.empty(len(freqs), dtype=np.complex64)
            spectrum.view(np.float32)[:] = rng.standard_normal(2 * len(freqs), dtype=np.float32)
        else:
            spectrum = np.fft.rfft(x, size).astype(np.complex64)
        spectrum *= gain(freqs).astype(np.float32)
        if weight is not None:  # Parseval: the RMS of the filtered part, from its spectrum
            rms = math.sqrt(2.0) * float(np.linalg.norm(spectrum)) / size
            spectrum *= np.float32(weight / max(rms, 1e-20))
        total += spectrum
    return np.fft.irfft(total, size)[:n]  # complex64 in, float32 out (and much faster than in float64)


def _lowpass(cut_hz: float, order: int = 2) -> Gain:
    return lambda f: 1.0 / np.sqrt(1.0 + np.square(f / np.float32(cut_hz)) ** order)


def _highpass(cut_hz: float, order: int = 2) -> Gain:
    return lambda f: 1.0 / np.sqrt(1.0 + np.square(np.float32(cut_hz) / np.maximum(f, np.float32(1e-3))) ** order)


def _band(centre_hz: float, octaves: float) -> Gain:
    """A Gaussian bump in log frequency, ``octaves`` its standard deviation."""
    return lambda f: np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / centre_hz) / octaves) ** 2)


def _times(n: int, sr: int) -> np.ndarray:
    """Sample times in float32: precise enough for modulations (below a few hundred Hz), not for tones."""
    return (np.arange(n, dtype=np.float64) / sr).astype(np.float32)


def _sin(phase: np.ndarray) -> np.ndarray:
    """``sin`` of a float64 phase, computed in float32 after reducing it modulo 2 pi."""
    return np.sin(np.mod(phase, _TWO_PI).astype(np.float32))


def _tone_phase(n: int, sr: int, hz: float, rng: np.random.Generator) -> np.ndarray:
    return _TWO_PI * hz * (np.arange(n, dtype=np.float64) / sr) + rng.uniform(0, _TWO_PI)


def _slow(n: int, sr: int, rng: np.random.Generator, rate_hz: float) -> np.ndarray:
    """A smooth random curve (unit variance at its knots) changing about ``rate_hz`` times a second."""
    step = max(1, int(sr / (16 * rate_hz)))  # drawn at 16 points per knot, then interpolated linearly
    pos = np.arange(n // step + 2) * (step * rate_hz / sr)
    knots = rng.standard_normal(int(pos[-1]) + 2)
    i = pos.astype(np.int64)
    w = 0.5 - 0.5 * np.cos(np.pi * (pos - i))
    curve = knots[i] * (1.0 - w) + knots[i + 1] * w
    return np.interp(np.arange(n, dtype=np.float64), np.arange(len(pos)) * float(step), curve).astype(np.float32)


def _pulses(f0: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A unit impulse at every period of a fundamental ``f0`` (Hz, one value per sample)."""
    cycles = np.floor(np.cumsum(f0, dtype=np.float64) / sr + rng.random())
    return np.diff(cycles, prepend=cycles[0])


def _sparse_impulses(n: int, rate_hz: float, sr: int, rng: np.random.Generator, tail: float) -> np.ndarray:
    """Impulses at random times (``rate_hz`` a second on average) with heavy-tailed random amplitudes."""
    out = np.zeros(n)
    count = int(rng.poisson(rate_hz * n / sr))
    amplitude = np.minimum(rng.pareto(tail, count) + 0.2, 3.0) * rng.choice((-1.0, 1.0), count)
    np.add.at(out, rng.integers(0, max(n, 1), count), amplitude)
    return out


def _at_rate(rate_hz: int) -> Callable[[Generator], Generator]:
    """Make a generator work at a lower rate (``sample_rate / q`` for the largest whole ``q`` keeping it at
    least ``rate_hz``) and bring it up in the frequency domain, fading out the top 40% of its band.

    For sounds with little above ``rate_hz / 2``: fewer samples to make, and a smooth roll-off, not a wall.
    """
    def wrap(fn: Generator) -> Generator:
        @functools.wraps(fn)
        def generate(n: int, sr: int, rng: np.random.Generator, level: float) -> np.ndarray:
            q = max(1, sr // rate_hz)
            while sr % q:
                q -= 1
            if q == 1 or n == 0:
                return fn(n, sr, rng, level)
            m = _fast_len(-(-n // q))
            spectrum = np.fft.rfft(fn(m, sr // q, rng, level)).astype(np.complex64)
            edge = 0.5 * sr / q
            f = np.fft.rfftfreq(m, q / sr)
            spectrum *= np.clip((edge - f) / (0.4 * edge), 0.0, 1.0).astype(np.float32) ** 2
            return _at_level(np.fft.irfft(spectrum, m * q)[:n], level)
        return generate
    return wrap


def _at_level(x: np.ndarray, level: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    return (x * (level / rms if rms > 0 else 0.0)).astype(np.float32)


# --------------------------------------------------------------------------------------- generators

@_at_rate(4000)
def wind(n: int, sr: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """Low-frequency, gusty filtered noise; the gusts also brighten it a little."""
    cut = rng.uniform(100.0, 250.0)
    low = _shape(n, sr, rng, (None, lambda f: _lowpass(cut, 2)(f) * _highpass(15.0)(f), 1.0))
    bright = _shape(n, sr, rng, (None, _band(cut * 2.5, 0.5), 1.0))
    gust = np.exp(0.6 * _slow(n, sr, rng, rng.uniform(0.1, 0.4)) + 0.25 * _slow(n, sr, rng, 2.0))
    return _at_level(gust * (low + 0.15 * gust * bright), level)


def rain(n: int, sr: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """A broadband hiss bed and dense random drops (400-2000 a second), each a short broadband crackle."""
    bed_cut, centre = rng.uniform(300.0, 600.0), rng.uniform(2000.0, 4000.0)
    drops = _sparse_impulses(n, rng.uniform(400.0, 2000.0), sr, rng, tail=3.0)
    x = _shape(n, sr, rng, (None, _highpass(bed_cut, 1), 1.0),
               (drops, lambda f: _band(centre, 1.5)(f) + 0.3 * _highpass(1000.0)(f), 1.0))
    return _at_level(np.exp(0.2 * _slow(n, sr, rng, 0.1)) * x, level)


@_at_rate(8000)
def water(n: int, sr: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """Running water: mid-band noise that gurgles (fast random swells) with bubbles ringing in it."""
    centre = rng.uniform(500.0, 1200.0)
    rush = _shape(n, sr, rng, (None, _band(centre, 1.0), 1.0))
    rush *= np.clip(1.0 + 0.35 * _slow(n, sr, rng, rng.uniform(12.0, 30.0)), 0.2, None)
    bands = [_band(rng.uniform(600.0, 2000.0), 0.04) for _ in range(3)]
    pops = _sparse_impulses(n, rng.uniform(20.0, 60.0), sr, rng, tail=3.0)
    bubbles = _shape(n, sr, rng, (pops, lambda f: sum(b(f) for b in bands), 0.4))
    return _at_level(rush + bubbles, level)


def insects(n: int, sr: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """A chorus of 2-4 narrow-band tones high up, each pulsed at its own steady rate (some in chirps)."""
    t = _times(n, sr)
    out = np.zeros(n, dtype=np.float32)
    for _ in range(int(rng.integers(2, 5))):
        phase = _tone_phase(n, sr, rng.uniform(0.28, 0.42) * sr, rng)
        phase += 0.3 * np.sin(_TWO_PI * rng.uniform(3.0, 8.0) * t)  # a slight warble
        pulse = (0.5 - 0.5 * np.cos(np.float32(_TWO_PI * rng.uniform(15.0, 50.0)) * t + rng.uniform(0, _TWO_PI)))
        pulse **= np.float32(rng.uniform(2.0, 6.0))
        if rng.random() < 0.5:  # a chirper: pulses in groups a few times a second
            gate = 0.5 - 0.5 * np.cos(np.float32(_TWO_PI * rng.uniform(1.0, 3.0)) * t + rng.uniform(0, _TWO_PI))
            pulse *= np.clip(3.0 * gate - 1.0, 0.0, 1.0)
        out += np.float32(rng.uniform(0.5, 1.0)) * _sin(phase) * pulse
    return _at_level(out, level)


@_at_rate(8000)
def frogs(n: int, sr: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """1-4 frogs: each repeats a croak (a pulsed, harmonic-rich tone at 300-1200 Hz) every 0.8-2.5 s."""
    t = _times(n, sr)
    out = np.zeros(n, dtype=np.float32)
    for _ in range(int(rng.integers(1, 5))):
        tone = np.tanh(3.0 * _sin(_tone_phase(n, sr, rng.uniform(300.0, 1200.0), rng)))  # odd harmonics
        pulse = (0.5 - 0.5 * np.cos(np.float32(_TWO_PI * rng.uniform(15.0, 60.0)) * t)) ** 2
        period, length = rng.uniform(0.8, 2.5), rng.uniform(0.1, 0.35)
        c = np.minimum(np.mod(t + np.float32(rng.uniform(0, period)), np.float32(period)) / np.float32(length), 1.0)
        out += np.float32(rng.uniform(0.4, 1.0)) * tone * pulse * np.abs(np.sin(np.pi * c)) ** 0.5
    return _at_level(out, level)


_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


def _formants(f1: float, f2: float, f3: float, cut_hz: float) -> Gain:
    def gain(f: np.ndarray) -> np.ndarray:
        peaks = sum(a / (1.0 + ((f - fc) / bw) ** 2)
                    for fc, bw, a in ((f1, 80.0, 1.0), (f2, 100.0, 0.6), (f3, 150.0, 0.3)))
        return peaks * _lowpass(cut_hz, 2)(f) * _highpass(80.0)(f) / (1.0 + f / 400.0)  # glottal roll-off
    return gain


def _talker(n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One talker's voiced source (syllables of 0.12-0.3 s in phrases of 3-10) and its vowel per sample."""
    n_max = math.ceil(n / sr / 0.12) + 2  # enough syllables and pauses for the whole length
    lengths = rng.uniform(0.12, 0.3, n_max) + rng.uniform(0.0, 0.06, n_max)
    phrase = rng.integers(3, 11, n_max)
    voiced = np.ones(n_max, dtype=bool)
    ends = np.cumsum(phrase)
    voiced[ends[ends < n_max]] = False  # after each phrase, a pause
    lengths[~voiced] = rng.uniform(0.3, 1.5, int((~voiced).sum()))
    start = np.concatenate([[rng.uniform(0.0, 1.0)], rng.uniform(0.0, 1.0) + np.cumsum(lengths)[:-1]])
    t = np.arange(n, dtype=np.float64) / sr
    syllable = np.clip(np.searchsorted(start, t, side="right") - 1, 0, n_max - 1)
    u = np.clip((t - start[syllable]) / lengths[syllable], 0.0, 1.0)
    envelope = np.where(voiced[syllable] & (t >= start[0]), np.sin(np.pi * u) ** 0.7, 0.0)
    f0 = rng.uniform(95.0, 230.0) * 2.0 ** (0.12 * _slow(n, sr, rng, 3.0))
    source = (_pulses(f0, sr, rng) + 0.05 * rng.standard_normal(n)) * envelope
    return source / max(float(np.std(source)), 1e-12), rng.integers(len(_VOWELS), size=n_max)[syllable]


@_at_rate(8000)
def voices(n: int, sr: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """Distant speech of one or two talkers: harmonic, formant-shaped syllables with a syllable rhythm."""
    talkers = [_talker(n, sr, rng) for _ in range(int(rng.integers(1, 3)))]
    gains = [1.0, *rng.uniform(0.3, 0.8, len(talkers) - 1)]
    cut = rng.uniform(2500.0, 4000.0)  # far away: the highs are lost
    parts = []
    for v, formants in enumerate(_VOWELS):
        x = sum(g * np.where(vowel == v, source, 0.0) for g, (source, vowel) in zip(gains, talkers, strict=True))
        parts.append((x, _formants(*formants, cut), None))
    return _at_level(_shape(n, sr, rng, *parts), level)


@_at_rate(4000)
def engine(n: int, sr: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """A distant engine: harmonics of a 25-60 Hz firing rate and low rumble, swelling as it passes."""
    f0 = rng.uniform(25.0, 60.0) * 2.0 ** (0.08 * _slow(n, sr, rng, 0.2))
    cut = rng.uniform(600.0, 1200.0)
    x = _shape(n, sr, rng, (_pulses(f0, sr, rng), lambda f: _lowpass(cut, 2)(f) * _highpass(20.0)(f), 1.0),
               (None, lambda f: _lowpass(300.0, 2)(f) * _highpass(20.0)(f), 0.5))
    t = _times(n, sr)
    passing = 1.0 / (1.0 + ((t - np.float32(rng.uniform(0.0, n / sr))) / np.float32(rng.uniform(3.0, 10.0))) ** 2)
    return _at_level((0.4 + passing) * x, level)


def silence(n: int, sr: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """A recorder's self-noise: faint noise between white and pink (use a low ``level``)."""
    exponent = rng.uniform(0.3, 1.0)
    return _at_level(_shape(n, sr, rng, (None, lambda f: np.maximum(f, 20.0) ** (-exponent / 2), 1.0)), level)


BACKGROUNDS: dict[str, Generator] = {
    "wind": wind, "rain": rain, "water": water, "insects": insects, "frogs": frogs, "voices": voices,
    "engine": engine, "silence": silence,
}  # fmt: skip
BACKGROUND_CLASSES: tuple[str, ...] = tuple(BACKGROUNDS)
"""Every background class, in a fixed order (their index keys the world's random streams)."""
DESCRIPTIONS: dict[str, str] = {
    "wind": "wind", "rain": "rain", "water": "running water", "insects": "insects", "frogs": "frogs",
    "voices": "human speech", "engine": "an engine", "silence": "silence",
}  # fmt: skip
"""What each class sounds like, in words (for text prompts)."""
LEVEL_DB: dict[str, tuple[float, float]] = {
    "wind": (-38.0, -28.0), "rain": (-36.0, -26.0), "water": (-36.0, -28.0), "insects": (-42.0, -30.0),
    "frogs": (-40.0, -30.0), "voices": (-46.0, -36.0), "engine": (-40.0, -30.0), "silence": (-66.0, -58.0),
}  # fmt: skip
"""Usual RMS level of each class, dBFS (min, max): distant voices are faint, silence is a noise floor."""

FLOOR_DB = -66.0
"""Level of the recorder's noise floor (white noise) under every soundscape and background clip."""


def noise_floor(n_samples: int, rng: np.random.Generator, level_db: float = FLOOR_DB) -> np.ndarray:
    """White Gaussian noise at ``level_db`` dBFS RMS (float32): a recorder's self-noise."""
    return rng.standard_normal(n_samples, dtype=np.float32) * np.float32(10.0 ** (level_db / 20.0))


def background_clip(label: str, n_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A background-only recording: class ``label`` at its usual level over the noise floor, peak below 0.95."""
    x = noise_floor(n_samples, rng) + synth_background(label, n_samples, sample_rate, rng)
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return (x * (0.95 / peak) if peak > 0.95 else x).astype(np.float32)


def synth_background(label: str, n_samples: int, sample_rate: int, rng: np.random.Generator,
                     level_db: float | None = None) -> np.ndarray:
    """``n_samples`` of class ``label`` at ``level_db`` dBFS RMS (default: uniform in its :data:`LEVEL_DB`)."""
    try:
        generator = BACKGROUNDS[label]
    except KeyError:
        raise ValueError(f"unknown background class {label!r}; use one of {', '.join(BACKGROUND_CLASSES)}") from None
    if level_db is None:
        level_db = float(rng.uniform(*LEVEL_DB[label]))
    return generator(n_samples, sample_rate, rng, 10.0 ** (level_db / 20.0))

