"""SSW60 adapter: taxonomy, items of every modality, optional tables, and row-level validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from birdbridge.datasets import load_ssw60
from birdbridge.errors import InputError
from dataset_fixtures import MP4_BYTES, SAMPLE_RATE, edit, set_cell, write_ssw60


@pytest.fixture()
def ssw(tmp_path):
    return write_ssw60(tmp_path / "ssw60")


def load_error(root: Path, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        load_ssw60(root, **kwargs)
    return info.value


def test_taxonomy(ssw):
    ds = load_ssw60(ssw.root)
    tax = ds.taxonomy
    assert tax.keys == tuple(ssw.species)
    mallard = tax[0]
    assert (mallard.kingdom, mallard.phylum, mallard.cls) == ("Animalia", "Chordata", "Aves")
    assert (mallard.order, mallard.family) == ("Anseriformes", "Anatidae")  # description dropped
    assert (mallard.genus, mallard.specific_epithet) == ("Anas", "platyrhynchos")
    assert mallard.common_name == "Mallard" and mallard.code == "mallar3"
    assert tax[2].family == "Corvidae" and tax.get("dowwoo").common_name == "Downy Woodpecker"


def test_audio_items(ssw):
    ds = load_ssw60(ssw.root)
    assert ds.name == "ssw60" and ds.root == ssw.root.resolve()
    assert [a.id for a in ds.audio] == ssw.audio_ids
    assert ds.splits()["audio"] == ssw.audio_splits
    first = ds.audio[0]
    assert first.path == ssw.root.resolve() / "audio_ml" / f"{first.id}.wav" and first.path.is_file()
    assert first.species == "Anas platyrhynchos" and first.split == "train"
    assert first.duration_s == pytest.approx(0.2)
    assert first.meta == {"samplerate": SAMPLE_RATE, "channels": 1, "samples": 4410}
    assert ds.species_in(ds.audio_split("test")) == ssw.species


def test_image_items(ssw):
    ds = load_ssw60(ssw.root)
    assert len(ds.images) == sum(len(ids) for ids in ssw.image_ids.values())
    nab = [i for i in ds.images if i.source == "nabirds"]
    inat = [i for i in ds.images if i.source == "inat"]
    assert [i.meta["asset_id"] for i in nab] == ssw.image_ids["nabirds"]
    assert nab[0].id == f"nabirds/{ssw.image_ids['nabirds'][0]}"
    assert nab[0].path == ssw.root.resolve() / "images_nabirds" / f"{ssw.image_ids['nabirds'][0]}.jpg"
    assert inat[0].path.parent.name == "images_inat" and inat[0].path.is_file()
    assert nab[0].meta["height"] == 8 and nab[0].meta["width"] == 8  # numbers parsed
    assert nab[0].meta["source_id"] == f"orig-{ssw.image_ids['nabirds'][0]}"  # extra column kept
    assert ds.splits()["images"] == {"train": 8, "val": 4, "test": 4}


def test_video_items(ssw):
    ds = load_ssw60(ssw.root)
    assert [v.id for v in ds.videos] == ssw.video_ids
    v = ds.videos[0]
    assert v.path == ssw.root.resolve() / "video_ml" / f"{v.id}.mp4" and v.path.read_bytes() == MP4_BYTES
    assert (v.fps, v.frame_count, v.duration_s, v.target_second) == (29.97, 300, 10.01, 4.5)
    assert [x.reliable_audio for x in ds.videos] == ssw.reliable  # 1/0, True, no
    assert ds.splits()["videos"] == {"train": 4, "test": 4}


def test_image_sources_option(ssw):
    only_inat = load_ssw60(ssw.root, image_sources=("inat",))
    assert {i.source for i in only_inat.images} == {"inat"}
    assert load_ssw60(ssw.root, image_sources=()).images == []
    err = load_error(ssw.root, image_sources=("flickr",))
    assert "'flickr'" in str(err) and "nabirds" in str(err)


def test_optional_tables_may_be_absent(tmp_path):
    fx = write_ssw60(tmp_path / "s", n_species=2, image_sources=("inat",), video=False)
    ds = load_ssw60(fx.root)
    assert len(ds.audio) == 6 and {i.source for i in ds.images} == {"inat"} and ds.videos == []
    (fx.root / "images_inat.csv").unlink()
    assert load_ssw60(fx.root).images == []


@pytest.mark.parametrize("missing", ["taxa.csv", "audio_ml.csv"])
def test_required_tables(ssw, missing):
    (ssw.root / missing).unlink()
    err = load_error(ssw.root)
    assert missing in str(err) and "not an SSW60 folder" in str(err)


def test_missing_folder(tmp_path):
    assert "folder not found" in str(load_error(tmp_path / "nope"))


def test_unknown_label(ssw):
    line = set_cell(ssw.root / "audio_ml.csv", "100101", "label", "59")
    err = load_error(ssw.root)
    assert err.source.endswith("audio_ml.csv")
    assert f"line {line}: label '59' is not in taxa.csv" in str(err)


def test_missing_column_lists_found_columns(ssw):
    edit(ssw.root / "video_ml.csv", "asset_id,label,split", "asset_id,label,fold")
    err = load_error(ssw.root)
    assert err.source.endswith("video_ml.csv")
    assert "line 1: missing column 'split'" in str(err) and "'fold'" in str(err) and "'asset_id'" in str(err)


def test_duplicate_asset_id(ssw):
    line = set_cell(ssw.root / "audio_ml.csv", "100002", "asset_id", "100000")
    err = load_error(ssw.root)
    assert f"line {line}: duplicate asset_id '100000' (first at line 2)" in str(err)


@pytest.mark.parametrize(
    ("table", "key", "column", "value", "needle"),
    [
        ("audio_ml.csv", "100100", "samplerate", "22kHz", "column 'samplerate' is not a number: '22kHz'"),
        ("audio_ml.csv", "100100", "samples", "10.5", "column 'samples' is not a whole number"),
        ("audio_ml.csv", "100100", "duration_seconds", "nan", "not a finite number"),
        ("audio_ml.csv", "100100", "split", "", "column 'split' is empty"),
        ("images_inat.csv", "3000101", "height", "tall", "column 'height' is not a number"),
        ("images_nabirds.csv", "nab01001", "label", "x", "label 'x' is not in taxa.csv"),
        ("video_ml.csv", "500101", "fps", "fast", "column 'fps' is not a number: 'fast'"),
        ("video_ml.csv", "500101", "reliable_audio", "maybe", "column 'reliable_audio' is not a yes/no value"),
    ],
)
def test_row_errors_name_file_and_line(ssw, table, key, column, value, needle):
    line = set_cell(ssw.root / table, key, column, value)
    err = load_error(ssw.root)
    assert err.source.endswith(table)
    assert f"line {line}: " in str(err) and needle in str(err)


@pytest.mark.parametrize(
    ("key", "column", "value", "needle"),
    [
        ("1", "label", "0", "line 3: duplicate label '0' (first at line 2)"),
        ("1", "scientific_name", "Anas", "line 3"),
        ("2", "species_code", "mallar3", "duplicate code 'mallar3': lines 2 and 4"),
    ],
)
def test_taxa_errors(ssw, key, column, value, needle):
    set_cell(ssw.root / "taxa.csv", key, column, value)
    err = load_error(ssw.root)
    assert err.source.endswith("taxa.csv") and needle in str(err)


def test_taxa_without_label_column(ssw):
    edit(ssw.root / "taxa.csv", "label,species_code", "idx,species_code")
    err = load_error(ssw.root)
    assert err.source.endswith("taxa.csv") and "missing column 'label'" in str(err)


def test_check_files_finds_missing_and_empty(ssw):
    ds = load_ssw60(ssw.root)
    assert ds.check_files() == []
    gone = ds.audio[3].path
    gone.unlink()
    ds.images[1].path.write_bytes(b"")
    problems = ds.check_files()
    assert problems == [(str(gone), "missing"), (str(ds.images[1].path), "empty file")]
    assert ds.check_files(limit=1) == problems[:1]
    assert len(load_ssw60(ssw.root).audio) == len(ssw.audio_ids)  # missing files do not fail loading
