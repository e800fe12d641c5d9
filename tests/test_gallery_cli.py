"""``birdbridge index`` and ``birdbridge gallery`` from the command line, including a SIGKILL mid-build and resume."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from birdbridge.gallery import Gallery, build_gallery
from cli_fixtures import run, start

SPECIES = ["Pica hudsonia", "Turdus migratorius", "Corvus corax", "Cyanocitta cristata", "Sitta carolinensis",
           "Poecile atricapillus"]


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory) -> Path:
    """300 pictures of 6 species (large enough that decoding takes a while)."""
    root = tmp_path_factory.mktemp("many") / "photos"
    rng = np.random.default_rng(0)
    for name in SPECIES:
        (root / name).mkdir(parents=True)
        for i in range(50):
            pixels = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def committed(folder: Path) -> int:
    try:
        return int(json.loads((folder / "gallery.json").read_text())["count"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow  # real processes: over 15 s on a loaded 2-core machine
def test_kill_and_resume_equals_a_one_shot_build(tmp_path, tiny_clip, many_photos, capsys):
    out = tmp_path / "killed"
    args = ["index", "--teacher", tiny_clip, "--images", many_photos, "--output", out, "--commit-every", "16",
            "--batch-size", "4", "--templates", "single"]
    proc = start(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 env={**os.environ, "BIRDBRIDGE_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    while committed(out) < 16 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = committed(out)
    assert 16 <= at_kill < 300, f"the build was not interrupted mid-way ({at_kill} committed)"
    assert json.loads((out / "gallery.json").read_text())["build"]["complete"] is False

    resumed = run(capsys, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed gallery" in resumed.stdout and f"{at_kill:,} already there" in resumed.stdout

    reference = tmp_path / "one-shot"
    build_gallery([many_photos], reference, str(tiny_clip), templates="single", progress=False)
    a, b = Gallery.open(out), Gallery.open(reference)
    assert len(a) == len(b) == 300
    assert a.ids() == b.ids()
    rows_a = [a.row_of(i) for i in sorted(a.ids())]
    rows_b = [b.row_of(i) for i in sorted(b.ids())]
    assert len(set(rows_a)) == 300
    np.testing.assert_allclose(a.vectors[rows_a].astype(np.float32), b.vectors[rows_b].astype(np.float32), atol=1e-3)
    assert [r.species for r in a.records(rows_a)] == [r.species for r in b.records(rows_b)]
    assert (out / "vectors.f16").stat().st_size == 300 * a.dim * 2
    assert a.meta["build"]["complete"] is True


def test_index_info_species_and_ann_commands(tmp_path, tiny_clip, capsys):
    photos = tmp_path / "photos"
    rng = np.random.default_rng(1)
    for name in ("Pica hudsonia_Black-billed Magpie", "Turdus migratorius"):
        (photos / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(photos / name / f"{i}.png")
    (photos / "Turdus migratorius" / "bad.png").write_bytes(b"garbage")
    out = tmp_path / "gallery"
    result = run(capsys, "index", "--teacher", tiny_clip, "--images", photos, "--output", out, "--templates", "single")
    assert result.returncode == 0, result.stderr
    assert "added 6 images" in result.stdout and "1 skipped" in result.stdout
    assert "skipped 1 inputs" in result.stderr and "bad.png" in result.stderr

    slist = tmp_path / "slist.txt"
    slist.write_text("Pica hudsonia_Black-billed Magpie\nCorvus corax_Common Raven\n")
    result = run(capsys, "gallery", "species", out, "--species-list", slist, "--templates", "single")
    assert result.returncode == 0, result.stderr
    assert "3 species (2 with images, 1 text only)" in result.stdout

    result = run(capsys, "gallery", "ann", out, "--connectivity", "8")
    assert result.returncode == 0, result.stderr
    assert "ANN index of 6 rows" in result.stdout

    result = run(capsys, "gallery", "info", out)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "6 of 2 species; 24-d float16" in text and "tiny-clip" in text
    assert "3 in the species index (2 with images, 1 text only)" in text
    assert "up to date (6 rows; connectivity 8" in text and "vectors.f16" in text
    info = json.loads(run(capsys, "gallery", "info", out, "--json").stdout)
    assert info["count"] == 6 and info["ann"]["up_to_date"] and info["species"]["count"] == 3
    result = run(capsys, "gallery", "ann", out, "--nprobe", "4")  # a setting of another engine than the index's
    assert result.returncode == 1 and "nprobe: settings of the faiss-ivf ANN engine, not of usearch" in result.stderr
    if importlib.util.find_spec("faiss") is not None:
        result = run(capsys, "gallery", "ann", out, "--engine", "faiss-ivf", "--nprobe", "4")
        assert result.returncode == 0 and "faiss-ivf: nlist 1, nprobe 4" in result.stdout, result.stderr

    # adding makes the ANN stale, which info reports
    more = tmp_path / "more" / "Corvus corax"
    more.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(more / "0.png")
    result = run(capsys, "index", "--teacher", tiny_clip, "--images", more.parent, "--output", out, "--add",
                 "--no-ann", "--templates", "single")
    assert result.returncode == 0, result.stderr
    assert "added 1 images" in result.stdout
    assert "stale: covers 6 of 7 rows" in run(capsys, "gallery", "info", out).stdout
    species = {s.key: s for s in Gallery.open(out).species()}
    assert species["Corvus corax"].has_images and species["Corvus corax"].common_name == "Common Raven"


def test_cli_errors(tmp_path, tiny_clip, capsys):
    photos = tmp_path / "photos" / "Pica hudsonia"
    photos.mkdir(parents=True)
    (photos / "a.png").write_bytes(b"garbage")
    result = run(capsys, "index", "--teacher", tiny_clip, "--images", photos.parent, "--output", tmp_path / "g",
                 "--templates", "single")
    assert result.returncode == 1 and "cannot decode" in result.stderr  # nothing could be indexed
    result = run(capsys, "gallery", "info", tmp_path / "nowhere")
    assert result.returncode == 1 and "does not exist" in result.stderr
    result = run(capsys, "gallery", "species", tmp_path / "g")
    assert result.returncode == 1 and "choose one of --species-list" in result.stderr
