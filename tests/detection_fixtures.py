"""Detections with the tiny test models: a calibration written into a copy of a student, recordings of calls and
of noise, and a background vocabulary whose class the noise windows are provably nearest to.

The tiny students are trained for seconds, so what they hear is not what a real model hears; the tests
therefore control the inputs of each rule and check that the rule does what it says on them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from birdbridge.models.calibration import Calibration, write_calibration

SR = 16_000
# Prompts to build a background class from; the one the noise windows are nearest to (and the calls are not) is used.
CANDIDATE_PROMPTS = [
    "static hiss", "white noise", "a hissing radio", "wind", "rain", "running water", "a waterfall", "surf",
    "insects", "crickets", "frogs", "an engine", "traffic", "a crowd", "people talking", "silence", "a fan",
    "an air conditioner", "a storm", "thunder", "a shower", "applause", "a vacuum cleaner", "a hair dryer",
    "heavy rain on a roof", "a river", "waves", "a hum", "electrical noise", "a jet", "a train", "a motorbike",
    "leaves rustling", "a drizzle", "steam", "a kettle", "a hiss", "a roar", "a murmur", "a buzz",
]


def calibrated_copy(model: Path, dest: Path, calibration: Calibration) -> Path:
    """A copy of the student folder ``model`` with ``calibration`` stored in it (its fingerprint is unchanged)."""
    shutil.copytree(model, dest)
    write_calibration(dest, calibration)
    return dest


def tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Loud white noise: no call in it."""
    return (0.5 * np.random.default_rng(seed).standard_normal(round(seconds * SR))).astype(np.float32)


def write(path: Path, *parts: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.concatenate(parts), SR)
    return path


def window_vectors(model: Path, files: list[Path], window_s: float | None = None) -> np.ndarray:
    """The student's unit embeddings of the windows of ``files`` (as a search embeds them)."""
    from birdbridge.embed.audio import embed_audio_windows

    table = embed_audio_windows(files, str(model), window_s=window_s, progress=False)
    assert not table.failures, table.failures
    return table.vectors / np.linalg.norm(table.vectors, axis=1, keepdims=True)


def noise_background(gallery: Path, teacher: Path, model: Path, quiet: list[Path], calls: list[Path],
                     vocabulary: Path, label: str = "static") -> str:
    """Write ``vocabulary`` (one class, ``label``, from the candidate prompt that the windows of ``quiet`` are nearest
    to, more than to any species, while every window of ``calls`` is nearer to a species) and return the prompt.
    Fails if no candidate separates them (then the rule could not be shown on these models)."""
    from birdbridge.gallery import Gallery
    from birdbridge.models.loader import load_teacher
    from birdbridge.species.background import BackgroundClass, background_text_embeddings

    species = Gallery.open(gallery).species_vectors
    candidates = background_text_embeddings(load_teacher(str(teacher)),
                                            [BackgroundClass(p, (p,)) for p in CANDIDATE_PROMPTS])
    margins = []
    for files, sign in ((quiet, 1.0), (calls, -1.0)):
        v = window_vectors(model, files)
        best_species = (v @ species.T).max(axis=1, keepdims=True)
        margins.append((sign * ((v @ candidates.T) - best_species)).min(axis=0))  # [candidates]
    margin = np.minimum(*margins)
    best = int(np.argmax(margin))
    assert margin[best] > 0, f"no candidate prompt separates the noise from the calls (best margin {margin[best]})"
    prompt = CANDIDATE_PROMPTS[best]
    vocabulary.write_text(f"# the noise of the tests\n{label}: {prompt}\n")
    return prompt
