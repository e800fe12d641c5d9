"""The README's "Python API" snippet runs as written: every line, against small stand-in models.

The stand-ins are put in a Hugging Face cache under the hub ids of the presets the snippet names
(``bioclip-2``, ``biolingual``), so the snippet is run unchanged, in a fresh process, offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import birdbridge
from audio_fixtures import write_wav
from train_fixtures import SPECIES, corpus, make_tone_dataset

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_snippet() -> str:
    section = README.read_text(encoding="utf-8").split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the Python API section holds one Python block"
    return blocks[0]


def hub_cache(root: Path, models: dict[str, Path]) -> Path:
    """A Hugging Face cache holding ``models`` (hub id -> model folder), as `hf download` leaves it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    for hub_id, folder in models.items():
        repo = root / f"models--{hub_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        shutil.copytree(folder, repo / "snapshots" / commit)
    return root


def make_workdir(root: Path) -> None:
    """What the snippet reads: distill.yaml, data/ (calls and pictures), photos/ and recordings/."""
    make_tone_dataset(root / "data", per_species=8, test_per_species=2)  # 24 kNN references: k=20 fits
    rng = np.random.default_rng(0)
    rows = ["path,species,split"]
    for s, (sci, common, freq) in enumerate(SPECIES):
        for i in range(3):
            pixels = np.clip(60 * s + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            for path in (root / "data" / "images" / f"{s}_{i}.png", root / "photos" / f"{sci}_{common}" / f"{i}.png"):
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)
            rows.append(f"images/{s}_{i}.png,{sci}_{common},test")
        write_wav(root / "recordings" / ("call.wav" if s == 0 else f"other{s}.wav"), 1.5, freq=freq)
    (root / "data" / "images.csv").write_text("\n".join(rows) + "\n")
    (root / "data" / "dataset.yaml").write_text("type: manifest\nname: tones\naudio: audio.csv\nimages: images.csv\n")
    (root / "distill.yaml").write_text(
        "student: biolingual\nteacher: bioclip-2\noutput: runs/distill\n"
        "data: {dataset: data/dataset.yaml, num_workers: 0}\nrun: {batch_size: 8, epochs: 1, progress: false}\n"
    )


@pytest.mark.slow  # real processes: over 15 s on a loaded 2-core machine
def test_the_python_api_snippet_runs(tmp_path, tiny_clip) -> None:
    from birdbridge.models.standins import build_small_clap

    snippet = python_api_snippet()
    imports = [line.strip() for line in snippet.splitlines() if re.match(r"\s*(import|from)\s", line)]
    assert imports == ["import birdbridge as bb"], imports  # the root package is the one way in
    clap = build_small_clap(tmp_path / "clap", corpus=corpus())
    cache = hub_cache(tmp_path / "hub", {"imageomics/bioclip-2": tiny_clip, "davidrrobinson/BioLingual": clap})
    work = tmp_path / "work"
    work.mkdir()
    make_workdir(work)
    src = str(Path(birdbridge.__file__).resolve().parents[1])
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", snippet], cwd=work, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    recordings = sorted((work / "recordings").iterdir())
    assert sum(line.startswith(str(Path("recordings"))) for line in lines) >= len(recordings)  # a line per window
    results = json.loads((work / "results.json").read_text())
    assert results["method_ids"]["distilled"] == "distilled"  # a lone model keeps its given name for display
    assert set(results["method_ids"]) == {"distilled", "random_projection", "text_mapping", "zero_shot_chain",
                                          "undistilled"}
    assert sorted(p.name for p in (work / "results").iterdir()) == sorted(
        [*(f"{p.stem}.birdbridge.results.csv" for p in recordings), "birdbridge.search-params.json"])


def test_the_root_exports_stay_the_functions_once_their_packages_are_imported() -> None:
    """``birdbridge.search`` (and .train, .evaluate) are packages too: importing them must not hide the functions."""
    import birdbridge as bb
    import birdbridge.evaluate.runner
    import birdbridge.search.engine
    import birdbridge.train.loop  # each import sets (tries to set) its package on birdbridge
    from birdbridge.evaluate.runner import evaluate
    from birdbridge.search import search
    from birdbridge.search.engine import SearchEngine
    from birdbridge.train.loop import train

    assert (bb.search, bb.train, bb.evaluate, bb.SearchEngine) == (search, train, evaluate, SearchEngine)
    for name in ("Gallery", "embed_audio", "embed_images", "embed_texts", "load_student", "load_teacher",
                 "build_gallery", "Taxonomy", "BirdbridgeError"):
        assert callable(getattr(bb, name)), name
