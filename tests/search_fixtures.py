"""A tiny distilled world for search tests: a stand-in teacher and student, a student distilled in seconds on
tone calls, and a gallery of generated pictures (BirdNET-style folder names, so common names are known)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from train_fixtures import SPECIES, corpus, make_tone_dataset


def distilled_world(root: Path, *, per_species: int = 8, test_per_species: int = 2, pictures: int = 3) -> dict:
    """``root`` filled with ``data/`` (the calls' manifest), ``teacher/``, ``student/``, ``run/model`` (the distilled
    student, 2 epochs), ``photos/`` and ``gallery/`` (with the default background vocabulary); their paths."""
    from birdbridge.gallery.build import build_gallery
    from birdbridge.models.standins import build_small_clap, build_small_clip
    from birdbridge.train.config import load_config
    from birdbridge.train.loop import train

    manifest = make_tone_dataset(root / "data", per_species=per_species, test_per_species=test_per_species)
    teacher = build_small_clip(root / "teacher")
    student = build_small_clap(root / "student", corpus=corpus())
    cfg = load_config(None, [f"data.dataset={manifest}", f"student={student}", f"teacher={teacher}",
                             f"output={root / 'run'}", "run.batch_size=8", "run.epochs=2", "data.num_workers=0",
                             "run.progress=false"])
    model = train(cfg).model
    photos = root / "photos"
    rng = np.random.default_rng(0)
    for s, (sci, common, _) in enumerate(SPECIES):
        folder = photos / f"{sci}_{common}"
        folder.mkdir(parents=True)
        for i in range(pictures):
            Image.fromarray(np.clip(60 * s + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)).save(
                folder / f"{i}.png")
    gallery = root / "gallery"
    build_gallery([photos], gallery, str(teacher), progress=False)
    return {"root": root, "manifest": manifest, "teacher": teacher, "student": student, "model": model,
            "photos": photos, "gallery": gallery}
