"""Videos with sound: decoding (PyAV), frames sampled by timestamp, cached teacher embeddings of frames."""

from birdbridge.video.decode import (
    VFR_TOLERANCE,
    VIDEO_EXTENSIONS,
    VideoError,
    VideoInfo,
    iter_frames,
    iter_video_audio,
    read_video_audio,
    sample_frames,
    video_info,
)
from birdbridge.video.frames import FrameEmbeddings, frame_embeddings, video_audio_cache, video_batch_embeddings

__all__ = [
    "VFR_TOLERANCE",
    "VIDEO_EXTENSIONS",
    "FrameEmbeddings",
    "VideoError",
    "VideoInfo",
    "frame_embeddings",
    "iter_frames",
    "iter_video_audio",
    "read_video_audio",
    "sample_frames",
    "video_audio_cache",
    "video_batch_embeddings",
    "video_info",
]
