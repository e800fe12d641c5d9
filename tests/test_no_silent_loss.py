"""Nothing is lost quietly: every recording gets its own result file, unreadable folder entries are reported,
and a gallery that cannot answer (unfinished, no species index, damaged files) says so instead of answering
with nothing. Driven through the CLI as a user runs it, and through the Python API."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from audio_fixtures import tone
from birdbridge.errors import BirdbridgeError
from cli_fixtures import run

SPECIES = ["Pica hudsonia", "Turdus migratorius", "Corvus corax"]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clap, tiny_clip):
    """A small gallery and a (random, untrained) student distilled for its teacher."""
    from birdbridge.gallery import build_gallery, teacher_meta
    from birdbridge.models.distilled import save_distilled_student
    from birdbridge.models.loader import load_teacher
    from birdbridge.train.config import HeadConfig
    from birdbridge.train.student_setup import fresh_student

    root = tmp_path_factory.mktemp("noloss")
    photos = root / "photos"
    rng = np.random.default_rng(0)
    for s, name in enumerate(SPECIES):
        (photos / name).mkdir(parents=True)
        for i in range(2):
            pixels = np.clip(80 * s + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(photos / name / f"{i}.png")
    gallery = root / "gallery"
    build_gallery([photos], gallery, str(tiny_clip), progress=False, templates="single")
    teacher = load_teacher(str(tiny_clip))
    student = fresh_student(str(tiny_clap), HeadConfig(), teacher.embed_dim)
    model = save_distilled_student(student, root / "student", teacher=teacher_meta(teacher, str(tiny_clip)))
    return {"root": root, "gallery": gallery, "model": model, "photos": photos, "teacher": tiny_clip}


def search_cli(capsys, world, *inputs, out: Path, gallery: Path | None = None, fmt: str = "csv", extra=()):
    """Softmax mode: every window names a species and its picture, so every file has rows to check."""
    return run(capsys, "search", *inputs, "--gallery", gallery or world["gallery"], "--model", world["model"],
               "--format", fmt, "--output", out, "--score", "softmax", "--min-score", "0", "--top-k", "1",
               "--images", "1", *extra)


def wav(path: Path, freq: float = 800.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(1.2, 16_000, freq), 16_000)
    return path


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def csv_sources(path: Path) -> set[str]:
    with open(path, newline="") as fh:
        return {row["File"] for row in csv.DictReader(fh)}


# ------------------------------------------------------------------ §2 one result file per recording


def test_same_stem_different_extension_gets_one_result_file_each(world, tmp_path, capsys) -> None:
    rec = tmp_path / "rec"
    wav(rec / "call.wav")
    sf.write(rec / "call.ogg", tone(1.2, 16_000, 1500), 16_000, format="OGG", subtype="VORBIS")
    wav(rec / "solo.wav")
    wav(rec / "sub" / "call.flac")
    out = tmp_path / "out"
    result = search_cli(capsys, world, rec, out=out)
    assert result.returncode == 0, result.stderr
    assert files_under(out) == ["call.ogg.birdbridge.results.csv", "call.wav.birdbridge.results.csv",
                                "solo.birdbridge.results.csv", "sub/call.birdbridge.results.csv"]
    assert "wrote 4 result file(s)" in result.stderr
    assert csv_sources(out / "call.wav.birdbridge.results.csv") == {str(rec / "call.wav")}
    assert csv_sources(out / "call.ogg.birdbridge.results.csv") == {str(rec / "call.ogg")}

    again = search_cli(capsys, world, rec, out=out)
    assert again.returncode == 0 and "skipped 4 recordings already done" in again.stderr
    # The name depends on the folder on disk, not on what a run is given: the single file is the same job.
    single = search_cli(capsys, world, rec / "call.wav", out=out)
    assert single.returncode == 0 and "skipped 1 recordings already done" in single.stderr
    assert len(files_under(out)) == 4


def test_same_name_from_different_folders_do_not_collide(world, tmp_path, capsys) -> None:
    a, b = wav(tmp_path / "a" / "x.wav", 600), wav(tmp_path / "b" / "x.wav", 2000)
    out = tmp_path / "out"
    result = search_cli(capsys, world, a, b, out=out)
    assert result.returncode == 0, result.stderr
    assert files_under(out) == ["a/x.birdbridge.results.csv", "b/x.birdbridge.results.csv"]
    assert csv_sources(out / "a" / "x.birdbridge.results.csv") == {str(a)}
    assert csv_sources(out / "b" / "x.birdbridge.results.csv") == {str(b)}

    # two input folders holding the same relative name, and one combined file
    for site in ("site1", "site2"):
        wav(tmp_path / site / "dawn" / "x.wav")
    both = search_cli(capsys, world, tmp_path / "site1", tmp_path / "site2", out=tmp_path / "out2")
    assert both.returncode == 0, both.stderr
    assert files_under(tmp_path / "out2") == ["site1/dawn/x.birdbridge.results.csv",
                                              "site2/dawn/x.birdbridge.results.csv"]
    target = tmp_path / "all.json"
    combined = search_cli(capsys, world, a, b, out=target, fmt="json", extra=["--combined"])
    assert combined.returncode == 0, combined.stderr
    assert sorted(r["file"] for r in json.loads(target.read_text())) == sorted([str(a), str(b)])


def test_result_names_are_unique_even_by_letter_case() -> None:
    from birdbridge.search.runner import result_names

    found = [(Path("/m/A/X.wav"), Path("X.wav")), (Path("/m/b/x.wav"), Path("x.wav")),
             (Path("/n/b/x.wav"), Path("x.wav")), (Path("/m/Call.wav"), Path("Call.wav")),
             (Path("/m/call.wav"), Path("call.wav"))]
    names = [n.as_posix() for n in result_names(found)]
    assert names[:3] == ["A/X", "m/b/x", "n/b/x"]
    assert len({n.casefold() for n in names}) == 5


# ------------------------------------------------------------------ §2 folders that cannot be read


def troubled_folder(root: Path, make, ext: str) -> Path:
    """Two good files, a link loop, a self-link, a broken link and a subfolder we will not be able to read."""
    make(root / f"good{ext}")
    make(root / "deep" / f"good2{ext}")
    make(root / "locked" / f"hidden_by_permissions{ext}")
    (root / "deep" / "loop").symlink_to(root)
    (root / f"self{ext}").symlink_to(root / f"self{ext}")
    (root / f"gone{ext}").symlink_to(root / f"missing{ext}")
    return root


def deny(monkeypatch, folder: Path) -> None:
    """Make ``folder`` unreadable: chmod 000, and (tests may run as root, who reads anyway) a refusing os.scandir."""
    folder.chmod(0)
    real = os.scandir

    def scandir(path=".", *args):
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args)

    monkeypatch.setattr(os, "scandir", scandir)


def assert_reported(text: str, root: Path, ext: str) -> None:
    text = " ".join(text.split())  # rich may wrap long lines
    assert f"{root / 'deep' / 'loop'}: link loop" in text
    assert f"{root / f'self{ext}'}: link loop" in text
    assert f"{root / f'gone{ext}'}: broken link" in text
    assert f"{root / 'locked'}: folder cannot be read (Permission denied)" in text


def test_unreadable_entries_of_audio_folders_are_reported(world, tmp_path, capsys, monkeypatch) -> None:
    root = troubled_folder(tmp_path / "rec", wav, ".wav")
    deny(monkeypatch, root / "locked")
    try:
        out = tmp_path / "out"
        result = search_cli(capsys, world, root, out=out)
        assert result.returncode == 0, result.stderr
        assert "skipped 4 recordings" in result.stderr and "Traceback" not in result.stderr
        assert_reported(result.stderr, root, ".wav")
        assert files_under(out) == ["deep/good2.birdbridge.results.csv", "good.birdbridge.results.csv"]

        embedded = run(capsys, "embed", "audio", root, "--model", world["model"], "--output", tmp_path / "e.npy")
        assert embedded.returncode == 0, embedded.stderr
        assert "skipped 4 audio files" in embedded.stderr
        assert_reported(embedded.stderr, root, ".wav")

        from birdbridge.audio import scan_audio_files

        found = scan_audio_files([root])
        assert [p.relative_to(root).as_posix() for p in found.files] == ["deep/good2.wav", "good.wav"]
        assert sorted(p.path.name for p in found.problems) == ["gone.wav", "locked", "loop", "self.wav"]
    finally:
        (root / "locked").chmod(0o755)


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), (10, 120, 200)).save(path)
    return path


def test_unreadable_entries_of_image_folders_are_reported(world, tmp_path, capsys, monkeypatch) -> None:
    photos = tmp_path / "photos"
    png(photos / "Pica hudsonia" / "1.png")
    species = troubled_folder(photos / "Corvus corax", png, ".png")
    deny(monkeypatch, species / "locked")
    try:
        embedded = run(capsys, "embed", "image", photos, "--model", world["teacher"], "--output", tmp_path / "i.npy")
        assert embedded.returncode == 0, embedded.stderr
        assert "skipped 4 images" in embedded.stderr
        assert_reported(embedded.stderr, species, ".png")

        built = run(capsys, "index", "--images", photos, "--output", tmp_path / "g", "--teacher", world["teacher"],
                    "--templates", "single")
        assert built.returncode == 0, built.stderr
        assert "added 3 images" in built.stdout and "4 skipped" in built.stdout
        assert_reported(built.stderr, species, ".png")
    finally:
        (species / "locked").chmod(0o755)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their permissions")
def test_a_really_unreadable_subfolder_is_reported(tmp_path) -> None:
    from birdbridge.utils.walk import walk_files

    wav(tmp_path / "rec" / "a.wav")
    locked = tmp_path / "rec" / "locked"
    wav(locked / "b.wav")
    locked.chmod(0)
    try:
        found = walk_files(tmp_path / "rec", {".wav"})
    finally:
        locked.chmod(0o755)
    assert [p.name for p in found.files] == ["a.wav"]
    assert [(p.path, p.reason.split(" (")[0]) for p in found.problems] == [(locked, "folder cannot be read")]


# ------------------------------------------------------------------ §3 a gallery that cannot answer says so


def gallery_copy(world, tmp_path) -> Path:
    target = tmp_path / "gallery"
    shutil.copytree(world["gallery"], target, ignore=shutil.ignore_patterns(".lock"))
    return target


def refuses(capsys, world, tmp_path, gallery: Path, *needles: str) -> None:
    """``birdbridge search`` stops, naming the gallery and the problem and the fix, and writes nothing."""
    rec = wav(tmp_path / "rec" / "r.wav")
    out = tmp_path / "out"
    result = search_cli(capsys, world, rec.parent, out=out, gallery=gallery)
    text = " ".join(result.stderr.split())
    assert result.returncode == 1, text
    assert str(gallery) in text and "Traceback" not in text
    for needle in needles:
        assert needle in text
    assert not out.exists() or not files_under(out)


def test_an_unfinished_gallery_is_refused(world, tmp_path, capsys) -> None:
    from birdbridge.search import SearchEngine, search

    gallery = gallery_copy(world, tmp_path)
    meta = json.loads((gallery / "gallery.json").read_text())
    meta["build"]["complete"] = False
    (gallery / "gallery.json").write_text(json.dumps(meta))
    fix = "run the same `birdbridge index` command again to resume the build"
    refuses(capsys, world, tmp_path, gallery, "unfinished", fix)
    with pytest.raises(BirdbridgeError, match="unfinished"):
        search(wav(tmp_path / "q.wav"), model=world["model"], gallery=gallery)
    with pytest.raises(BirdbridgeError, match="unfinished"):
        SearchEngine.open(gallery)
    with pytest.raises(BirdbridgeError, match="unfinished"):  # what `birdbridge serve` opens at startup
        SearchEngine.open(gallery, world["model"])
    served = subprocess.run([sys.executable, "-m", "birdbridge", "serve", "--model", str(world["model"]), "--gallery",
                             str(gallery), "--port", "0"], capture_output=True, text=True, timeout=300)
    assert served.returncode == 1 and fix in " ".join(served.stderr.split())


def test_a_gallery_without_species_index_is_refused(world, tmp_path, capsys) -> None:
    from birdbridge.search import SearchEngine

    gallery = gallery_copy(world, tmp_path)
    (gallery / "species.json").unlink()
    (gallery / "species.npy").unlink()
    refuses(capsys, world, tmp_path, gallery, "no species index", f"birdbridge gallery species {gallery} "
            "--from-gallery")
    with pytest.raises(BirdbridgeError, match="no species index"):
        SearchEngine.open(gallery)


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_database_is_a_clear_error(world, tmp_path, capsys, damage) -> None:
    from birdbridge.gallery import Gallery

    gallery = gallery_copy(world, tmp_path)
    db = gallery / "images.sqlite"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3] if damage == "truncated" else os.urandom(len(data)))
    needles = ("images.sqlite", "Rebuild it with `birdbridge index`")
    refuses(capsys, world, tmp_path, gallery, *needles)
    info = run(capsys, "gallery", "info", gallery)
    text = " ".join(info.stderr.split())
    assert info.returncode == 1 and str(gallery) in text and all(n in text for n in needles), text
    with pytest.raises(BirdbridgeError, match=r"images\.sqlite"):
        g = Gallery.open(gallery)
        g.records(list(range(len(g))))
        g.species_counts()


def test_non_finite_vectors_are_a_clear_error(world, tmp_path, capsys) -> None:
    from birdbridge.gallery import Gallery, build_ann
    from birdbridge.search import SearchEngine, search

    gallery = gallery_copy(world, tmp_path)
    g = Gallery.open(gallery)
    build_ann(g, progress=False)
    g.close()
    vectors = gallery / "vectors.f16"
    vectors.write_bytes(np.full(vectors.stat().st_size // 2, np.nan, "<f2").tobytes())
    refuses(capsys, world, tmp_path, gallery, "vectors.f16", "not finite", "Rebuild it with `birdbridge index`")
    with pytest.raises(BirdbridgeError, match="not finite"):  # softmax: every window looks for its pictures
        search(wav(tmp_path / "q.wav"), model=world["model"], gallery=gallery, score="softmax")
    g = Gallery.open(gallery)
    query = np.ones((1, g.dim), np.float32) / np.sqrt(g.dim)
    for exact in (True, False):  # exact search and the ANN's re-scoring
        with pytest.raises(BirdbridgeError, match="not finite"):
            g.search(query, 2, exact=exact)
    with pytest.raises(BirdbridgeError, match="not finite"):
        g.search(query, 2, rows=[1])
    assert SearchEngine.open(gallery) is not None  # nothing is scanned at open


def test_non_finite_species_vectors_are_a_clear_error(world, tmp_path, capsys) -> None:
    from birdbridge.search import SearchEngine

    gallery = gallery_copy(world, tmp_path)
    npy = gallery / "species.npy"
    array = np.load(npy)
    array[1] = np.nan
    np.save(npy, array)
    info = json.loads((gallery / "species.json").read_text())
    info["vectors_sha256"] = hashlib.sha256(npy.read_bytes()).hexdigest()  # damage that the checksum misses
    (gallery / "species.json").write_text(json.dumps(info))
    refuses(capsys, world, tmp_path, gallery, "species index", "not finite",
            f"birdbridge gallery species {gallery} --from-gallery")
    with pytest.raises(BirdbridgeError, match="not finite"):
        SearchEngine.open(gallery)
