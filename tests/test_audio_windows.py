"""Windowing: the start rule, CLAP's repeat padding, and streamed windows equal to in-memory slicing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from audio_fixtures import signal, write_wav
from birdbridge.audio import (
    Window,
    WindowSpec,
    WindowSpecError,
    iter_windows,
    random_crop,
    read_audio,
    repeat_pad,
    window_starts,
    windows_from_array,
)
from birdbridge.errors import AudioError, BirdbridgeError

# ---------------------------------------------------------------------------------------------------
# WindowSpec


@pytest.mark.parametrize("kwargs", [
    {"window_s": 0}, {"window_s": -1}, {"window_s": math.nan}, {"window_s": math.inf},
    {"window_s": 1, "hop_s": 0}, {"window_s": 1, "hop_s": -0.5}, {"window_s": 1, "hop_s": math.nan},
    {"window_s": 1, "min_tail_s": -1},
])
def test_window_spec_validation(kwargs):
    with pytest.raises(WindowSpecError) as caught:
        WindowSpec(**kwargs)
    assert isinstance(caught.value, BirdbridgeError) and isinstance(caught.value, ValueError)


def test_window_spec_in_samples():
    assert WindowSpec(10.0).in_samples(48_000) == (480_000, 480_000, 48_000)
    assert WindowSpec(1.0, 0.25, 0.5).in_samples(16_000) == (16_000, 4_000, 8_000)
    with pytest.raises(WindowSpecError, match="at least one sample"):
        WindowSpec(1.0, 1e-6).in_samples(16_000)


# ---------------------------------------------------------------------------------------------------
# Padding and cropping


def reference_repeatpad(x: np.ndarray, n: int) -> np.ndarray:
    """transformers' ClapFeatureExtractor._get_input_mel, padding="repeatpad", for len(x) < n."""
    n_repeat = int(n / len(x))
    x = np.tile(x, n_repeat)
    return np.pad(x, (0, n - x.shape[0]), mode="constant", constant_values=0)


@pytest.mark.parametrize(("length", "n"), [(1, 7), (3, 10), (4, 12), (7, 10), (9, 10), (10, 10), (15, 10)])
def test_repeat_pad(length, n):
    x = np.arange(1, length + 1, dtype=np.float32)
    y = repeat_pad(x, n)
    assert y.dtype == np.float32 and y.shape == (n,)
    expected = reference_repeatpad(x, n) if length < n else x[:n]
    np.testing.assert_array_equal(y, expected)
    assert not np.shares_memory(x, y)
    np.testing.assert_array_equal(repeat_pad(np.zeros(0, np.float32), 4), np.zeros(4))


def test_repeat_pad_matches_clap_feature_extractor():
    """Features of our padded clip equal transformers' features of the short clip with "repeatpad"."""
    transformers = pytest.importorskip("transformers")
    fe = transformers.ClapFeatureExtractor(sampling_rate=16_000, max_length_s=1, hop_length=160,
                                           fft_window_size=400, feature_size=32, frequency_max=8000)
    n = fe.nb_max_samples
    for length in (1234, 5000, 7001, 15_999):
        clip = signal(length / 16_000, 16_000, seed=length)
        kwargs = {"sampling_rate": 16_000, "truncation": "rand_trunc", "padding": "repeatpad",
                  "return_tensors": "np"}
        ref = fe([clip], **kwargs)["input_features"]
        ours = fe([repeat_pad(clip, n)], **kwargs)["input_features"]
        np.testing.assert_array_equal(ours, ref)


def test_random_crop():
    x = np.arange(100, dtype=np.float32)
    starts = set()
    for seed in range(30):
        y = random_crop(x, 10, np.random.default_rng(seed))
        assert y.shape == (10,) and y.dtype == np.float32
        np.testing.assert_array_equal(y, np.arange(y[0], y[0] + 10))  # a contiguous slice
        starts.add(int(y[0]))
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 90
    np.testing.assert_array_equal(random_crop(x, 10, np.random.default_rng(5)),
                                  random_crop(x, 10, np.random.default_rng(5)))
    np.testing.assert_array_equal(random_crop(x[:4], 10, np.random.default_rng(0)), repeat_pad(x[:4], 10))
    assert random_crop(x, 100, np.random.default_rng(0)).tolist() == x.tolist()


# ---------------------------------------------------------------------------------------------------
# The start rule


@pytest.mark.parametrize(("duration", "spec", "expected"), [
    (0.0, WindowSpec(10), []),
    (0.4, WindowSpec(10), [0]),  # shorter than min_tail but the only window: kept
    (5, WindowSpec(10), [0]),
    (10, WindowSpec(10), [0]),
    (25, WindowSpec(10), [0, 10, 20]),  # 5 s tail kept
    (20.5, WindowSpec(10), [0, 10]),  # 0.5 s tail < min_tail 1 s: dropped
    (20.5, WindowSpec(10, min_tail_s=0), [0, 10, 20]),
    (21, WindowSpec(10), [0, 10, 20]),  # exactly min_tail: kept
    (30, WindowSpec(10, 5), [0, 5, 10, 15, 20]),  # hop < window, ends exactly
    (32, WindowSpec(10, 5), [0, 5, 10, 15, 20, 25]),  # last window holds 7 s
    (30.5, WindowSpec(10, 5), [0, 5, 10, 15, 20, 25]),  # n = ceil(20.5 / 5) + 1 = 6; last holds 5.5 s
    (25, WindowSpec(10, 20), [0, 20]),  # hop > window: 10-20 s skipped
    (20.5, WindowSpec(10, 20), [0]),  # 0.5 s at 20 s dropped
    (11, WindowSpec(10, 20), [0]),  # the second start would lie past the end
    (3, WindowSpec(0.5, min_tail_s=1.0), [0, 0.5, 1, 1.5, 2, 2.5]),  # whole windows never dropped
])
def test_window_starts(duration, spec, expected):
    assert window_starts(duration, spec) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------------
# Windows from arrays and files


def sliced(x: np.ndarray, sr: int, spec: WindowSpec) -> list[tuple[float, float, np.ndarray]]:
    """Independent reference: window_starts on the duration, then slice and pad the loaded signal."""
    window = round(spec.window_s * sr)
    out = []
    for start_s in window_starts(len(x) / sr, spec):
        a = round(start_s * sr)
        real = x[a : a + window]
        out.append((a / sr, (a + len(real)) / sr, repeat_pad(real, window)))
    return out


def assert_same(windows: list[Window], reference: list[tuple[float, float, np.ndarray]], source: str) -> None:
    assert len(windows) == len(reference) > 0
    for i, (w, (start, end, samples)) in enumerate(zip(windows, reference, strict=True)):
        assert (w.source, w.index) == (source, i)
        assert w.start_s == pytest.approx(start, abs=1e-9) and w.end_s == pytest.approx(end, abs=1e-9)
        assert w.samples.dtype == np.float32 and w.samples.shape == samples.shape
        np.testing.assert_allclose(w.samples, samples, rtol=0, atol=1e-6)  # see test_stream_equals_one_shot


SPECS = {
    "overlap": WindowSpec(1.0, 0.4, min_tail_s=0.3),
    "no-overlap": WindowSpec(1.0, min_tail_s=0.3),
    "gaps": WindowSpec(0.5, 0.8, min_tail_s=0.2),
    "tail-dropped": WindowSpec(1.0, 0.75, min_tail_s=0.9),
}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("windows")
    files = {
        "mono_22k.wav": (signal(4.3, 22_050), 22_050, {}),
        "stereo_44k.flac": (signal(3.7, 44_100, channels=2, seed=1), 44_100, {}),
        "mono_16k.mp3": (signal(3.1, 16_000, seed=2), 16_000, {"format": "MP3"}),
        "short_48k.wav": (signal(0.6, 48_000, seed=3), 48_000, {}),
    }
    out = {}
    for name, (x, sr, kwargs) in files.items():
        out[name] = write_wav(folder / name, x, sr, **kwargs)
    return out


@pytest.mark.parametrize("spec_name", list(SPECS))
@pytest.mark.parametrize("name", ["mono_22k.wav", "stereo_44k.flac", "mono_16k.mp3", "short_48k.wav"])
@pytest.mark.parametrize("block_s", [0.3, 1.7])
def test_iter_windows_equals_slicing_the_loaded_signal(recordings, spec_name, name, block_s):
    """Streamed (resampled to 16 kHz, blocks shorter and longer than a window) == slicing read_audio."""
    spec, path, sr = SPECS[spec_name], recordings[name], 16_000
    streamed = list(iter_windows(path, sr, spec, block_s=block_s))
    x = read_audio(path, sr)
    assert_same(streamed, sliced(x, sr, spec), str(path))
    assert_same(windows_from_array(x, sr, spec, source=str(path)), sliced(x, sr, spec), str(path))


def test_windows_from_array_padding_and_tail():
    sr = 1000
    x = np.arange(1, 2501, dtype=np.float32)  # 2.5 s
    ws = windows_from_array(x, sr, WindowSpec(1.0, min_tail_s=0.5))
    assert [(w.start_s, w.end_s) for w in ws] == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]
    np.testing.assert_array_equal(ws[2].samples, np.concatenate([x[2000:], x[2000:]]))  # repeated twice
    assert ws[2].duration_s == pytest.approx(0.5)
    assert len(windows_from_array(x, sr, WindowSpec(1.0, min_tail_s=0.6))) == 2
    only = windows_from_array(x[:300], sr, WindowSpec(1.0))  # 0.3 s: the only window is kept
    assert len(only) == 1 and only[0].end_s == 0.3
    np.testing.assert_array_equal(only[0].samples, repeat_pad(x[:300], 1000))
    assert windows_from_array(np.zeros(0, np.float32), sr, WindowSpec(1.0)) == []
    with pytest.raises(ValueError, match="1-D"):
        windows_from_array(np.zeros((10, 2)), sr, WindowSpec(1.0))


def test_window_samples_do_not_share_the_buffer():
    x = np.ones(5000, dtype=np.float32)
    ws = windows_from_array(x, 1000, WindowSpec(1.0, 0.5))
    ws[0].samples[:] = 0
    assert ws[1].samples.min() == 1 and x.min() == 1


def test_iter_windows_errors(recordings, tmp_path):
    with pytest.raises(WindowSpecError):
        iter_windows(recordings["mono_22k.wav"], 16_000, WindowSpec(1e-5))
    bad = tmp_path / "bad.flac"
    bad.write_text("not audio")
    with pytest.raises(AudioError, match=r"bad\.flac"):
        list(iter_windows(bad, 16_000, WindowSpec(1.0)))
