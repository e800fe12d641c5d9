"""build_gallery: folder, manifest and precomputed-parquet sources, --add, resume rule, species index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from birdbridge.embed.images import embed_image_files
from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.gallery import Gallery, build_gallery

FAST = {"templates": "single", "progress": False}


def write_images(folder: Path, names: dict[str, int], seed: int = 0, size: int = 24) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for sub, count in names.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = folder / sub / f"{i:03d}.png"
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def other_clip(tmp_path_factory) -> Path:
    from birdbridge.models.standins import build_small_clip

    return build_small_clip(tmp_path_factory.mktemp("models") / "other-clip", seed=1)


@pytest.fixture()
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    write_images(root, {"Pica hudsonia": 3, "Turdus_migratorius": 2, "Corvus corax_Common Raven": 2})
    write_images(root / "Corvus corax_Common Raven" / "2024", {"": 1}, seed=9)  # deeper folders are fine
    (root / "Pica hudsonia" / ".hidden.png").write_bytes(b"ignored")
    return root


def test_folder_source(tmp_path, tiny_clip, photos):
    report = build_gallery([photos], tmp_path / "g", str(tiny_clip), **FAST)
    assert report.created and report.added == 8 and not report.failures and report.count == 8
    gallery = Gallery.open(tmp_path / "g")
    ids = sorted(gallery.ids())
    assert "Pica hudsonia/000.png" in ids and "Corvus corax_Common Raven/2024/000.png" in ids
    assert gallery.species_counts() == {"Corvus corax": 3, "Pica hudsonia": 3, "Turdus migratorius": 2}
    assert gallery.teacher["ref"] == str(tiny_clip.resolve()) and gallery.dim == 24
    # stored vectors are the teacher's image embeddings
    rows = gallery.rows_where(species="Pica hudsonia")
    files = [gallery.image_file(int(r)) for r in rows]
    expected = embed_image_files(files, str(tiny_clip), progress=False).vectors
    np.testing.assert_allclose(gallery.vectors[rows].astype(np.float32), expected, atol=2e-3)
    species = {s.key: s for s in gallery.species()}
    assert species["Corvus corax"].common_name == "Common Raven" and all(s.has_images for s in species.values())
    assert gallery.species_vectors.shape == (3, 24)
    assert gallery.meta["build"]["complete"] is True
    # the species embeddings are the teacher's species text embeddings
    from birdbridge.embed.text import embed_species

    ref = embed_species([s.key + (f"_{s.common_name}" if s.common_name else "") for s in gallery.species()],
                        str(tiny_clip), templates="single")
    np.testing.assert_allclose(gallery.species_vectors, ref, atol=1e-5)


def test_images_in_the_root_are_an_error(tmp_path, tiny_clip, photos):
    Image.new("RGB", (8, 8)).save(photos / "loose.png")
    with pytest.raises(InputError, match=r"1 image.*directly in the folder.*loose.png"):
        build_gallery([photos], tmp_path / "g", str(tiny_clip), **FAST)
    assert not (tmp_path / "g").exists()  # nothing is created before the sources check out


def test_bad_folder_name_is_an_error_unless_the_taxonomy_knows_it(tmp_path, tiny_clip):
    root = tmp_path / "photos"
    write_images(root, {"magpie": 1, "Pica hudsonia": 1})
    with pytest.raises(InputError, match=r"magpie.*not a species name"):
        build_gallery([root], tmp_path / "g", str(tiny_clip), **FAST)
    slist = tmp_path / "species.txt"
    slist.write_text("Pica hudsonia_Magpie\nTurdus migratorius_American Robin\n")
    report = build_gallery([root], tmp_path / "g", str(tiny_clip), species=slist, **FAST)
    gallery = Gallery.open(tmp_path / "g")
    assert report.added == 2 and gallery.species_counts() == {"Pica hudsonia": 2}
    robin = {s.key: s for s in gallery.species()}["Turdus migratorius"]
    assert robin.common_name == "American Robin" and not robin.has_images
    assert report.species.total == 2 and report.species.without_images == 1


def test_unreadable_image_is_skipped_and_reported(tmp_path, tiny_clip, photos):
    (photos / "Pica hudsonia" / "broken.jpg").write_bytes(b"not a jpeg at all")
    report = build_gallery([photos], tmp_path / "g", str(tiny_clip), commit_every=3, **FAST)
    assert report.added == 8 and len(report.failures) == 1
    assert "broken.jpg" in report.failures[0].message and "cannot decode" in report.failures[0].message
    assert not Gallery.open(tmp_path / "g").has_id("Pica hudsonia/broken.jpg")


def test_manifest_source(tmp_path, tiny_clip):
    data = tmp_path / "data"
    paths = write_images(data / "imgs", {"a": 3})
    (data / "images.csv").write_text(
        "path,species,id,split,License,photographer,camera\n"
        f"imgs/a/000.png,Pica hudsonia_Black-billed Magpie,m1,train,CC-BY,Ann,X100\n"
        f"imgs/a/001.png,Turdus migratorius,,test,,,\n"
        f"{paths[2]},Pica hudsonia,m3,train,,,\n"
    )
    report = build_gallery([data / "images.csv"], tmp_path / "g", str(tiny_clip), **FAST)
    gallery = Gallery.open(tmp_path / "g")
    assert report.added == 3
    first = gallery.record(gallery.row_of("m1"))
    assert (first.species, first.split, first.licence, first.photographer) == ("Pica hudsonia", "train", "CC-BY", "Ann")
    assert first.meta == {"camera": "X100"} and first.path == str(paths[0])
    assert gallery.has_id("imgs/a/001.png")  # no id: the path as written
    assert {s.key: s.common_name for s in gallery.species()}["Pica hudsonia"] == "Black-billed Magpie"


def test_manifest_errors_name_the_line(tmp_path, tiny_clip):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,species\na.png,Pica hudsonia\nb.png,magpie\n")
    with pytest.raises(InputError, match=r"bad.csv: line 3: species: 'magpie' is not a species name"):
        build_gallery([bad], tmp_path / "g", str(tiny_clip), **FAST)
    twice = tmp_path / "twice.csv"
    twice.write_text("path,species,id\na.png,Pica hudsonia,x\nb.png,Pica hudsonia,x\n")
    with pytest.raises(InputError, match=r"line 3: image id 'x' is also given by .*line 2"):
        build_gallery([twice], tmp_path / "g", str(tiny_clip), **FAST)
    nospecies = tmp_path / "nospecies.csv"
    nospecies.write_text("path,label\na.png,x\n")
    with pytest.raises(InputError, match=r"no species column"):
        build_gallery([nospecies], tmp_path / "g", str(tiny_clip), **FAST)


def treeoflife_table(n: int, dim: int, seed: int = 0, fixed: bool = False) -> tuple[pa.Table, np.ndarray]:
    """Rows in the style of the published BioCLIP-2 TreeOfLife embeddings (unnormalised float16)."""
    rng = np.random.default_rng(seed)
    emb = (rng.standard_normal((n, dim)) * 3).astype(np.float16)
    genus = ["Pica", "Turdus", "Corvus"]
    epithet = ["hudsonia", "migratorius", "corax"]
    kind = pa.list_(pa.float16(), dim) if fixed else pa.list_(pa.float16())
    table = pa.table({
        "uuid": [f"u{i}" for i in range(n)],
        "emb": pa.array(list(emb), type=kind),
        "kingdom": ["Animalia"] * n,
        "class": ["Aves"] * n,
        "family": ["Corvidae", "Turdidae (Thrushes)", "Corvidae"] * (n // 3) + ["Corvidae"] * (n % 3),
        "genus": [genus[i % 3] for i in range(n)],
        "species": [epithet[i % 3] for i in range(n)],
        "common_name": ["Black-billed Magpie", "American Robin", "Common Raven"] * (n // 3)
        + ["Black-billed Magpie"] * (n % 3),
        "publisher": ["iNaturalist"] * n,
    })
    return table, emb.astype(np.float32)


@pytest.mark.parametrize("fixed", [False, True])
def test_precomputed_parquet_source(tmp_path, tiny_clip, fixed):
    table, emb = treeoflife_table(30, 24, fixed=fixed)
    pq.write_table(table, tmp_path / "emb.parquet")
    report = build_gallery([tmp_path / "emb.parquet"], tmp_path / "g", str(tiny_clip), **FAST)
    gallery = Gallery.open(tmp_path / "g")
    assert report.added == 30 and not report.failures
    expected = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.testing.assert_allclose(gallery.vectors.astype(np.float32), expected, atol=2e-3)
    rec = gallery.record(gallery.row_of("u1"))
    assert rec.species == "Turdus migratorius" and rec.path is None and rec.meta == {"publisher": "iNaturalist"}
    assert gallery.image_file("u1") is None
    species = {s.key: s for s in gallery.species()}
    assert species["Turdus migratorius"].common_name == "American Robin"
    assert species["Turdus migratorius"].taxonomy == ("Animalia", "", "Aves", "", "Turdidae", "Turdus", "migratorius")


def test_precomputed_rows_without_embedding_or_species_are_reported(tmp_path, tiny_clip):
    table, _ = treeoflife_table(6, 24)
    emb = table.column("emb").to_pylist()
    emb[1] = None
    emb[2] = [0.0] * 24
    species = table.column("species").to_pylist()
    species[3] = None
    table = table.set_column(table.schema.get_field_index("emb"), "emb", pa.array(emb, pa.list_(pa.float32())))
    table = table.set_column(table.schema.get_field_index("species"), "species", pa.array(species))
    table = table.drop_columns(["genus"]).append_column("genus", pa.array(["Pica", "Turdus", "Corvus", None,
                                                                           "Pica", "Turdus"]))
    pq.write_table(table, tmp_path / "emb.parquet")
    report = build_gallery([tmp_path / "emb.parquet"], tmp_path / "g", str(tiny_clip), **FAST)
    assert report.added == 3
    messages = " | ".join(f.message for f in report.failures)
    assert "row 2 (u1): no embedding" in messages and "row 3 (u2): embedding is all zeros" in messages
    assert "row 4 (u3): no species name" in messages


def test_precomputed_dimension_must_match_the_teacher(tmp_path, tiny_clip):
    table, _ = treeoflife_table(3, 768)
    pq.write_table(table, tmp_path / "emb.parquet")
    with pytest.raises(InputError, match=r"768 dimensions but teacher 'tiny-clip' has 24"):
        build_gallery([tmp_path / "emb.parquet"], tmp_path / "g", str(tiny_clip), **FAST)
    pq.write_table(table.drop_columns(["uuid"]), tmp_path / "noid.parquet")
    with pytest.raises(InputError, match=r"no id column"):
        build_gallery([tmp_path / "noid.parquet"], tmp_path / "g", str(tiny_clip), **FAST)


def test_add_appends_and_refuses_another_teacher(tmp_path, tiny_clip, other_clip, photos):
    build_gallery([photos], tmp_path / "g", str(tiny_clip), **FAST)
    more = tmp_path / "more"
    write_images(more, {"Cyanocitta cristata_Blue Jay": 2}, seed=3)
    with pytest.raises(BirdbridgeError, match=r"already holds a gallery of 8 images; pass --add"):
        build_gallery([more], tmp_path / "g", str(tiny_clip), **FAST)
    report = build_gallery([more], tmp_path / "g", str(tiny_clip), add=True, **FAST)
    assert report.added == 2 and report.count == 10 and not report.created
    again = build_gallery([photos, more], tmp_path / "g", str(tiny_clip), add=True, **FAST)
    assert again.added == 0 and again.skipped_existing == 10
    gallery = Gallery.open(tmp_path / "g")
    assert [s.key for s in gallery.species()][-1] == "Cyanocitta cristata"  # kept order, new species appended
    with pytest.raises(BirdbridgeError) as info:
        build_gallery([more], tmp_path / "g", str(other_clip), add=True, **FAST)
    assert "'other-clip'" in str(info.value) and "'tiny-clip'" in str(info.value)
    # same relative path, different file: the ids would collide
    clash = tmp_path / "clash"
    write_images(clash, {"Pica hudsonia": 1}, seed=5)
    with pytest.raises(InputError, match=r"already in gallery .* for other files"):
        build_gallery([clash], tmp_path / "g", str(tiny_clip), add=True, **FAST)


def test_unfinished_build_resumes_only_with_the_same_sources(tmp_path, tiny_clip, photos):
    build_gallery([photos], tmp_path / "g", str(tiny_clip), **FAST)
    meta_path = tmp_path / "g" / "gallery.json"
    meta = json.loads(meta_path.read_text())
    meta["build"]["complete"] = False  # as if killed before the end
    meta_path.write_text(json.dumps(meta))
    report = build_gallery([photos], tmp_path / "g", str(tiny_clip), **FAST)
    assert report.resumed and report.added == 0 and report.skipped_existing == 8
    meta = json.loads(meta_path.read_text())
    meta["build"]["complete"] = False
    meta_path.write_text(json.dumps(meta))
    write_images(tmp_path / "elsewhere", {"Pica hudsonia": 1})
    with pytest.raises(BirdbridgeError, match=r"unfinished build of other sources"):
        build_gallery([tmp_path / "elsewhere"], tmp_path / "g", str(tiny_clip), **FAST)


def test_species_index_from_a_taxonomy_and_from_the_gallery(tmp_path, tiny_clip, photos):
    from birdbridge.gallery import build_species_index
    from birdbridge.models.loader import load_teacher

    taxonomy = tmp_path / "taxonomy.csv"
    taxonomy.write_text(
        "order,family,genus,specific_epithet,common_name,code\n"
        "Passeriformes,Corvidae,Pica,hudsonia,Black-billed Magpie,bkbmag1\n"
        "Passeriformes,Corvidae,Cyanocitta,cristata,Blue Jay,blujay\n"
    )
    report = build_gallery([photos], tmp_path / "g", str(tiny_clip), species=taxonomy, **FAST)
    gallery = Gallery.open(tmp_path / "g")
    keys = [s.key for s in gallery.species()]
    # the taxonomy's species in its order, then gallery species it lacks
    assert keys == ["Pica hudsonia", "Cyanocitta cristata", "Corvus corax", "Turdus migratorius"]
    flags = {s.key: s.has_images for s in gallery.species()}
    assert flags["Cyanocitta cristata"] is False and flags["Pica hudsonia"] is True
    magpie = gallery.species()[0]
    assert magpie.code == "bkbmag1" and magpie.taxonomy[3:5] == ("Passeriformes", "Corvidae")
    assert report.species.without_images == 1

    summary = build_species_index(gallery, load_teacher(str(tiny_clip)), keep_existing=False, templates="single")
    assert summary.total == 3 and summary.without_images == 0
    assert [s.key for s in Gallery.open(tmp_path / "g").species()] == ["Corvus corax", "Pica hudsonia",
                                                                       "Turdus migratorius"]


def test_flat_folder_with_species_from_file_names(tmp_path, tiny_clip, capsys):
    from cli_fixtures import run

    flat = tmp_path / "flat"
    flat.mkdir()
    rng = np.random.default_rng(3)
    for name in ("Pica hudsonia 1.png", "Pica_hudsonia_002.png", "Corvus corax_Common Raven (3).png",
                 "Turdus migratorius.png", "IMG_0001.png"):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(flat / name)
    with pytest.raises(InputError, match="--species-from-filename"):  # the refusal says how to index it
        build_gallery([flat], tmp_path / "refused", str(tiny_clip), **FAST)
    report = build_gallery([flat], tmp_path / "g", str(tiny_clip), species_from_filename=True, **FAST)
    gallery = Gallery.open(tmp_path / "g")
    assert gallery.species_counts() == {"Corvus corax": 1, "Pica hudsonia": 2, "Turdus migratorius": 1}
    assert {s.key: s.common_name for s in gallery.species()}["Corvus corax"] == "Common Raven"
    assert sorted(gallery.ids())[0] == "Corvus corax_Common Raven (3).png"
    assert [f.source for f in report.failures] == [str(flat / "IMG_0001.png")]  # reported; the rest is indexed
    assert "file name: 'IMG'" in report.failures[0].message
    result = run(capsys, "index", "--images", flat, "--output", tmp_path / "cli", "--teacher", tiny_clip,
                 "--species-from-filename", "--templates", "single", "--no-background")
    assert result.returncode == 0, result.stderr
    assert Gallery.open(tmp_path / "cli").species_counts() == gallery.species_counts() and "IMG_0001" in result.stderr


def test_pictures_of_unknown_species_are_kept_and_retrieved(tmp_path, tiny_clip, photos, capsys):
    from birdbridge.gallery.store import UNKNOWN_SPECIES
    from birdbridge.search import SearchEngine
    from cli_fixtures import run

    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(photos / "loose.png")
    build_gallery([photos], tmp_path / "g", str(tiny_clip), species_unknown=True, **FAST)
    gallery = Gallery.open(tmp_path / "g")
    assert gallery.species_counts() == {"Corvus corax": 3, "Pica hudsonia": 3, "Turdus migratorius": 2,
                                        UNKNOWN_SPECIES: 1}
    assert [s.key for s in gallery.species()] == ["Corvus corax", "Pica hudsonia", "Turdus migratorius"]
    assert gallery.summary().image_species == 3
    _, similar = SearchEngine.open(tmp_path / "g").search_images([photos / "loose.png"], n_images=1)[0]
    assert similar[0].id == "loose.png" and similar[0].species == UNKNOWN_SPECIES
    assert similar[0].score == pytest.approx(1.0, abs=1e-2)  # retrieved as any picture
    flat = tmp_path / "flat"  # only pictures of unknown species: a species list makes the gallery searchable
    flat.mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(flat / f"IMG_{i}.png")
    alone = run(capsys, "index", "--images", flat, "--output", tmp_path / "alone", "--teacher", tiny_clip,
                "--species-unknown", "--templates", "single", "--no-background")
    assert alone.returncode == 0, alone.stderr
    assert Gallery.open(tmp_path / "alone").species_counts() == {UNKNOWN_SPECIES: 2}
    with pytest.raises(BirdbridgeError, match="no species index"):
        SearchEngine.open(tmp_path / "alone")
    slist = tmp_path / "species.txt"
    slist.write_text("Pica hudsonia_Black-billed Magpie\n")
    listed = run(capsys, "index", "--images", flat, "--output", tmp_path / "listed", "--teacher", tiny_clip,
                 "--species-unknown", "--species-list", slist, "--templates", "single", "--no-background")
    assert listed.returncode == 0, listed.stderr
    _, found = SearchEngine.open(tmp_path / "listed").search_images([flat / "IMG_1.png"], n_images=2)[0]
    assert found[0].id == "IMG_1.png" and len(found) == 2 and {f.species for f in found} == {UNKNOWN_SPECIES}
