"""The generic vector store with a non-image record schema (toy audio windows with ``files`` and ``labels`` tables):
records, filters, exact search against brute force, a writer killed mid-append and resumed, repair of the user's
tables, an ANN that is never stale; one durable JSON writer; a gallery folder written by the code before the store
existed opens and searches unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

import store_fixtures as fx
from birdbridge.errors import BirdbridgeError
from birdbridge.store import AnnSettings, RecordSchema, build_ann, match
from birdbridge.store.ann import ENGINES, default_engine
from birdbridge.store.kind import VECTORS_FILE
from birdbridge.utils.atomic import write_json
from extras import need_extra

TESTS = Path(__file__).resolve().parent
OLD_GALLERY = TESTS / "data" / "gallery-v1"


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None = None):
    """Top-k by float64 inner products with the stored float16 rows (of ``rows`` only, if given)."""
    rows = np.arange(len(vectors)) if rows is None else np.asarray(rows)
    stored = unit(vectors).astype(np.float16).astype(np.float64)[rows]
    scores = unit(queries).astype(np.float64) @ stored.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), rows[order]


def make(folder: Path, n: int, dim: int = fx.DIM) -> tuple[fx.Windows, np.ndarray, list[dict]]:
    store = fx.Windows.create(folder, fx.teacher(dim), dim)
    vectors, records = fx.window_rows(0, n, dim)
    store.append(vectors[: n // 2], records[: n // 2], also=fx.add_files_and_labels)
    store.append(vectors[n // 2 :], records[n // 2 :], also=fx.add_files_and_labels)
    return store, vectors, records


def table_counts(folder: Path) -> dict[str, tuple]:
    with sqlite3.connect(folder / fx.WINDOWS.db_file) as conn:
        return {t: conn.execute(f"SELECT COUNT(*), MAX({c}) FROM {t}").fetchone()
                for t, c in (("windows", "row"), ("labels", "row"), ("files", "first_row"))}


# ------------------------------------------------------------------ a store of windows, not images


def test_records_of_the_users_schema_and_the_row_invariant(tmp_path):
    store, vectors, records = make(tmp_path / "a", 40)
    assert len(store) == 40 and store.dim == fx.DIM
    assert repr(store).startswith("Windows(") and "40 windows" in repr(store)
    got = store.records([7, 0, 7])
    assert [w.row for w in got] == [7, 0, 7]
    assert got[1] == fx.Window(0, "rec000.wav#0#0", "rec000.wav", 0.0, 5.0, 0, "A")
    for row in (0, 13, 39):  # the record of row i belongs to vector row i
        w = store.record(row)
        assert (w.file, w.start_s, w.channel, w.site) == (records[row]["file"], records[row]["start_s"],
                                                          records[row]["channel"], records[row]["site"])
        np.testing.assert_allclose(store.vectors[row].astype(np.float32), unit(vectors[row]), atol=2e-3)
    assert store.present(["rec000.wav#0#0", "nope"]) == {"rec000.wav#0#0"}
    # the user's own tables were written in the appends' transactions
    assert table_counts(store.folder) == {"windows": (40, 39), "labels": (40, 39), "files": (6, 35)}
    with store.transaction() as conn:
        conn.execute("UPDATE labels SET label = 'Turdus migratorius' WHERE row = 3")
    assert store.query("SELECT label FROM labels WHERE row = 3") == [("Turdus migratorius",)]
    with pytest.raises(IndexError):
        store.record(40)
    with pytest.raises(BirdbridgeError, match=r"window wids repeated in one append: 'rec000.wav#0#0'"):
        store.append(vectors[:2], [records[0], records[0]])
    with pytest.raises(BirdbridgeError, match=r"1 window wid\(s\) already in archive"):
        store.append(vectors[:1], records[:1])
    assert store.append(vectors[:2], records[:2], skip_existing=True) == 0 and len(store) == 40


def test_filters_and_exact_search_equal_brute_force(tmp_path):
    store, vectors, records = make(tmp_path / "a", 300)
    queries = np.random.default_rng(99).standard_normal((6, fx.DIM)).astype(np.float32)
    scores, rows = store.search(queries, 10)
    ref_scores, ref_rows = brute_force(vectors, queries, 10)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_allclose(scores, ref_scores * np.linalg.norm(queries, axis=1, keepdims=True), atol=1e-4)
    # a filter on the user's columns: the rows it selects, and a search restricted to them
    subset = store.rows_matching(*match({"site": "B", "channel": 1}))
    expected = [i for i, r in enumerate(records) if r["site"] == "B" and r["channel"] == 1]
    assert subset.tolist() == expected and subset.dtype == np.int64
    assert store.rows_matching(["start_s >= ?", "file IN (?, ?)"], [10.0, "rec001.wav", "rec002.wav"]).tolist() == [
        i for i, r in enumerate(records) if r["start_s"] >= 10 and r["file"] in ("rec001.wav", "rec002.wav")]
    _, sub_rows = store.search(queries, 5, rows=subset)
    np.testing.assert_array_equal(sub_rows, brute_force(vectors, queries, 5, subset)[1])
    # bounded steps give the same answer
    _, chunked = store._search_exact(queries, 10, None, chunk_rows=7)
    np.testing.assert_array_equal(chunked, ref_rows)
    with pytest.raises(BirdbridgeError, match=r"archive .* holds 8-d embeddings of teacher 'toy-space'"):
        store.search(np.ones((1, 5), np.float32), 3)


def test_schema_is_checked():
    def schema(**kw):
        args = {"table": "t", "columns": (("a", "TEXT"),), "to_values": tuple, "from_values": tuple}
        return RecordSchema(**{**args, **kw})

    assert "CREATE INDEX IF NOT EXISTS t_a ON t(a);" in schema(indexes=("a",)).script()
    for bad in ({"table": "t; DROP"}, {"columns": (("row", "INTEGER"),)}, {"key": "b"}, {"indexes": ("b",)},
                {"columns": (("a", "TEXT"), ("a", "TEXT"))}):
        with pytest.raises(BirdbridgeError, match="record schema"):
            schema(**bad)


# ------------------------------------------------------------------ crash safety


def appender(folder: Path, total: int, batch: int, *pause: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", fx.APPENDER, str(folder), str(total), str(batch), *pause],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("point", ["vectors", "records", "count"])
def test_a_writer_killed_mid_append_resumes_without_duplicates(tmp_path, point):
    folder, marker = tmp_path / "archive", tmp_path / "paused"
    total, batch, pause_at = 200, 20, 4
    proc = appender(folder, total, batch, point, str(pause_at), str(marker))
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), proc.communicate()[1]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    committed = pause_at * batch
    assert json.loads((folder / fx.WINDOWS.meta_file).read_text())["count"] == committed
    # the batch in flight left its vectors behind (and, once committed, its rows in every table)
    assert (folder / VECTORS_FILE).stat().st_size == (committed + batch) * fx.DIM * 2
    if point == "count":
        assert table_counts(folder)["windows"] == (committed + batch, committed + batch - 1)
        assert table_counts(folder)["labels"][0] == committed + batch

    reopened = fx.Windows.open(folder)  # repairs: the vectors, the records and the user's tables
    assert len(reopened) == committed
    assert (folder / VECTORS_FILE).stat().st_size == committed * fx.DIM * 2
    counts = table_counts(folder)
    assert counts["windows"] == (committed, committed - 1) and counts["labels"] == (committed, committed - 1)
    assert counts["files"][1] < committed
    reopened.close()

    proc = appender(folder, total, batch)  # run again: resumes where it stopped
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.split() == [str(total)]
    store = fx.Windows.open(folder)
    records = store.records(range(total))
    assert len(store) == total and len({w.wid for w in records}) == total
    vectors, expected = fx.window_rows(0, total)
    assert [(w.file, w.start_s, w.channel) for w in records] == [(r["file"], r["start_s"], r["channel"])
                                                                 for r in expected]
    np.testing.assert_allclose(store.vectors.astype(np.float32), unit(vectors), atol=2e-3)
    assert (folder / VECTORS_FILE).stat().st_size == total * fx.DIM * 2
    counts = table_counts(folder)
    assert counts["labels"] == (total, total - 1) and counts["files"][0] == len({r["file"] for r in expected})


def test_repair_trims_the_users_tables_and_a_reader_never_sees_leftovers(tmp_path):
    store, _, _ = make(tmp_path / "a", 30)
    folder = store.folder
    store.close()
    # a writer killed after its transaction committed, before the count was saved
    with open(folder / VECTORS_FILE, "ab") as fh:
        fh.write(np.ones((2, fx.DIM), np.float16).tobytes())
    with sqlite3.connect(folder / fx.WINDOWS.db_file) as conn:
        conn.executemany("INSERT INTO windows (row, wid, file, start_s, end_s, channel) VALUES (?, ?, 'ghost.wav', "
                         "0, 5, 0)", [(30, "g0"), (31, "g1")])
        conn.executemany("INSERT INTO labels (row, label) VALUES (?, 'x')", [(30,), (31,)])
        conn.execute("INSERT INTO files (file, first_row) VALUES ('ghost.wav', 30)")
    reader = fx.Windows.open(folder, repair=False)
    assert len(reader) == 30 and reader.present(["g0"]) == set()
    assert reader.rows_matching(["file = ?"], ["ghost.wav"]).tolist() == []
    assert reader.search(np.ones((1, fx.DIM), np.float32), 40)[1].max() == 29
    fx.Windows.open(folder)
    assert table_counts(folder) == {"windows": (30, 29), "labels": (30, 29), "files": (5, 28)}
    assert (folder / VECTORS_FILE).stat().st_size == 30 * fx.DIM * 2


def test_meta_damage_and_wrong_folders_are_named(tmp_path):
    store, _, _ = make(tmp_path / "a", 10)
    with pytest.raises(BirdbridgeError, match=r"already an archive; open it instead"):
        fx.Windows.create(store.folder, fx.teacher(), fx.DIM)
    with pytest.raises(BirdbridgeError, match=r"is not an archive \(no windows.json\).*toy build"):
        fx.Windows.open(tmp_path)
    store.update_meta(build={"complete": False})
    with pytest.raises(BirdbridgeError, match=r"archive .* is unfinished.*`toy build`"):
        fx.Windows.open(store.folder).check_searchable()
    with pytest.raises(BirdbridgeError, match=r"cannot set \['count'\]"):
        store.update_meta(count=3)
    meta = json.loads((store.folder / "windows.json").read_text())
    (store.folder / "windows.json").write_text(json.dumps({**meta, "count": 50}))
    with pytest.raises(BirdbridgeError, match=r"archive .* is damaged: vectors.f16 holds 10 rows but windows.json "
                                              r"says 50\. Rebuild it with `toy build`"):
        fx.Windows.open(store.folder)
    with pytest.raises(BirdbridgeError, match=r"'other' \(fingerprint abc\), but archive .* holds window embeddings"):
        store.check_teacher({"name": "other", "fingerprint": "abc"}, "the query")


# ------------------------------------------------------------------ ANN


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, centres.shape[1])) * 0.1
    return unit(x)


#: Per engine: the settings of the first build, and a build setting that rebuilds.
ENGINE_SETTINGS = {
    "usearch": ({"connectivity": 8, "expansion_add": 64, "expansion_search": 64}, {"connectivity": 12}),
    "faiss-ivf": ({"nlist": 16, "nprobe": 4}, {"nlist": 8}),
}


@pytest.mark.parametrize("engine", list(ENGINES))
def test_ann_is_never_stale_and_agrees_with_exact_search(tmp_path, engine):
    if engine == "faiss-ivf":
        need_extra("faiss", "faiss")
    dim = 24
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((40, dim)))
    base, extra, queries = clustered(rng, 3000, centres), clustered(rng, 200, centres), clustered(rng, 50, centres)
    store = fx.Windows.create(tmp_path / "a", fx.teacher(dim), dim)
    _, records = fx.window_rows(0, 3200, dim)
    store.append(base, records[:3000])
    first, other = ENGINE_SETTINGS[engine]
    entry = build_ann(store, settings=AnnSettings(engine=engine, **first))
    assert entry["count"] == 3000 and (store.folder / ENGINES[engine].file).is_file() and store.ann_index() is not None

    exact_scores, exact_rows = store.search(queries, 10, exact=True)
    ann_scores, ann_rows = store.search(queries, 10)
    hits = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ann_rows, exact_rows, strict=True)])
    assert hits >= 0.95
    same = ann_rows == exact_rows
    np.testing.assert_allclose(ann_scores[same], exact_scores[same], atol=1e-6)  # re-scored exactly

    # new rows make the index stale: it is not used, and searches see the new rows
    store.append(extra, records[3000:])
    assert not store.ann_status()["up_to_date"] and store.ann_index() is None
    _, found = store.search(extra[:5], 1, exact=False)
    assert found[:, 0].tolist() == [3000, 3001, 3002, 3003, 3004]
    reader = fx.Windows.open(store.folder)  # another process sees the same
    assert reader.ann_index() is None and reader.search(extra[:3], 1)[1][:, 0].tolist() == [3000, 3001, 3002]

    updated = build_ann(store)  # the engine and settings of the current index; only the new rows are added
    assert updated["added_rows"] == 200 and updated.items() >= first.items() and store.ann_status()["up_to_date"]
    assert store.search(extra[:5], 1)[1][:, 0].tolist() == [3000, 3001, 3002, 3003, 3004]
    assert reader.refresh() and reader.ann_index() is not None

    # `birdbridge gallery ann`'s rule: settings not given keep the index's; a new build setting rebuilds
    key = ENGINES[engine].search_key
    settings = AnnSettings.from_entry(store.meta["ann"], **{key: 2})
    lent = {k: v for k, v in first.items() if k != "nlist"}  # an index's nlist is not lent: chosen from the rows
    assert settings == AnnSettings(engine=engine, **{**lent, key: 2})
    assert AnnSettings.from_entry(None).engine == default_engine()
    assert build_ann(store, settings=settings)[key] == 2
    rebuilt = build_ann(store, settings=AnnSettings.from_entry(store.meta["ann"], **other))
    assert rebuilt.items() >= other.items() and rebuilt["added_rows"] == 3200 and rebuilt[key] == 2


# ------------------------------------------------------------------ one durable JSON writer


def test_write_json_is_durable_utf8_and_has_one_rule_for_other_types(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    value = {"n": np.int64(3), "x": np.float32(0.5), "v": np.arange(3), "p": Path("/a/b"), "name": "Kōlea",
             "t": datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "d": date(2025, 1, 2)}
    write_json(tmp_path / "a.json", value)
    text = (tmp_path / "a.json").read_text(encoding="utf-8")
    assert synced and "Kōlea" in text
    assert json.loads(text) == {"n": 3, "x": 0.5, "v": [0, 1, 2], "p": "/a/b", "name": "Kōlea",
                                "t": "2025-01-02T03:04:05+00:00", "d": "2025-01-02"}
    with pytest.raises(TypeError, match=r"decimal\.Decimal"):
        write_json(tmp_path / "b.json", {"x": Decimal("1.5")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


# ------------------------------------------------------------------ a gallery written before the store existed


@pytest.fixture()
def old_gallery(tmp_path) -> Path:
    """tests/data/gallery-v1, written by the gallery code of commit 49e8042 (tests/data/make_gallery_v1.py)."""
    target = tmp_path / "gallery-v1"
    shutil.copytree(OLD_GALLERY, target)
    return target


def test_a_gallery_folder_of_the_old_code_opens_and_searches_unchanged(old_gallery):
    from birdbridge.gallery import Gallery

    expected = json.loads((OLD_GALLERY.parent / "gallery-v1-expected.json").read_text(encoding="utf-8"))
    gallery = Gallery.open(old_gallery)
    assert len(gallery) == 60 and gallery.dim == 16 and gallery.teacher["name"] == "tiny-clip"
    assert [asdict(r) for r in gallery.records(range(60))] == expected["records"]
    assert gallery.species_counts() == expected["species_counts"]
    assert gallery.image_file(0) == (old_gallery / "pictures" / "0.jpg").resolve()
    assert gallery.image_file(1) == Path("/photos/1.jpg") and gallery.image_file(59) is None
    status = gallery.ann_status()
    old_status = expected["ann_status"]  # the settings now name the index's dtype too: float16, as it was built
    assert {k: v for k, v in status.items() if k != "size_bytes"} == {**old_status,
                                                                        "settings": {**old_status["settings"],
                                                                                     "dtype": "f16"}}
    gallery.check_searchable()

    queries, k = np.asarray(expected["queries"], np.float32), expected["k"]
    for how, kwargs in (("exact", {"exact": True}), ("ann", {})):
        scores, rows = gallery.search(queries, k, **kwargs)
        np.testing.assert_array_equal(rows, expected[how]["rows"])
        np.testing.assert_allclose(scores, expected[how]["scores"], atol=1e-6)
    subset = gallery.rows_where(species="Corvus corax", split="train")
    assert subset.tolist() == expected["corvus_train"]["rows_where"]
    scores, rows = gallery.search(queries, k, rows=subset)
    np.testing.assert_array_equal(rows, expected["corvus_train"]["rows"])
    np.testing.assert_allclose(scores, expected["corvus_train"]["scores"], atol=1e-6)
    scores, indices = gallery.search_species(queries, 3)
    np.testing.assert_array_equal(indices, expected["species"]["indices"])
    np.testing.assert_allclose(scores, expected["species"]["scores"], atol=1e-6)
    assert [s.common_name for s in gallery.species()] == ["Black-billed Magpie", "American Robin", "Common Raven",
                                                          "Kōlea"]

    summary = gallery.summary()
    assert (summary.count, summary.image_species, summary.species["count"], summary.species["with_images"]) == (
        60, 3, 4, 3)
    assert summary.files[VECTORS_FILE] == 60 * 16 * 2 and summary.ann["up_to_date"]

    # the new code adds to it in the same format; the old rows and their vectors stay as they were
    sha = hashlib.sha256((old_gallery / VECTORS_FILE).read_bytes()[: 60 * 16 * 2]).hexdigest()
    assert sha == expected["vectors_sha256"]
    gallery.append(np.ones((1, 16), np.float32), [{"id": "new", "species": "Corvus corax"}])
    reopened = Gallery.open(old_gallery)
    assert len(reopened) == 61 and reopened.record(60).id == "new" and not reopened.ann_status()["up_to_date"]
    assert hashlib.sha256((old_gallery / VECTORS_FILE).read_bytes()[: 60 * 16 * 2]).hexdigest() == sha
    old_meta = json.loads((OLD_GALLERY / "gallery.json").read_text())
    assert set(reopened.meta) == set(old_meta) and reopened.meta["format"] == old_meta["format"]
    grown = build_ann(reopened)  # the old index grows as it was built (float16), by the new row alone
    assert (grown["dtype"], grown["connectivity"], grown["added_rows"], grown["count"]) == ("f16", 8, 1, 61)
