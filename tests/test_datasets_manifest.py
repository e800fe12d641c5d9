"""Generic manifests: CSV and parquet, with or without a taxonomy, and row-level errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from birdbridge.datasets import load_manifest
from birdbridge.errors import InputError
from dataset_fixtures import CLIP_S, edit, line_of, set_cell, write_csv, write_manifest


def load_error(*args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        load_manifest(*args, **kwargs)
    return info.value


def test_csv_with_taxonomy_images_and_videos(tmp_path):
    fx = write_manifest(tmp_path / "birds", videos=True)
    ds = load_manifest(fx.audio, fx.taxonomy, fx.images, fx.videos)
    assert ds.name == "birds" and ds.root == fx.root.resolve()
    assert ds.taxonomy.keys == tuple(fx.species) and ds.taxonomy[0].family == "Anatidae"
    # species cells mix scientific names, codes and upper-case common names
    assert [a.species for a in ds.audio] == [s for s in fx.species for _ in range(2)]
    a = ds.audio[0]
    assert a.id == "audio/mallar3_0.wav" and a.path == fx.root.resolve() / "audio" / "mallar3_0.wav"
    assert a.split == "train" and a.duration_s == pytest.approx(CLIP_S) and a.meta == {"site": "site0"}
    assert ds.splits() == {
        "audio": {"train": 3, "test": 3},
        "images": {"train": 6},
        "videos": {"test": 3},
    }
    img = ds.images[1]
    assert (img.source, img.licence, img.photographer) == ("inat", "CC-BY", "Photographer 1")  # "license" column
    vid = ds.videos[0]
    assert vid.id == "vid0" and (vid.fps, vid.frame_count, vid.duration_s, vid.target_second) == (30.0, 300, 10.0, 2.5)
    assert vid.reliable_audio is True and vid.path.is_file()
    assert ds.check_files() == []


def test_parquet_without_taxonomy_birdnet_names(tmp_path):
    fx = write_manifest(tmp_path / "pq", fmt="parquet", taxonomy=False, birdnet=True)
    ds = load_manifest(fx.audio, images=fx.images)
    assert ds.taxonomy.keys == tuple(sorted(fx.species))  # built from the names, sorted
    assert ds.taxonomy.get("Mallard").key == "Anas platyrhynchos" and ds.taxonomy[0].kingdom == ""
    assert len(ds.audio) == fx.n_audio and len(ds.images) == fx.n_images
    assert ds.audio[0].meta == {"site": "site0"} and ds.audio[0].duration_s == pytest.approx(CLIP_S)


def test_plain_names_and_folder_style_without_taxonomy(tmp_path):
    fx = write_manifest(tmp_path / "m", taxonomy=False, images=False)
    set_cell(fx.audio, "audio/mallar3_1.wav", "species", "Anas_platyrhynchos")
    ds = load_manifest(fx.audio)
    assert ds.taxonomy.keys == tuple(sorted(fx.species)) and ds.taxonomy[0].common_name is None
    assert ds.audio[1].species == "Anas platyrhynchos"


def test_root_and_absolute_paths(tmp_path):
    fx = write_manifest(tmp_path / "data", images=False)
    sub = tmp_path / "lists"
    sub.mkdir()
    moved = sub / "audio.csv"
    moved.write_text(fx.audio.read_text())
    assert load_manifest(moved, fx.taxonomy).check_files()  # relative to the manifest's folder
    ds = load_manifest(moved, fx.taxonomy, root=fx.root)
    assert ds.root == fx.root.resolve() and ds.check_files() == []
    absolute = str(fx.root.resolve() / "audio" / "mallar3_0.wav")
    set_cell(moved, "audio/mallar3_0.wav", "path", absolute)
    assert load_manifest(moved, fx.taxonomy).audio[0].path == fx.root.resolve() / "audio" / "mallar3_0.wav"


def test_birdnet_species_list_as_taxonomy(tmp_path):
    fx = write_manifest(tmp_path / "m", taxonomy=False, images=False, birdnet=True)
    species_list = tmp_path / "labels.txt"
    species_list.write_text(
        "Cyanocitta cristata_Blue Jay\nAnas platyrhynchos_Mallard\n"
        "Dryobates pubescens_Downy Woodpecker\nPica hudsonia\n"
    )
    ds = load_manifest(fx.audio, species_list)
    assert ds.taxonomy.keys[0] == "Cyanocitta cristata" and len(ds.taxonomy) == 4  # file order, unused kept


def test_id_column_and_duplicates(tmp_path):
    root = tmp_path / "m"
    write_manifest(root, images=False)
    manifest = write_csv(
        root / "ids.csv",
        ["id", "path", "species", "split"],
        [["a", "audio/mallar3_0.wav", "Mallard", "train"], ["b", "audio/mallar3_0.wav", "Mallard", "test"]],
    )
    assert [a.id for a in load_manifest(manifest, root / "taxonomy.csv").audio] == ["a", "b"]
    edit(manifest, "b,audio", "a,audio")
    assert "line 3: duplicate id 'a' (first at line 2)" in str(load_error(manifest, root / "taxonomy.csv"))


@pytest.mark.parametrize(
    ("column", "value", "needle"),
    [
        ("species", "Anas platyrhyncos", "column 'species': species 'Anas platyrhyncos' is not in this taxonomy"),
        ("path", "audio/mallar3_0.wav", "duplicate path 'audio/mallar3_0.wav' (first at line 2)"),
        ("path", "audio/mallar3_1.jpg", "'audio/mallar3_1.jpg' is not a supported audio file name"),
        ("duration_s", "ten", "column 'duration_s' is not a number: 'ten'"),
        ("split", " ", "column 'split' is empty"),
    ],
)
def test_row_errors_name_file_and_line(tmp_path, column, value, needle):
    fx = write_manifest(tmp_path / "m", images=False)
    line = set_cell(fx.audio, "audio/mallar3_1.wav", column, value)
    err = load_error(fx.audio, fx.taxonomy)
    assert err.source.endswith("audio.csv")
    assert f"line {line}: " in str(err) and needle in str(err)


def test_unknown_species_suggests(tmp_path):
    fx = write_manifest(tmp_path / "m", images=False)
    set_cell(fx.audio, "audio/mallar3_1.wav", "species", "Anas platyrhyncos")
    assert "did you mean 'Anas platyrhynchos'" in str(load_error(fx.audio, fx.taxonomy))


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("Anas", "column 'species': scientific name 'Anas' is not two words"),
        ("anas platyrhynchos", "genus 'anas' must start with a capital letter"),
        ("Anas platyrhynchos_Wild Duck", "'Anas platyrhynchos' is called 'Wild Duck' here but 'Mallard' at line 2"),
        ("Branta canadensis_Mallard", "common name 'Mallard' is also used for 'Anas platyrhynchos' at line 2"),
    ],
)
def test_name_errors_without_taxonomy(tmp_path, value, needle):
    fx = write_manifest(tmp_path / "m", taxonomy=False, images=False, birdnet=True)
    line = set_cell(fx.audio, "audio/mallar3_1.wav", "species", value)
    err = load_error(fx.audio)
    assert err.source.endswith("audio.csv") and f"line {line}: " in str(err) and needle in str(err)


def test_image_manifest_errors(tmp_path):
    fx = write_manifest(tmp_path / "m")
    line = set_cell(fx.images, "images/blujay_1.jpg", "path", "images/blujay_1.wav")
    err = load_error(fx.audio, fx.taxonomy, fx.images)
    assert err.source.endswith("images.csv") and f"line {line}: " in str(err) and "not a supported image" in str(err)


def test_missing_columns_and_empty_file(tmp_path):
    fx = write_manifest(tmp_path / "m", images=False)
    edit(fx.audio, "path,species,split", "file,species,fold")
    err = load_error(fx.audio, fx.taxonomy)
    assert "line 1: missing columns 'path', 'split' (found: 'file', 'species', 'fold'" in str(err)
    fx.audio.write_text("\n\n")
    assert "file is empty" in str(load_error(fx.audio, fx.taxonomy))
    assert "file not found" in str(load_error(tmp_path / "nope.csv"))


def test_extra_fields_and_bad_quoting(tmp_path):
    fx = write_manifest(tmp_path / "m", images=False)
    edit(fx.audio, "site1\n", "site1,extra\n")
    line = line_of(fx.audio, "extra")
    assert f"line {line}: 6 fields but the header (line 1) has 5" in str(load_error(fx.audio, fx.taxonomy))


def test_parquet_errors_name_the_row(tmp_path):
    fx = write_manifest(tmp_path / "pq", fmt="parquet", images=False)
    table = pq.read_table(fx.audio).to_pydict()
    table["species"][3] = "Pica hudsonia"
    pq.write_table(pa.table(table), fx.audio)
    err = load_error(fx.audio, fx.taxonomy)
    assert err.source.endswith("audio.parquet") and "row 4: column 'species'" in str(err)
    fx.audio.write_bytes(b"not parquet")
    assert "not a readable parquet file" in str(load_error(fx.audio, fx.taxonomy))
