"""Small video fixtures written with PyAV in temporary folders (no files are checked in).

Frame ``i`` of :func:`write_video` is a flat grey of level :func:`grey` ``(i)`` unless a ``frame`` function
says otherwise, so a decoded frame tells which frame it was (:func:`frame_index`) despite compression.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

GREY_STEP = 7  # grey levels of consecutive frames differ by this much (H.264 keeps flat greys within ~1)
TIME_BASE = Fraction(1, 90_000)


def grey(i: int) -> int:
    return 16 + GREY_STEP * i


def frame_index(image: Image.Image) -> int:
    """Which frame a decoded flat grey frame was written as."""
    return round((float(np.asarray(image, dtype=np.float64).mean()) - 16) / GREY_STEP)


def flat(rgb: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def write_video(
    path: Path,
    n_frames: int = 30,
    fps: float = 10,
    *,
    times: Sequence[float] | None = None,
    size: tuple[int, int] = (64, 48),
    frame: Callable[[int], Image.Image] | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int = 16_000,
    video: bool = True,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    audio_format: str = "fltp",
    faststart: bool = False,
    container_format: str | None = None,
) -> Path:
    """Write a video: ``n_frames`` at ``fps``, or one frame at each of ``times`` (seconds: variable rate).

    ``audio`` is float32 ``[n]`` (mono) or ``[n, channels]``; ``video=False`` writes the sound alone.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format=container_format, options=options) as container:
        vstream = None
        if video:
            if times is None:
                vstream = container.add_stream(video_codec, rate=Fraction(fps).limit_denominator(1001))
            else:
                vstream = container.add_stream(video_codec)
                vstream.codec_context.time_base = TIME_BASE
                vstream.time_base = TIME_BASE
            vstream.width, vstream.height, vstream.pix_fmt = size[0], size[1], "yuv420p"
            vstream.codec_context.thread_count = 1
            if video_codec == "libx264":
                vstream.options = {"crf": "12", "preset": "fast"}
        astream = None
        if audio is not None:
            channels = 1 if audio.ndim == 1 else audio.shape[1]
            astream = container.add_stream(audio_codec, rate=sample_rate, layout="mono" if channels == 1 else "stereo")
        count = n_frames if times is None else len(times)
        for i in range(count if vstream is not None else 0):
            image = frame(i) if frame is not None else flat((grey(i),) * 3, size)
            out = av.VideoFrame.from_image(image.convert("RGB"))
            if times is None:
                out.pts = i
            else:
                out.pts, out.time_base = round(times[i] / TIME_BASE), TIME_BASE
            container.mux(vstream.encode(out))
        if vstream is not None:
            container.mux(vstream.encode(None))
        if astream is not None:
            x = np.asarray(audio, dtype=np.float32).reshape(len(audio), -1)
            planar = audio_format.endswith("p")
            data = np.ascontiguousarray(x.T if planar else x.reshape(1, -1))
            layout = "mono" if x.shape[1] == 1 else "stereo"
            sound = av.AudioFrame.from_ndarray(data, format=audio_format, layout=layout)
            sound.sample_rate, sound.pts = sample_rate, 0
            container.mux(astream.encode(sound))
            container.mux(astream.encode(None))
    return path


def corrupt_audio(source: Path, target: Path, seed: int = 0) -> Path:
    """A copy of ``source`` whose audio packets are replaced by random bytes (the video is kept)."""
    rng = np.random.default_rng(seed)
    with av.open(str(source)) as src, av.open(str(target), mode="w") as dst:
        vin, ain = src.streams.video[0], src.streams.audio[0]
        vout, aout = dst.add_stream_from_template(vin), dst.add_stream_from_template(ain)
        for packet in src.demux():
            if packet.dts is None:
                continue
            if packet.stream is ain:
                junk = av.Packet(rng.bytes(packet.size))
                junk.pts, junk.dts, junk.time_base, junk.duration = (
                    packet.pts, packet.dts, packet.time_base, packet.duration)
                junk.stream = aout
                dst.mux(junk)
            else:
                packet.stream = vout
                dst.mux(packet)
    return target


def tone_burst(seconds: float, sr: int, start: float, stop: float, freq: float = 1000.0, amp: float = 0.5,
               ) -> np.ndarray:
    """Silence with a tone from ``start`` to ``stop`` seconds."""
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t) * ((t >= start) & (t < stop))).astype(np.float32)
