"""Audio input: reading recordings (soundfile), resampling (soxr) and cutting them into windows."""

from birdbridge.audio.io import (
    AUDIO_EXTENSIONS,
    MIN_SAMPLE_RATE,
    RESAMPLE_QUALITY,
    AudioInfo,
    audio_info,
    find_audio_files,
    read_audio,
    scan_audio_files,
    stream_audio,
)
from birdbridge.audio.windows import (
    Window,
    WindowSpec,
    WindowSpecError,
    iter_windows,
    random_crop,
    repeat_pad,
    window_starts,
    windows_from_array,
)
from birdbridge.errors import AudioError  # re-exported: what every reader here raises

__all__ = [
    "AUDIO_EXTENSIONS",
    "MIN_SAMPLE_RATE",
    "RESAMPLE_QUALITY",
    "AudioError",
    "AudioInfo",
    "Window",
    "WindowSpec",
    "WindowSpecError",
    "audio_info",
    "find_audio_files",
    "iter_windows",
    "random_crop",
    "read_audio",
    "repeat_pad",
    "scan_audio_files",
    "stream_audio",
    "window_starts",
    "windows_from_array",
]
