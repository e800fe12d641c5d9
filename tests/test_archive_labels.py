"""Archive labels: labels CSVs and Raven tables attached to the windows they overlap, hits of a search result file
marked yes or no, provenance, counts where the last label counts, and rows that name nothing reported by line."""

from __future__ import annotations

import json
import shutil

import pytest

import archive_fixtures as fx
from birdbridge.archive import Archive
from birdbridge.archive.formats import write_results
from birdbridge.archive.labels import hit_labels
from birdbridge.errors import InputError
from cli_fixtures import run


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clap, tiny_clip):
    return fx.build_world(tmp_path_factory.mktemp("labels"), tiny_clap, tiny_clip)


@pytest.fixture
def archive(world, tmp_path):
    folder = tmp_path / "archive"
    shutil.copytree(world["archive"], folder)
    return Archive.open(folder)


def rec(world, rel: str) -> str:
    return str((world["recordings"] / rel).resolve())


def rows_of(archive: Archive, rel_name: str, starts: list[float]) -> list[int]:
    """The rows of the windows of a recording (by file name) that start at ``starts``."""
    windows = {w.start_s: w.row for w in archive.windows(next(f.id for f in archive.files()
                                                              if f.path.endswith(rel_name)))}
    return [windows[s] for s in starts]


def test_a_labels_csv_attaches_yes_and_no_and_reports_rows_that_name_nothing(world, archive, tmp_path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "file,start,end,label,value\n"
        f"{rec(world, 'SITE01/20240501_053000.wav')},0.2,1.6,Pica hudsonia,yes\n"  # line 2: windows 0-1 and 1-2
        "SITE02_20240502_013000.wav,2.0,3.0,Pica hudsonia,no\n"  # line 3: by file name alone
        "missing.wav,0,1,Pica hudsonia,yes\n"  # line 4: no such recording
        f"{rec(world, 'undated.wav')},7,8,Pica hudsonia,yes\n"  # line 5: past the recording's end
        f"{rec(world, 'undated.wav')},0,1,Pica hudsonia,maybe\n"  # line 6: not yes/no
        f"{rec(world, 'undated.wav')},0.1,0.3,Corvus corax,1\n"  # line 7: a short call inside window 0-1
    )
    report = archive.add_labels(labels, who="ana")
    assert (report.read, report.added, report.windows) == (6, 4, 4)
    skipped = {f.source: f.message for f in report.skipped}
    assert sorted(skipped) == [f"{labels}, line {n}" for n in (4, 5, 6)]
    assert "recording missing.wav is not in archive" in skipped[f"{labels}, line 4"]
    assert "no window overlaps 7-8 s" in skipped[f"{labels}, line 5"]
    assert "not a yes/no value" in skipped[f"{labels}, line 6"]

    stored = {(lab.row, lab.label): lab for lab in archive.labels()}
    pica_yes = rows_of(archive, "20240501_053000.wav", [0.0, 1.0])
    pica_no = rows_of(archive, "SITE02_20240502_013000.wav", [2.0])
    raven_row = rows_of(archive, "undated.wav", [0.0])
    assert {key for key, lab in stored.items() if lab.value} == {*((r, "Pica hudsonia") for r in pica_yes),
                                                                (raven_row[0], "Corvus corax")}
    assert [key for key, lab in stored.items() if not lab.value] == [(pica_no[0], "Pica hudsonia")]
    first = stored[(pica_yes[0], "Pica hudsonia")]
    assert (first.who, first.source, first.source_row) == ("ana", str(labels.resolve()), 2)
    assert first.at[:2] == "20" and first.file == rec(world, "SITE01/20240501_053000.wav")
    counts = archive.label_counts()
    assert {k: (c.yes, c.no) for k, c in counts.items()} == {"Corvus corax": (1, 0), "Pica hudsonia": (2, 1)}

    again = archive.add_labels(labels, who="ana")  # the same rows again: stored once
    assert (again.added, again.already) == (0, 4)
    # a later "no" for a window overrides its "yes" in the counts; both stay, with their provenance
    fix = tmp_path / "fix.csv"
    fix.write_text(f"file,start,end,label,value\n{rec(world, 'SITE01/20240501_053000.wav')},0,1,Pica hudsonia,no\n")
    assert archive.add_labels(fix, who="ben").added == 1
    assert (archive.label_counts()["Pica hudsonia"].yes, archive.label_counts()["Pica hudsonia"].no) == (1, 2)
    history = [(lab.who, lab.value) for lab in archive.labels("Pica hudsonia") if lab.row == pica_yes[0]]
    assert history == [("ana", True), ("ben", False)]
    assert [lab.who for lab in archive.labels("Pica hudsonia", latest=True) if lab.row == pica_yes[0]] == ["ben"]


def test_a_raven_table_with_file_offsets_and_views(world, archive, tmp_path) -> None:
    header = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies\t"
              "Begin Path\tFile Offset (s)\n")
    a, b = rec(world, "SITE01/20240501_233000.wav"), rec(world, "SMA12345_20240503_120000.wav")
    table = tmp_path / "combined.selections.txt"
    table.write_text(header
                     + f"1\tSpectrogram 1\t1\t1.0\t2.0\t0\t8000\tCorvus corax\t{a}\t1.0\n"
                     + f"1\tWaveform 1\t1\t1.0\t2.0\t0\t8000\tCorvus corax\t{a}\t1.0\n"  # the same selection
                     + f"2\tSpectrogram 1\t1\t5.0\t6.0\t0\t8000\tCorvus corax\t{b}\t2.0\n"  # 3 s into the table
                     + f"3\tSpectrogram 1\t1\t9.0\t\t0\t8000\tCorvus corax\t{b}\t0\n")  # line 5: no end
    report = archive.add_labels(table, who="raven")
    assert (report.read, report.added) == (3, 2)
    assert [f.source for f in report.skipped] == [f"{table}, line 5"]
    assert sorted(lab.row for lab in archive.labels()) == sorted(
        rows_of(archive, "20240501_233000.wav", [1.0]) + rows_of(archive, "SMA12345_20240503_120000.wav", [2.0]))
    plain = tmp_path / "plain.txt"  # no Begin Path: --file names the recording
    plain.write_text("Selection\tView\tBegin Time (s)\tEnd Time (s)\tAnnotation\n1\tSpectrogram 1\t0\t1\tCorvus\n")
    with pytest.raises(InputError, match="no Begin Path or Begin File column"):
        archive.add_labels(plain)
    assert archive.add_labels(plain, file=a).added == 1


def test_marking_hits_of_a_search_result_file(world, archive, tmp_path, capsys) -> None:
    results = archive.search(like=rec(world, "SITE01/20240501_053000.wav"), top_k=4)
    for fmt in ("csv", "raven", "json"):
        written = write_results(tmp_path / f"hits.{fmt}", fmt, results)
        spans = hit_labels(written, "Pica hudsonia", True, [1, 3])
        assert [(s.file, s.start_s, s.line) for s in spans] == [
            (h.file, pytest.approx(h.start_s), h.rank) for h in results.hits if h.rank in (1, 3)]
    with pytest.raises(InputError, match=r"has no hit of rank 9 \(it holds ranks 1-4\)"):
        hit_labels(tmp_path / "hits.csv", "x", True, [9])

    out = run(capsys, "archive", "label", archive.folder, tmp_path / "hits.raven", "--label", "Pica hudsonia", "--yes",
              "--rows", "1,3", "--by", "me")
    assert out.returncode == 0, out.stderr
    assert "added 2 labels to 2 windows" in out.stdout
    out = run(capsys, "archive", "label", archive.folder, tmp_path / "hits.json", "--label", "Pica hudsonia", "--no",
              "--rows", "2")
    assert out.returncode == 0, out.stderr
    marked = {lab.row: (lab.value, lab.source_row) for lab in archive.labels("Pica hudsonia")}
    assert marked == {results.hits[0].row: (True, 1), results.hits[2].row: (True, 3), results.hits[1].row: (False, 2)}
    counts = run(capsys, "archive", "labels", archive.folder, "--json")
    assert json.loads(counts.stdout) == {"Pica hudsonia": {"yes": 2, "no": 1}}
    assert "Pica hudsonia" in run(capsys, "archive", "labels", archive.folder).stdout
    bad = run(capsys, "archive", "label", archive.folder, tmp_path / "hits.csv", "--label", "x", "--rows", "1")
    assert bad.returncode == 1 and "--yes or --no" in bad.stderr and "Traceback" not in bad.stderr
    nothing = tmp_path / "nothing.csv"
    nothing.write_text("file,start,end,label\nnowhere.wav,0,1,x\n")
    failed = run(capsys, "archive", "label", archive.folder, nothing)
    assert failed.returncode == 1 and "line 2" in failed.stdout + failed.stderr


def test_a_file_name_matches_exactly_one_recording_of_that_exact_name(world, archive) -> None:
    """By file name alone: SQL wildcards and another letter case name nothing; the exact name finds its recording."""
    from birdbridge.archive.labels import LabelSpan

    names = ["SITE02_20240502_013000.wav", "site02_20240502_013000.wav", "SITE02_2024050%_013000.wav",
             "SITE02_20240502?013000.wav", "_ITE02_20240502_013000.wav"]
    report = archive.add_labels([LabelSpan(name, 0.0, 1.0, "Corvus corax", where=name) for name in names])
    assert report.added == 1 and [f.source for f in report.skipped] == names[1:]
    assert [lab.row for lab in archive.labels()] == rows_of(archive, "SITE02_20240502_013000.wav", [0.0])


def test_a_file_name_two_recordings_share_is_refused_naming_both(world, archive) -> None:
    import numpy as np

    from birdbridge.archive.labels import LabelSpan
    from birdbridge.archive.metadata import RecordingMeta
    from birdbridge.archive.store import NewRecording

    other = "/elsewhere/undated.wav"
    archive.add_recordings([NewRecording(other, 1.0, 16000, 1, 1, 1, RecordingMeta(),
                                         np.array(archive.vectors[:1], np.float32), np.array([0.0]), np.array([1.0]))])
    report = archive.add_labels([LabelSpan("undated.wav", 0.0, 1.0, "Corvus corax", where="row 1")])
    assert report.added == 0 and len(report.skipped) == 1
    message = report.skipped[0].message
    assert "2 recordings" in message and other in message and rec(world, "undated.wav") in message
