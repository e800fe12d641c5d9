"""`birdbridge segments`: detections of result files (birdbridge's and BirdNET-Analyzer's) cut into clips to check
by ear: BirdNET's collection modes and per-species cap, its clip names, a CSV index, moved and missing recordings."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_fixtures import write_wav
from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.search.formats import SUFFIX, to_csv, write_results
from birdbridge.search.results import FileResult, SpeciesHit, WindowResult
from birdbridge.segments import INDEX_FILE, Detection, clip_span, cut_segments, read_detections
from birdbridge.segments.cut import MAX_CLIP_S
from birdbridge.segments.select import per_species, take_turns
from cli_fixtures import run

RATE = 16_000
MAGPIE = ("Pica hudsonia", "Black-billed Magpie")
ROBIN = ("Turdus migratorius", "American Robin")


def recording(path: Path, seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """Noise with a known sample at every instant (float WAV: read back exactly)."""
    x = (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)
    write_wav(path, x, rate, subtype="FLOAT")
    return x


def results_csv(path: Path, file: Path | str, rows: list[tuple[float, float, tuple[str, str], float]]) -> Path:
    """A results file written by birdbridge's own CSV writer (``search --format csv``)."""
    windows = [WindowResult(i, start, end, [SpeciesHit(sp[0], sp[0], sp[1], None, conf, 0.3, confidence=conf)])
               for i, (start, end, sp, conf) in enumerate(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_csv([FileResult(str(file), 20.0, windows)], 0))
    return path


def detection(species: str, confidence: float, n: int = 0) -> Detection:
    return Detection("r.csv", f"line {n}", "a.wav", float(n), float(n) + 1, species, None, confidence)


# ------------------------------------------------------------------------------------------- selection


def test_collection_modes_and_the_per_species_cap() -> None:
    low = [detection("A", 0.12 + 0.0005 * i, i) for i in range(100)]
    mid = [detection("A", 0.55, 100 + i) for i in range(5)]
    high = [detection("A", 0.95, 105 + i) for i in range(5)]
    other = [detection("B", 0.3, 110 + i) for i in range(3)]
    every = low + mid + high + other

    confident = per_species(every, mode="confidence", max_per_species=6)
    assert [d.confidence for d in confident["a"]] == [0.95] * 5 + [0.55]
    assert len(confident["b"]) == 3  # fewer than the cap: all

    for seed in range(5):  # each of the three confidence levels gets its share, whatever the seed
        balanced = per_species(every, mode="balanced", max_per_species=6, n_bins=10, seed=seed)["a"]
        levels = [0 if d.confidence < 0.2 else 1 if d.confidence < 0.9 else 2 for d in balanced]
        assert (levels.count(0), levels.count(1), levels.count(2)) == (2, 2, 2), levels
        assert len(set(balanced)) == 6
    sampled = per_species(every, mode="random", max_per_species=6, seed=0)["a"]
    assert sum(d.confidence < 0.2 for d in sampled) > 2  # a random sample follows the 100 low ones

    first = per_species(every, mode="random", max_per_species=6, seed=1)["a"]
    assert len(first) == 6 and len(set(first)) == 6 and set(first) <= set(low + mid + high)
    assert per_species(every, mode="random", max_per_species=6, seed=1)["a"] == first  # seeded
    assert per_species(every, mode="random", max_per_species=6, seed=2)["a"] != first

    kept = per_species(every, mode="confidence", max_per_species=100, min_conf=0.5, max_conf=0.9)
    assert [d.confidence for d in kept["a"]] == [0.55] * 5 and "b" not in kept

    turns, left = take_turns({"a": low[:5], "b": other}, 4)
    assert turns == [low[0], other[0], low[1], other[1]] and left == 4


# ------------------------------------------------------------------------------------------- clips and index


def test_clips_are_named_cut_in_context_and_indexed(tmp_path) -> None:
    audio = tmp_path / "recordings"
    rec0 = recording(audio / "site1" / "rec0.wav", 20.0, seed=0)
    recording(audio / "site1" / "rec1.wav", 20.0, seed=1)
    long = recording(audio / "long.wav", 70.0, seed=2, rate=8_000)
    results = tmp_path / "results"
    results_csv(results / "rec0.birdbridge.results.csv", audio / "site1" / "rec0.wav",
                [(0.5, 1.5, MAGPIE, 0.91), (10.0, 11.0, ROBIN, 0.42), (19.5, 20.0, MAGPIE, 0.66)])
    results_csv(results / "long.birdbridge.results.csv", audio / "long.wav", [(2.0, 68.0, ROBIN, 0.8)])

    report = cut_segments(results, tmp_path / "clips", context=1.0, seg_length=3.0, progress=False)
    assert not report.failures and report.read == 4 and len(report.clips) == 4
    names = sorted(str(c.path.relative_to(tmp_path / "clips")) for c in report.clips)
    assert all(re.fullmatch(r"(Black-billed Magpie|American Robin)/\d\.\d{3}_\d_(rec0|long)_\d+\.\d{2}s_\d+\.\d{2}s"
                            r"\.wav", n) for n in names), names
    assert {n.split("_", 1)[0].split("/")[1] for n in names} == {"0.910", "0.420", "0.660", "0.800"}
    by_start = {c.detection.start_s: c for c in report.clips}
    assert (by_start[0.5].start_s, by_start[0.5].end_s) == (0.0, 2.5)  # context before is clamped at 0
    assert (by_start[10.0].start_s, by_start[10.0].end_s) == (9.0, 12.0)
    assert (by_start[19.5].start_s, by_start[19.5].end_s) == (18.25, 20.0)  # widened to 3 s, then clamped
    assert (by_start[2.0].start_s, by_start[2.0].end_s) == (1.0, 1.0 + MAX_CLIP_S)  # no clip is longer than 60 s
    clip, rate = sf.read(by_start[10.0].path, dtype="float32")
    assert rate == RATE and np.allclose(clip, rec0[9 * RATE: 12 * RATE], atol=1.5 / 32768)  # the right audio
    long_clip, long_rate = sf.read(by_start[2.0].path, dtype="float32")
    assert long_rate == 8_000 and len(long_clip) == 60 * 8_000
    assert np.allclose(long_clip, long[8_000: 61 * 8_000], atol=1.5 / 32768)

    with open(report.index, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert report.index == tmp_path / "clips" / INDEX_FILE and len(rows) == 4
    row = next(r for r in rows if r["Start (s)"] == "10.00")
    assert row["Species"] == "American Robin" and row["Scientific name"] == ROBIN[0] and row["Confidence"] == "0.4200"
    assert Path(row["Source file"]) == audio / "site1" / "rec0.wav"
    assert row["Results"].endswith("rec0.birdbridge.results.csv")
    assert (row["Clip start (s)"], row["Clip end (s)"], row["Offset in clip (s)"]) == ("9.000", "12.000", "1.000")
    assert (tmp_path / "clips" / row["File"]).is_file()


def test_clip_span_follows_birdnets_seg_length() -> None:
    assert clip_span(4.0, 7.0, 30.0, seg_length=3.0, context=0.0) == (4.0, 7.0)  # BirdNET's default: the window
    assert clip_span(4.0, 5.0, 30.0, seg_length=3.0, context=0.0) == (3.0, 6.0)  # padded evenly to seg_length
    assert clip_span(4.0, 7.0, 30.0, seg_length=3.0, context=0.5) == (3.5, 7.5)


# ------------------------------------------------------------------------------------------- BirdNET's files


def test_reads_birdnets_raven_audacity_and_kaleidoscope_files(tmp_path) -> None:
    audio = tmp_path / "audio"
    for i in range(3):
        recording(audio / f"rec{i}.wav", 12.0, seed=i)
    results = tmp_path / "results"
    results.mkdir()
    raven = ["Selection", "Begin Time (s)", "End Time (s)", "Common Name", "Scientific Name", "Species Code",
             "Confidence", "View", "Channel", "File Offset (s)", "Low Freq (Hz)", "High Freq (Hz)", "Begin Path"]
    (results / "BirdNET_SelectionTable.txt").write_text("\n".join("\t".join(map(str, row)) for row in [
        raven,  # BirdNET-Analyzer's combined table: begin times run on across files; File Offset is the file's time
        [1, 3.0, 6.0, MAGPIE[1], MAGPIE[0], "bkbmag1", 0.8, "Spectrogram 1", 1, 3.0, 0, 15000, audio / "rec0.wav"],
        [2, 15.0, 18.0, ROBIN[1], ROBIN[0], "amerob", 0.7, "Spectrogram 1", 1, 3.0, 0, 15000, audio / "rec1.wav"],
        [3, 24.0, 27.0, "nocall", "nocall", "nocall", 1.0, "Spectrogram 1", 1, 0, 0, 15000, audio / "rec2.wav"],
    ]) + "\n")
    (results / "rec2.BirdNET.results.txt").write_text(f"6.0\t9.0\t{ROBIN[0]}, {ROBIN[1]}\t0.6500\n")
    (results / "rec1.BirdNET.results.kaleidoscope.csv").write_text(
        "INDIR,FOLDER,IN FILE,OFFSET,DURATION,scientific_name,common_name,confidence,TOP1MATCH,TOP1DIST\n"
        f"{tmp_path},audio,rec1.wav,9.0,3.0,{MAGPIE[0]},{MAGPIE[1]},0.5500,{MAGPIE[1]},0.5500\n")
    (results / "notes.txt").write_text("not a result file\n")
    (results / "birdbridge.search-params.json").write_text("{}")

    found = {(Path(d.results).name, d.recording and Path(d.recording).name, d.start_s, d.end_s, d.species,
              d.confidence) for f in sorted(results.iterdir()) if f.name not in ("notes.txt",) and f.suffix != ".json"
             for d in read_detections(f)[0]}
    assert found == {
        ("BirdNET_SelectionTable.txt", "rec0.wav", 3.0, 6.0, MAGPIE[1], 0.8),
        ("BirdNET_SelectionTable.txt", "rec1.wav", 3.0, 6.0, ROBIN[1], 0.7),  # at its File Offset, nocall left out
        ("rec2.BirdNET.results.txt", None, 6.0, 9.0, ROBIN[1], 0.65),
        ("rec1.BirdNET.results.kaleidoscope.csv", "rec1.wav", 9.0, 12.0, MAGPIE[1], 0.55),
    }
    report = cut_segments(results, tmp_path / "clips", audio=[audio], progress=False)
    assert not report.failures, report.failures
    assert sorted((c.recording.name, c.detection.start_s) for c in report.clips) == [
        ("rec0.wav", 3.0), ("rec1.wav", 3.0), ("rec1.wav", 9.0), ("rec2.wav", 6.0)]  # Audacity's by its file's name


def test_reads_every_birdbridge_format(tmp_path) -> None:
    """The same detections from each format `search` writes (Audacity labels name no recording: their file does)."""
    hits = [SpeciesHit(MAGPIE[0], MAGPIE[0], MAGPIE[1], None, 0.9, 0.4, confidence=0.9),
            SpeciesHit(ROBIN[0], ROBIN[0], ROBIN[1], None, 0.3, 0.2, confidence=0.3)]
    result = FileResult(str(tmp_path / "rec.wav"), 9.0, [WindowResult(0, 0.0, 3.0, hits), WindowResult(1, 3.0, 6.0),
                                                          WindowResult(2, 6.0, 9.0, hits[1:])])
    expected = {(0.0, 3.0, MAGPIE[1], 0.9), (0.0, 3.0, ROBIN[1], 0.3), (6.0, 9.0, ROBIN[1], 0.3)}
    for fmt, suffix in SUFFIX.items():
        path = write_results(tmp_path / f"rec{suffix}", fmt, [result], n_images=1, band_hz=(0, 8000))
        found, failures = read_detections(path)
        assert not failures and {(d.start_s, d.end_s, d.common_name, d.confidence) for d in found} == expected, fmt
        assert {d.recording and Path(d.recording).name for d in found} == {None if fmt == "audacity" else "rec.wav"}
        assert fmt in ("raven", "audacity") or {d.scientific_name for d in found} == {MAGPIE[0], ROBIN[0]}


def test_a_detection_in_two_result_files_is_cut_once(tmp_path) -> None:
    audio = tmp_path / "audio"
    recording(audio / "rec0.wav", 10.0)
    results_csv(tmp_path / "out" / "rec0.BirdNET.results.csv", audio / "rec0.wav", [(3.0, 6.0, MAGPIE, 0.9)])
    (tmp_path / "out" / "rec0.BirdNET.results.txt").write_text(f"3.0\t6.0\t{MAGPIE[0]}, {MAGPIE[1]}\t0.9000\n")
    report = cut_segments(tmp_path / "out", tmp_path / "clips", audio=[audio], progress=False)
    assert report.read == 2 and len(report.clips) == 1


# ------------------------------------------------------------------------------------------- bad input


def test_moved_and_missing_recordings_are_reported_per_file_and_the_rest_is_cut(tmp_path, capsys) -> None:
    audio = tmp_path / "now"
    recording(audio / "site1" / "rec0.wav", 10.0)
    recording(audio / "site2" / "rec0.wav", 10.0, seed=5)  # the same name in another folder
    results = tmp_path / "results"
    moved = results_csv(results / "a.birdbridge.results.csv", "/card/site2/rec0.wav", [(1.0, 4.0, MAGPIE, 0.9)])
    gone = results_csv(results / "b.birdbridge.results.csv", "/card/site3/lost.wav",
                       [(1.0, 4.0, ROBIN, 0.9), (5.0, 8.0, ROBIN, 0.8)])
    result = run(capsys, "segments", results, "--audio", audio, "--output", tmp_path / "clips")
    assert result.returncode == 0, result.stderr
    assert "cut 1 clips of 1 species (of 3 detections read)" in result.stderr
    assert f"{gone}: recording /card/site3/lost.wav not found under {audio}; 2 detections of it not cut" in \
        result.stderr.replace("\n", "")
    assert str(moved) not in result.stderr.replace(str(gone), "")
    with open(tmp_path / "clips" / INDEX_FILE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [Path(r["Source file"]) for r in rows] == [audio / "site2" / "rec0.wav"]  # its folder matches the path's

    result = run(capsys, "segments", gone, "--audio", audio, "--output", tmp_path / "none")
    assert result.returncode == 1 and "nothing to cut" in result.stderr and "Traceback" not in result.stderr


def test_bad_options_and_inputs_are_named(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="holds no result files"):
        cut_segments(tmp_path / "empty", tmp_path / "clips")
    with pytest.raises(InputError, match="--collection-mode: unknown mode 'best'"):
        cut_segments(tmp_path / "empty", tmp_path / "clips", collection_mode="best")
    with pytest.raises(InputError, match="--context"):
        cut_segments(tmp_path / "empty", tmp_path / "clips", context=-1)
    bad = tmp_path / "bad.csv"
    bad.write_text("Start (s),End (s),Scientific name,Common name,Confidence,File\n1,2,A b,Ab,high,x.wav\n"
                   "3,2,A b,Ab,0.5,x.wav\n")
    found, failures = read_detections(bad)
    assert not found and [f.message.split(": ", 1)[1][:7] for f in failures] == ["line 2:", "line 3:"]
    result = run(capsys, "segments", bad, "--output", tmp_path / "clips")
    assert result.returncode == 1 and "line 2: column 'confidence' is not a number" in result.stderr
    with pytest.raises(BirdbridgeError):
        cut_segments(bad, tmp_path / "clips")
