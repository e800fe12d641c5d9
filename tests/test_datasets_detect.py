"""Layout detection, dataset.yaml descriptors, and ``birdbridge dataset info``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from birdbridge.datasets import detect_layout, load_dataset
from birdbridge.errors import InputError
from cli_fixtures import run
from dataset_fixtures import write_inatsounds, write_manifest, write_ssw60


def load_error(ref) -> InputError:
    with pytest.raises(InputError) as info:
        load_dataset(ref)
    return info.value


# ------------------------------------------------------------------------------------------- detection


def test_detect_every_layout(tmp_path):
    ssw = write_ssw60(tmp_path / "ssw60", n_species=2)
    inat = write_inatsounds(tmp_path / "inat", n_species=2)
    man = write_manifest(tmp_path / "man", fmt="parquet", taxonomy=False)
    csv_man = write_manifest(tmp_path / "csvman", images=False, taxonomy=False)
    assert detect_layout(ssw.root) == ("ssw60", ssw.root)
    assert detect_layout(inat.root) == ("inatsounds", inat.root)
    assert detect_layout(inat.files["val"]) == ("inatsounds", inat.files["val"])
    assert detect_layout(man.audio) == ("manifest", man.audio)
    (csv_man.root / "dataset.yaml").write_text("type: manifest\naudio: audio.csv\nname: yaml\n")
    assert detect_layout(csv_man.root) == ("descriptor", csv_man.root / "dataset.yaml")

    assert load_dataset(ssw.root).name == "ssw60"
    full = load_dataset(str(inat.root))
    assert full.splits()["audio"] == inat.counts and full.name == "inatsounds"
    one = load_dataset(inat.files["test"])
    assert set(one.splits()["audio"]) == {"test"}
    assert len(load_dataset(man.audio).audio) == man.n_audio  # taxonomy built from the names
    assert load_dataset(csv_man.audio).name == "csvman" and load_dataset(csv_man.root).name == "yaml"


def test_inatsounds_folder_with_some_splits(tmp_path):
    inat = write_inatsounds(tmp_path / "inat", per_split={"train": 1, "test": 1})
    assert set(load_dataset(inat.root).splits()["audio"]) == {"train", "test"}


def test_unrecognised_inputs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = load_error(empty)
    assert "no dataset birdbridge recognises" in str(err)
    assert "SSW60" in str(err) and "iNatSounds" in str(err) and "dataset.yaml" in str(err) and "manifest" in str(err)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert "unsupported dataset file type '.txt'" in str(load_error(notes))
    assert "no such file or folder" in str(load_error(tmp_path / "missing"))
    half = write_ssw60(tmp_path / "half", n_species=2, video=False)
    (half.root / "audio_ml.csv").unlink()
    assert "looks like SSW60 but audio_ml.csv is missing" in str(load_error(half.root))


def test_json_that_is_not_inatsounds(tmp_path):
    other = tmp_path / "coco.json"
    other.write_text('{"images": [], "annotations": [], "categories": []}')
    err = load_error(other)
    assert err.source.endswith("coco.json") and "missing 'audio'" in str(err) and "'images'" in str(err)


# ------------------------------------------------------------------------------------------ descriptors


def test_manifest_descriptor(tmp_path):
    fx = write_manifest(tmp_path / "birds", videos=True)
    (fx.root / "dataset.yaml").write_text(
        "type: manifest\nname: backyard\naudio: audio.csv\nimages: images.csv\n"
        "videos: videos.csv\ntaxonomy: taxonomy.csv\nroot: .\n"
    )
    ds = load_dataset(fx.root)
    assert ds.name == "backyard" and ds.root == fx.root.resolve()
    assert (len(ds.audio), len(ds.images), len(ds.videos)) == (fx.n_audio, fx.n_images, fx.n_videos)
    assert ds.taxonomy[0].code == "mallar3" and ds.check_files() == []


def test_ssw60_and_inatsounds_descriptors(tmp_path):
    ssw = write_ssw60(tmp_path / "data" / "ssw60", n_species=2)
    inat = write_inatsounds(tmp_path / "data" / "inat", n_species=2)
    ssw_yaml = tmp_path / "data" / "ssw.yaml"
    ssw_yaml.write_text("type: ssw60\nroot: ssw60\nimage_sources: inat\n")
    ds = load_dataset(ssw_yaml)
    assert ds.name == "ssw60" and {i.source for i in ds.images} == {"inat"} and len(ds.audio) == 6
    ssw_yaml.write_text("type: ssw60\nname: sounds-only\nroot: ssw60\nimage_sources: []\n")
    ds = load_dataset(ssw_yaml)
    assert ds.name == "sounds-only" and ds.images == [] and len(ds.videos) == 4
    inat_yaml = tmp_path / "data" / "inat.yml"
    inat_yaml.write_text(
        "type: inatsounds\nname: inat-birds\nannotations: [inat/train.json, inat/val.json]\n"
        "root: inat\nsupercategory: Aves\n"
    )
    ds = load_dataset(inat_yaml)
    assert ds.name == "inat-birds" and len(ds.taxonomy) == 2
    assert ds.splits()["audio"] == {"train": 4, "val": 2} and ds.check_files() == []
    (inat.root / "dataset.yaml").write_text("type: inatsounds\nsplit: all\n")  # JSON files beside it
    assert load_dataset(inat.root).splits()["audio"] == {"all": sum(inat.counts.values())}
    assert ssw.root.is_dir()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("type: manifest\naudio: audio.csv\nimagez: images.csv\n", "unknown key 'imagez' for type 'manifest'"),
        ("type: ssw60\naudio: a.csv\n", "unknown key 'audio' for type 'ssw60' (allowed keys: type, name, root"),
        ("type: coco\n", "'type' is 'coco' (use one of manifest, ssw60, inatsounds, soundscape)"),
        ("audio: audio.csv\n", "'type' is missing"),
        ("type: manifest\naudio: [a.csv, b.csv]\n", "'audio' must be a non-empty string"),
        ("type: ssw60\nimage_sources: [1]\n", "'image_sources' must be a string or a list of strings"),
        ("type: ssw60\nimage_sources: [inat, flickr]\n", "'image_sources' has unknown 'flickr' (use nabirds, inat)"),
        ("type: [manifest]\n", "'type' is ['manifest']"),
        ("type: inatsounds\nannotations: []\n", "'annotations' must be a file name or a non-empty list"),
        ("type: manifest\n", "type 'manifest' needs an 'audio' key"),
        ("- type: manifest\n", "expected a mapping"),
        ("type: manifest\naudio: [unclosed\n", "line 3: not valid YAML"),
        ("type: inatsounds\n", "needs 'annotations', or train.json / val.json / test.json beside it"),
    ],
)
def test_descriptor_errors(tmp_path, text, needle):
    descriptor = tmp_path / "dataset.yaml"
    descriptor.write_text(text)
    err = load_error(tmp_path)
    assert err.source.endswith("dataset.yaml") and needle in str(err)


def test_descriptor_paths_are_relative_to_it(tmp_path):
    fx = write_manifest(tmp_path / "m", images=False)
    (tmp_path / "dataset.yaml").write_text("type: manifest\naudio: m/audio.csv\ntaxonomy: m/nope.csv\n")
    err = load_error(tmp_path / "dataset.yaml")
    assert err.source == str(tmp_path / "m" / "nope.csv") and "file not found" in str(err)
    assert fx.audio.is_file()


# ------------------------------------------------------------------------------------------------- CLI


def dataset_cli(capsys, *args: str | Path) -> tuple[int, str]:
    """``birdbridge dataset ARGS``: its exit status and everything it printed."""
    result = run(capsys, "dataset", *args)
    return result.returncode, result.stdout + result.stderr


def test_cli_info(tmp_path, capsys):
    ssw = write_ssw60(tmp_path / "ssw60", n_species=3)
    code, out = dataset_cli(capsys, "info", ssw.root)
    assert code == 0, out
    assert "dataset  ssw60" in out and "species  3" in out
    assert re.search(r"audio\s+9\s+3\s+6\s+-\s+3", out)  # items, species, train, val, test
    assert re.search(r"images\s+12\s+3\s+6\s+3\s+3", out)
    assert re.search(r"videos\s+6\s+3\s+3\s+-\s+3", out)
    code, out = dataset_cli(capsys, "info", ssw.root, "--check-files")
    assert code == 0 and "all 27 files present" in out


def test_cli_check_files_lists_missing(tmp_path, capsys):
    fx = write_manifest(tmp_path / "m", per_species=9, images=False, taxonomy=False)
    gone = sorted((fx.root / "audio").glob("*.wav"))
    gone[0].unlink()
    code, out = dataset_cli(capsys, "info", fx.audio, "--check-files")
    assert code == 1
    assert "1 of 27 files have problems" in out and f"missing: {gone[0]}" in out
    for path in gone[1:]:
        path.unlink()
    code, out = dataset_cli(capsys, "info", fx.audio, "--check-files")
    assert code == 1 and "27 of 27 files have problems" in out
    assert out.count("missing: ") == 20 and "... and 7 more" in out


def test_cli_reports_errors(tmp_path, capsys):
    code, out = dataset_cli(capsys, "info", tmp_path / "nothing")
    assert code == 1 and "no such file or folder" in out and "Traceback" not in out
    assert "no such file or folder" in str(load_error(tmp_path / "nothing"))  # the InputError the command printed
