"""How often a student's nearest frame shows the bird: the mechanism Nearest Match relies on, measured.

The demo world knows when each video's bird is in view. For every window of a video's sound (the
student's window, hop a quarter of it), the frames shown during the window are the candidates. A random
pick shows the bird with probability (candidates in view) / (candidates); the nearest pick (the frame
whose teacher embedding is most like the student's audio embedding) does or does not. Averaged over the
windows of the test videos, the two shares say whether audio has learned to point at the bird.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from birdbridge.demo.world import World


def bird_frame_share(world: World, student: str | Path, teacher: str | Path, fps: float,
                     split: str = "test") -> dict[str, float]:
    """``{"nearest": share, "random": share, "windows": n}`` over the windows of ``split``'s videos."""
    from birdbridge.embed import embed_audio_windows
    from birdbridge.models.loader import load_student, load_teacher
    from birdbridge.video import frame_embeddings, video_audio_cache

    model = load_student(str(student))
    encoder = load_teacher(str(teacher))
    nearest, random = [], []
    for item in world.video_items(split):
        path = world.path(item)
        frames = frame_embeddings(path, encoder, fps)
        wav = video_audio_cache(path, model.sample_rate)
        window = model.window_samples / model.sample_rate
        table = embed_audio_windows([wav], model, hop_s=window / 4, progress=False, skip_errors=False)
        in_view = (frames.times >= item.visible_start) & (frames.times < item.visible_end)
        for vector, start, end in zip(table.vectors, table.start_s, table.end_s, strict=True):
            shown = np.flatnonzero((frames.times >= start) & (frames.times < end))
            if not len(shown):
                continue
            best = shown[int(np.argmax(frames.vectors[shown] @ vector))]
            nearest.append(float(in_view[best]))
            random.append(float(in_view[shown].mean()))
    if not nearest:
        raise ValueError(f"no {split} video window to measure")
    return {"nearest": float(np.mean(nearest)), "random": float(np.mean(random)), "windows": len(nearest)}
