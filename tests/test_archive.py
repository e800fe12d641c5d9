"""Archives: dates from file names and metadata CSVs, a build killed mid-commit that resumes without duplicates,
--add, queries by name / picture / example that find the windows they should, filters, per-file caps and the
ANN against exact search, every output format, refusals of other spaces, and galleries that still open."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import archive_fixtures as fx
from birdbridge.archive import Archive, build_archive
from birdbridge.archive.formats import CSV_COLUMNS, format_text, write_results
from birdbridge.archive.metadata import RecordingMeta, from_name
from birdbridge.archive.search import rank_windows
from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.store import AnnSettings, build_ann
from birdbridge.store.vector_store import VectorStore
from cli_fixtures import run

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clap, tiny_clip):
    return fx.build_world(tmp_path_factory.mktemp("archive"), tiny_clap, tiny_clip)


def rec(world, rel: str) -> str:
    return str((world["recordings"] / rel).resolve())


# ------------------------------------------------------------------------------------------ dates and sites


@pytest.mark.parametrize(("name", "expected"), [
    ("deploy/A7/20240501_053000.WAV", ("2024-05-01", "05:30:00", "A7")),
    ("x/SITE01_20240501_053000.wav", ("2024-05-01", "05:30:00", "SITE01")),
    ("x/SMA12345_20240501_053000.wav", ("2024-05-01", "05:30:00", "SMA12345")),
    ("x/S4A01234_20240501_053000_000.wav", ("2024-05-01", "05:30:00", "S4A01234")),
    ("x/pond_20240501T053000_ch1.flac", ("2024-05-01", "05:30:00", "pond")),
    ("x/2024-05-01_05-30-00.wav", ("2024-05-01", "05:30:00", "x")),
    ("x/SITE01_20240501.wav", ("2024-05-01", None, "SITE01")),
    ("box/5E9D3A30.WAV", ("2020-04-20", "05:59:12", "box")),  # old AudioMoth: hex seconds, UTC
    ("box/DEADBEEF.WAV", (None, None, "box")),  # 8 hex digits out of range: no time
    ("x/SITE01_20241340_053000.wav", (None, None, "x")),  # month 13: no date
    ("x/call.wav", (None, None, "x")),
])
def test_file_names_give_date_time_and_site(name, expected) -> None:
    meta = from_name(name)
    assert (meta.date, meta.time, meta.site) == expected
    if meta.time is not None:
        assert meta.epoch == pytest.approx(
            (np.datetime64(f"{meta.date}T{meta.time}") - np.datetime64("1970-01-01T00:00:00")) / np.timedelta64(1, "s"))


def test_the_archive_keeps_dates_sites_and_windows_of_every_recording(world) -> None:
    report = world["report"]
    assert report.created and report.files_added == len(fx.RECORDINGS) and not report.failures
    archive = Archive.open(world["archive"])
    assert len(archive) == report.count == report.windows_added == 3 * len(fx.RECORDINGS)
    files = {Path(f.path).name: f for f in archive.files()}
    assert set(files) == {Path(r).name for r, _, _ in fx.RECORDINGS}
    f = files["SITE02_20240502_013000.wav"]
    assert (f.date, f.time, f.site, f.duration_s, f.sample_rate, f.channels) == (
        "2024-05-02", "01:30:00", "SITE02", 3.0, fx.SR, 1)
    assert Path(f.path).is_absolute() and f.size == Path(f.path).stat().st_size
    assert (files["20240501_053000.wav"].site, files["undated.wav"].date, files["undated.wav"].site) == (
        "SITE01", None, "recordings")
    windows = archive.windows(f.path)
    assert [(w.start_s, w.end_s, w.channel) for w in windows] == [(0.0, 1.0, 0), (1.0, 2.0, 0), (2.0, 3.0, 0)]
    assert [w.row for w in windows] == list(range(f.first_row, f.first_row + f.n_windows))
    info = archive.summary()
    assert (info.files, info.windows, info.dates, info.undated_files) == (6, 18, ("2024-05-01", "2024-05-04"), 1)
    assert info.student["fingerprint"] and info.teacher["name"] and info.windowing["window_s"] == 1.0


def test_a_metadata_csv_wins_over_file_names(world, tmp_path) -> None:
    recordings = tmp_path / "recs"
    fx.write_tone(recordings / "SITE01_20240501_053000.wav", 500, 2)
    fx.write_tone(recordings / "sub" / "anything.wav", 800, 2)
    fx.write_tone(recordings / "plain.wav", 900, 2)
    table = tmp_path / "meta.csv"
    table.write_text("file,date,time,site,lat,lon\n"
                     "recs/SITE01_20240501_053000.wav,2023-06-02,04:10,MEADOW,51.5,-0.1\n"
                     "anything.wav,2023-06-03T21:15:00,,FOREST,,\n"
                     "plain.wav,,,,,\n"
                     "missing.wav,2023-06-04,,X,,\n")
    report = build_archive([recordings], tmp_path / "a", world["student"], metadata=table, progress=False)
    assert report.metadata_unmatched == 1
    files = {Path(f.path).name: f for f in Archive.open(tmp_path / "a").files()}
    first = files["SITE01_20240501_053000.wav"]
    assert (first.date, first.time, first.site, first.lat, first.lon) == ("2023-06-02", "04:10:00", "MEADOW", 51.5,
                                                                          -0.1)
    assert (files["anything.wav"].date, files["anything.wav"].time, files["anything.wav"].site) == (
        "2023-06-03", "21:15:00", "FOREST")
    assert (files["plain.wav"].date, files["plain.wav"].site) == (None, "recs")  # empty cells keep the name's
    # a later run with a corrected CSV updates the recordings already embedded, without embedding them again
    table.write_text("file,site\nplain.wav,POND\n")
    again = build_archive([recordings], tmp_path / "a", metadata=table, progress=False)
    assert (again.files_added, again.already, again.metadata_updated) == (0, 3, 1)
    assert Archive.open(tmp_path / "a").file(recordings / "plain.wav").site == "POND"
    bad = tmp_path / "bad.csv"
    bad.write_text("file,date\nplain.wav,2023-02-30\n")
    with pytest.raises(InputError, match=r"bad.csv: line 2: .*'2023-02-30' is not a date"):
        build_archive([recordings], tmp_path / "b", world["student"], metadata=bad, progress=False)


# ------------------------------------------------------------------------------------------ build, resume, add


def builder(archive: Path, model: Path, recordings: Path, *pause: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", fx.BUILDER, str(archive), str(model), str(recordings), *pause],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tables(folder: Path) -> dict[str, int]:
    with sqlite3.connect(folder / "archive.sqlite") as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("windows", "files")}


@pytest.mark.parametrize("point", ["vectors", "records", "count"])
def test_a_build_killed_mid_commit_resumes_without_duplicates(world, tmp_path, point) -> None:
    archive, marker, pause_at = tmp_path / "archive", tmp_path / "paused", 2
    proc = builder(archive, world["student"], world["recordings"], point, str(pause_at), str(marker))
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), proc.communicate()[1]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    meta = json.loads((archive / "archive.json").read_text())
    assert meta["count"] == 3 * pause_at and meta["build"]["complete"] is False
    if point == "count":  # the killed commit's rows are in the database, past the count
        assert tables(archive) == {"windows": 3 * (pause_at + 1), "files": pause_at + 1}
    with pytest.raises(BirdbridgeError, match=r"is unfinished.*`birdbridge archive build`"):
        Archive.open(archive).search(vector=np.ones(Archive.open(archive).dim))

    # the same build again, in this process (only the killed one needs its own)
    report = build_archive([world["recordings"]], archive, world["student"], commit_windows=1, progress=False)
    assert (report.files_added, report.already, report.count) == (len(fx.RECORDINGS) - pause_at, pause_at,
                                                                  3 * len(fx.RECORDINGS))
    resumed, clean = Archive.open(archive), Archive.open(world["archive"])
    assert tables(archive) == {"windows": len(resumed), "files": len(fx.RECORDINGS)} and len(resumed) == len(clean)
    spans = {(Path(f.path).name, w.start_s) for f in resumed.files() for w in resumed.windows(f.id)}
    assert len(spans) == len(resumed)  # no window twice
    by_span = {(Path(clean.file(w.file).path).name, w.start_s): clean.vectors[w.row] for w in clean.windows()}
    for w in resumed.windows():
        np.testing.assert_allclose(resumed.vectors[w.row].astype(np.float32),
                                   by_span[(Path(resumed.file(w.file).path).name, w.start_s)].astype(np.float32),
                                   atol=2e-3)
    assert resumed.meta["build"]["complete"] is True


def test_resume_add_changed_files_and_other_students(world, tmp_path, tiny_clap, tiny_clip) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    fx.write_tone(first / "A_20240601_050000.wav", 700, 2)
    fx.write_tone(first / "A_20240601_060000.wav", 900, 2)
    fx.write_tone(second / "B_20240602_050000.wav", 1100, 2)
    (first / "broken.wav").write_bytes(b"RIFF not really")
    folder = tmp_path / "a"
    made = build_archive([first], folder, world["student"], progress=False)
    assert (made.files_added, made.windows_added, len(made.failures)) == (2, 4, 1)
    assert "broken.wav" in made.failures[0].message
    again = build_archive([first], folder, progress=False)  # the model the archive records
    assert (again.resumed, again.files_added, again.already, again.count) == (True, 0, 2, 4)
    with pytest.raises(BirdbridgeError, match=r"was built from .*first; pass --add to add .*second"):
        build_archive([second], folder, progress=False)
    added = build_archive([second], folder, add=True, progress=False)
    assert (added.files_added, added.already, added.count, added.files) == (1, 0, 6, 3)
    assert sorted(Archive.open(folder).meta["build"]["sources"]) == sorted([str(first.resolve()),
                                                                            str(second.resolve())])
    fx.write_tone(first / "A_20240601_060000.wav", 900, 3)  # a recording changed since it was embedded
    changed = build_archive([first], folder, add=True, progress=False)
    assert (changed.files_added, changed.changed, changed.count) == (0, 1, 6)
    assert any("changed since it was embedded" in f.message and "A_20240601_060000" in f.source
               for f in changed.failures)
    with pytest.raises(BirdbridgeError, match=r"holds windows of 1 s every 1 s; --hop 0.5 differs"):
        build_archive([second], folder, add=True, hop_s=0.5, progress=False)
    other = fx.make_student(tmp_path / "other-student", tiny_clap, tiny_clip, seed=1)
    with pytest.raises(BirdbridgeError, match=r"was embedded by .*windows of different students are not comparable"):
        build_archive([second], folder, other, add=True, progress=False)
    with pytest.raises(BirdbridgeError, match="not a birdbridge student"):
        build_archive([second], tmp_path / "b", tiny_clap, progress=False)


def test_an_ann_index_is_kept_up_to_date_by_add(world, tmp_path) -> None:
    fx.write_tone(tmp_path / "first" / "A_20240601_050000.wav", 700, 2)
    fx.write_tone(tmp_path / "second" / "B_20240602_050000.wav", 1100, 2)
    folder = tmp_path / "a"
    with pytest.raises(BirdbridgeError, match="unknown ANN engine 'hnswlib'"):  # said before any work
        build_archive([tmp_path / "first"], folder, world["student"], ann=True, ann_engine="hnswlib", progress=False)
    assert not folder.exists()
    built = build_archive([tmp_path / "first"], folder, world["student"], ann=True, ann_engine="usearch",
                          progress=False)
    assert built.ann["up_to_date"] and built.ann["rows"] == 2 and built.ann["settings"]["engine"] == "usearch"
    added = build_archive([tmp_path / "second"], folder, add=True, progress=False)
    assert added.ann["up_to_date"] and added.ann["rows"] == 4
    # the new windows were added (not all re-indexed) to the index of the engine it has
    assert (Archive.open(folder).meta["ann"]["added_rows"], added.ann["settings"]["engine"]) == (2, "usearch")
    assert Archive.open(folder).search(vector=np.ones(Archive.open(folder).dim), top_k=4).method == "ann"


def test_stereo_recordings_are_mixed_to_mono(world, tmp_path) -> None:
    fx.write_tone(tmp_path / "recs" / "stereo.wav", 500, 2, channels=2)
    fx.write_tone(tmp_path / "recs" / "mono.wav", 500, 2)
    build_archive([tmp_path / "recs"], tmp_path / "a", world["student"], progress=False)
    archive = Archive.open(tmp_path / "a")
    stereo, mono = archive.file(tmp_path / "recs" / "stereo.wav"), archive.file(tmp_path / "recs" / "mono.wav")
    assert (stereo.channels, mono.channels) == (2, 1) and {w.channel for w in archive.windows()} == {0}
    np.testing.assert_allclose(archive.vectors[stereo.first_row].astype(np.float32),
                               archive.vectors[mono.first_row].astype(np.float32), atol=2e-3)


# ------------------------------------------------------------------------------------------ queries


@pytest.fixture(scope="module")
def planted(world, tmp_path_factory):
    """The world's archive plus windows whose vectors are the teacher's own embeddings of a species' prompts, of a
    free text and of a picture: the queries of those must find them first, with a score of 1."""
    from birdbridge.archive.store import NewRecording
    from birdbridge.embed import embed_images, embed_species, embed_texts
    from birdbridge.models.loader import load_teacher

    folder = tmp_path_factory.mktemp("planted") / "archive"
    shutil.copytree(world["archive"], folder)
    teacher = load_teacher(str(world["teacher"]))
    photo = folder.parent / "magpie.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(photo)
    planted = {"pica": embed_species(["Pica hudsonia"], teacher)[0],
               "magpie": embed_species(["Pica hudsonia_Black-billed Magpie"], teacher)[0],
               "text": embed_texts(["a black and white bird calling at dawn"], teacher)[0],
               "image": embed_images([photo], teacher)[0]}
    archive = Archive.open(folder)
    new = [NewRecording(str(folder.parent / f"{name}.wav"), 1.0, fx.SR, 1, 1, 1, RecordingMeta(site="planted"),
                        vector[None, :], np.zeros(1), np.ones(1)) for name, vector in planted.items()]
    archive.add_recordings(new)
    return {"archive": folder, "photo": photo, "vectors": planted}


def test_text_image_and_like_queries_find_the_expected_windows(world, planted, tmp_path) -> None:
    archive = Archive.open(planted["archive"])
    species = archive.search("Pica hudsonia", top_k=3)
    assert species.query["read_as"] == "species" and species.query["templates"] == "openai"
    assert Path(species.hits[0].file).stem == "pica" and species.hits[0].score == pytest.approx(1.0, abs=2e-3)
    taxonomy = tmp_path / "taxonomy.csv"
    taxonomy.write_text("scientific_name,common_name,species_code\nPica hudsonia,Black-billed Magpie,bkbmag1\n")
    # a BirdNET label, and a code or common name the taxonomy lists: the species with its common name
    for text, names in (("Pica hudsonia_Black-billed Magpie", None), ("bkbmag1", taxonomy),
                        ("black-billed magpie", taxonomy)):
        found = archive.search(text, taxonomy=names, top_k=1)
        assert (found.query["species"], found.query["common_name"]) == ("Pica hudsonia", "Black-billed Magpie")
        assert Path(found.hits[0].file).stem == "magpie" and found.hits[0].score == pytest.approx(1.0, abs=2e-3)
    free = archive.search("a black and white bird calling at dawn", top_k=1)
    assert free.query["read_as"] == "free text" and Path(free.hits[0].file).stem == "text"
    assert free.hits[0].score == pytest.approx(1.0, abs=2e-3)
    as_text = archive.search("Pica hudsonia", free_text=True, top_k=1)  # no prompts: another query vector
    assert as_text.query["read_as"] == "free text" and as_text.hits[0].score < 0.99
    picture = archive.search(image=planted["photo"], top_k=1)
    assert Path(picture.hits[0].file).stem == "image" and picture.hits[0].score == pytest.approx(1.0, abs=2e-3)

    # an example: a part of a recording, and a whole recording, find that recording's windows first
    target = rec(world, "SITE02_20240502_013000.wav")
    part = archive.search(like=f"{target}:1-2", top_k=3)
    assert part.query["windows"] == 1 and {h.file for h in part.hits} == {target}
    assert part.hits[0].score == pytest.approx(1.0, abs=2e-3)
    whole = archive.search(like=rec(world, "SMA12345_20240503_120000.wav"), top_k=3)
    assert whole.query["windows"] == 3 and {Path(h.file).name for h in whole.hits} == {"SMA12345_20240503_120000.wav"}
    # the vectors of the hits are the archive's, ranked by cosine with the query: against a brute-force ranking
    query = planted["vectors"]["text"]
    ranked = archive.search(vector=query, top_k=len(archive), exact=True)
    scores = archive.vectors.astype(np.float64) @ query.astype(np.float64)
    np.testing.assert_allclose([h.score for h in ranked.hits], np.sort(scores)[::-1], atol=1e-4)
    with pytest.raises(BirdbridgeError, match="exactly one of --text, --image or --like"):
        archive.search("Pica hudsonia", image=planted["photo"])


def test_queries_from_another_space_are_refused(world, tmp_path, tiny_clap, capsys) -> None:
    from birdbridge.models.standins import build_small_clip

    other_clip = build_small_clip(tmp_path / "other-clip", seed=5)
    archive = Archive.open(world["archive"])
    with pytest.raises(BirdbridgeError, match=r"teacher .*other-clip.*embeddings of different teachers cannot be "
                                              r"compared"):
        archive.search("Pica hudsonia", teacher=other_clip)
    other_space = fx.make_student(tmp_path / "student-of-other", tiny_clap, other_clip)
    with pytest.raises(BirdbridgeError, match=r"embeddings of different teachers cannot be compared"):
        archive.search(like=rec(world, "undated.wav"), model=other_space)
    with pytest.raises(BirdbridgeError, match=r"holds 24-d embeddings"):
        archive.search(vector=np.ones(5))
    out = run(capsys, "archive", "search", world["archive"], "--like", rec(world, "undated.wav"), "-m", other_space)
    assert out.returncode == 1 and "different teachers" in out.stderr and "Traceback" not in out.stderr


def test_like_parts_and_their_errors(world, tmp_path) -> None:
    from birdbridge.archive.queries import parse_like

    odd = tmp_path / "odd:1-2.wav"  # a file whose name looks like a part is the file
    fx.write_tone(odd, 500, 1)
    assert parse_like(str(odd)) == (odd, None, None)
    assert parse_like("call.wav:12.5-17.5") == (Path("call.wav"), 12.5, 17.5)
    assert parse_like(("call.wav", 1, 2)) == (Path("call.wav"), 1.0, 2.0)
    with pytest.raises(BirdbridgeError, match="must end after it starts"):
        parse_like("call.wav:5-2")
    with pytest.raises(InputError, match=r"missing\.wav: file not found"):
        Archive.open(world["archive"]).search(like=tmp_path / "missing.wav")


# ------------------------------------------------------------------------------------------ filters, caps, ANN


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """3,000 windows of 60 files, 50 windows (of 5 s) each, at 3 sites, over several days and times of day, two
    recordings without a date; clustered vectors."""
    rng = np.random.default_rng(0)
    dim, per_file, n_files = 32, 50, 60
    centres = rng.standard_normal((20, dim))
    vectors = centres[rng.integers(0, 20, n_files * per_file)] + 0.3 * rng.standard_normal((n_files * per_file, dim))
    files = []
    for i in range(n_files):
        hour, minute = (i * 7) % 24, (i * 13) % 60
        meta = RecordingMeta(f"2024-05-{1 + i % 9:02d}", f"{hour:02d}:{minute:02d}:00", "ABC"[i % 3])
        files.append((f"/data/{meta.site}/{i:03d}.wav", meta if i not in (10, 11) else RecordingMeta(site="A")))
    folder = tmp_path_factory.mktemp("synthetic") / "archive"
    fx.synthetic_archive(folder, vectors.astype(np.float32), files, per_file)
    queries = (centres[:6] + 0.3 * rng.standard_normal((6, dim))).astype(np.float32)
    return {"folder": folder, "queries": queries, "files": files, "per_file": per_file}


def expected_rows(archive: Archive, files, per_file: int, keep) -> np.ndarray:
    """The rows whose window passes ``keep(date, time_of_day_seconds, site)``: computed here, in Python."""
    out = []
    for i, (_, meta) in enumerate(files):
        for k in range(per_file):
            start = k * 5.0
            if meta.epoch is None:
                ok = keep(meta.date, None, meta.site)
            else:
                when = np.datetime64("1970-01-01T00:00:00") + np.timedelta64(int(meta.epoch + start), "s")
                day = str(when.astype("datetime64[D]"))
                ok = keep(day, int((meta.epoch + start) % 86400), meta.site)
            if ok:
                out.append(i * per_file + k)
    return np.array(out, dtype=np.int64)


def brute(archive: Archive, q: np.ndarray, rows: np.ndarray | None, k: int, per_file: int | None = None,
          min_score: float | None = None) -> list[int]:
    rows = np.arange(len(archive)) if rows is None else rows
    scores = archive.vectors[rows].astype(np.float64) @ (q / np.linalg.norm(q)).astype(np.float64)
    order = rows[np.argsort(-scores, kind="stable")]
    ordered_scores = np.sort(scores)[::-1]
    files = {w.row: w.file for w in archive.windows()}
    taken, per = [], {}
    for row, score in zip(order, ordered_scores, strict=True):
        if min_score is not None and score < min_score:
            break
        if per_file is not None:
            if per.get(files[row], 0) >= per_file:
                continue
            per[files[row]] = per.get(files[row], 0) + 1
        taken.append(int(row))
        if len(taken) == k:
            break
    return taken


FILTERS = [
    ({"date_from": "2024-05-03", "date_to": "2024-05-05"},
     lambda d, t, s: d is not None and "2024-05-03" <= d <= "2024-05-05"),
    ({"date_from": "20240508"}, lambda d, t, s: d is not None and d >= "2024-05-08"),
    ({"time_from": "05:00", "time_to": "09:30"}, lambda d, t, s: t is not None and 5 * 3600 <= t <= 9.5 * 3600),
    ({"time_from": "22:00", "time_to": "02:00"}, lambda d, t, s: t is not None and (t >= 22 * 3600 or t <= 2 * 3600)),
    ({"sites": ["A", "C"]}, lambda d, t, s: s in ("A", "C")),
    ({"sites": ["B"], "time_from": "12:00", "date_to": "2024-05-06"},
     lambda d, t, s: s == "B" and t is not None and t >= 12 * 3600 and d <= "2024-05-06"),
]


@pytest.mark.parametrize(("given", "keep"), FILTERS)
def test_each_filter_selects_the_right_windows_and_search_over_them_is_exact(synthetic, given, keep) -> None:
    archive = Archive.open(synthetic["folder"])
    rows = archive.rows_where(**given)
    expected = expected_rows(archive, synthetic["files"], synthetic["per_file"], keep)
    assert len(expected) and len(expected) < len(archive)
    np.testing.assert_array_equal(rows, expected)
    for q in synthetic["queries"]:
        results = archive.search(vector=q, top_k=15, **given)
        assert [h.row for h in results.hits] == brute(archive, q, expected, 15)
        assert results.method == "exact" and results.searched == len(expected)
        capped = archive.search(vector=q, top_k=15, per_file=2, **given)
        assert [h.row for h in capped.hits] == brute(archive, q, expected, 15, per_file=2)


def test_per_file_cap_and_min_score(synthetic) -> None:
    archive = Archive.open(synthetic["folder"])
    for q in synthetic["queries"]:
        for cap in (1, 3):
            hits = archive.search(vector=q, top_k=25, per_file=cap).hits
            assert [h.row for h in hits] == brute(archive, q, None, 25, per_file=cap)
            assert max(np.unique([h.file for h in hits], return_counts=True)[1]) <= cap and len(hits) == 25
        # the cap widens the search until enough recordings give hits: 60 files x 1 = every file once
        assert len({h.file for h in archive.search(vector=q, top_k=60, per_file=1).hits}) == 60
        scores = [h.score for h in archive.search(vector=q, top_k=3000).hits]
        threshold = float(np.quantile(scores, 0.98))
        above = archive.search(vector=q, top_k=3000, min_score=threshold).hits
        assert [h.row for h in above] == brute(archive, q, None, 3000, min_score=threshold)
        assert above and all(h.score >= threshold for h in above)
    first = archive.search(vector=synthetic["queries"][0], top_k=2).hits[0]
    assert (first.rank, first.date is not None, first.site in "ABC") == (1, True, True)


def test_ann_results_equal_exact_search_and_filters_stay_exact(synthetic, tmp_path) -> None:
    folder = tmp_path / "a"
    shutil.copytree(synthetic["folder"], folder)
    archive = Archive.open(folder)
    build_ann(archive, settings=AnnSettings(connectivity=16, expansion_add=128, expansion_search=256))
    archive = Archive.open(folder)
    recall = []
    for q in synthetic["queries"]:
        ann = archive.search(vector=q, top_k=10)
        exact = archive.search(vector=q, top_k=10, exact=True)
        assert (ann.method, exact.method) == ("ann", "exact")
        recall.append(len({h.row for h in ann.hits} & {h.row for h in exact.hits}) / 10)
        same = [a.row == e.row for a, e in zip(ann.hits, exact.hits, strict=True)]
        np.testing.assert_allclose([a.score for a, s in zip(ann.hits, same, strict=True) if s],
                                   [e.score for e, s in zip(exact.hits, same, strict=True) if s], atol=1e-6)
        for given, _ in FILTERS:  # with an ANN index, a filtered search still equals the exact one
            filtered = archive.search(vector=q, top_k=10, per_file=2, **given)
            assert filtered.method == "exact"
            assert [h.row for h in filtered.hits] == [h.row for h in archive.search(
                vector=q, top_k=10, per_file=2, exact=True, **given).hits]
    assert np.mean(recall) >= 0.95
    # the per-file cap on the ANN path widens through the index and agrees with exact search
    q = synthetic["queries"][1]
    capped = [h.row for h in archive.search(vector=q, top_k=10, per_file=1).hits]
    assert len(set(capped) & set(brute(archive, q, None, 10, per_file=1))) >= 9


def test_rank_windows_on_an_empty_selection(synthetic) -> None:
    archive = Archive.open(synthetic["folder"])
    assert rank_windows(archive, synthetic["queries"][:1], 5, rows=np.zeros(0, np.int64)) == []
    assert archive.search(vector=synthetic["queries"][0], sites=["nowhere"]).hits == []
    with pytest.raises(BirdbridgeError, match=r"--time-from: '25:00' is not a time of day"):
        archive.search(vector=synthetic["queries"][0], time_from="25:00")
    with pytest.raises(BirdbridgeError, match=r"--date-to: '2024-5' is not a date"):
        archive.rows_where(date_to="2024-5")


# ------------------------------------------------------------------------------------------ outputs


def test_outputs_in_every_format(world, tmp_path, capsys) -> None:
    archive = Archive.open(world["archive"])
    results = archive.search(like=rec(world, "SITE01/20240501_053000.wav"), top_k=5, per_file=2)
    hits = results.hits
    rows = list(csv.DictReader(io.StringIO(format_text("csv", results))))
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == len(hits)
    assert [(int(r["Rank"]), r["File"], float(r["Start (s)"]), int(r["Window"])) for r in rows] == [
        (h.rank, h.file, h.start_s, h.row) for h in hits]
    assert rows[0]["Date"] == "2024-05-01" and rows[0]["Site"] == "SITE01"

    raven = format_text("raven", results).splitlines()
    header = raven[0].split("\t")
    assert header[:7] == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                          "High Freq (Hz)"]
    assert header[-2:] == ["Begin Path", "File Offset (s)"] and "Rank" in header and "Score" in header
    table = [dict(zip(header, line.split("\t"), strict=True)) for line in raven[1:]]
    assert [int(r["Selection"]) for r in table] == list(range(1, len(hits) + 1))
    # BirdNET-Analyzer's combined table: grouped by recording, begin times running on across recordings
    paths = [r["Begin Path"] for r in table]
    assert paths == sorted(paths)
    offset = 0.0
    for i, r in enumerate(table):
        if i and r["Begin Path"] != table[i - 1]["Begin Path"]:
            offset += archive.file(table[i - 1]["Begin Path"]).duration_s
        assert float(r["Begin Time (s)"]) == pytest.approx(offset + float(r["File Offset (s)"]))
        hit = next(h for h in hits if h.rank == int(r["Rank"]))
        assert (hit.file, hit.start_s) == (r["Begin Path"], float(r["File Offset (s)"]))
        assert float(r["End Time (s)"]) - float(r["Begin Time (s)"]) == pytest.approx(hit.end_s - hit.start_s)
        assert float(r["High Freq (Hz)"]) == archive.student["band_hz"][1]

    data = json.loads(format_text("json", results))
    assert data["query"]["kind"] == "like" and [h["row"] for h in data["hits"]] == [h.row for h in hits]
    assert data["filters"]["per_file"] == 2 and data["method"] == "exact"
    parquet = write_results(tmp_path / "hits.parquet", "parquet", results)
    assert pq.read_table(parquet).to_pylist() == [h.to_dict() for h in hits]

    out = run(capsys, "archive", "search", world["archive"], "--like", rec(world, "undated.wav"), "-k", "2", "--format",
                  "raven", "--site", "recordings")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 3 and "undated.wav" in out.stdout
    part = rec(world, "undated.wav") + ":0-1"
    table_out = run(capsys, "archive", "search", world["archive"], "--like", part, "-k", "2")
    assert table_out.returncode == 0 and "undated.wav" in table_out.stdout and "like" in table_out.stdout
    written = tmp_path / "hits.json"
    assert run(capsys, "archive", "search", world["archive"], "--text", "Pica hudsonia", "-f", "json", "-o",
                   written).returncode == 0
    assert json.loads(written.read_text())["query"]["read_as"] == "species"
    refused = run(capsys, "archive", "search", world["archive"], "--text", "x", "--format", "parquet")
    assert refused.returncode == 1 and "give --output" in refused.stderr


def test_cli_build_info_and_errors(world, tmp_path, capsys) -> None:
    built = run(capsys, "archive", "build", tmp_path / "a", world["recordings"] / "SITE01", "-m", world["student"],
                "--window", "0.5", "--hop", "0.25")
    assert built.returncode == 0, built.stderr
    assert "added 2 recordings (22 windows" in built.stdout
    info = run(capsys, "archive", "info", tmp_path / "a", "--json")
    data = json.loads(info.stdout)
    assert (data["windows"], data["files"], data["windowing"]["window_s"], data["windowing"]["hop_s"]) == (
        22, 2, 0.5, 0.25)
    assert "windows   22 of 2 recordings" in run(capsys, "archive", "info", tmp_path / "a").stdout
    missing = run(capsys, "archive", "build", tmp_path / "b", tmp_path / "nothing-here", "-m", world["student"])
    assert missing.returncode == 1 and "nothing-here" in missing.stderr and "Traceback" not in missing.stderr
    no_model = run(capsys, "archive", "build", tmp_path / "c", world["recordings"])
    assert no_model.returncode == 1 and "--model" in no_model.stderr
    not_archive = run(capsys, "archive", "info", tmp_path)
    assert not_archive.returncode == 1 and "is not an archive (no archive.json)" in not_archive.stderr


# ------------------------------------------------------------------------------------------ galleries


def test_a_gallery_folder_still_opens_and_is_no_archive(tmp_path) -> None:
    from birdbridge.gallery import Gallery

    old = TESTS / "data" / "gallery-v1"
    gallery = Gallery.open(old, repair=False)
    assert len(gallery) and gallery.species()
    _, rows = VectorStore.search(gallery, np.ones((1, gallery.dim), np.float32), 2)
    assert rows[0, 0] >= 0
    with pytest.raises(InputError, match=r"gallery-v1: is not an archive \(no archive.json\)"):
        Archive.open(old)


# ------------------------------------------------------------------------------------------ candidate species

GALLERY_SPECIES = [("Pica hudsonia", "Black-billed Magpie"), ("Corvus corax", "Common Raven"),
                   ("Corvus brachyrhynchos", "American Crow"), ("Turdus migratorius", "American Robin"),
                   ("Sitta carolinensis", "White-breasted Nuthatch")]
ITHACA, CALGARY = (42.48, -76.45), (51.05, -114.07)


@pytest.fixture(scope="module")
def candidates(world, tmp_path_factory):
    """A gallery of the archive's teacher (two crows, so that a genus has two species), German names for two of its
    species, and a copy of the archive whose first recording lies in Calgary (lat/lon in its records)."""
    from birdbridge.gallery.build import build_gallery

    root = tmp_path_factory.mktemp("candidates")
    rng = np.random.default_rng(1)
    for s, (sci, common) in enumerate(GALLERY_SPECIES):
        folder = root / "photos" / f"{sci}_{common}"
        folder.mkdir(parents=True)
        Image.fromarray(np.clip(50 * s + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)).save(
            folder / "0.png")
    build_gallery([root / "photos"], root / "gallery", str(world["teacher"]), progress=False)
    (root / "labels").mkdir()
    (root / "labels" / "de.txt").write_text("Corvus corax_Kolkrabe\nPica hudsonia_Hudsonelster\nDog_Hund\n")
    shutil.copytree(root / "labels", root / "gallery" / "labels")  # the gallery's own names (without --labels-dir)
    shutil.copytree(world["archive"], root / "archive")
    calgary = rec(world, "SITE01/20240501_053000.wav")
    archive = Archive.open(root / "archive")
    first = archive.file(calgary)
    archive.set_recording_meta({first.path: RecordingMeta(first.date, first.time, first.site, *CALGARY)})
    return {"gallery": root / "gallery", "labels": root / "labels", "archive": root / "archive", "calgary": calgary}


def softmax_reference(vectors: np.ndarray, species_vectors: np.ndarray, scale: float = 100.0) -> np.ndarray:
    logits = scale * (vectors.astype(np.float64) @ species_vectors.astype(np.float64).T)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def test_hits_get_candidate_species_scored_as_search_scores_windows(world, candidates, tmp_path, capsys) -> None:
    from birdbridge.archive.formats import SPECIES_COLUMNS
    from birdbridge.gallery import Gallery
    from birdbridge.search.archive_hits import archive_engine, candidate_species
    from birdbridge.search.scoring import Scoring

    archive = Archive.open(world["archive"])
    engine = archive_engine(archive, candidates["gallery"])
    gallery = Gallery.open(candidates["gallery"])
    keys = [sp.key for sp in gallery.species()]
    hits = archive.search(like=rec(world, "SITE02_20240502_013000.wav"), top_k=6).hits
    vectors = archive.vectors[[h.row for h in hits]].astype(np.float64)
    probs = softmax_reference(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), gallery.species_vectors)
    found = candidate_species(engine, archive, hits, top_k=3, scoring=Scoring("softmax", min_score=0.0))
    assert found.ranked_by == "softmax" and len(found.species) == len(hits)
    for row, species in zip(probs, found.species, strict=True):
        best = np.argsort(-row)[:3]
        assert [h.key for h in species] == [keys[i] for i in best]
        np.testing.assert_allclose([h.score for h in species], row[best], atol=2e-3)
    # at genus rank the two crows' probabilities add up (search's rule for softmax)
    genera = candidate_species(engine, archive, hits, top_k=5, scoring=Scoring("softmax", min_score=0.0, rank="genus"))
    corvus = [keys.index("Corvus corax"), keys.index("Corvus brachyrhynchos")]
    for row, species in zip(probs, genera.species, strict=True):
        by_key = {h.key: h for h in species}
        assert by_key["Corvus"].taxon_rank == "genus" and set(by_key["Corvus"].members) == {
            "Corvus corax", "Corvus brachyrhynchos"}
        assert by_key["Corvus"].score == pytest.approx(row[corvus].sum(), abs=2e-3)

    # the CLI: the best candidate in csv and Raven, all of them in JSON and parquet; names in German
    args = ["archive", "search", world["archive"], "--like", rec(world, "SITE02_20240502_013000.wav"), "-k", "6",
            "--gallery", candidates["gallery"], "--score", "softmax", "--top-k-species", "2"]
    out = run(capsys, *args, "-f", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0]) == [*CSV_COLUMNS, *SPECIES_COLUMNS]
    assert [r["Scientific name"] for r in rows] == [s[0].key for s in found.species]
    raven = run(capsys, *args, "-f", "raven").stdout.splitlines()
    assert raven[0].split("\t")[-len(SPECIES_COLUMNS) - 2:-2] == list(SPECIES_COLUMNS)
    data = json.loads(run(capsys, *args, "-f", "json", "--locale", "de", "--labels-dir", candidates["labels"]).stdout)
    assert data["candidates"]["ranked_by"] == "softmax" and data["candidates"]["locale"] == "de"
    german = {"Corvus corax": "Kolkrabe", "Pica hudsonia": "Hudsonelster"}
    english = dict(GALLERY_SPECIES)
    for hit, species in zip(data["hits"], found.species, strict=True):
        shown = [h.key for h in species[:2] if h.score >= 0.05]  # search's --min-score of softmax
        assert [s["key"] for s in hit["species"]] == shown
        assert [s["common_name"] for s in hit["species"]] == [german.get(key, english[key]) for key in shown]
    table = pq.read_table(write_results(tmp_path / "hits.parquet", "parquet", archive_search_results(
        archive, engine, hits))).to_pylist()
    assert [r["species"] for r in table] == [s[0].key for s in found.species]
    assert all(len(r["candidates"]) == 3 and r["species_score"] == r["candidates"][0]["score"] for r in table)
    bad = run(capsys, *args, "--locale", "xx")
    assert bad.returncode == 1 and "--locale: no names in 'xx'" in bad.stderr and "Traceback" not in bad.stderr
    # a species query is named in the locale too, with or without a gallery
    from birdbridge.search.archive_hits import archive_search
    from birdbridge.species.common_names import CommonNames

    for given in ({"names": CommonNames.load(candidates["labels"])}, {"engine": engine}):
        query = archive_search(archive, text="Corvus corax_Common Raven", top_k=1, locale="de", **given).query
        assert (query["species"], query["common_name"]) == ("Corvus corax", "Kolkrabe")


def archive_search_results(archive: Archive, engine, hits):
    from dataclasses import replace

    from birdbridge.search.archive_hits import candidate_species, with_candidates
    from birdbridge.search.scoring import Scoring

    results = replace(archive.search(vector=np.ones(archive.dim), top_k=1), hits=hits)
    return with_candidates(results, candidate_species(engine, archive, hits, scoring=Scoring("softmax", min_score=0)))


def test_the_range_filter_takes_each_recordings_place_and_week(world, candidates, capsys) -> None:
    from birdbridge.search.archive_hits import archive_engine, candidate_species
    from birdbridge.search.scoring import Scoring
    from birdbridge.species.where import RangeFilter

    archive = Archive.open(candidates["archive"])
    engine = archive_engine(archive, candidates["gallery"])
    hits = archive.search(vector=np.ones(archive.dim), top_k=len(archive)).hits
    softmax = Scoring("softmax", min_score=0.0)
    everywhere = candidate_species(engine, archive, hits, top_k=5, scoring=softmax)
    assert all(len(species) == 5 for species in everywhere.species)  # the gallery's five, Pica hudsonia among them
    found = candidate_species(engine, archive, hits, top_k=5, scoring=softmax, where=RangeFilter(*ITHACA, "auto"))
    for hit, species in zip(hits, found.species, strict=True):
        keys = {h.key for h in species}
        # BirdNET's range model expects the magpie in Calgary (this recording's own lat/lon), not in Ithaca
        assert keys == ({sp for sp, _ in GALLERY_SPECIES} - ({"Pica hudsonia"} if hit.file != candidates["calgary"]
                                                             else set())), hit.file
    assert any("1 recordings placed at their own lat/lon" in note for note in found.notes)
    assert any("1 recordings have no date and were filtered with the whole year's list" in note and "undated.wav"
               in note for note in found.notes)

    # a species query with a place: only the recordings where it is expected then are searched, and counted
    plain = archive.search("Pica hudsonia", top_k=30)
    assert len({h.file for h in plain.hits}) == len(fx.RECORDINGS)
    placed = archive.search("Pica hudsonia", top_k=30, where=RangeFilter(*ITHACA, "auto"))
    assert {h.file for h in placed.hits} == {candidates["calgary"]} and len(placed.hits) == 3
    assert [h.score for h in placed.hits] == [h.score for h in plain.hits if h.file == candidates["calgary"]]
    assert any("5 recordings (15 windows) left out" in note for note in placed.notes)
    out = run(capsys, "archive", "search", candidates["archive"], "--text", "Pica hudsonia", "--lat", ITHACA[0],
              "--lon", ITHACA[1], "--week", "auto", "-f", "json")
    assert out.returncode == 0, out.stderr
    assert {h["file"] for h in json.loads(out.stdout)["hits"]} == {candidates["calgary"]}
    assert "5 recordings (15 windows) left out" in out.stderr and "no date" in out.stderr
    for option, value, message in (("--week", "0", "--week: week 0 is out of range"),
                                   ("--lat", "91", "--lat: latitude 91.0 is out of range")):
        given = {"--lat": ITHACA[0], "--lon": ITHACA[1], "--week": 20, option: value}
        bad = run(capsys, "archive", "search", candidates["archive"], "--text", "Pica hudsonia",
                  *[str(x) for pair in given.items() for x in pair])
        assert bad.returncode == 1 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    no_gallery = run(capsys, "archive", "search", candidates["archive"], "--like", candidates["calgary"], "--lat",
                     ITHACA[0], "--lon", ITHACA[1])
    assert no_gallery.returncode == 1 and "give --gallery" in no_gallery.stderr


def test_a_genus_as_text_searches_its_species(world, candidates, tmp_path, capsys) -> None:
    from birdbridge.embed import embed_species
    from birdbridge.gallery import Gallery
    from birdbridge.models.loader import load_teacher
    from birdbridge.species import Taxonomy, load_taxonomy_csv

    archive = Archive.open(world["archive"])
    gallery = Gallery.open(candidates["gallery"])
    crows = [sp.index for sp in gallery.species() if sp.scientific_name.startswith("Corvus ")]
    best = (archive.vectors.astype(np.float64) @ gallery.species_vectors[crows].astype(np.float64).T).max(axis=1)
    order = np.argsort(-best, kind="stable")
    for rank in ("genus", "auto"):
        found = archive.search("corvus", rank=rank, gallery=gallery, top_k=5)
        assert (found.query["read_as"], found.query["taxon"], found.query["rank"]) == ("taxon", "Corvus", "genus")
        assert sorted(found.query["members"]) == ["Corvus brachyrhynchos", "Corvus corax"]
        np.testing.assert_allclose([h.score for h in found.hits], best[order[:5]], atol=1e-4)  # (tones tie)
        np.testing.assert_allclose([best[h.row] for h in found.hits], [h.score for h in found.hits], atol=1e-4)
    taxonomy = tmp_path / "taxonomy.csv"
    taxonomy.write_text("scientific_name,common_name\nCorvus corax,Common Raven\nCorvus brachyrhynchos,American Crow\n"
                        "Pica hudsonia,Black-billed Magpie\n")
    crows_listed = [sp for sp in load_taxonomy_csv(taxonomy) if sp.scientific_name.startswith("Corvus ")]
    texts = embed_species(Taxonomy(crows_listed), load_teacher(str(world["teacher"])))  # with their common names
    from_teacher = (archive.vectors.astype(np.float64) @ texts.astype(np.float64).T).max(axis=1)
    found = archive.search("Corvus", rank="genus", taxonomy=taxonomy, top_k=3)
    np.testing.assert_allclose([h.score for h in found.hits], np.sort(from_teacher)[::-1][:3], atol=1e-3)
    with pytest.raises(InputError, match=r"--text: no species of the species index of gallery .* belongs to a genus "
                                         r"called 'Nonexistus'"):
        archive.search("Nonexistus", rank="genus", gallery=gallery)
    with pytest.raises(InputError, match=r"--text: 'Corvus' is no species name.*give --gallery"):
        archive.search("Corvus", rank="genus")
    out = run(capsys, "archive", "search", world["archive"], "--text", "Corvus", "--rank", "genus", "--gallery",
              candidates["gallery"], "--score", "softmax", "-f", "json", "-k", "2")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["query"]["read_as"] == "taxon" and {s["taxon_rank"] for h in data["hits"] for s in h["species"]} == {
        "genus"}


def test_several_queries_rank_windows_by_their_best_cosine(synthetic) -> None:
    archive = Archive.open(synthetic["folder"])
    q = synthetic["queries"][:3] / np.linalg.norm(synthetic["queries"][:3], axis=1, keepdims=True)
    best = (archive.vectors.astype(np.float64) @ q.astype(np.float64).T).max(axis=1)
    files = {w.row: w.file for w in archive.windows()}
    order = np.argsort(-best, kind="stable")
    for per_file in (None, 1, 4):
        taken, per = [], {}
        for row in order:
            if per_file is not None and per.get(files[row], 0) >= per_file:
                continue
            per[files[row]] = per.get(files[row], 0) + 1
            taken.append(int(row))
            if len(taken) == 25:
                break
        assert [r for r, _ in rank_windows(archive, q.astype(np.float32), 25, per_file=per_file)] == taken
