"""`birdbridge embed ...` end to end, as a user runs it."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from birdbridge.embed.writers import read_table
from cli_fixtures import run


def test_embed_audio_npy_parquet_csv(tiny_clap, audio_dir, tmp_path, capsys) -> None:
    npy = tmp_path / "a.npy"
    out = run(capsys, "embed", "audio", "--model", tiny_clap, audio_dir, "--output", npy)
    assert out.returncode == 0, out.stderr
    vectors = np.load(npy)
    assert vectors.dtype == np.float32 and vectors.ndim == 2

    parquet = tmp_path / "a.parquet"
    assert run(capsys, "embed", "audio", "-m", tiny_clap, audio_dir, "-o", parquet, "--hop", "0.5").returncode == 0
    table = pq.read_table(parquet)
    assert table.column_names == ["name", "start_s", "end_s", "embedding"]
    names = table.column("name").to_pylist()
    assert sorted(set(names)) == sorted(str(p) for p in audio_dir.iterdir())
    assert names == sorted(names)  # files in order, windows in time order within each
    back = read_table(parquet)
    assert np.allclose(np.linalg.norm(back.vectors, axis=1), 1.0, atol=1e-5)

    csv = tmp_path / "a.csv"
    assert run(capsys, "embed", "audio", "-m", tiny_clap, audio_dir, "-o", csv).returncode == 0
    assert np.allclose(read_table(csv).vectors, vectors, atol=1e-6)


def test_embed_audio_pool_and_bad_file(tiny_clap, audio_dir, tmp_path, capsys) -> None:
    (audio_dir / "zz_broken.flac").write_bytes(b"fLaC" + b"\x00" * 50)
    out_path = tmp_path / "pooled.parquet"
    out = run(capsys, "embed", "audio", "-m", tiny_clap, audio_dir, "-o", out_path, "--pool")
    assert out.returncode == 0, out.stderr
    assert "skipped 1 audio files" in out.stderr and "zz_broken.flac" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(read_table(out_path)) == 4  # one row per good file


def test_embed_image_and_text(tiny_clip, tmp_path, capsys) -> None:
    folder = tmp_path / "imgs" / "Pica hudsonia"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (30 + i, 40), (50 * i, 100, 150)).save(folder / f"{i}.jpg")
    out = run(capsys, "embed", "image", "-m", tiny_clip, tmp_path / "imgs", "-o", tmp_path / "i.parquet")
    assert out.returncode == 0, out.stderr
    assert len(read_table(tmp_path / "i.parquet")) == 3

    texts = tmp_path / "texts.txt"
    texts.write_text("Pica hudsonia\n\nblack-billed magpie\n", encoding="utf-8")
    out = run(capsys, "embed", "text", "-m", tiny_clip, "a bird", "--file", texts, "-o", tmp_path / "t.csv")
    assert out.returncode == 0, out.stderr
    table = read_table(tmp_path / "t.csv")
    assert table.names == ["a bird", "Pica hudsonia", "black-billed magpie"]


def test_embed_species_from_list(tiny_clip, tmp_path, capsys) -> None:
    slist = tmp_path / "species.txt"
    slist.write_text("Turdus migratorius_American Robin\nPica hudsonia_Black-billed Magpie\n")
    out = run(capsys, "embed", "species", slist, "-m", tiny_clip, "--forms", "scientific,common", "--templates",
              "single", "-o", tmp_path / "s.parquet")
    assert out.returncode == 0, out.stderr
    assert read_table(tmp_path / "s.parquet").names == ["Turdus migratorius", "Pica hudsonia"]


def test_embed_species_takes_every_label_form(tiny_clip, tmp_path, capsys) -> None:
    slist = tmp_path / "forms.txt"
    slist.write_text("Turdus_migratorius\nPica_hudsonia_Black-billed Magpie\n  Corvus   corax  ssp. principalis \n"
                     "Cyanocitta cristata cristata_Blue Jay\n")
    common = ("-m", tiny_clip, "--forms", "scientific", "--templates", "single")
    out = run(capsys, "embed", "species", slist, *common, "-o", tmp_path / "s.csv")
    assert out.returncode == 0, out.stderr
    assert read_table(tmp_path / "s.csv").names == [
        "Turdus migratorius", "Pica hudsonia", "Corvus corax", "Cyanocitta cristata"]
    out = run(capsys, "embed", "species", "Pica_hudsonia", *common, "-o", tmp_path / "one.csv")
    assert out.returncode == 0, out.stderr
    assert read_table(tmp_path / "one.csv").names == ["Pica hudsonia"]
    slist.write_text("Pica hudsonia\namerob\n")  # a code needs a taxonomy that lists it
    out = run(capsys, "embed", "species", slist, *common, "-o", tmp_path / "c.csv")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "forms.txt: line 2: 'amerob' is not a species name" in out.stderr and "eBird code" in out.stderr


def test_bad_output_suffix_is_a_clear_error(tiny_clip, tmp_path, capsys) -> None:
    out = run(capsys, "embed", "text", "x", "-m", tiny_clip, "-o", tmp_path / "out.txt")
    assert out.returncode == 1 and "unknown output format" in out.stderr and "Traceback" not in out.stderr


def test_exit_status_is_1_when_nothing_was_embedded(tiny_clip, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    out = run(capsys, "embed", "image", "-m", tiny_clip, bad, "-o", tmp_path / "x.npy")
    assert out.returncode == 1 and "bad.jpg" in out.stderr and not (tmp_path / "x.npy").exists()
