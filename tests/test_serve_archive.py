"""The web API's archive endpoints (`birdbridge serve --archive`): searches by name, picture and recording, each hit's
audio, spectrogram, candidate species and labels; bad input; an archive of another teacher refused at startup.

A real SearchEngine over a small gallery and a real archive (tests/archive_fixtures.py: an untrained student of the
tiny teacher, six 3 s tone recordings in 1 s windows), in-process through FastAPI's TestClient.
"""

from __future__ import annotations

import io
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from PIL import Image

import archive_fixtures as fx
from birdbridge.archive.metadata import RecordingMeta
from birdbridge.archive.store import Archive
from birdbridge.errors import BirdbridgeError
from birdbridge.serve.app import create_app
from serve_fixtures import SPECIES, write_png


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clap, tiny_clip) -> dict:
    """The archive world of tests/archive_fixtures.py plus a gallery of four species in the same teacher's space."""
    from birdbridge.gallery.build import build_gallery
    from birdbridge.search import SearchEngine

    root = tmp_path_factory.mktemp("serve-archive")
    world = fx.build_world(root, tiny_clap, tiny_clip)
    for s, (_key, sci, common, _code, colour) in enumerate(SPECIES):
        write_png(root / "pictures" / f"{sci}_{common}" / "0.png", colour, seed=s)
    build_gallery([root / "pictures"], root / "gallery", str(tiny_clip), progress=False)
    engine = SearchEngine.open(root / "gallery", str(world["student"]))
    return {**world, "engine": engine}


@pytest.fixture()
def client(world, tmp_path):
    """A client over a copy of the archive (labels are written), whose recordings lie in tmp/recordings."""
    folder = tmp_path / "archive"
    shutil.copytree(world["archive"], folder)
    archive = Archive.open(folder)
    with TestClient(create_app(world["engine"], archive=archive, upload_dir=tmp_path)) as c:
        c.archive = archive
        yield c


def search_text(client, q: str = "Pica hudsonia", **params) -> dict:
    response = client.get("/api/archive/search/text", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_info_and_text_search(client, world) -> None:
    info = client.get("/api/info").json()["archive"]
    assert info == {"name": "archive", "windows": 18, "files": 6, "hours": pytest.approx(18 / 3600), "window_s": 1.0,
                    "hop_s": 1.0, "labels": 0}

    result = search_text(client, top_k=5)
    assert result["query"] == {"kind": "text", "text": "Pica hudsonia", "read_as": "species",
                               "species": "Pica hudsonia", "common_name": "Black-billed Magpie"}
    engine = world["engine"]  # a species' text embedding has its common name from the gallery's species index
    expected = client.archive.search("Pica hudsonia", top_k=5, teacher=engine.teacher, taxonomy=engine.taxonomy)
    hits = result["hits"]
    assert [(h["row"], h["score"]) for h in hits] == [(h.row, pytest.approx(h.score)) for h in expected.hits]
    names = {rel for rel, _, _ in fx.RECORDINGS}
    for hit in hits:
        assert hit["file"] in names  # below the recordings' folder, never the server's path
        assert hit["audio_url"] == f"/api/archive/windows/{hit['row']}/audio"
        assert hit["spectrogram_url"] == f"/api/archive/windows/{hit['row']}/spectrogram"
        assert hit["labels"] == []
        assert len(hit["candidates"]) == 3
        for candidate in hit["candidates"]:
            assert candidate["scientific_name"] in {sp[1] for sp in SPECIES}
            assert candidate["image"]["species"] == candidate["key"]
            assert client.get(candidate["image"]["url"]).headers["content-type"] == "image/png"
    # The candidates are the engine's ranking of the window's own embedding.
    vector = np.asarray(client.archive.vectors[hits[0]["row"]], np.float32)[None]
    ranked = world["engine"].rank_species(vector / np.linalg.norm(vector), top_k=3)[0][0]
    assert [c["key"] for c in hits[0]["candidates"]] == [sp.key for sp in ranked]
    every = search_text(client, top_k=18)["hits"]
    dated = [h for h in every if h["file"] == "SITE01/20240501_053000.wav"]
    assert len(dated) == 3 and all(h["date"] == "2024-05-01" and h["site"] == "SITE01" for h in dated)
    assert {h["time"] for h in dated} == {"05:30:00", "05:30:01", "05:30:02"}

    capped = search_text(client, top_k=6, per_file=1)["hits"]
    assert len({h["file"] for h in capped}) == len(capped) == 6


def test_window_audio_and_spectrogram(client) -> None:
    row = search_text(client, top_k=1)["hits"][0]["row"]
    record = client.archive.record(row)
    source = client.archive.file(record.file)
    response = client.get(f"/api/archive/windows/{row}/audio")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    audio, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert rate == fx.SR and len(audio) == round((record.end_s - record.start_s) * rate)
    original, _ = sf.read(source.path, dtype="float32")
    start = round(record.start_s * rate)
    assert np.abs(audio - original[start:start + len(audio)]).max() < 1e-3  # the window, from the recording
    padded, _ = sf.read(io.BytesIO(client.get(f"/api/archive/windows/{row}/audio",
                                              params={"context": 0.5}).content))
    assert len(audio) < len(padded) <= len(audio) + rate
    assert client.get(f"/api/archive/windows/{row}/audio", params={"context": 5}).status_code == 422

    png = client.get(f"/api/archive/windows/{row}/spectrogram")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size[1] == 160

    for what in ("audio", "spectrogram", "labels"):
        response = client.get(f"/api/archive/windows/999/{what}")
        assert response.status_code == 404 and "no window 999" in response.json()["detail"], response.text
    assert client.get("/api/archive/windows/-1/audio").status_code == 422


def test_missing_recording_is_404_naming_it(client, world) -> None:
    [file] = [f for f in client.archive.files() if f.path.endswith("/undated.wav")]
    row, path = client.archive.windows(file.id)[0].row, file.path
    moved = path + ".moved"
    shutil.move(path, moved)
    try:
        for what in ("audio", "spectrogram"):
            response = client.get(f"/api/archive/windows/{row}/{what}")
            detail = response.json()["detail"]
            assert response.status_code == 404 and "the recording undated.wav of window" in detail, detail
            assert "missing on the server" in detail
            assert str(world["root"]) not in detail  # no server path
    finally:
        shutil.move(moved, path)


def test_labels_are_stored_with_provenance(client) -> None:
    row = search_text(client, top_k=1)["hits"][0]["row"]
    response = client.post("/api/archive/labels", json={"row": row, "label": "Pica hudsonia", "value": True})
    assert response.status_code == 200, response.text
    [window] = response.json()["windows"]
    assert window["row"] == row and [(s["label"], s["value"], s["who"]) for s in window["labels"]] == [
        ("Pica hudsonia", True, "web page")]
    stored = client.archive.labels()
    assert [(s.row, s.label, s.value, s.who, s.source) for s in stored] == [(row, "Pica hudsonia", True, "web page",
                                                                            "web page")]
    # A changed mind: the last click counts, and both are kept.
    response = client.post("/api/archive/labels", json={"row": row, "label": "Pica hudsonia", "value": False,
                                                        "who": "Ada"})
    assert [(s["value"], s["who"]) for s in response.json()["windows"][0]["labels"]] == [(False, "Ada")]
    response = client.post("/api/archive/labels", json={"row": row, "label": "Pica hudsonia", "value": True})
    assert response.json()["windows"][0]["labels"][0]["value"] is True
    assert len(client.archive.labels()) == 3 and client.archive.label_counts()["Pica hudsonia"].yes == 1
    hit = next(h for h in search_text(client, top_k=18)["hits"] if h["row"] == row)
    assert [(s["label"], s["value"]) for s in hit["labels"]] == [("Pica hudsonia", True)]
    assert client.get(f"/api/archive/windows/{row}/labels").json()["windows"][0]["labels"] == hit["labels"]

    # By a hit's file and span (exactly a window), or by the file's name.
    for label, (name, start, end) in (("wind", ("SITE01/20240501_233000.wav", 1.0, 2.0)),
                                      ("rain", ("SITE02_20240502_013000.wav", 2.0, 3.0))):
        response = client.post("/api/archive/labels", json={"file": name, "start_s": start, "end_s": end,
                                                            "label": label, "value": False})
        assert response.status_code == 200, response.text
        [window] = response.json()["windows"]
        record = client.archive.record(window["row"])
        assert (client.archive.file(record.file).path.endswith(name), record.start_s) == (True, start)
        assert (label, False, "web page") in [(s["label"], s["value"], s["who"]) for s in window["labels"]]
    assert client.get("/api/info").json()["archive"]["labels"] == 5


def test_label_bad_input(client) -> None:
    cases = [
        ({"row": 0, "value": True}, 422, "label: Field required"),
        ({"row": 0, "label": "   ", "value": True}, 422, "the label's name is empty"),
        ({"row": 0, "label": "x"}, 422, "value: Field required"),
        ({"label": "x", "value": True}, 422, "give the window's row, or its file, start_s and end_s"),
        ({"row": 999, "label": "x", "value": True}, 404, "no window 999"),
        ({"file": "nowhere.wav", "start_s": 0, "end_s": 1, "label": "x", "value": True}, 404,
         "recording nowhere.wav is not in archive"),
        ({"file": "undated.wav", "start_s": 0.5, "end_s": 1.5, "label": "x", "value": True}, 404,
         "no window starts and ends there"),
    ]
    for body, status, needle in cases:
        response = client.post("/api/archive/labels", json=body)
        assert response.status_code == status and needle in response.json()["detail"], (body, response.text)
        assert str(client.archive.folder) not in response.json()["detail"]
    assert client.archive.labels() == []


def test_concurrent_labels_are_all_stored(client) -> None:
    def click(row: int) -> int:
        return client.post("/api/archive/labels", json={"row": row, "label": "Pica hudsonia", "value": row % 2 == 0,
                                                        "who": f"person {row}"}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(click, range(18))) == [200] * 18
    stored = client.archive.labels()
    assert sorted((s.row, s.value, s.who) for s in stored) == [(r, r % 2 == 0, f"person {r}") for r in range(18)]


def test_search_by_picture_and_by_recording(client, world, tmp_path) -> None:
    picture = write_png(tmp_path / "magpie.png", SPECIES[0][4], seed=0)
    with open(picture, "rb") as fh:
        response = client.post("/api/archive/search/image", params={"top_k": 4},
                               files={"file": ("magpie.png", fh, "image/png")})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["query"] == {"kind": "image", "image": "magpie.png"}
    expected = client.archive.search(image=picture, top_k=4, teacher=world["engine"].teacher)
    assert [h["row"] for h in result["hits"]] == [h.row for h in expected.hits]

    recording = world["recordings"] / "SITE02_20240502_013000.wav"
    with open(recording, "rb") as fh:
        data = fh.read()
    response = client.post("/api/archive/search/recording", params={"top_k": 3, "start": 1, "end": 2},
                           files={"file": ("example.wav", data, "audio/wav")})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["query"] == {"kind": "like", "like": "example.wav", "start_s": 1.0, "end_s": 2.0, "windows": 1}
    # A steady tone: each window of its own recording is the query itself.
    assert [(h["file"], h["score"]) for h in result["hits"]] == [("SITE02_20240502_013000.wav",
                                                                 pytest.approx(1, abs=1e-3))] * 3

    bad = [({"start": 1}, 422, "start and end go together"), ({"start": 2, "end": 1}, 422, "must come after start")]
    for params, status, needle in bad:
        response = client.post("/api/archive/search/recording", params=params,
                               files={"file": ("example.wav", data, "audio/wav")})
        assert response.status_code == status and needle in response.json()["detail"], response.text
    response = client.post("/api/archive/search/recording", files={"file": ("notes.wav", b"not audio" * 50)})
    assert response.status_code == 422 and "notes.wav" in response.json()["detail"]
    response = client.post("/api/archive/search/image", files={"file": ("notes.png", b"not a picture" * 50)})
    assert response.status_code == 422 and "notes.png" in response.json()["detail"], response.text
    assert list(tmp_path.glob("birdbridge-uploads-*/*")) == []


def test_recording_search_is_bounded(world, tmp_path) -> None:
    archive = Archive.open(world["archive"])
    long = fx.write_tone(tmp_path / "long.wav", 800.0, 6.0)
    with TestClient(create_app(world["engine"], archive=archive, upload_dir=tmp_path, max_audio_s=5)) as client:
        response = client.post("/api/archive/search/recording", files={"file": ("long.wav", long.read_bytes())})
        assert response.status_code == 413 and "max_audio_s" in response.json()["detail"]
        response = client.post("/api/archive/search/recording", params={"start": 0, "end": 2},
                               files={"file": ("long.wav", long.read_bytes())})
        assert response.status_code == 200, response.text
        assert client.get("/api/archive/search/text", params={"q": "x", "top_k": 101}).status_code == 422


def test_without_an_archive(world, tmp_path) -> None:
    with TestClient(create_app(world["engine"], upload_dir=tmp_path)) as client:
        assert client.get("/api/info").json()["archive"] is None
        response = client.get("/api/archive/search/text", params={"q": "Pica hudsonia"})
        assert response.status_code == 404 and "--archive" in response.json()["detail"]
        spec = client.get("/openapi.json").json()
    paths = {p for p in spec["paths"] if p.startswith("/api/archive")}
    assert paths == {"/api/archive/search/text", "/api/archive/search/image", "/api/archive/search/recording",
                     "/api/archive/windows/{row}/audio", "/api/archive/windows/{row}/spectrogram",
                     "/api/archive/windows/{row}/labels", "/api/archive/labels"}
    assert "LabelRequest" in spec["components"]["schemas"] and "ArchiveSearchResponse" in spec["components"]["schemas"]


def test_an_archive_of_another_teacher_is_refused_at_startup(world, tmp_path, capsys) -> None:
    from cli_fixtures import run

    vectors = np.eye(4, 8, dtype=np.float32)
    other = fx.synthetic_archive(tmp_path / "other", vectors, [("a.wav", RecordingMeta())], per_file=4)
    with pytest.raises(BirdbridgeError, match=r"--archive .*other cannot be served with this gallery: the gallery "
                                              r"comes from teacher .* but archive .* holds window embeddings of "
                                              r"teacher 'synthetic'"):
        create_app(world["engine"], archive=other)
    result = run(capsys, "serve", "--model", world["student"], "--gallery", world["root"] / "gallery", "--archive",
                 tmp_path / "other", "--port", "0")
    assert result.returncode == 1 and "cannot be served with this gallery" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_recordings_added_by_another_process_are_searched_without_a_restart(client, world) -> None:
    """`archive build --add` from another process while the server runs: the next request sees the new recording."""
    from birdbridge.archive.store import NewRecording

    before = search_text(client, top_k=100)
    assert client.get("/api/info").json()["archive"]["files"] == 6 and len(before["hits"]) == 18
    writer = Archive.open(client.archive.folder)  # another process's handle on the same folder
    copy = writer.files()[0]
    vectors = np.array(writer.vectors[copy.first_row : copy.first_row + 2], np.float32)
    new = str(world["recordings"] / "later" / "new.wav")
    writer.add_recordings([NewRecording(new, 2.0, 16000, 1, 1, 1, RecordingMeta(), vectors,
                                        np.array([0.0, 1.0]), np.array([1.0, 2.0]))])
    after = search_text(client, top_k=100)
    assert len(after["hits"]) == 20 and sum(h["file"] == "later/new.wav" for h in after["hits"]) == 2
    assert client.get("/api/info").json()["archive"]["files"] == 7
