"""Shared fixtures: small models built once per session, saved in the real hub layouts."""

from __future__ import annotations

import os

# One compute thread per test process (and the subprocesses it starts), set before numpy and torch load:
# the models here are tiny, and on a busy or shared machine a second OpenMP thread that waits for a core
# makes training several times slower (the demo's pretraining: 42 s with one thread, 294 s with two).
# pytest-xdist workers then each take a core. Set OMP_NUM_THREADS yourself to override.
os.environ["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
os.environ["OPENBLAS_NUM_THREADS"] = os.environ.get("OPENBLAS_NUM_THREADS", "1")
os.environ["MKL_NUM_THREADS"] = os.environ.get("MKL_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = os.environ.get("HF_HUB_OFFLINE", "1")
os.environ["TRANSFORMERS_OFFLINE"] = os.environ.get("TRANSFORMERS_OFFLINE", "1")
os.environ["BIRDBRIDGE_NO_PROGRESS"] = os.environ.get("BIRDBRIDGE_NO_PROGRESS", "1")
# The commands' --backend auto would export each tiny model to ONNX once per test process; the suite runs the
# student on torch, and tests/test_backends.py runs the other backends (and auto) explicitly.
os.environ["BIRDBRIDGE_BACKEND"] = os.environ.get("BIRDBRIDGE_BACKEND", "torch")

from pathlib import Path

import pytest

from audio_fixtures import tone, write_wav

# The longest test files, started first, longest first: under pytest-xdist (./scripts/test) each file stays on one
# worker, so the demo's end-to-end run (about half of the suite's compute) begins at once while the other worker takes
# the rest, long files first, so that short ones fill the end and the workers finish together.
LONGEST_FIRST = ("test_demo.py", "test_archive.py", "test_train.py", "test_bounds.py", "test_teacher.py",
                 "test_serve_browser.py", "test_readme.py", "test_gallery_cli.py")


def pytest_collection_modifyitems(config, items) -> None:
    first = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # a stable sort: the order stays otherwise


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's on-disk caches out of the user's home."""
    monkeypatch.setenv("BIRDBRIDGE_CACHE", str(tmp_path_factory.getbasetemp() / "bb-cache"))


@pytest.fixture(scope="session")
def tiny_clap(tmp_path_factory) -> Path:
    """A small random ClapModel folder (16 kHz, 1 s windows) with its tokenizer."""
    from birdbridge.models.standins import build_small_clap

    corpus = ["a bird sings", "Pica hudsonia", "black-billed magpie", "American Robin Turdus migratorius"]
    return build_small_clap(tmp_path_factory.mktemp("models") / "tiny-clap", corpus=corpus)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A small random CLIP saved in open_clip's hub layout."""
    from birdbridge.models.standins import build_small_clip

    return build_small_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture()
def audio_dir(tmp_path) -> Path:
    """A folder of small recordings in several formats, rates and lengths."""
    folder = tmp_path / "audio"
    folder.mkdir()
    write_wav(folder / "a_tone.wav", 1.0, freq=800)
    write_wav(folder / "b_stereo.flac", tone(2.5, 22_050, 1500, channels=2), 22_050)
    write_wav(folder / "c_short.ogg", 0.3, 44_100, freq=3000, format="OGG", subtype="VORBIS")
    write_wav(folder / "d_long.mp3", 3.2, 48_000, freq=500, format="MP3")
    return folder
