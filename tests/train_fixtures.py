"""A small labelled dataset of synthetic calls in the generic manifest layout, for training tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

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
            sf.write(root / rel, x.astype(np.float32), 16_000)
            split = "test" if i >= per_species - test_per_species else "train"
            rows.append((rel, f"{sci}_{common}", split))
    manifest = root / "audio.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "species", "split"])
        writer.writerows(rows)
    return manifest


def corpus() -> list[str]:
    return [f"{sci} {common}" for sci, common, _ in SPECIES]
