"""The ANN index, for every engine: recall against exact search on clustered data, staleness, incremental updates."""

from __future__ import annotations

import numpy as np
import pytest

from birdbridge.errors import BirdbridgeError
from birdbridge.gallery import AnnSettings, Gallery, build_ann
from birdbridge.store.ann import ENGINES
from extras import need_extra

DIM = 48
TEACHER = {"ref": "tiny", "name": "tiny", "fingerprint": "a" * 32, "embed_dim": DIM}


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray, noise: float = 0.6) -> np.ndarray:
    labels = rng.integers(0, len(centres), n)
    x = centres[labels] + rng.standard_normal((n, DIM)).astype(np.float32) * (noise / np.sqrt(DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((150, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return clustered(rng, 15_000, centres), clustered(rng, 200, centres), clustered(rng, 500, centres)


@pytest.fixture(params=list(ENGINES))
def engine(request) -> str:
    if request.param == "faiss-ivf":
        need_extra("faiss", "faiss")
    return request.param


def make(folder, vectors) -> Gallery:
    gallery = Gallery.create(folder, TEACHER, DIM)
    gallery.append(vectors, [{"id": f"r{i}", "species": "Pica hudsonia"} for i in range(len(vectors))])
    return gallery


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def test_ann_recall_and_staleness(tmp_path, data, engine):
    base, queries, extra = data
    gallery = make(tmp_path / "g", base)
    assert gallery.ann_status()["exists"] is False
    exact_scores, exact_rows = gallery.search(queries, 10)

    settings = AnnSettings(engine=engine, connectivity=16, expansion_add=64, expansion_search=64, nprobe=8)
    entry = build_ann(gallery, settings=settings)
    assert entry["count"] == len(base) and (gallery.folder / ENGINES[engine].file).is_file()
    reopened = Gallery.open(gallery.folder)
    status = reopened.ann_status()
    assert status["up_to_date"] and status["rows"] == len(base) and status["settings"]["engine"] == engine
    assert reopened._ann() is not None
    ann_scores, ann_rows = reopened.search(queries, 10)
    assert recall(ann_rows, exact_rows) >= 0.95
    # ANN hits are re-scored exactly: a row found by both has the same score
    same = ann_rows[:, 0] == exact_rows[:, 0]
    np.testing.assert_allclose(ann_scores[same, 0], exact_scores[same, 0], atol=1e-6)
    assert (np.diff(ann_scores, axis=1) <= 1e-7).all()  # best first
    _forced_scores, forced_rows = reopened.search(queries, 10, exact=True)
    np.testing.assert_array_equal(forced_rows, exact_rows)

    # appending makes the ANN stale: searches are exact (and see the new rows) until it is updated
    reopened.append(extra, [{"id": f"x{i}", "species": "Turdus migratorius"} for i in range(len(extra))])
    status = reopened.ann_status()
    assert status["exists"] and not status["up_to_date"] and status["rows"] == len(base)
    assert reopened._ann() is None
    _, rows_after = reopened.search(extra[:5], 1)
    assert rows_after[:, 0].tolist() == list(range(len(base), len(base) + 5))

    updated = build_ann(reopened)  # adds only the new rows
    assert updated["added_rows"] == len(extra) and updated["count"] == len(reopened)
    assert reopened.ann_status()["up_to_date"]
    _, rows_ann = reopened.search(extra[:5], 1)
    assert rows_ann[:, 0].tolist() == list(range(len(base), len(base) + 5))
    assert recall(reopened.search(queries, 10)[1], reopened.search(queries, 10, exact=True)[1]) >= 0.95


#: Per engine: settings, the same with another search depth, and another build setting (which rebuilds).
SETTINGS = {
    "usearch": ({"connectivity": 8, "expansion_add": 32, "expansion_search": 16}, {"expansion_search": 80},
                {"connectivity": 12}),
    "faiss-ivf": ({"nlist": 4, "nprobe": 1}, {"nprobe": 3}, {"nlist": 8}),
}


def test_ann_search_depth_rebuild_settings_and_padding(tmp_path, data, engine, monkeypatch):
    base, queries, _ = data
    gallery = make(tmp_path / "g", base[:300])
    first, depth, other = SETTINGS[engine]
    build_ann(gallery, settings=AnnSettings(engine=engine, **first))
    added = []
    monkeypatch.setattr(type(ENGINES[engine]), "add", lambda self, index, lo, v, threads: added.append(len(v)))
    same = build_ann(gallery, settings=AnnSettings(engine=engine, **{**first, **depth}))  # no rebuild
    assert same.items() >= depth.items() and added == [] and same["added_rows"] == 0
    seen = []
    real = type(ENGINES[engine]).search
    monkeypatch.setattr(type(ENGINES[engine]), "search", lambda self, index, q, k, entry: seen.append(entry) or
                        real(self, index, q, k, entry))
    Gallery.open(gallery.folder).search(queries[:2], 5)
    assert seen and seen[0].items() >= depth.items()  # queries use the new depth
    monkeypatch.undo()
    rebuilt = build_ann(gallery, settings=AnnSettings.from_entry(gallery.meta["ann"], **other))
    assert rebuilt.items() >= other.items() and rebuilt["added_rows"] == 300
    with pytest.raises(BirdbridgeError, match=r"ANN nprobe must be at most 1024"):
        AnnSettings(engine=engine, nprobe=5000)
    # restricting to rows is always exact; k beyond the gallery is padded
    scores, rows = gallery.search(queries[:2], 400)
    assert (rows[:, 300:] == -1).all() and np.isneginf(scores[:, 300:]).all()
    scores, rows = gallery.search(queries[:2], 3, rows=[10, 20])
    assert set(rows[0, :2]) == {10, 20} and rows[0, 2] == -1


def test_broken_ann_file_falls_back_to_exact(tmp_path, data, engine):
    base, queries, _ = data
    gallery = make(tmp_path / "g", base[:200])
    build_ann(gallery, settings=AnnSettings(engine=engine))
    (gallery.folder / ENGINES[engine].file).write_bytes(b"garbage")
    reopened = Gallery.open(gallery.folder)
    _, rows = reopened.search(queries[:3], 5)
    np.testing.assert_array_equal(rows, reopened.search(queries[:3], 5, exact=True)[1])
    # building again (no --rebuild) sees that the file cannot be searched and builds it afresh
    assert build_ann(reopened)["added_rows"] == 200 and Gallery.open(gallery.folder).ann_index() is not None


def test_growth_adds_to_the_index_and_a_kill_before_recording_loses_no_work(tmp_path, data, engine, monkeypatch):
    base, queries, extra = data
    gallery = make(tmp_path / "g", base[:2000])
    first = build_ann(gallery, settings=AnnSettings(engine=engine))
    assert (first["engine"], first["dtype"], first["added_rows"]) == (engine, AnnSettings().dtype, 2000)
    # a growth of 10 %: the build adds the 200 new rows to the index (FAISS assigns them to the centroids it has),
    # nothing is re-added or retrained
    gallery.append(extra[:200], [{"id": f"x{i}", "species": "Turdus migratorius"} for i in range(200)])
    kind = type(ENGINES[engine])
    added, real_add, real_new = [], kind.add, kind.new
    monkeypatch.setattr(kind, "add", lambda self, index, lo, v, threads: added.append((lo, len(v))) or
                        real_add(self, index, lo, v, threads))
    monkeypatch.setattr(kind, "new", lambda *a: pytest.fail("a growth of 10 % built a new index"))
    grown = build_ann(gallery)
    monkeypatch.setattr(kind, "new", real_new)
    assert added == [(2000, 200)]
    assert (grown["added_rows"], grown["count"], ENGINES[engine].shape(gallery._ann())[0]) == (200, 2200, 2200)
    assert recall(gallery.search(queries, 10)[1], gallery.search(queries, 10, exact=True)[1]) >= 0.99
    assert gallery.search(extra[:200], 1)[1][:, 0].tolist() == list(range(2000, 2200))  # the new rows are found

    # a build killed after saving its file, before recording it: the file is not searched, then resumed from
    gallery.append(extra[200:300], [{"id": f"y{i}", "species": "Turdus migratorius"} for i in range(100)])

    def killed(self, entry):
        raise KeyboardInterrupt

    real_set_ann = Gallery.set_ann
    monkeypatch.setattr(Gallery, "set_ann", killed)
    with pytest.raises(KeyboardInterrupt):
        build_ann(gallery)
    monkeypatch.setattr(Gallery, "set_ann", real_set_ann)
    reopened = Gallery.open(gallery.folder)
    assert reopened.meta["ann"]["count"] == 2200 and reopened._ann() is None  # stale: searches are exact
    added.clear()
    resumed = build_ann(reopened)
    assert (resumed["added_rows"], resumed["count"], added) == (0, 2300, [])
    assert ENGINES[engine].shape(reopened._ann())[0] == 2300
    assert recall(reopened.search(queries, 10)[1], reopened.search(queries, 10, exact=True)[1]) >= 0.99
    assert reopened.search(extra[200:300], 1)[1][:, 0].tolist() == list(range(2200, 2300))


def test_an_index_of_other_settings_is_kept_readable_never_misread(tmp_path, data, caplog):
    base, queries, extra = data
    gallery = make(tmp_path / "g", base[:500])
    old = build_ann(gallery, settings=AnnSettings(engine="usearch", dtype="f16", expansion_add=128))
    # an index of an older birdbridge: no engine recorded, float16; it is read, and grows as it was built
    gallery.set_ann({k: v for k, v in old.items() if k != "engine"})
    assert Gallery.open(gallery.folder)._ann() is not None
    gallery.append(extra[:50], [{"id": f"x{i}", "species": "Turdus migratorius"} for i in range(50)])
    grown = build_ann(gallery)
    assert (grown["dtype"], grown["expansion_add"], grown["added_rows"]) == ("f16", 128, 50)
    # an entry that does not describe its file is not searched; new settings rebuild, saying why
    gallery.set_ann({**grown, "dtype": "i8"})
    with caplog.at_level("WARNING"):
        reopened = Gallery.open(gallery.folder)
        assert reopened._ann() is None
    assert "stores f16, but gallery.json says i8" in caplog.text
    np.testing.assert_array_equal(reopened.search(queries[:5], 10)[1], reopened.search(queries[:5], 10, exact=True)[1])
    gallery.set_ann(grown)
    rebuilt = build_ann(gallery, settings=AnnSettings.from_entry(gallery.meta["ann"], dtype="i8"))
    assert (rebuilt["engine"], rebuilt["dtype"], rebuilt["added_rows"]) == ("usearch", "i8", 550)
    gallery.set_ann({**rebuilt, "engine": "annoy"})
    assert Gallery.open(gallery.folder)._ann() is None
    assert AnnSettings.from_entry(gallery.meta["ann"]) == AnnSettings()
    with pytest.raises(BirdbridgeError, match="ANN dtype must be one of i8, f16, bf16, f32"):
        AnnSettings(dtype="f8")


def test_an_index_is_read_only_by_its_own_engine_and_settings(tmp_path, data, engine, caplog):
    need_extra("faiss", "faiss")
    base, queries, _ = data
    gallery = make(tmp_path / "g", base[:400])
    entry = build_ann(gallery, settings=AnnSettings(engine=engine, **SETTINGS[engine][0]))
    other = next(name for name in ENGINES if name != engine)
    wrong = [{**entry, "dtype": "i8"}, {**entry, "engine": other}, {**entry, "count": 399}]
    if engine == "faiss-ivf":
        wrong.append({**entry, "nlist": 8})
    for bad in wrong:  # an entry that does not describe its file: searched exactly, with a log line
        gallery.set_ann(bad)
        caplog.clear()
        with caplog.at_level("WARNING"):
            reopened = Gallery.open(gallery.folder)
            rows = reopened.search(queries[:5], 10)[1]
        assert reopened._ann() is None
        np.testing.assert_array_equal(rows, reopened.search(queries[:5], 10, exact=True)[1])
        if bad["count"] == len(gallery):
            assert "searching exactly" in caplog.text
    # another engine builds its own index afresh and the first one's file goes
    gallery.set_ann(entry)
    switched = build_ann(gallery, settings=AnnSettings.from_entry(entry, engine=other))
    assert (switched["engine"], switched["added_rows"]) == (other, 400)
    assert not (gallery.folder / ENGINES[engine].file).exists() and Gallery.open(gallery.folder)._ann() is not None


def test_ivf_centroids_are_trained_afresh_once_the_store_outgrows_them(tmp_path, data, caplog):
    need_extra("faiss", "faiss")
    from birdbridge.store.ann_ivf import REGROW_FACTOR, auto_nlist

    base, queries, _ = data
    gallery = make(tmp_path / "g", base[:250])
    first = build_ann(gallery, settings=AnnSettings(engine="faiss-ivf"))
    assert (first["nlist"], first["trained_rows"]) == (1, 250)
    gallery.append(base[250:1100], [{"id": f"x{i}", "species": "Pica hudsonia"} for i in range(850)])
    assert len(gallery) > REGROW_FACTOR * 250
    with caplog.at_level("INFO"):
        again = build_ann(gallery)
    assert (again["engine"], again["added_rows"], again["trained_rows"]) == ("faiss-ivf", 1100, 1100)
    assert again["nlist"] == auto_nlist(1100) == 2 and auto_nlist(1_000_000) == 2048
    assert "more than 4 times the 250 its centroids were trained on" in caplog.text
    assert recall(gallery.search(queries, 10)[1], gallery.search(queries, 10, exact=True)[1]) >= 0.95


def test_without_faiss_the_engine_says_how_to_install_it_and_searches_stay_exact(tmp_path, data, monkeypatch, caplog):
    need_extra("faiss", "faiss")
    import sys

    from birdbridge.store.ann import default_engine

    base, queries, _ = data
    gallery = make(tmp_path / "g", base[:300])
    build_ann(gallery, settings=AnnSettings(engine="faiss-ivf"))
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now fails
    assert default_engine() == "usearch" and AnnSettings().engine == "usearch"
    with pytest.raises(BirdbridgeError, match=r"pip install 'birdbridge\[faiss\]'"):
        build_ann(gallery, rebuild=True, engine="faiss-ivf")
    with caplog.at_level("WARNING"):
        reopened = Gallery.open(gallery.folder)
        rows = reopened.search(queries[:4], 10)[1]
    assert reopened._ann() is None and "pip install 'birdbridge[faiss]'" in caplog.text
    np.testing.assert_array_equal(rows, reopened.search(queries[:4], 10, exact=True)[1])


def test_more_ivf_lists_than_rows_is_an_error_naming_nlist(tmp_path, data):
    need_extra("faiss", "faiss")
    gallery = make(tmp_path / "g", data[0][:50])
    with pytest.raises(BirdbridgeError, match=r"nlist 1000 is more than the 50 rows"):
        build_ann(gallery, settings=AnnSettings(engine="faiss-ivf", nlist=1000))
