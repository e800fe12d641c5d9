"""The web API (`birdbridge serve`): endpoints, schema, limits, bad uploads, path traversal, concurrency.

In-process tests use FastAPI's TestClient over a fake search engine (tests/serve_fixtures.py); the
limit, traversal and concurrency tests also run against a real uvicorn server on a free loopback port.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import select
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from PIL import Image

from audio_fixtures import write_wav
from birdbridge.serve.app import create_app, image_url, receive_upload
from birdbridge.serve.spectrogram import render_spectrogram, spectrogram_png
from cli_fixtures import run
from serve_fixtures import SPECIES, FakeSearchEngine, ServerThread, write_png

SECRET = b"top secret, outside the gallery"


@pytest.fixture()
def world(tmp_path):
    """A fake engine whose gallery lies in tmp/gallery, a secret picture beside it, and an uploads folder."""
    service = FakeSearchEngine(tmp_path / "gallery")
    write_png(tmp_path / "secret.png", (255, 0, 0), 0)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    return {"root": tmp_path, "service": service, "uploads": uploads,
            "wav": write_wav(tmp_path / "dawn chorus.wav", 3.5)}


def client_for(world, **kwargs) -> TestClient:
    return TestClient(create_app(world["service"], upload_dir=world["uploads"], **kwargs))


def upload(client: TestClient, path: Path, name: str | None = None, **params):
    with open(path, "rb") as fh:
        return client.post("/api/search/audio", params=params,
                           files={"file": (name or path.name, fh, "application/octet-stream")})


def assert_no_temp_files(world) -> None:
    assert list(world["uploads"].iterdir()) == []


def multipart(data: bytes, filename: str = "call.wav", field: str = "file") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def http_request(url: str, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None) -> tuple[int, bytes]:
    """One request with the path sent exactly as given (no client-side normalisation)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------
# Endpoints


def test_info_and_page(world) -> None:
    with client_for(world, max_upload_mb=7, max_concurrency=2) as client:
        info = client.get("/api/info").json()
        assert info["model"] == "fake-student" and info["calibrated"] is True
        assert info["gallery"] == {"images": 8, "species": 4, "background": ["silence"]}
        assert info["window_s"] == 1.0 and info["sample_rate"] == 16_000
        assert info["limits"] == {"max_upload_mb": 7, "max_concurrency": 2, "max_queue": 64, "max_audio_s": 600,
                                  "max_windows": 240, "min_hop_s": 0.5, "body_timeout_s": 30}
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("/static/app.js", "/static/style.css"):
            assert client.get(asset).status_code == 200
        for ref in ('src="/static/app.js"', 'href="/static/style.css"', 'id="file-input"', 'id="text-query"'):
            assert ref in page.text
        assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere


def test_openapi_documents_the_api(world) -> None:
    with client_for(world) as client:
        schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {p for p in paths if not p.startswith("/api/archive/")} == {  # the archive's: tests/test_serve_archive.py
        "/api/info", "/api/search/audio", "/api/search/text", "/api/images/{image_id}", "/api/spectrogram"}
    audio = paths["/api/search/audio"]["post"]
    assert audio["tags"] == ["search"] and audio["summary"]
    assert audio["requestBody"]["content"]["multipart/form-data"]["schema"]["required"] == ["file"]
    assert {p["name"] for p in audio["parameters"]} == {"top_k", "n_images", "window", "hop", "score", "min_conf",
                                                         "sensitivity", "min_sim", "min_score", "spectrogram", "lat",
                                                         "lon", "week", "date", "sf_thresh", "rank",
                                                         "locale"}
    assert {"413", "422", "415"} <= set(audio["responses"])
    ok = audio["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.endswith("/AudioSearchResponse")
    components = schema["components"]["schemas"]
    for name in ("AudioSearchResponse", "Window", "SpeciesScore", "ImageHit", "TextSearchResponse", "InfoResponse",
                 "ErrorResponse", "SpectrogramInfo"):
        assert name in components, name
    assert {"score", "scientific_name", "common_name"} <= set(components["SpeciesScore"]["properties"])
    assert paths["/api/images/{image_id}"]["get"]["tags"] == ["gallery"]
    assert "image/png" in paths["/api/spectrogram"]["post"]["responses"]["200"]["content"]
    assert {t["name"] for t in schema["tags"]} == {"search", "gallery", "service", "archive"}


def test_search_audio(world) -> None:
    with client_for(world) as client:
        response = upload(client, world["wav"])
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["file"] == "dawn chorus.wav"  # the upload's name, not the server's temporary path
        assert result["duration_s"] == pytest.approx(3.5)
        windows = result["windows"]
        assert [(w["start_s"], w["end_s"]) for w in windows] == [(0, 1), (1, 2), (2, 3), (2.5, 3.5)]
        assert [w["species"][0]["scientific_name"] for w in windows] == [s[1] for s in SPECIES]
        assert result["ranked_by"] == "confidence" and result["threshold"] == 0.25
        # confidences 0.73, 0.5, 0.27 reach 0.25; the fourth species (0.12) does not
        assert len(windows[0]["species"]) == 3 and len(windows[0]["images"]) == 8
        assert result["summary"]["species"][0]["score"] == pytest.approx(0.731, abs=1e-3)
        assert result["summary"]["species"][0]["confidence"] == result["summary"]["species"][0]["score"]
        image = windows[1]["images"][0]
        assert image["species"] == "Turdus migratorius" and image["url"] == image_url(image["id"])
        assert "path" not in image and str(world["root"]) not in response.text  # no server paths leak
        picture = client.get(image["url"])
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert picture.content == (world["root"] / "gallery" / image["id"]).read_bytes()

        spectro = result["spectrogram"]
        prefix = "data:image/png;base64,"
        assert spectro["png"].startswith(prefix) and spectro["seconds"] == pytest.approx(3.5)
        picture = Image.open(io.BytesIO(base64.b64decode(spectro["png"][len(prefix):])))
        assert picture.size == (spectro["width"], spectro["height"])

        options = upload(client, world["wav"], top_k=2, n_images=3, window=2, hop=1, min_conf=0.4,
                         spectrogram="false").json()
        assert [(w["start_s"], w["end_s"]) for w in options["windows"]] == [(0, 2), (1, 3), (1.5, 3.5)]
        assert all(len(w["species"]) == 2 and len(w["images"]) == 3 for w in options["windows"])
        assert all(s["score"] >= 0.4 for w in options["windows"] for s in w["species"])
        assert options["spectrogram"] is None
        # softmax mode (plain retrieval), as the default was before confidences: every species above min_score
        soft = upload(client, world["wav"], score="softmax", spectrogram="false").json()
        assert soft["ranked_by"] == "softmax" and len(soft["windows"][0]["species"]) == 4
        assert sum(s["score"] for s in soft["windows"][0]["species"]) == pytest.approx(1.0)
        soft = upload(client, world["wav"], score="softmax", top_k=2, min_score=0.2, spectrogram="false").json()
        assert all(len(w["species"]) == 2 for w in soft["windows"])
        assert all(s["score"] >= 0.2 for w in soft["windows"] for s in w["species"])

        bad = upload(client, world["wav"], top_k=0)
        assert bad.status_code == 422 and "top_k" in bad.json()["detail"]
        refused = upload(client, world["wav"], window=6)  # a BirdbridgeError from the service: the request's fault
        assert refused.status_code == 422 and "longer than the model's" in refused.json()["detail"]
    assert_no_temp_files(world)


def test_detections_confidences_and_no_bird(world, tmp_path) -> None:
    """The audio search takes score, sensitivity and min_conf; a window without a detection has no species and no
    pictures and names its background class, except in softmax mode."""
    sr = 16_000
    t = np.arange(sr) / sr
    call = 0.3 * np.sin(2 * np.pi * 2000 * t)
    wav = tmp_path / "call then silence.wav"
    write_wav(wav, np.concatenate([call, np.zeros(sr), call]).astype(np.float32), sr)
    with client_for(world) as client:
        result = upload(client, wav, spectrogram="false").json()
        quiet = result["windows"][1]
        assert (quiet["species"], quiet["images"], quiet["background"]) == ([], [], "silence")
        assert all(w["species"] and w["images"] and w["background"] is None for i, w in enumerate(result["windows"])
                   if i != 1)
        assert result["summary"]["detected"] == 2 and result["summary"]["background"] == {"silence": 1}
        soft = upload(client, wav, score="softmax", spectrogram="false").json()
        assert all(w["species"] and w["images"] for w in soft["windows"])

        def detections(**params) -> int:
            found = upload(client, wav, spectrogram="false", **params).json()
            return sum(len(w["species"]) for w in found["windows"])

        assert detections(min_conf=0.6) < detections(min_conf=0.4) < detections(min_conf=0.2)
        assert detections(sensitivity=0.8) < detections() < detections(sensitivity=1.2)
        for bad in ({"score": "best"}, {"sensitivity": 1.6}, {"min_conf": 1.5}):
            response = upload(client, wav, **bad)
            assert response.status_code == 422 and next(iter(bad)) in response.json()["detail"]


def test_search_text(world) -> None:
    with client_for(world) as client:
        result = client.get("/api/search/text", params={"q": "Common Raven", "n_images": 3}).json()
        assert result["query"] == "Common Raven" and len(result["images"]) == 3
        assert all("path" not in image for image in result["images"])
        assert result["images"][0]["species"] == "Corvus corax"
        assert client.get(result["images"][0]["url"]).status_code == 200
        for params in ({"q": ""}, {"q": "   "}, {}):
            response = client.get("/api/search/text", params=params)
            assert response.status_code == 422
            assert isinstance(response.json()["detail"], str) and "q" in response.json()["detail"]


def test_image_endpoint(world) -> None:
    with client_for(world) as client:
        assert client.get(image_url("Pica hudsonia/1.png")).status_code == 200
        for unknown in ("nope.png", "Pica hudsonia/7.png", "Pica hudsonia"):
            response = client.get(image_url(unknown))
            assert response.status_code == 404 and response.json() == {"detail": "no gallery picture has this id"}


def test_spectrogram_endpoint_and_picture(world, tmp_path) -> None:
    with client_for(world) as client:
        with open(world["wav"], "rb") as fh:
            response = client.post("/api/spectrogram", files={"file": ("a.wav", fh)})
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).format == "PNG"
    # Width grows with the duration, up to a cap; the height is as asked.
    short, long = write_wav(tmp_path / "s.wav", 4.0), write_wav(tmp_path / "l.wav", 8.0)
    assert render_spectrogram(long).width == 2 * render_spectrogram(short).width
    assert render_spectrogram(long, max_width=300).width == 300
    assert Image.open(io.BytesIO(spectrogram_png(short, height=90))).size[1] == 90
    long_file = write_wav(tmp_path / "long.wav", 30.0)
    clipped = render_spectrogram(long_file, max_seconds=10)
    assert clipped.seconds == pytest.approx(10.0)
    # A pure 4 kHz tone at 16 kHz is brightest half-way up (the top edge is 8 kHz).
    sr, t = 16_000, np.arange(32_000) / 16_000
    write_wav(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 4000 * t)).astype(np.float32), sr)
    s = render_spectrogram(tmp_path / "tone.wav", height=100)
    assert s.max_hz == 8000
    rows = np.asarray(Image.open(io.BytesIO(s.png)).convert("L"), dtype=float).mean(axis=1)
    assert abs(int(rows.argmax()) - 50) <= 2


# ---------------------------------------------------------------------------------------------------
# Limits and bad uploads


def test_upload_limit(world, tmp_path) -> None:
    big = write_wav(tmp_path / "big.wav", 4.0)  # 128 KB of 16-bit samples
    with client_for(world, max_upload_mb=0.05) as client:  # 52 KB
        response = upload(client, big)
        assert response.status_code == 413
        assert response.json()["detail"] == "the upload is larger than this server's limit of 0.05 MB"
        assert upload(client, write_wav(tmp_path / "small.wav", 0.5)).status_code == 200
        with open(big, "rb") as fh:
            assert client.post("/api/spectrogram", files={"file": ("big.wav", fh)}).status_code == 413
    assert_no_temp_files(world)


def test_upload_stream_stops_at_the_limit(tmp_path) -> None:
    """The body is read only until the file passes the limit: a 2 GB upload is never read in full."""
    consumed = 0

    async def body():
        nonlocal consumed
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.wav\"\r\n\r\n"
        for _ in range(32_768):  # 2 GiB in 64 KiB chunks, if it were all read
            consumed += 1
            yield bytes(65_536)

    headers = {"content-type": "multipart/form-data; boundary=b"}  # no Content-Length: chunked upload
    with pytest.raises(HTTPException) as caught:
        asyncio.run(receive_upload(headers, body(), limit=2**20, folder=str(tmp_path)))
    assert caught.value.status_code == 413 and consumed == 17
    assert list(tmp_path.iterdir()) == []


def test_upload_limit_on_a_real_server(world) -> None:
    limit_mb = 1
    with ServerThread(create_app(world["service"], max_upload_mb=limit_mb, upload_dir=world["uploads"])) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        # A declared 2 GB body is refused before any of it is sent.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /api/search/audio HTTP/1.1\r\nHost: x\r\nContent-Length: 2147483648\r\n"
                         b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
            reply = sock.recv(65_536)
        assert reply.startswith(b"HTTP/1.1 413")
        # A chunked body of unknown length is cut off soon after it passes the limit.
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /api/search/audio HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
            part = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.wav\"\r\n\r\n"
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            chunk = b"%x\r\n%s\r\n" % (65_536, bytes(65_536))
            reply = b""
            while sent < 200 * 2**20:
                if select.select([sock], [], [], 0)[0]:
                    reply = sock.recv(65_536)
                    break
                try:
                    sock.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += 65_536
            if not reply:
                reply = sock.recv(65_536)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert sent < 32 * 2**20, sent  # the limit, plus what the loopback socket buffers hold
        # The server is still there.
        body, kind = multipart(world["wav"].read_bytes())
        assert http_request(srv.url, "POST", "/api/search/audio", body, {"Content-Type": kind})[0] == 200
    assert_no_temp_files(world)


def corrupt_files(folder: Path) -> dict[str, bytes]:
    good = io.BytesIO()
    write_wav(good, np.zeros(16_000, dtype=np.float32), format="WAV", subtype="PCM_16")
    wav = good.getvalue()
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    flac = io.BytesIO()
    write_wav(flac, np.random.default_rng(0).standard_normal(16_000).astype(np.float32) * 0.1, format="FLAC")
    return {
        "notes.wav": b"these are my field notes, not a recording\n" * 20,
        "picture.wav": png.getvalue(),
        "header-only.wav": wav[:44],
        "garbled.wav": wav[:12] + bytes(range(256)) * 4,
        "broken.flac": flac.getvalue()[:200] + bytes(4000),
        "empty.wav": b"",
        "random.mp3": np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    }


def test_bad_uploads_get_readable_errors(world, tmp_path) -> None:
    with client_for(world) as client:
        for name, data in corrupt_files(tmp_path).items():
            response = client.post("/api/search/audio", files={"file": (name, data, "audio/wav")})
            assert response.status_code == 422, (name, response.text)
            detail = response.json()["detail"]
            assert isinstance(detail, str) and detail.startswith(f"{name}: "), detail
            assert "birdbridge-upload" not in detail and str(world["uploads"]) not in detail
            assert upload(client, world["wav"]).status_code == 200  # the next request still works
        wrong_field = client.post("/api/search/audio", files={"audio": ("a.wav", world["wav"].read_bytes())})
        assert wrong_field.status_code == 422 and "'file'" in wrong_field.json()["detail"]
        not_multipart = client.post("/api/search/audio", json={"file": "a.wav"})
        assert not_multipart.status_code == 415 and "multipart/form-data" in not_multipart.json()["detail"]
        truncated, kind = multipart(world["wav"].read_bytes())
        response = client.post("/api/search/audio", content=truncated[:-30], headers={"Content-Type": kind})
        assert response.status_code == 400 and "complete" in response.json()["detail"]
    assert_no_temp_files(world)


# ---------------------------------------------------------------------------------------------------
# Only gallery pictures


TRAVERSALS = [
    "../secret.png", "..%2Fsecret.png", "%2e%2e%2fsecret.png", "%2E%2E/secret.png", "%252e%252e%252fsecret.png",
    "Pica%20hudsonia/../../secret.png", "Pica%20hudsonia%2F..%2F..%2Fsecret.png", "..%5Csecret.png",
    "....//secret.png", "../secret.txt", "..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd",
    "/etc/passwd", "..%00/secret.png", "%00", "~%2Fsecret.png", ".%2F..%2Fsecret.png",
]


def test_path_traversal_is_refused(world) -> None:
    secret_png = (world["root"] / "secret.png").read_bytes()
    absolute = str(world["root"] / "secret.png")
    attempts = [*TRAVERSALS, absolute, absolute.replace("/", "%2F"), "%2F" + absolute.lstrip("/").replace("/", "%2F")]
    with ServerThread(create_app(world["service"], upload_dir=world["uploads"])) as srv:
        assert http_request(srv.url, "GET", image_url("Pica hudsonia/0.png"))[0] == 200
        for attempt in attempts:
            status, body = http_request(srv.url, "GET", "/api/images/" + attempt)
            assert status in (400, 404), (attempt, status)
            assert body != secret_png and SECRET not in body and b"root:" not in body, attempt
    # The fake service itself would hand these out: the refusals above are the server's own.
    assert world["service"].image_file("../secret.png") is not None


# ---------------------------------------------------------------------------------------------------
# Concurrency


def test_twenty_concurrent_requests(world) -> None:
    world["service"].delay_s = 0.05
    app = create_app(world["service"], upload_dir=world["uploads"], max_concurrency=1)
    body, kind = multipart(world["wav"].read_bytes())

    def one(i: int) -> tuple[int, dict]:
        if i % 4 == 3:
            status, data = http_request(srv.url, "GET", "/api/search/text?q=Corvus%20corax")
        else:
            status, data = http_request(srv.url, "POST", "/api/search/audio", body, {"Content-Type": kind})
        return status, json.loads(data)

    with ServerThread(app) as srv, ThreadPoolExecutor(20) as pool:
        started = threading.Event()
        results = []

        def run_all():
            started.set()
            results.extend(pool.map(one, range(20)))

        runner = threading.Thread(target=run_all)
        runner.start()
        started.wait()
        time.sleep(0.3)  # the searches are queued behind one another now
        t0 = time.monotonic()
        status, raw_info = http_request(srv.url, "GET", "/api/info")
        info_seconds = time.monotonic() - t0
        started_searches = world["service"].calls
        runner.join(timeout=120)
    assert [status for status, _ in results] == [200] * 20, results
    assert all(len(r["windows"]) == 4 for i, (_, r) in enumerate(results) if i % 4 != 3)
    assert status == 200 and json.loads(raw_info)["limits"]["max_concurrency"] == 1
    # The event loop answered while the searches were still running.
    assert 0 < started_searches < 20 and info_seconds < 0.5, (started_searches, info_seconds)
    assert world["service"].max_active == 1 and world["service"].calls == 20  # model calls queued, one at a time
    assert_no_temp_files(world)


def test_busy_server_says_so(world) -> None:
    world["service"].delay_s = 0.5
    app = create_app(world["service"], upload_dir=world["uploads"], max_concurrency=1, max_queue=0)
    with ServerThread(app) as srv, ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: http_request(srv.url, "GET", "/api/search/text?q=robin"), range(3)))
    statuses = sorted(status for status, _ in results)
    assert statuses[0] == 200 and statuses[-1] == 503
    assert "busy" in json.loads(next(body for status, body in results if status == 503))["detail"]


# ---------------------------------------------------------------------------------------------------
# CLI


def test_cli_serve_is_registered(capsys) -> None:
    result = run(capsys, "serve", "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--model", "--gallery", "--host", "--port", "--max-upload-mb", "--device"):
        assert option in result.stdout


def test_cli_serve_missing_gallery(tmp_path, capsys) -> None:
    result = run(capsys, "serve", "--model", tmp_path, "--gallery", tmp_path / "no-gallery")
    assert result.returncode == 1
    err = result.stderr
    assert "no-gallery" in err and "gallery not found" in err and "Traceback" not in err


def test_results_are_the_engines_json_view_with_urls(world) -> None:
    """The server adds each picture's url (and the upload's name) to the one JSON view of a result, and keeps the
    teacher's reference (a server path) to itself."""
    with client_for(world) as client:
        served = upload(client, world["wav"], spectrogram="false").json()
        info = client.get("/api/info").json()
    [result], failures = world["service"].search_audio([world["wav"]], top_k=5, n_images=8)
    expected = {**result.to_dict(paths=False), "file": "dawn chorus.wav", "spectrogram": None, "range_filter": None}
    for window in expected["windows"]:
        for image in window["images"]:
            image["url"] = image_url(image["id"])
    assert failures == [] and served == expected
    assert info["teacher"] == {"name": "fake-teacher", "embed_dim": 8}
