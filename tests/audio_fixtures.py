"""Small audio fixtures for the audio I/O tests, generated with soundfile (no files are checked in)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf


def tone(seconds: float, sr: int, freq: float = 1000.0, amp: float = 0.3, channels: int = 1) -> np.ndarray:
    """A pure tone, mono or repeated over ``channels``."""
    t = np.arange(round(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_wav(path: Path | BinaryIO, audio: np.ndarray | float, sr: int = 16_000, *, freq: float = 1000.0,
              amp: float = 0.3, **soundfile: Any) -> Path | BinaryIO:
    """Write a recording to ``path`` (its folder made) or an open binary file: the samples ``audio``, or a
    :func:`tone` that many seconds long. WAV (16-bit), or what the name's suffix or ``soundfile``'s keywords
    (``format``, ``subtype``, ...) say."""
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(audio, sr, freq, amp) if np.isscalar(audio) else audio, sr, **soundfile)
    return path


def signal(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Two tones plus a little noise (not periodic, so misplaced samples show); float32, 2-D if stereo."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sr)) / sr
    chans = [
        0.4 * np.sin(2 * np.pi * (440 + 220 * c) * t) + 0.1 * np.sin(2 * np.pi * 3100 * t + c)
        + 0.02 * rng.standard_normal(t.size)
        for c in range(channels)
    ]
    x = np.stack(chans, axis=1) if channels > 1 else chans[0]
    return x.astype(np.float32)


@dataclass(frozen=True)
class Fixture:
    """An audio file written for a test, with the samples it was written from."""

    path: Path
    data: np.ndarray  # (frames,) or (frames, channels) float32
    sample_rate: int
    lossy: bool = False

    @property
    def frames(self) -> int:
        return len(self.data)

    @property
    def channels(self) -> int:
        return 1 if self.data.ndim == 1 else self.data.shape[1]

    @property
    def mono(self) -> np.ndarray:
        return self.data if self.data.ndim == 1 else self.data.mean(axis=1)


def write(folder: Path, name: str, data: np.ndarray, sr: int, lossy: bool = False, **kwargs) -> Fixture:
    return Fixture(write_wav(folder / name, data, sr, **kwargs), data, sr, lossy)


GOOD = {
    # name: (seconds, sample rate, channels, soundfile keyword arguments, lossy)
    "pcm16_22k.wav": (2.5, 22_050, 1, {"subtype": "PCM_16"}, False),
    "float_44k_stereo.wav": (2.0, 44_100, 2, {"subtype": "FLOAT"}, False),
    "pcm24_48k.flac": (3.0, 48_000, 1, {"subtype": "PCM_24"}, False),
    "stereo_16k.aiff": (1.5, 16_000, 2, {"subtype": "PCM_16"}, False),
    "vorbis_44k.ogg": (2.0, 44_100, 1, {"format": "OGG", "subtype": "VORBIS"}, True),
    "opus_48k.opus": (2.0, 48_000, 1, {"format": "OGG", "subtype": "OPUS"}, True),
    "stereo_44k.mp3": (2.5, 44_100, 2, {"format": "MP3"}, True),
    "mono_22k.mp3": (2.0, 22_050, 1, {"format": "MP3"}, True),
}


def make_good(folder: Path) -> dict[str, Fixture]:
    out = {}
    for i, (name, (seconds, sr, channels, kwargs, lossy)) in enumerate(GOOD.items()):
        out[name] = write(folder, name, signal(seconds, sr, channels, seed=i), sr, lossy, **kwargs)
    return out


def make_bad(folder: Path) -> dict[str, Path]:
    """Files that must be rejected (or, for the MP3 cases, handled) with an AudioError."""
    bad: dict[str, Path] = {}
    sr = 22_050

    def put(name: str, payload: bytes) -> None:
        bad[name] = folder / name
        bad[name].write_bytes(payload)

    put("empty.wav", b"")
    bad["zero_frames.wav"] = write_wav(folder / "zero_frames.wav", np.zeros(0, dtype=np.float32), sr)
    put("notes.wav", b"These are my field notes, not a recording.\n" * 20)
    put("photo.mp3", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01" + np.random.default_rng(1).bytes(4000))

    flac = write(folder, "whole.flac", signal(4.0, sr), sr).path.read_bytes()
    put("truncated.flac", flac[: int(len(flac) * 0.6)])

    x = signal(3.0, sr)
    x[int(1.5 * sr)] = np.nan
    write(folder, "nan.wav", x, sr, subtype="FLOAT")
    bad["nan.wav"] = folder / "nan.wav"
    y = signal(2.0, sr, channels=2)
    y[int(0.75 * sr), 1] = np.inf
    write(folder, "inf.wav", y, sr, subtype="FLOAT")
    bad["inf.wav"] = folder / "inf.wav"

    # VBR MP3 (quiet start, loud end) with its Xing/Info frame removed: libsndfile estimates the length
    # from the first frames' low bitrate and would stop decoding far too early.
    sr_mp3 = 44_100
    z = signal(5.0, sr_mp3)
    z[: int(1.0 * sr_mp3)] *= 0.001
    noise = np.random.default_rng(2).standard_normal(int(4.0 * sr_mp3)).astype(np.float32)
    z[int(1.0 * sr_mp3) :] += 0.3 * noise
    mp3 = write(folder, "vbr.mp3", np.clip(z, -1, 1), sr_mp3, format="MP3", bitrate_mode="VARIABLE").path
    put("no_xing.mp3", drop_first_mpeg_frame(mp3.read_bytes()))
    data = bytearray(mp3.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = np.random.default_rng(3).bytes(3000)
    put("corrupt.mp3", bytes(data))
    # Two MP3s joined: the first one's Xing header gives libsndfile only the first file's length.
    other = write(folder, "other.mp3", signal(2.0, sr_mp3, seed=4), sr_mp3, format="MP3").path
    put("joined.mp3", mp3.read_bytes() + other.read_bytes())
    return bad


def with_tags(mp3: bytes, art_bytes: int = 100_000) -> bytes:
    """The MP3 with an ID3v2.3 tag holding JPEG-like cover art in front and an ID3v1 tag at the end."""
    jpeg = b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(art_bytes) + b"\xff\xd9"
    apic = b"\x00image/jpeg\x00\x03cover\x00" + jpeg
    frame = b"APIC" + len(apic).to_bytes(4, "big") + b"\x00\x00" + apic
    size = bytes((len(frame) >> shift) & 0x7F for shift in (21, 14, 7, 0))  # syncsafe integer
    return b"ID3\x03\x00\x00" + size + frame + mp3 + b"TAG" + bytes(125)


def drop_first_mpeg_frame(data: bytes) -> bytes:
    """Remove the first MPEG-1 Layer III frame (where LAME puts its Xing/Info header)."""
    assert data[0] == 0xFF and data[1] & 0xFE == 0xFA, "expected an MPEG-1 Layer III frame at offset 0"
    assert b"Xing" in data[:200] or b"Info" in data[:200]
    kbps = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)[data[2] >> 4]
    rate = (44100, 48000, 32000)[(data[2] >> 2) & 3]
    length = 144000 * kbps // rate + ((data[2] >> 1) & 1)
    return data[length:]
