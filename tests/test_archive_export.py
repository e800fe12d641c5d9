"""Archive exports: parquet (embeddings and labels, read back with pyarrow) and a perch-hoplite database opened and
searched with hoplite's own API (the `hoplite` extra, which ./scripts/test installs)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import archive_fixtures as fx
from birdbridge.archive import Archive, LabelSpan
from birdbridge.archive.export import export_archive
from birdbridge.archive.metadata import RecordingMeta
from birdbridge.errors import InputError
from cli_fixtures import run
from extras import need_extra


@pytest.fixture
def archive(tmp_path) -> Archive:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((60, 16)).astype(np.float32)
    files = [(f"/data/{site}/{i:02d}.wav", RecordingMeta("2024-05-0" + str(1 + i % 3), "05:30:00", site))
             for i, site in enumerate("AABBCC")]
    archive = fx.synthetic_archive(tmp_path / "archive", vectors, files, 10)
    first, second = archive.records([3, 17])
    archive.add_labels([LabelSpan(archive.file(first.file).path, first.start_s, first.end_s, "Pica hudsonia", True,
                                  exact=True),
                        LabelSpan(archive.file(second.file).path, second.start_s, second.end_s, "Pica hudsonia", False,
                                  exact=True)], who="ana")
    return archive


def test_parquet_export_holds_every_window_embedding_and_label(archive, tmp_path, capsys) -> None:
    out = run(capsys, "archive", "export", archive.folder, tmp_path / "out", "--to", "parquet")
    assert out.returncode == 0, out.stderr
    windows = pq.read_table(tmp_path / "out" / "windows.parquet").to_pylist()
    assert [w["row"] for w in windows] == list(range(len(archive)))
    np.testing.assert_array_equal(np.array([w["embedding"] for w in windows], np.float16), archive.vectors)
    assert windows[12]["file"] == "/data/A/01.wav" and windows[12]["start_s"] == 10.0 and windows[12]["site"] == "A"
    labels = pq.read_table(tmp_path / "out" / "labels.parquet").to_pylist()
    assert [(lab["row"], lab["value"], lab["who"]) for lab in labels] == [(3, True, "ana"), (17, False, "ana")]
    with pytest.raises(InputError, match="is not an empty folder"):
        export_archive(archive, tmp_path / "out", "parquet")


def test_hoplite_export_opens_and_searches_in_hoplite(archive, tmp_path) -> None:
    need_extra("perch_hoplite", "hoplite")
    from perch_hoplite.db import datatypes, sqlite_usearch_impl

    counts = export_archive(archive, tmp_path / "hoplite", "hoplite")
    assert counts == {"windows": 60, "files": 6, "labels": 2, "deployments": 3}
    db = sqlite_usearch_impl.SQLiteUSearchDB.create(str(tmp_path / "hoplite"))
    assert db.count_embeddings() == 60 and db.get_embedding_dim() == 16
    assert sorted(d.name for d in db.get_all_deployments()) == ["A", "B", "C"]
    assert db.count_each_label(datatypes.LabelType.POSITIVE) == {"Pica hudsonia": 1}
    assert db.count_each_label(datatypes.LabelType.NEGATIVE) == {"Pica hudsonia": 1}
    by_place = {}
    for window in db.get_all_windows(include_embedding=True):
        recording = db.get_recording(window.recording_id)
        by_place[(recording.filename, round(window.offsets[0], 3))] = window
    assert len(by_place) == 60
    query = archive.vectors[25].astype(np.float32)
    ours = archive.search(vector=query, top_k=5, exact=True).hits
    for approximate in (False, True):  # brute force, and hoplite's own usearch index
        theirs = db.search(query, 5, approximate=approximate)
        found = [(db.get_recording(db.get_window(r.window_id).recording_id).filename,
                  round(db.get_window(r.window_id).offsets[0], 3)) for r in theirs]
        assert found == [(h.file, round(h.start_s, 3)) for h in ours]
    np.testing.assert_allclose(by_place[found[0]].embedding, archive.vectors[25].astype(np.float32), atol=1e-3)
