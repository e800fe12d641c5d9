"""Audio reading: formats, downmix, resampling, streaming, bad files and file discovery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from audio_fixtures import GOOD, Fixture, make_bad, make_good, signal, with_tags
from birdbridge.audio import (
    AUDIO_EXTENSIONS,
    AudioInfo,
    audio_info,
    find_audio_files,
    read_audio,
    stream_audio,
)
from birdbridge.errors import AudioError, InputError

MP3_SLACK = 2 * 1152  # decoded MP3 length may differ from the source by encoder delay/padding


@pytest.fixture(scope="session")
def good(tmp_path_factory) -> dict[str, Fixture]:
    return make_good(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="session")
def bad(tmp_path_factory) -> dict[str, Path]:
    return make_bad(tmp_path_factory.mktemp("bad"))


def collect(path: Path, sr: int, block_s: float) -> tuple[np.ndarray, list[int]]:
    blocks = list(stream_audio(path, sr, block_s=block_s))
    assert all(b.dtype == np.float32 and b.ndim == 1 and b.size > 0 for b in blocks)
    return np.concatenate(blocks), [len(b) for b in blocks]


# ---------------------------------------------------------------------------------------------------
# Good files


@pytest.mark.parametrize("name", list(GOOD))
def test_audio_info(good, name):
    fx = good[name]
    info = audio_info(fx.path)
    assert isinstance(info, AudioInfo)
    assert info.path == fx.path
    assert (info.sample_rate, info.channels) == (fx.sample_rate, fx.channels)
    slack = MP3_SLACK if name.endswith(".mp3") else 0
    assert abs(info.frames - fx.frames) <= slack
    assert info.duration_s == pytest.approx(info.frames / fx.sample_rate)
    formats = {".wav": "WAV", ".flac": "FLAC", ".aiff": "AIFF", ".ogg": "OGG", ".opus": "OGG", ".mp3": "MP3"}
    assert info.format == formats[fx.path.suffix]


@pytest.mark.parametrize("name", list(GOOD))
def test_read_audio_is_float32_mono_and_faithful(good, name):
    fx = good[name]
    x = read_audio(fx.path)
    assert x.dtype == np.float32 and x.ndim == 1 and x.flags.c_contiguous
    slack = MP3_SLACK if name.endswith(".mp3") else 0
    assert abs(len(x) - fx.frames) <= slack
    n = min(len(x), fx.frames)
    err = x[:n] - fx.mono[:n]
    if fx.lossy:  # codec noise: require > 20 dB SNR (measured 24-28 dB for these short test signals)
        snr = 10 * np.log10(np.mean(fx.mono[:n] ** 2) / np.mean(err**2))
        assert snr > 20
    else:  # lossless: within the quantisation step (PCM_16: 2**-15)
        assert np.abs(err).max() <= 2**-15 + 1e-7


@pytest.mark.parametrize("name", ["float_44k_stereo.wav", "stereo_16k.aiff", "stereo_44k.mp3"])
def test_downmix_is_channel_mean(good, name):
    fx = good[name]
    stereo, _ = sf.read(fx.path, dtype="float32", always_2d=True)  # one-call read: no block seams
    assert stereo.shape[1] == 2
    assert not np.allclose(stereo[:, 0], stereo[:, 1])  # the channels really differ
    np.testing.assert_allclose(read_audio(fx.path), stereo.mean(axis=1), rtol=0, atol=1e-7)


@pytest.mark.parametrize(("name", "target"), [("pcm16_22k.wav", 16_000), ("float_44k_stereo.wav", 48_000),
                                              ("pcm24_48k.flac", 32_000), ("mono_22k.mp3", 16_000)])
def test_resampling_length_and_pitch(good, name, target):
    fx = good[name]
    x = read_audio(fx.path, target)
    n_in = len(read_audio(fx.path))
    assert x.dtype == np.float32
    assert len(x) == round(n_in * target / fx.sample_rate)
    assert abs(len(x) - fx.frames / fx.sample_rate * target) <= (MP3_SLACK * target / fx.sample_rate) + 1
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    hz = np.fft.rfftfreq(len(x), 1 / target)
    near = (hz > 400) & (hz < 480)
    assert abs(hz[near][np.argmax(spectrum[near])] - 440) < 2  # the 440 Hz tone stays at 440 Hz
    assert spectrum[near].max() > 0.5 * spectrum.max()
    np.testing.assert_array_equal(x, soxr.resample(read_audio(fx.path), fx.sample_rate, target, quality="HQ"))


@pytest.mark.parametrize("name", list(GOOD))
def test_offset_and_duration_match_slicing(good, name):
    """Seeking (PCM, FLAC, Vorbis, Opus) and decode-and-skip (MP3) both land on the exact sample."""
    fx = good[name]
    sr = fx.sample_rate
    full = read_audio(fx.path)
    part = read_audio(fx.path, offset_s=0.5, duration_s=0.75)
    np.testing.assert_array_equal(part, full[round(0.5 * sr) : round(0.5 * sr) + round(0.75 * sr)])
    tail = read_audio(fx.path, offset_s=1.0)
    np.testing.assert_array_equal(tail, full[round(1.0 * sr) :])
    assert len(read_audio(fx.path, 16_000, offset_s=0.25, duration_s=1.0)) == 16_000


def test_offset_past_end_and_bad_arguments(good):
    fx = good["pcm16_22k.wav"]
    for kwargs in ({"offset_s": 10.0}, {"offset_s": -1.0}, {"duration_s": 0.0}, {"offset_s": float("nan")}):
        with pytest.raises(AudioError, match=r"pcm16_22k\.wav"):
            read_audio(fx.path, **kwargs)
    with pytest.raises(AudioError, match=r"pcm16_22k\.wav"):
        read_audio(good["mono_22k.mp3"].path.with_name("pcm16_22k.wav"), 0)
    with pytest.raises(AudioError, match=r"mono_22k\.mp3.*past the end"):
        read_audio(good["mono_22k.mp3"].path, offset_s=30.0)


# ---------------------------------------------------------------------------------------------------
# Streaming


@pytest.mark.parametrize(("name", "target", "block_s"), [
    ("pcm16_22k.wav", 48_000, 0.37),
    ("float_44k_stereo.wav", 16_000, 0.25),
    ("pcm24_48k.flac", 32_000, 1.0),
    ("vorbis_44k.ogg", 22_050, 0.5),
    ("stereo_44k.mp3", 48_000, 0.3),
    ("opus_48k.opus", 16_000, 60.0),
])
def test_stream_equals_one_shot(good, name, target, block_s):
    """soxr.ResampleStream over blocks must reproduce the one-shot soxr.resample of read_audio.

    python-soxr runs the same resampler state machine in both cases, so the outputs are bit-identical
    (measured: max |diff| = 0 for all of these). The 1e-6 tolerance (about 30 dB below 16-bit
    quantisation) only leaves room for float re-association in another soxr build; a wrong block
    seam or a lost/duplicated sample would give errors of order 0.1.
    """
    fx = good[name]
    streamed, sizes = collect(fx.path, target, block_s)
    one_shot = read_audio(fx.path, target)
    assert len(streamed) == len(one_shot)
    np.testing.assert_allclose(streamed, one_shot, rtol=0, atol=1e-6)
    nominal = block_s * target
    assert max(sizes) <= 1.1 * nominal + 2048  # bounded by the block size (plus resampler latency)


@pytest.mark.parametrize("name", list(GOOD))
def test_stream_without_resampling_is_exact(good, name):
    """Block reads are seamless for every format: guards against python-soundfile's seek-after-read,
    which makes libsndfile's MP3 decoder (mpg123_seek) drop its bit reservoir at every block boundary."""
    fx = good[name]
    streamed, sizes = collect(fx.path, fx.sample_rate, block_s=0.2)
    np.testing.assert_array_equal(streamed, read_audio(fx.path))
    block = round(0.2 * fx.sample_rate)
    assert all(s == block for s in sizes[:-1]) and 0 < sizes[-1] <= block


def test_stream_is_lazy_and_checks_arguments(good, bad):
    for rate, block_s in ((16_000, 0.0), (None, 1.0), (0, 1.0), (16_000.5, 1.0)):
        with pytest.raises(AudioError, match=r"pcm16_22k\.wav"):
            stream_audio(good["pcm16_22k.wav"].path, rate, block_s=block_s)
    gen = stream_audio(bad["notes.wav"], 16_000)  # nothing is opened yet
    with pytest.raises(AudioError, match=r"notes\.wav"):
        next(gen)


# ---------------------------------------------------------------------------------------------------
# Bad files


ALWAYS_BAD = {
    "empty.wav": "empty",
    "zero_frames.wav": "no audio",
    "notes.wav": "text",
    "photo.mp3": "JPEG",
    "no_xing.mp3": "would decode only",
    "joined.mp3": "would decode only",
}


def _stream_all(path: Path) -> int:
    return sum(len(b) for b in stream_audio(path, 16_000, block_s=0.5))


READERS = {"audio_info": audio_info, "read_audio": read_audio, "stream_audio": _stream_all}


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize(("name", "words"), list(ALWAYS_BAD.items()))
def test_bad_files_raise_audio_error_naming_the_file(bad, name, words, reader):
    with pytest.raises(AudioError) as caught:
        READERS[reader](bad[name])
    message = str(caught.value)
    assert name in message and words in message
    assert isinstance(caught.value, InputError) and caught.value.hint  # says what to do


@pytest.mark.parametrize(("name", "words"), [
    ("truncated.flac", "decoding failed"),
    ("nan.wav", "NaN samples, the first at 1.500 s"),
    ("inf.wav", "infinite samples, the first at 0.750 s"),
    ("corrupt.mp3", "MPEG decoding stopped"),
])
def test_damaged_audio_data_is_found_when_decoding(bad, name, words):
    """audio_info only reads headers; the damage is reported by every decoding path."""
    assert audio_info(bad[name]).frames > 0
    for reader in (read_audio, _stream_all):
        with pytest.raises(AudioError) as caught:
            reader(bad[name])
        assert name in str(caught.value) and words in str(caught.value)


def test_nan_in_a_later_block_is_reported_after_earlier_blocks(bad):
    seen = []
    with pytest.raises(AudioError, match=r"nan\.wav.*1\.500 s"):
        for block in stream_audio(bad["nan.wav"], 22_050, block_s=0.5):
            seen.append(block)
    assert sum(len(b) for b in seen) == 3 * round(0.5 * 22_050)  # blocks before 1.5 s came through


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(AudioError, match=r"nowhere\.wav: file not found"):
        audio_info(tmp_path / "nowhere.wav")
    with pytest.raises(AudioError, match="is a folder"):
        read_audio(tmp_path)


# Files whose header is intact but whose audio is damaged: audio_info (headers only) describes them exactly, as
# written: (sample rate, channels, seconds, seconds the header walk may lose). corrupt.mp3 has 3000 random bytes in
# the middle; audio_info walks MPEG frames, so it may lose the frames in them: at most 3000 / 104 (the smallest
# 44.1 kHz frame) frames of 1152 samples.
HEADER_ONLY = {
    "truncated.flac": (22_050, 1, 4.0, 0.0),
    "nan.wav": (22_050, 1, 3.0, 0.0),
    "inf.wav": (22_050, 2, 2.0, 0.0),
    "corrupt.mp3": (44_100, 1, 5.0, 3000 // 104 * 1152 / 44_100),
}


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("name", sorted([*ALWAYS_BAD, *HEADER_ONLY]))
def test_every_bad_file_is_refused_or_described_exactly(bad, name, reader):
    """Each reader either refuses a bad file with an AudioError naming it (no libsndfile or other error leaks,
    nothing is returned), or, for audio_info on a damaged file with an intact header, gives that header's facts."""
    assert set(bad) == {*ALWAYS_BAD, *HEADER_ONLY}  # every bad fixture is classified here
    if reader == "audio_info" and name in HEADER_ONLY:
        rate, channels, seconds, may_lose_s = HEADER_ONLY[name]
        info = audio_info(bad[name])
        assert (info.sample_rate, info.channels) == (rate, channels)
        slack = MP3_SLACK if name.endswith(".mp3") else 0
        assert seconds * rate - may_lose_s * rate - slack <= info.frames <= seconds * rate + slack
        return
    with pytest.raises(AudioError) as caught:
        READERS[reader](bad[name])
    assert name in str(caught.value) and caught.value.hint


def test_truncated_mp3_reads_what_is_there(tmp_path):
    sr = 44_100
    full = tmp_path / "full.mp3"
    sf.write(full, signal(4.0, sr), sr, format="MP3")
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    x = read_audio(cut)
    assert 1.5 * sr < len(x) < 2.5 * sr
    # libsndfile keeps the Xing header's full length; audio_info reports the frame walk instead
    assert sf.info(str(cut)).frames == 4 * sr
    assert abs(audio_info(cut).frames - len(x)) <= 4 * 1152


def test_mp3_with_cover_art_and_id3v1_tag(good, tmp_path):
    """ID3 tags (cover art holds 0xFF sync-like bytes) are skipped by libsndfile and by the frame walk."""
    fx = good["stereo_44k.mp3"]
    tagged = tmp_path / "tagged.mp3"
    tagged.write_bytes(with_tags(fx.path.read_bytes()))
    assert audio_info(tagged).frames == audio_info(fx.path).frames
    np.testing.assert_array_equal(read_audio(tagged), read_audio(fx.path))


# ---------------------------------------------------------------------------------------------------
# find_audio_files


def test_find_audio_files(tmp_path):
    root = tmp_path / "rec"
    (root / "b" / "deep").mkdir(parents=True)
    (root / ".hidden").mkdir()
    names = ["z.wav", "a.FLAC", "b/c.mp3", "b/deep/d.ogg", "b/notes.txt", "._z.wav", ".hidden/e.wav",
             "x.opus"]
    for rel in names:
        (root / rel).write_bytes(b"x")
    single = tmp_path / "single.aiff"
    single.write_bytes(b"x")
    odd = tmp_path / "odd.dat"
    odd.write_bytes(b"x")

    found = find_audio_files([single, root, odd, str(root / "z.wav")])
    rel = [p.relative_to(tmp_path).as_posix() for p in found]
    assert rel == ["single.aiff", "rec/a.FLAC", "rec/b/c.mp3", "rec/b/deep/d.ogg", "rec/x.opus", "rec/z.wav",
                   "odd.dat"]  # given files kept in place; folder sorted; duplicates once
    flat = find_audio_files([root], recursive=False)
    assert [p.name for p in flat] == ["a.FLAC", "x.opus", "z.wav"]
    assert all(p.suffix.lower() in AUDIO_EXTENSIONS for p in flat)


def test_find_audio_files_errors(tmp_path):
    with pytest.raises(AudioError, match=r"missing\.wav: no such file"):
        find_audio_files([tmp_path / "missing.wav"])
    empty = tmp_path / "empty_dir"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no audio")
    with pytest.raises(AudioError, match=r"empty_dir: folder or its subfolders contains no audio"):
        find_audio_files([empty])
    (empty / "sub" / "a.wav").write_bytes(b"x")
    assert len(find_audio_files([empty])) == 1
    with pytest.raises(AudioError, match="empty_dir"):
        find_audio_files([empty], recursive=False)
