"""iNatSounds adapter: split files, merged categories, supercategory filter, and entry-level errors."""

from __future__ import annotations

import json
import shutil

import pytest

from birdbridge.datasets import load_inatsounds
from birdbridge.errors import InputError
from dataset_fixtures import CLIP_S, rewrite_json, write_inatsounds


@pytest.fixture()
def inat(tmp_path):
    return write_inatsounds(tmp_path / "inat")


def all_files(fx):
    return [fx.files[s] for s in ("train", "val", "test")]


def load_error(*args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        load_inatsounds(*args, **kwargs)
    return info.value


def test_load_all_splits(inat):
    ds = load_inatsounds(all_files(inat))
    assert ds.name == "inatsounds" and ds.root == inat.root.resolve()
    assert ds.splits()["audio"] == inat.counts
    assert ds.taxonomy.keys == (*inat.birds, "Lithobates catesbeianus")  # category id order
    mallard = ds.taxonomy[0]
    assert mallard.taxonomy_path[:5] == ("Animalia", "Chordata", "Aves", "Anseriformes", "Anatidae")
    assert mallard.common_name == "Mallard" and mallard.code is None
    assert ds.taxonomy[3].cls == "Amphibia"
    first = ds.audio[0]
    doc = json.loads(inat.files["train"].read_text())
    assert first.id == str(doc["audio"][0]["id"])
    assert first.path == inat.root.resolve() / doc["audio"][0]["file_name"] and first.path.is_file()
    assert first.path.relative_to(inat.root.resolve()).parts[0] == "train"
    assert first.species == "Anas platyrhynchos" and first.split == "train"
    assert first.duration_s == pytest.approx(CLIP_S)
    assert first.meta["latitude"] == pytest.approx(42.47) and first.meta["category_id"] == 0
    assert first.meta["license"] == "cc-by-nc" and "file_name" not in first.meta and "id" not in first.meta
    assert ds.check_files() == []


def test_supercategory_filter(inat):
    birds = load_inatsounds(all_files(inat), supercategory="Aves")
    assert birds.taxonomy.keys == tuple(inat.birds)
    assert birds.splits()["audio"] == inat.bird_counts
    assert (
        load_inatsounds(inat.files["val"], supercategory=["aves", "Amphibia"]).taxonomy
        == load_inatsounds(inat.files["val"]).taxonomy
    )
    err = load_error(inat.files["val"], supercategory="Insecta")
    assert "'Insecta'" in str(err) and "Amphibia, Aves" in str(err)


def test_split_and_root_arguments(inat, tmp_path):
    ds = load_inatsounds(inat.files["val"], split="validation")
    assert set(ds.splits()["audio"]) == {"validation"}
    elsewhere = tmp_path / "annotations"
    elsewhere.mkdir()
    moved = shutil.copy(inat.files["test"], elsewhere / "test.json")
    ds = load_inatsounds(moved, root=inat.root)
    assert ds.root == inat.root.resolve() and ds.check_files() == []
    assert load_inatsounds(moved).check_files()  # files are looked for beside the JSON by default


def _set(section, index, key, value):
    def change(doc):
        doc[section][index][key] = value

    return change


def _delete(section, index, key=None):
    def change(doc):
        if key is None:
            del doc[section][index]
        else:
            del doc[section][index][key]

    return change


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (_set("annotations", 1, "audio_id", 99999), ["annotations[1]: audio_id 99999 is not in 'audio'"]),
        (_set("annotations", 2, "category_id", 42), ["annotations[2]: category_id 42 is not in 'categories'"]),
        (_delete("annotations", 0), ["audio[0]: audio without an annotation"]),
        (_set("audio", 1, "id", 1000), ["audio[1]: duplicate audio id 1000 (first at audio[0])"]),
        (_set("audio", 2, "id", None), ["audio[2]: 'id' must be an integer or a string"]),
        (_set("audio", 3, "file_name", ""), ["audio[3] (id 1003): 'file_name' is missing or empty"]),
        (_set("audio", 0, "duration", "long"), ["audio[0]: 'duration' is not a number of seconds"]),
        (_set("categories", 1, "id", 0), ["categories[1]: duplicate category id 0 (first at categories[0])"]),
        (_delete("categories", 2, "genus"), ["categories[2] (Cyanocitta cristata): missing 'genus'"]),
        (_set("categories", 1, "specific_epithet", "Pubescens"), ["categories[1] (id 1)", "lower case"]),
        (_set("annotations", 3, "id", 0), ["annotations[3]: duplicate annotation id 0 (first at annotations[0])"]),
        (_set("audio", 0, "file_name", 7), ["audio[0] (id 1000): 'file_name'"]),
    ],
)
def test_entry_errors_name_file_and_entry(inat, change, needles):
    rewrite_json(inat.files["train"], change)
    err = load_error(all_files(inat))
    assert err.source.endswith("train.json")
    for needle in needles:
        assert needle in str(err)


def test_same_species_twice(inat):
    def change(doc):
        doc["categories"][2].update(genus="Anas", specific_epithet="platyrhynchos", common_name="Mallard 2")

    rewrite_json(inat.files["train"], change)
    err = load_error(inat.files["train"])
    assert "categories[2]: the species 'Anas platyrhynchos' is also category categories[0]" in str(err)


def test_conflicting_labels(inat):
    def change(doc):
        doc["annotations"].append({"audio_id": doc["audio"][0]["id"], "category_id": 2})

    rewrite_json(inat.files["val"], change)
    err = load_error(inat.files["val"])
    assert "annotations[4]: audio" in str(err) and "already labelled category 0 by annotations[0]" in str(err)


def test_repeated_identical_annotation_is_accepted(inat):
    rewrite_json(inat.files["val"], lambda doc: doc["annotations"].append(dict(doc["annotations"][0], id=99)))
    assert len(load_inatsounds(inat.files["val"]).audio) == inat.counts["val"]


def test_missing_section_and_bad_json(inat, tmp_path):
    rewrite_json(inat.files["test"], lambda doc: doc.pop("annotations"))
    err = load_error(inat.files["test"])
    assert "missing 'annotations'" in str(err) and "'audio'" in str(err)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "audio": [\n    {"id": 1,}\n  ]\n}\n')
    assert "line 3 column" in str(load_error(broken))
    assert "file not found" in str(load_error(tmp_path / "none.json"))


def test_conflicting_category_across_files(inat):
    rewrite_json(inat.files["val"], _set("categories", 0, "specific_epithet", "rubripes"))
    err = load_error(all_files(inat))
    assert err.source.endswith("val.json")
    assert "categories[0]: category id 0 is defined differently in" in str(err) and "train.json" in str(err)


def test_audio_id_repeated_across_files(inat):
    rewrite_json(inat.files["val"], _set("audio", 0, "id", 1000))
    rewrite_json(inat.files["val"], _set("annotations", 0, "audio_id", 1000))
    err = load_error(all_files(inat))
    assert err.source.endswith("val.json") and "audio[0]: audio id 1000 is also audio[0] of" in str(err)
