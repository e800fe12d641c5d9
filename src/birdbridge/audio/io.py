"""Reading recordings: metadata, whole-file and streamed decoding to float32 mono.

Decoding is done by libsndfile (through soundfile) and resampling by soxr. Every failure is raised as
:class:`~birdbridge.errors.AudioError`, whose message names the file and says what to do.

Two libsndfile quirks shape this module:

* python-soundfile seeks back to the current position after every ``read`` on a seekable file, and
  libsndfile's MPEG decoder implements any seek with ``mpg123_seek``, which drops the bit reservoir:
  reading an MP3 in blocks through the normal API inserts silence and garbage after every block
  boundary. All reads here therefore go through :class:`_SequentialSoundFile`, which never seeks while
  decoding; it gives sample-identical output to a one-call read for every format.
* libsndfile takes an MP3's length from its Xing/Info header, or estimates it from the file size and
  the first frame's bitrate, and never decodes past that length. A variable-bitrate MP3 without that
  header (or several MP3s joined together) would silently be cut short, so MP3 lengths are
  cross-checked against a walk over the MPEG frame headers (:func:`_mpeg_stream_samples`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NoReturn

import numpy as np
import soundfile as sf
import soxr

from birdbridge.errors import AudioError
from birdbridge.utils.input_files import check_input_file, looks_like_text, read_head
from birdbridge.utils.walk import FolderFiles, collect_files

__all__ = [
    "AUDIO_EXTENSIONS",
    "MIN_SAMPLE_RATE",
    "RESAMPLE_QUALITY",
    "AudioInfo",
    "audio_info",
    "find_audio_files",
    "read_audio",
    "scan_audio_files",
    "stream_audio",
]

PathLike = str | os.PathLike[str]

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"}
)
"""File name extensions (lowercase, with the dot) that :func:`find_audio_files` picks up in folders."""

RESAMPLE_QUALITY = "HQ"
"""soxr quality preset used for every resampling."""

MIN_SAMPLE_RATE = 8_000
"""The lowest sample rate (Hz) a recording may have: bird song lies mostly at 1–8 kHz, and below 8 kHz
(a 4 kHz band) it is lost. A header claiming less (1 Hz, 100 Hz) is damaged or not a field recording."""

_READ_BLOCK_S = 30.0  # block length used internally by read_audio
_SF_COUNT_MAX = 2**63 - 1  # libsndfile's "length unknown" frame count
_MPEG_SLACK_FRAMES = 8  # allowed gap, in MPEG frames, between the frame walk and libsndfile's length
_EMPTY_HINT = "the recording is empty; record or export it again"
_FORMATS_TEXT = "WAV, FLAC, OGG (Vorbis/Opus), MP3 or AIFF"
_CONVERT_HINT = (
    f"birdbridge reads {_FORMATS_TEXT}; check that the file is a complete recording, "
    "or convert it to FLAC or WAV with an audio editor or converter"
)

# Magic numbers of common non-audio files, to explain a failure better than "format not recognised".
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (4, b"ftyp", "an MP4/M4A container (e.g. AAC audio), which libsndfile cannot decode"),
    (0, b"\x1aE\xdf\xa3", "a Matroska/WebM container, which libsndfile cannot decode"),
)


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file says (see :func:`audio_info`)."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str = ""

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


class _SequentialSoundFile(sf.SoundFile):
    """A SoundFile that python-soundfile treats as unseekable, so it never seeks while reading.

    ``seek()`` still works when called explicitly; only the seeks python-soundfile adds around every
    read are avoided (they corrupt MP3 decoding, see the module docstring). Reads must pass a frame
    count; a short read means the end of the file.
    """

    def seekable(self) -> bool:
        return False


# ---------------------------------------------------------------------------------------------------
# Opening and checking files


def _check_file(path: PathLike) -> Path:
    """``path`` as a Path after checking it is an existing, non-empty regular file and no known non-audio format."""
    p = check_input_file(path, AudioError, kind="an audio file", noun="recording",
                         folder_hint="give the files, or use find_audio_files")
    head = read_head(p, 16)
    for offset, magic, what in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            raise AudioError(p, f"is {what}, not a readable audio file", _CONVERT_HINT)
    return p


def _libsndfile_message(error: sf.SoundFileError) -> str:
    """libsndfile's own explanation, without the file name soundfile puts in front of it."""
    message = getattr(error, "error_string", None) or str(error)
    message = message.strip().rstrip(".")
    if message.lower().startswith("error : "):
        message = message[8:]
    return message


def _open_soundfile(path: Path) -> _SequentialSoundFile:
    try:
        return _SequentialSoundFile(path)
    except sf.SoundFileError as e:  # LibsndfileError: unrecognised, unsupported or malformed data
        if looks_like_text(read_head(path)):
            problem = "is a text file, not audio"
        elif "does not exist or is not a regular file" in str(e):
            # libsndfile's MPEG probe reports every undecodable .mp3 this way; the file does exist.
            problem = "is not a readable audio file (no valid MPEG audio frames found)"
        else:
            problem = f"is not a readable audio file (libsndfile: {_libsndfile_message(e)})"
        raise AudioError(path, problem, _CONVERT_HINT) from e


def _format_time(seconds: float) -> str:
    text = f"{seconds:.3f} s"
    if seconds >= 60:
        minutes, secs = divmod(seconds, 60.0)
        hours, minutes = divmod(int(minutes), 60)
        text += f" ({hours}:{minutes:02d}:{secs:06.3f})" if hours else f" ({minutes}:{secs:06.3f})"
    return text


# ---------------------------------------------------------------------------------------------------
# MPEG frame walk


_MPEG_KBPS: dict[tuple[bool, int], tuple[int, ...]] = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_frame(header: bytes) -> tuple[int, int, int] | None:
    """(frame bytes, samples per frame, sample rate) of a 4-byte MPEG audio header, or None."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate_index, rate_index, padding = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved values, or free-format bitrate (frame length not in the header)
    layer, mpeg1 = 4 - layer_bits, version == 3
    kbps, rate = _MPEG_KBPS[mpeg1, layer][bitrate_index], _MPEG_RATES[version][rate_index]
    if layer == 1:
        return (12000 * kbps // rate + padding) * 4, 384, rate
    if layer == 3 and not mpeg1:
        return 72000 * kbps // rate + padding, 576, rate
    return 144000 * kbps // rate + padding, 1152, rate


def _mpeg_stream_samples(path: Path, chunk: int = 1 << 20) -> tuple[int, int] | None:
    """Count the samples per channel in an MPEG audio file by walking its frame headers.

    Returns ``(samples, samples_per_frame)``, or None if no frames are found. The count includes the
    Xing/Info frame and the encoder delay and padding, so it exceeds the decoded length by up to about
    three frames. Sync is only (re)acquired on two consecutive matching headers, so ID3 tags and junk
    are skipped. Reads the file in ``chunk``-byte pieces; memory stays small.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        buf, base = b"", 0

        def read(pos: int, n: int) -> bytes:
            nonlocal buf, base
            if pos < base or pos + n > base + len(buf):
                fh.seek(pos)
                buf, base = fh.read(max(n, chunk)), pos
            return buf[pos - base : pos - base + n]

        pos = 0
        head = read(0, 10)
        if head[:3] == b"ID3" and len(head) == 10:  # ID3v2 tag: syncsafe size, optional footer
            syncsafe = 0
            for byte in head[6:10]:
                syncsafe = syncsafe << 7 | byte & 0x7F
            pos = 10 + syncsafe + (10 if head[5] & 0x10 else 0)
        total, ref, locked = 0, None, False

        def matches(frame: tuple[int, int, int] | None, at: int) -> bool:
            """A header with the stream's layout; before sync is held, the next header must agree too."""
            if frame is None or (ref is not None and frame[1:] != ref):
                return False
            if locked:
                return True
            following = _mpeg_frame(read(at + frame[0], 4))
            return following is not None and following[1:] == frame[1:]

        while pos + 4 <= size:
            frame = _mpeg_frame(read(pos, 4))
            if frame is not None and matches(frame, pos):
                total += frame[1]
                ref, locked = frame[1:], True
                pos += frame[0]
                continue
            locked = False
            pos += 1
            while pos < size:  # resync on the next 0xFF byte
                piece = read(pos, chunk)
                found = piece.find(b"\xff")
                if found >= 0:
                    pos += found
                    break
                pos += len(piece)
    if ref is None:
        return None
    return total, ref[0]


# ---------------------------------------------------------------------------------------------------
# Sequential decoder


class _Decoder:
    """An open audio file, decoded sequentially to float32 mono blocks with all checks applied."""

    def __init__(self, path: PathLike) -> None:
        self.path = _check_file(path)
        self.file = _open_soundfile(self.path)
        try:
            self._inspect()
        except BaseException:
            self.file.close()
            raise

    def _inspect(self) -> None:
        f = self.file
        self.sample_rate: int = f.samplerate
        if self.sample_rate < MIN_SAMPLE_RATE:
            raise AudioError(
                self.path,
                f"its header gives a sample rate of {self.sample_rate} Hz, below birdbridge's floor of "
                f"{MIN_SAMPLE_RATE} Hz (bird song, mostly 1-8 kHz, does not survive a lower rate)",
                "the header is probably damaged; re-export the recording at 8 kHz or more (e.g. 48 kHz)",
            )
        self.channels: int = f.channels
        self.format: str = f.format
        self.subtype: str = f.subtype
        self.position = 0  # input frames consumed so far
        known = f.frames < _SF_COUNT_MAX and sf.SoundFile.seekable(f)
        self.header_frames: int | None = f.frames if known else None
        self.is_mpeg = self.format == "MP3"
        self.mpeg_samples: int | None = None
        self.mpeg_tolerance = 0
        if self.is_mpeg:
            walked = _mpeg_stream_samples(self.path)
            if walked is not None:
                self.mpeg_samples, frame_samples = walked
                # Walk minus decoded length = Xing frame + encoder delay + end padding: at most ~3 frames.
                self.mpeg_tolerance = _MPEG_SLACK_FRAMES * frame_samples
        if (
            self.header_frames is not None
            and self.mpeg_samples is not None
            and self.mpeg_samples > self.header_frames + self.mpeg_tolerance
        ):
            have, total = self.header_frames / self.sample_rate, self.mpeg_samples / self.sample_rate
            raise AudioError(
                self.path,
                f"libsndfile would decode only the first {_format_time(have)} of about {_format_time(total)} "
                "of MPEG audio (its header under-reports the length: a variable-bitrate MP3 without a "
                "Xing/Info header, or several MP3s joined together)",
                "convert it to FLAC or WAV with another decoder, or fix its header with an MP3 repair tool",
            )

    def estimated_frames(self) -> int | None:
        """The best frame count available without decoding; None if neither header nor walk gives one."""
        frames, walked = self.header_frames, self.mpeg_samples
        if walked is not None and (frames is None or walked < frames - self.mpeg_tolerance):
            frames = walked  # header gives no length, or more than the file holds (e.g. truncated)
        return frames

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> _Decoder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _read(self, frames: int) -> np.ndarray:
        try:
            return self.file.read(frames, dtype="float32", always_2d=True)
        except sf.SoundFileError as e:  # LibsndfileError, e.g. "flac decoder lost sync"
            end = self.position + frames
            if self.header_frames is not None:
                end = max(self.position, min(end, self.header_frames))
            start, end = self.position / self.sample_rate, end / self.sample_rate
            raise AudioError(
                self.path,
                f"decoding failed between {_format_time(start)} and {_format_time(end)} "
                f"(libsndfile: {_libsndfile_message(e)})",
                "the file is probably truncated or corrupt; re-copy or re-export it",
            ) from e

    def skip(self, frames: int) -> None:
        """Move ``frames`` input frames forward; raise AudioError if the file ends first."""
        if frames <= 0:
            return
        target = self.position + frames
        if not self.is_mpeg and self.header_frames is not None:
            if target >= self.header_frames:
                self._past_end(target, self.header_frames)
            try:  # exact for PCM, FLAC, Vorbis and Opus; MPEG seeking is not (see the module docstring)
                self.file.seek(target)
            except sf.SoundFileError as e:
                raise AudioError(self.path, f"cannot seek to {_format_time(target / self.sample_rate)} "
                                 f"(libsndfile: {_libsndfile_message(e)})", _CONVERT_HINT) from e
            self.position = target
            return
        block = max(1, int(_READ_BLOCK_S * self.sample_rate))
        while self.position < target:
            got = len(self._read(min(block, target - self.position)))
            self.position += got
            if got == 0:
                self._past_end(target, self.position)

    def _past_end(self, target: int, length: int) -> NoReturn:
        raise AudioError(
            self.path,
            f"offset {_format_time(target / self.sample_rate)} is past the end of the recording "
            f"({_format_time(length / self.sample_rate)} long)",
            "use a smaller offset",
        )

    def blocks(self, block_frames: int, max_frames: int | None = None) -> Iterator[np.ndarray]:
        """Yield float32 mono blocks of ``block_frames`` input frames (the last one may be shorter)."""
        remaining = max_frames
        while remaining is None or remaining > 0:
            want = block_frames if remaining is None else min(block_frames, remaining)
            data = self._read(want)
            if len(data) == 0:
                break
            finite = np.isfinite(data)
            if not finite.all():
                bad = int(np.flatnonzero(~finite.all(axis=1))[0])
                value = data[bad][~finite[bad]][0]
                kind = "NaN" if np.isnan(value) else "infinite"
                t = (self.position + bad) / self.sample_rate
                raise AudioError(
                    self.path,
                    f"holds {kind} samples, the first at {_format_time(t)} (frame {self.position + bad})",
                    "the floating-point data is damaged; re-export the recording, e.g. as 16- or 24-bit PCM",
                )
            mono = data[:, 0].copy() if self.channels == 1 else data.mean(axis=1, dtype=np.float32)
            self.position += len(data)
            if remaining is not None:
                remaining -= len(data)
            yield mono
        if max_frames is None:
            self._check_complete()

    def _check_complete(self) -> None:
        """After reading to the end: the file must hold audio, and an MP3 must not stop early."""
        if self.position == 0:
            raise AudioError(self.path, "contains no audio samples", _EMPTY_HINT)
        walked = self.mpeg_samples
        if walked is not None:
            expected = walked if self.header_frames is None else min(walked, self.header_frames)
            if self.position < expected - self.mpeg_tolerance:
                raise AudioError(
                    self.path,
                    f"MPEG decoding stopped at {_format_time(self.position / self.sample_rate)}, but the "
                    f"file holds about {_format_time(walked / self.sample_rate)} of audio frames",
                    "the file is probably corrupt; re-copy it, or convert it with another decoder",
                )


# ---------------------------------------------------------------------------------------------------
# Public API


def audio_info(path: PathLike) -> AudioInfo:
    """Read an audio file's header: sample rate, channels, length and format.

    Only the header is parsed (plus, for MP3, a walk over the frame headers); damage inside the audio
    data is detected when decoding. For MP3 ``frames`` is libsndfile's count (exact for files with a
    Xing/Info header, as LAME writes), or the frame-walk estimate (within a few MPEG frames) when the
    header gives no length or more than the file holds. If neither gives a length the file is decoded
    once to count its frames.

    Raises:
        AudioError: missing, empty, unreadable or non-audio file; a sample rate below
            :data:`MIN_SAMPLE_RATE`; no audio frames; an MP3 that libsndfile would decode only in part.
    """
    with _Decoder(path) as d:
        frames = d.estimated_frames()
        if frames is None:
            frames = sum(len(block) for block in d.blocks(max(1, int(_READ_BLOCK_S * d.sample_rate))))
        if frames <= 0:
            raise AudioError(d.path, "contains no audio samples", _EMPTY_HINT)
        return AudioInfo(d.path, d.sample_rate, d.channels, int(frames), d.format, d.subtype)


def _check_rate(path: PathLike, sample_rate: int | None, required: bool = False) -> None:
    if (sample_rate is not None or required) and (
        not isinstance(sample_rate, int | np.integer) or isinstance(sample_rate, bool) or sample_rate <= 0
    ):
        raise AudioError(path, f"invalid target sample rate {sample_rate!r}", "give a whole number of Hz")


def read_audio(
    path: PathLike,
    sample_rate: int | None = None,
    *,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Decode a recording (or the part from ``offset_s`` lasting ``duration_s``) to float32 mono.

    Channels are averaged. With ``sample_rate`` the audio is resampled with soxr (quality "HQ");
    otherwise it keeps the file's rate (see :func:`audio_info`). The whole selection is held in memory;
    use :func:`stream_audio` for long files.

    Raises:
        AudioError: any problem :func:`audio_info` reports, data that cannot be decoded, NaN or
            infinite samples (the message gives the time of the first), or an offset past the end.
    """
    _check_rate(path, sample_rate)
    if not (math.isfinite(offset_s) and offset_s >= 0):
        raise AudioError(path, f"invalid offset {offset_s!r} s", "give an offset of 0 s or more")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise AudioError(path, f"invalid duration {duration_s!r} s", "give a duration above 0 s, or None")
    with _Decoder(path) as d:
        sr = d.sample_rate
        d.skip(round(offset_s * sr))
        count = None if duration_s is None else max(1, round(duration_s * sr))
        parts = list(d.blocks(max(1, int(_READ_BLOCK_S * sr)), max_frames=count))
        if not parts:
            d._past_end(d.position, d.position)
        path_ = d.path
    x = parts[0] if len(parts) == 1 else np.concatenate(parts)
    del parts
    if sample_rate is not None and sample_rate != sr:
        x = soxr.resample(x, sr, sample_rate, quality=RESAMPLE_QUALITY)
        if x.size == 0:
            raise AudioError(path_, "is too short to resample", "use a longer recording")
    return np.ascontiguousarray(x, dtype=np.float32)


def stream_audio(path: PathLike, sample_rate: int, *, block_s: float = 60.0) -> Iterator[np.ndarray]:
    """Decode a recording block by block: yields consecutive float32 mono blocks at ``sample_rate``.

    Each block covers about ``block_s`` seconds (with resampling the lengths vary slightly; no block is
    empty). Memory is bounded by the block size, never the file. Resampling uses
    ``soxr.ResampleStream``, whose concatenated output equals the one-shot ``soxr.resample`` that
    :func:`read_audio` uses. Arguments are checked at once; the file is opened on the first ``next()``.

    Raises:
        AudioError: as :func:`read_audio`; NaN/Inf or decoding errors are raised when the block holding
            them is reached, after the earlier blocks have been yielded.
    """
    _check_rate(path, sample_rate, required=True)
    if not (math.isfinite(block_s) and block_s > 0):
        raise AudioError(path, f"invalid block length {block_s!r} s", "give a block length above 0 s")
    return _stream(path, sample_rate, block_s)


def _stream(path: PathLike, sample_rate: int, block_s: float) -> Iterator[np.ndarray]:
    with _Decoder(path) as d:
        block_frames = max(1, round(block_s * d.sample_rate))
        if d.sample_rate == sample_rate:
            yield from d.blocks(block_frames)
            return
        stream = soxr.ResampleStream(d.sample_rate, sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        for block in d.blocks(block_frames):
            out = stream.resample_chunk(block, last=False)
            if out.size:
                yield out
        out = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if out.size:
            yield out


def find_audio_files(inputs: Sequence[str | Path], recursive: bool = True) -> list[Path]:
    """Resolve command-line style inputs to a list of audio files (:func:`scan_audio_files` without its problems,
    which are logged as warnings)."""
    return scan_audio_files(inputs, recursive).warn()


def scan_audio_files(inputs: Sequence[str | Path], recursive: bool = True) -> FolderFiles:
    """Command-line style inputs to audio files, and the folder entries that could not be read.

    Files are kept as given and in the given order, whatever their extension. A folder is replaced by
    the files in it (and, if ``recursive``, its subfolders) whose extension is in
    :data:`AUDIO_EXTENSIONS` (case-insensitive), sorted by path; hidden files and folders (name
    starting with ".", such as macOS "._x.wav" resource forks) are skipped. A file reached twice is
    listed once, at its first place. An unreadable subfolder, a broken link or a link loop is listed in
    ``problems`` (see :func:`birdbridge.utils.walk.walk_files`).

    Raises:
        AudioError: a path that does not exist, or a folder without audio files.
    """
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    return collect_files(inputs, AUDIO_EXTENSIONS, what="audio files", recursive=recursive, error=AudioError)
