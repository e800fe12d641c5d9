"""A small labelled dataset of synthetic calls in the generic manifest layout, for training tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from audio_fixtures import write_wav

SPECIES = [
    ("Pica hudsonia", "Black-billed Magpie", 800.0),
    ("Turdus migratorius", "American Robin", 1600.0),
    ("Corvus corax", "Common Raven", 2400.0),
    ("Sitta carolinensis", "White-breasted Nuthatch", 3200.0),
]


def make_tone_dataset(root: Path, per_species: int = 10, test_per_species: int = 3, seed: int = 0) -> Path:
    """Write ``audio/*.wav`` and ``audio.csv`` (path, species, split); return the manifest path."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for s, (sci, common, freq) in enumerate(SPECIES):
        for i in range(per_species):
            duration = rng.uniform(0.6, 2.0)
            t = np.arange(int(duration * 16_000)) / 16_000
            f = freq * (1 + 0.05 * rng.standard_normal())
            x = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size)
            rel = f"audio/{s}_{i}.wav"
            write_wav(root / rel, x.astype(np.float32))
            split = "test" if i >= per_species - test_per_species else "train"
            rows.append((rel, f"{sci}_{common}", split))
    manifest = root / "audio.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "species", "split"])
        writer.writerows(rows)
    return manifest


def make_background(root: Path, per_class: int = 3) -> tuple[Path, Path]:
    """Noise recordings in class folders ``wind/`` (low-passed), ``rain/`` (white) and ``voices/`` (an alias of human
    speech), and ``background.csv`` (path, label, split: the last of each class is ``test``) listing them.
    Returns (folder, manifest)."""
    folder = root / "noise"
    rows = []
    for c, (label, seconds, smooth) in enumerate((("wind", 1.2, 40), ("rain", 0.8, 1), ("voices", 1.5, 4))):
        for i in range(per_class):
            rng = np.random.default_rng([c, i])
            x = np.convolve(rng.standard_normal(int(seconds * 16_000) + smooth), np.ones(smooth) / smooth, "valid")
            path = write_wav(folder / label / f"{label}{i}.wav",
                             (0.2 * x[: int(seconds * 16_000)] / np.abs(x).max()).astype(np.float32))
            rows.append((path.relative_to(root).as_posix(), label, "test" if i == per_class - 1 else "train"))
    manifest = root / "background.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return folder, manifest


def corpus() -> list[str]:
    return [f"{sci} {common}" for sci, common, _ in SPECIES]
