"""The gallery store: exact search against brute force, memory mapping, crash leftovers, records, errors."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from birdbridge.errors import BirdbridgeError
from birdbridge.gallery import Gallery, ImageRecord
from birdbridge.gallery.store import DB_FILE, META_FILE, VECTORS_FILE

TEACHER = {"ref": "tiny", "name": "tiny", "fingerprint": "f" * 32, "embed_dim": 16}


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def records(n: int, start: int = 0, species: str = "Pica hudsonia") -> list[dict]:
    return [{"id": f"img{start + i}", "species": species, "path": f"/photos/{start + i}.jpg", "split": "train",
             "meta": {"i": start + i}} for i in range(n)]


def make(tmp_path, n: int = 500, dim: int = 16, seed: int = 0, name: str = "g") -> tuple[Gallery, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = unit(rng, n, dim)
    gallery = Gallery.create(tmp_path / name, {**TEACHER, "embed_dim": dim}, dim)
    gallery.append(vectors[: n // 2], records(n // 2))
    gallery.append(vectors[n // 2 :], records(n - n // 2, n // 2))
    return gallery, vectors


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    stored = vectors.astype(np.float16).astype(np.float64)
    scores = queries.astype(np.float64) @ stored.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("chunk_rows", [7, 64, 100_000])
def test_exact_search_equals_brute_force(tmp_path, chunk_rows):
    gallery, vectors = make(tmp_path, n=500)
    queries = unit(np.random.default_rng(1), 9, 16)
    scores, rows = gallery._search_exact(queries, 10, None, chunk_rows=chunk_rows)
    ref_scores, ref_rows = brute_force(vectors, queries, 10)
    assert scores.dtype == np.float32 and rows.dtype == np.int64 and rows.shape == (9, 10)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    np.testing.assert_array_equal(rows, ref_rows)
    # the public entry point (no ANN here) gives the same
    _s2, r2 = gallery.search(queries, 10)
    np.testing.assert_array_equal(r2, ref_rows)


def test_search_pads_when_fewer_than_k_rows_and_restricts_to_rows(tmp_path):
    gallery, vectors = make(tmp_path, n=6)
    q = vectors[:1]
    scores, rows = gallery.search(q, 10)
    assert rows[0, 0] == 0 and (rows[0, :6] >= 0).all()
    assert (rows[0, 6:] == -1).all() and np.isneginf(scores[0, 6:]).all()
    subset = np.array([5, 3, 3])
    scores, rows = gallery.search(q, 4, rows=subset)
    assert set(rows[0, :2]) == {3, 5} and (rows[0, 2:] == -1).all()
    ref = vectors[[3, 5]].astype(np.float16).astype(np.float32) @ q[0]
    np.testing.assert_allclose(sorted(scores[0, :2]), sorted(ref), atol=1e-5)
    with pytest.raises(IndexError):
        gallery.search(q, 2, rows=[6])


def test_search_accepts_one_vector_and_rejects_wrong_width(tmp_path):
    gallery, vectors = make(tmp_path, n=20)
    scores, rows = gallery.search(vectors[4], 1)
    assert rows.tolist() == [[4]] and scores[0, 0] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(BirdbridgeError, match=r"16-d embeddings of teacher 'tiny'"):
        gallery.search(np.ones((1, 8), np.float32), 3)
    with pytest.raises(BirdbridgeError, match=r"k must be"):
        gallery.search(vectors[:1], 0)


def test_empty_gallery_search(tmp_path):
    gallery = Gallery.create(tmp_path / "empty", TEACHER, 16)
    scores, rows = gallery.search(np.ones((2, 16), np.float32) / 4, 3)
    assert (rows == -1).all() and np.isneginf(scores).all()
    assert len(Gallery.open(tmp_path / "empty")) == 0


def test_open_memory_maps_without_reading_the_file(tmp_path):
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * 4096

    dim, n = 4_096, 5_000  # 41 MB of float16, in few records
    gallery = Gallery.create(tmp_path / "big", {**TEACHER, "embed_dim": dim}, dim)
    block = np.ones((n, dim), np.float32)
    block[:, 0] = np.arange(n)
    gallery.append(block, [{"id": str(i), "species": "Pica hudsonia"} for i in range(n)])
    del gallery, block
    size = (tmp_path / "big" / VECTORS_FILE).stat().st_size
    assert size == n * dim * 2
    before = rss()
    opened = Gallery.open(tmp_path / "big")
    assert isinstance(opened.vectors, np.memmap) and opened.vectors.shape == (n, dim)
    assert opened.record(n - 1).id == str(n - 1)
    after_open = rss()
    assert after_open - before < size / 4
    total = float(np.asarray(opened.vectors[:, 1], dtype=np.float64).sum())  # touches every page
    assert total > 0 and rss() - before > size / 2


def test_records_ids_and_files(tmp_path):
    gallery, _ = make(tmp_path, n=10)
    rec = gallery.record(3)
    assert rec == ImageRecord(3, "img3", "/photos/3.jpg", "Pica hudsonia", "train", None, None, None, {"i": 3})
    assert [r.row for r in gallery.records([7, 2, 7])] == [7, 2, 7]
    assert gallery.has_id("img9") and not gallery.has_id("img10")
    assert gallery.row_of("img5") == 5
    assert gallery.ids() == {f"img{i}" for i in range(10)}
    assert gallery.existing(["img1", "nope"]) == {"img1": "/photos/1.jpg"}
    assert str(gallery.image_file("img2")) == "/photos/2.jpg"
    gallery.append(unit(np.random.default_rng(5), 2, 16), [
        {"id": "inside", "species": "Turdus migratorius", "path": "pictures/a.png", "split": "test"},
        {"id": "precomputed", "species": "Turdus migratorius"},
    ])
    assert gallery.image_file("inside") == (gallery.folder / "pictures" / "a.png").resolve()
    assert gallery.image_file(11) is None
    assert gallery.species_counts() == {"Pica hudsonia": 10, "Turdus migratorius": 2}
    assert gallery.rows_where(species="Turdus migratorius").tolist() == [10, 11]
    assert gallery.rows_where(split="test").tolist() == [10]
    with pytest.raises(IndexError):
        gallery.record(12)


def test_append_refuses_duplicate_ids_naming_them(tmp_path):
    gallery, _ = make(tmp_path, n=10)
    vec = unit(np.random.default_rng(2), 2, 16)
    with pytest.raises(BirdbridgeError, match=r"'img3'"):
        gallery.append(vec, [{"id": "new", "species": "Pica hudsonia"}, {"id": "img3", "species": "Pica hudsonia"}])
    with pytest.raises(BirdbridgeError, match=r"repeated.*'twice'"):
        gallery.append(vec, [{"id": "twice", "species": "Pica hudsonia"}, {"id": "twice", "species": "Pica hudsonia"}])
    assert len(gallery) == 10
    added = gallery.append(vec, [{"id": "new", "species": "Pica hudsonia"}, {"id": "img3", "species": "X y"}],
                           skip_existing=True)
    assert added == 1 and len(gallery) == 11 and gallery.record(10).id == "new"
    with pytest.raises(BirdbridgeError, match=r"zero or non-finite.*'z'"):
        gallery.append(np.zeros((1, 16)), [{"id": "z", "species": "Pica hudsonia"}])


def test_append_normalises_and_stores_float16(tmp_path):
    gallery = Gallery.create(tmp_path / "g", TEACHER, 16)
    gallery.append(np.full((1, 16), 3.0), [{"id": "a", "species": "Pica hudsonia"}])
    assert gallery.vectors.dtype == np.float16
    np.testing.assert_allclose(np.linalg.norm(gallery.vectors.astype(np.float32), axis=1), 1.0, atol=1e-3)


def test_crash_leftovers_past_count_are_dropped_on_open(tmp_path):
    gallery, _vectors = make(tmp_path, n=20)
    folder = gallery.folder
    gallery.close()
    # a writer killed after writing vectors and records but before updating gallery.json
    with open(folder / VECTORS_FILE, "ab") as fh:
        fh.write(np.ones((3, 16), np.float16).tobytes() + b"\x01\x02\x03")
    with sqlite3.connect(folder / DB_FILE) as conn:
        conn.executemany("INSERT INTO images (row, id, species) VALUES (?, ?, ?)",
                         [(20, "ghost0", "Pica hudsonia"), (21, "ghost1", "Pica hudsonia")])
    reopened = Gallery.open(folder)
    assert len(reopened) == 20
    assert (folder / VECTORS_FILE).stat().st_size == 20 * 16 * 2
    with sqlite3.connect(folder / DB_FILE) as conn:
        assert conn.execute("SELECT COUNT(*), MAX(row) FROM images").fetchone() == (20, 19)
    # the ghost ids can be appended for real now, at the right rows
    new = unit(np.random.default_rng(3), 2, 16)
    reopened.append(new, [{"id": "ghost0", "species": "Pica hudsonia"}, {"id": "ghost1", "species": "Pica hudsonia"}])
    assert reopened.row_of("ghost1") == 21
    np.testing.assert_allclose(reopened.vectors[20:].astype(np.float32), new, atol=1e-3)


def test_leftovers_are_invisible_to_a_reader_that_cannot_repair(tmp_path):
    gallery, _ = make(tmp_path, n=8)
    with open(gallery.folder / VECTORS_FILE, "ab") as fh:
        fh.write(np.ones((2, 16), np.float16).tobytes())
    with sqlite3.connect(gallery.folder / DB_FILE) as conn:
        conn.execute("INSERT INTO images (row, id, species) VALUES (8, 'pending', 'Pica hudsonia')")
    reader = Gallery.open(gallery.folder, repair=False)
    assert len(reader) == 8 and not reader.has_id("pending") and "pending" not in reader.ids()
    assert reader.search(np.ones((1, 16), np.float32) / 4, 20)[1].max() <= 7


def test_damaged_gallery_is_reported(tmp_path):
    gallery, _ = make(tmp_path, n=8)
    meta = json.loads((gallery.folder / META_FILE).read_text())
    meta["count"] = 50
    (gallery.folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(BirdbridgeError, match=r"damaged.*holds 8 rows but gallery.json says 50"):
        Gallery.open(gallery.folder)


def test_open_and_create_errors(tmp_path):
    with pytest.raises(BirdbridgeError, match=r"does not exist.*birdbridge index"):
        Gallery.open(tmp_path / "missing")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    with pytest.raises(BirdbridgeError, match=r"is not a gallery"):
        Gallery.open(tmp_path / "photos")
    with pytest.raises(BirdbridgeError, match=r"not empty and not a gallery.*cat.jpg"):
        Gallery.create(tmp_path / "photos", TEACHER, 16)
    Gallery.create(tmp_path / "g", TEACHER, 16)
    with pytest.raises(BirdbridgeError, match=r"already a gallery"):
        Gallery.create(tmp_path / "g", TEACHER, 16)


def test_check_teacher_names_both_teachers(tmp_path):
    gallery, _ = make(tmp_path, n=4)
    gallery.check_teacher({"name": "tiny", "fingerprint": "f" * 32}, "the query")
    with pytest.raises(BirdbridgeError) as info:
        gallery.check_teacher({"name": "bioclip-2", "fingerprint": "abc123"}, "the query")
    message = str(info.value)
    assert "'bioclip-2' (fingerprint abc123)" in message and f"'tiny' (fingerprint {'f' * 32})" in message


def test_species_index_roundtrip_and_search(tmp_path):
    gallery, _ = make(tmp_path, n=4)
    assert gallery.species() == [] and gallery.species_vectors.shape == (0, 16)
    vecs = unit(np.random.default_rng(4), 3, 16)
    recs = [{"key": k, "scientific_name": k, "common_name": c, "has_images": h,
             "taxonomy": ["Animalia", "", "", "", "", *k.split()]}
            for k, c, h in [("Pica hudsonia", "Black-billed Magpie", True), ("Turdus migratorius", None, False),
                            ("Corvus corax", "Common Raven", False)]]
    gallery.set_species(recs, vecs, ["taxonomic_common"], "openai")
    reopened = Gallery.open(gallery.folder)
    species = reopened.species()
    assert [s.key for s in species] == ["Pica hudsonia", "Turdus migratorius", "Corvus corax"]
    assert species[0].common_name == "Black-billed Magpie" and species[0].has_images and not species[1].has_images
    assert species[2].taxonomy == ("Animalia", "", "", "", "", "Corvus", "corax")
    assert reopened.species_info()["forms"] == ["taxonomic_common"]
    np.testing.assert_array_equal(reopened.species_vectors, vecs)
    scores, idx = reopened.search_species(vecs[[2, 0]], 5)
    assert idx[:, 0].tolist() == [2, 0] and (idx[:, 3:] == -1).all()
    np.testing.assert_allclose(scores[0, :3], np.sort(vecs @ vecs[2])[::-1], atol=1e-6)
    # a species.npy that does not match species.json (an interrupted write) is refused
    np.save(gallery.folder / "species.npy", vecs[:2])
    with pytest.raises(BirdbridgeError, match=r"does not match species.json"):
        _ = Gallery.open(gallery.folder).species_vectors


def test_refresh_sees_rows_appended_by_another_writer(tmp_path):
    gallery, _ = make(tmp_path, n=4)
    reader = Gallery.open(gallery.folder)
    gallery.append(unit(np.random.default_rng(6), 3, 16), records(3, start=100))
    assert len(reader) == 4 and reader.refresh() and len(reader) == 7 and reader.has_id("img102")
    assert not reader.refresh()
