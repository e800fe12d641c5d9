"""Outputs other tools read, carrying their settings: BirdNET-Analyzer's file names (found by its own matching rule),
Audacity and Kaleidoscope files with their columns, the params file beside every run, and `--additional-columns`."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from audio_fixtures import write_wav
from birdbridge import __version__
from birdbridge.gallery import Gallery
from birdbridge.models.loader import load_student
from birdbridge.search import SearchEngine, search
from birdbridge.search.formats import format_text
from birdbridge.search.params import PARAMS_FILE
from birdbridge.search.results import FileResult, SpeciesHit, WindowResult
from cli_fixtures import run
from search_fixtures import distilled_world
from train_fixtures import SPECIES

ITHACA = (42.48, -76.45)

# --------------------------------------------------------------------------------------------------------------------
# BirdNET-Analyzer's own rules, re-implemented from birdnet_analyzer/segments/utils.py (BirdNET-Analyzer at commit
# 3791240, "Pin birdnet 1.1.0"): parse_folders() pairs recordings with result files, _detect_rtype() and
# _find_segments() read a result file's rows. Kept faithful, quirks included (root.strip(apath) strips characters).

BIRDNET_AUDIO = ("wav", "flac", "mp3", "ogg", "m4a", "wma", "aiff", "aif")  # birdnet_analyzer/config.py
BIRDNET_COMBINED = ("BirdNET_SelectionTable.txt", "BirdNET_CombinedTable.csv", "BirdNET_Kaleidoscope.csv")


def birdnet_parse_folders(apath: str, rpath: str, allowed_result_filetypes=("txt", "csv")) -> list[dict]:
    data: dict = {}
    apath = apath.replace("/", os.sep).replace("\\", os.sep)
    rpath = rpath.replace("/", os.sep).replace("\\", os.sep)
    for name in BIRDNET_COMBINED:
        if os.path.exists(os.path.join(rpath, name)):
            return [{"isCombinedFile": True, "result": os.path.join(rpath, name)}]
    for root, _, files in os.walk(apath):
        for f in files:
            if f.rsplit(".", 1)[-1].lower() in BIRDNET_AUDIO and not f.startswith("."):
                table_key = os.path.join(root.strip(apath), f.rsplit(".", 1)[0])
                data[table_key] = {"audio": os.path.join(root, f), "result": ""}
    for root, _, files in os.walk(rpath):
        for f in files:
            if f.rsplit(".", 1)[-1] in allowed_result_filetypes and ".BirdNET." in f:
                table_key = os.path.join(root.strip(rpath), f.split(".BirdNET.", 1)[0])
                if table_key in data:
                    data[table_key]["result"] = os.path.join(root, f)
    return [f for f in data.values() if f["result"]]


def birdnet_detect_rtype(line: str) -> str:
    if line.lower().startswith("selection"):
        return "table"
    if line.lower().startswith("indir"):
        return "kaleidoscope"
    if line.lower().startswith("start (s)"):
        return "csv"
    return "audacity"


def birdnet_find_segments(rfile: str) -> list[tuple[float, float, str, float]]:
    """(start, end, species, confidence) as BirdNET's segments command reads them (min_conf 0)."""
    lines = Path(rfile).read_text(encoding="utf-8").splitlines()
    rtype = birdnet_detect_rtype(lines[0])
    sep = "\t" if rtype in ("table", "audacity") else ","
    header = {col: i for i, col in enumerate(lines[0].split(sep))}
    out = []
    for i, line in enumerate(lines):
        if rtype == "table" and i > 0:
            d = line.split("\t")
            start, end = float(d[header["Begin Time (s)"]]), float(d[header["End Time (s)"]])
            species, confidence = d[header["Common Name"]], float(d[header["Confidence"]])
        elif rtype == "audacity":
            d = line.split("\t")
            start, end, species, confidence = float(d[0]), float(d[1]), d[2].split(", ")[1], float(d[-1])
        elif rtype == "kaleidoscope" and i > 0:
            d = line.split(",")
            start = float(d[header["OFFSET"]])
            end = float(d[header["DURATION"]]) + start
            species, confidence = d[header["scientific_name"]], float(d[header["confidence"]])
        elif rtype == "csv" and i > 0:
            d = line.split(",")
            start, end = float(d[header["Start (s)"]]), float(d[header["End (s)"]])
            species, confidence = d[header["Common name"]], float(d[header["Confidence"]])
        else:
            continue
        if species.lower() != "nocall":
            out.append((start, end, species, confidence))
    return out


# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = distilled_world(tmp_path_factory.mktemp("outputs"))
    recordings = world["root"] / "recordings"
    t = np.arange(int(2.5 * 16_000)) / 16_000
    names = ("20240515_063000.wav", "20240105_063000.wav", "site2/20240105_070000.wav")
    for name, (_, _, freq) in zip(names, SPECIES, strict=False):
        write_wav(recordings / name, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
    return {**world, "recordings": recordings}


def search_args(world, *args) -> list:
    return ["search", *args, "--model", world["model"], "--gallery", world["gallery"], "--score", "softmax",
            "--min-score", "0", "--top-k", "2", "--images", "1"]


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_birdnets_file_matching_finds_birdnet_names(world, tmp_path, capsys) -> None:
    """BirdNET's segments command pairs every recording with birdbridge's --birdnet-names results, and reads their
    rows as birdbridge wrote them: csv, Raven, Audacity and Kaleidoscope."""
    recordings = tmp_path / "recordings"
    shutil.copytree(world["recordings"], recordings)
    out = tmp_path / "out"
    flat = sorted(recordings.glob("*.wav"))
    for fmt in ("csv", "raven", "audacity", "kaleidoscope"):
        result = run(capsys, *search_args(world, *flat, "--format", fmt, "--output", out, "--birdnet-names"))
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [PARAMS_FILE] + [f"{p.stem}{suffix}" for p in flat for suffix in (
            ".BirdNET.results.csv", ".BirdNET.selection.table.txt", ".BirdNET.results.txt",
            ".BirdNET.results.kaleidoscope.csv")])
    for fmt_suffix in (".BirdNET.results.csv", ".BirdNET.selection.table.txt", ".BirdNET.results.txt",
                       ".BirdNET.results.kaleidoscope.csv"):
        only = tmp_path / f"only{fmt_suffix}"
        only.mkdir()
        for path in out.glob(f"*{fmt_suffix}"):
            shutil.copy(path, only)
        pairs = birdnet_parse_folders(str(recordings), str(only))
        assert sorted((Path(p["audio"]).name, Path(p["result"]).name) for p in pairs) == sorted(
            (p.name, p.stem + fmt_suffix) for p in flat)

    for path in flat:
        ours = [(float(r["Start (s)"]), float(r["End (s)"]), r["Common name"], r["Scientific name"],
                 float(r["Confidence"])) for r in csv_rows(out / f"{path.stem}.BirdNET.results.csv")]
        assert ours
        common = sorted((s, e, c, conf) for s, e, c, _, conf in ours)
        assert sorted(birdnet_find_segments(str(out / f"{path.stem}.BirdNET.results.csv"))) == common
        assert sorted(birdnet_find_segments(str(out / f"{path.stem}.BirdNET.selection.table.txt"))) == common
        assert sorted(birdnet_find_segments(str(out / f"{path.stem}.BirdNET.results.txt"))) == common
        scientific = sorted((s, e, sci, conf) for s, e, _, sci, conf in ours)
        assert sorted(birdnet_find_segments(str(out / f"{path.stem}.BirdNET.results.kaleidoscope.csv"))) == scientific

    # birdbridge's own segments command reads all four (each detection once) and finds the recordings
    result = run(capsys, "segments", out, "--audio", recordings, "--output", tmp_path / "clips", "--collection-mode",
                 "confidence", "--max-segments", "1")
    assert result.returncode == 0, result.stderr
    index = csv_rows(tmp_path / "clips" / "birdbridge.segments.csv")
    detected = [r for path in flat for r in csv_rows(out / f"{path.stem}.BirdNET.results.csv")]
    assert sorted(r["Common name"] for r in index) == sorted({r["Common name"] for r in detected})  # 1 per species
    for row in index:
        best = max(float(r["Confidence"]) for r in detected if r["Common name"] == row["Common name"])
        assert float(row["Confidence"]) == best and Path(row["Source file"]).parent == recordings
    assert f"of {4 * len(detected)} detections read" in result.stderr
    result = run(capsys, "segments", out, "--audio", recordings, "--output", tmp_path / "all")
    assert result.returncode == 0 and len(csv_rows(tmp_path / "all" / "birdbridge.segments.csv")) == len(detected)

    # results beside the recordings, in their subfolders (BirdNET's default --results is the input folder)
    result = run(capsys, *search_args(world, recordings, "--format", "csv", "--output", recordings, "--birdnet-names"))
    assert result.returncode == 0, result.stderr
    pairs = birdnet_parse_folders(str(recordings), str(recordings))
    assert sorted(Path(p["audio"]).relative_to(recordings).as_posix() for p in pairs) == [
        "20240105_063000.wav", "20240515_063000.wav", "site2/20240105_070000.wav"]
    assert all(p["result"] == p["audio"][:-4] + ".BirdNET.results.csv" for p in pairs)

    # combined into a folder: BirdNET's combined name, which its segments command looks for first
    result = run(capsys, *search_args(world, *flat, "--format", "raven", "--output", tmp_path / "comb",
                                      "--birdnet-names", "--combined"))
    assert result.returncode == 0, result.stderr
    assert birdnet_parse_folders(str(recordings), str(tmp_path / "comb")) == [
        {"isCombinedFile": True, "result": str(tmp_path / "comb" / "BirdNET_SelectionTable.txt")}]


def test_audacity_and_kaleidoscope_columns(tmp_path) -> None:
    recording = tmp_path / "site" / "rec.wav"
    hits = [SpeciesHit("Pica hudsonia", "Pica hudsonia", "Black-billed Magpie", "bkbmag1", 0.91234, 0.4),
            SpeciesHit("Corvus corax", "Corvus corax", None, None, 0.5, 0.3)]
    result = FileResult(str(recording), 6.0, [WindowResult(0, 0.0, 3.0, hits[:1]), WindowResult(1, 3.0, 6.0),
                                              WindowResult(2, 3.0, 6.0, hits[1:])])
    text = format_text("audacity", [result], n_images=0, band_hz=(0, 0))
    assert text.splitlines() == ["0.0\t3.0\tPica hudsonia, Black-billed Magpie\t0.9123",
                                 "3.0\t6.0\tCorvus corax, Corvus corax\t0.5000"]  # no header; a window without none
    rows = list(csv.reader(format_text("kaleidoscope", [result], n_images=0, band_hz=(0, 0)).splitlines()))
    assert rows[0] == ["INDIR", "FOLDER", "IN FILE", "OFFSET", "DURATION", "scientific_name", "common_name",
                       "confidence", "TOP1MATCH", "TOP1DIST", "RANK"]
    assert rows[1] == [str(tmp_path.resolve()), "site", "rec.wav", "0.0", "3.0", "Pica hudsonia", "Black-billed Magpie",
                       "0.9123", "Black-billed Magpie", "0.9123", "species"]
    assert Path(rows[1][0], rows[1][1], rows[1][2]) == recording.resolve()
    assert rows[2][5:8] == ["Corvus corax", "Corvus corax", "0.5000"] and len(rows) == 3


def test_params_file_records_the_run(world, tmp_path, capsys) -> None:
    species_list = tmp_path / "species.txt"
    species_list.write_text("Pica hudsonia\nTurdus migratorius\n")
    out = tmp_path / "out"
    args = search_args(world, world["recordings"], "--format", "json", "--output", out, "--window", "1.0", "--hop",
                       "0.5", "--species-list", species_list)
    result = run(capsys, *args)
    assert result.returncode == 0, result.stderr
    params = json.loads((out / PARAMS_FILE).read_text())
    assert params["command"] == ["birdbridge", *map(str, args)]
    assert params["birdbridge_version"] == __version__
    student = load_student(world["model"])
    assert params["model"]["ref"] == str(world["model"]) and params["model"]["fingerprint"] == student.fingerprint
    gallery = Gallery.open(world["gallery"])
    assert params["teacher"]["fingerprint"] == gallery.teacher["fingerprint"] and params["teacher"]["fingerprint"]
    assert params["gallery"] == {"path": str(Path(world["gallery"]).resolve()), "images": len(gallery),
                                 "species": len(SPECIES)}
    assert (params["window_s"], params["hop_s"]) == (1.0, 0.5)
    assert params["score"]["ranked_by"] == "softmax" and params["score"]["threshold"] == 0.0
    assert params["species_filter"] == {"kind": "list", "source": str(species_list.resolve())}
    assert params["output"]["format"] == "json" and params["output"]["birdnet_names"] is False

    # a combined file: its own params file beside it; the model's window and hop when none are given
    report = search(world["recordings"], model=world["model"], gallery=world["gallery"], format="csv",
                    output=tmp_path / "c" / "all.csv", combined=True, species=["Pica hudsonia"], score="softmax")
    assert report.written == [tmp_path / "c" / "all.csv"]
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["all.csv", "all.csv.search-params.json"]
    params = json.loads((tmp_path / "c" / "all.csv.search-params.json").read_text())
    assert params["window_s"] == params["hop_s"] == student.window_s and params["command"] is None
    assert params["species_filter"] == {"kind": "labels", "source": "names given", "species": ["Pica hudsonia"]}


def test_range_filter_and_additional_columns(world, tmp_path, capsys) -> None:
    """--additional-columns adds the chosen settings to each row; with --week auto the week is each recording's."""
    out = tmp_path / "out"
    args = search_args(world, world["recordings"], "--format", "csv", "--output", out, "--hop", "0.5", "--lat",
                       ITHACA[0], "--lon", ITHACA[1], "--week", "auto", "--additional-columns", "lat,lon,week",
                       "--additional_columns", "overlap", "--additional-columns", "model,score,min_conf")
    result = run(capsys, *args)
    assert result.returncode == 0, result.stderr
    params = json.loads((out / PARAMS_FILE).read_text())
    assert {k: params["species_filter"][k] for k in ("kind", "lat", "lon", "week", "sf_thresh")} == {
        "kind": "range", "lat": ITHACA[0], "lon": ITHACA[1], "week": "auto", "sf_thresh": 0.03}
    assert params["output"]["additional_columns"] == ["lat", "lon", "week", "overlap", "model", "score", "min_conf"]
    weeks = {"20240515_063000": "19", "20240105_063000": "1", "20240105_070000": "1"}
    for path in out.rglob("*.birdbridge.results.csv"):
        rows = csv_rows(path)
        assert rows and list(rows[0])[-7:] == ["lat", "lon", "week", "overlap", "model", "score", "min_conf"]
        stem = path.name.split(".")[0]
        assert {(r["lat"], r["lon"], r["week"], r["overlap"], r["model"], r["score"], r["min_conf"]) for r in rows} == {
            ("42.48", "-76.45", weeks[stem], "0.5", Path(world["model"]).name, "softmax", "0.25")}

    engine = SearchEngine.open(world["gallery"], world["model"])
    search(world["recordings"] / "20240515_063000.wav", engine=engine, format="parquet", output=tmp_path / "pq",
           additional_columns=["window", "hop", "species_list"], score="softmax")
    table = pq.read_table(tmp_path / "pq" / "20240515_063000.birdbridge.results.parquet")
    assert table.column_names[-3:] == ["window", "hop", "species_list"]
    assert set(zip(*(table.column(c).to_pylist() for c in ("window", "hop", "species_list")), strict=True)) == {
        (f"{engine.student.window_s:g}", f"{engine.student.window_s:g}", "")}

    bad = run(capsys, *search_args(world, world["recordings"], "--format", "csv", "--output", out,
                                   "--additional-columns", "lat,elevation"))
    assert bad.returncode == 1 and "--additional-columns: unknown column 'elevation' (choose from lat, lon, week" in \
        bad.stderr.replace("\n", "")
    bad = run(capsys, *search_args(world, world["recordings"], "--format", "raven", "--output", out,
                                   "--additional-columns", "lat"))
    assert bad.returncode == 1 and "csv and parquet" in bad.stderr
