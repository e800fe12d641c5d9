"""Every request's and job's work is bounded: window/hop floors, arithmetic window counts, per-request limits
checked from the header and while decoding, cancellation when the client goes, stalled bodies, shutdown.

Server tests run the real search engine (a tiny distilled student and a generated gallery) in process, on a
real uvicorn server, or as a `birdbridge serve` subprocess.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from audio_fixtures import write_wav
from birdbridge.audio.windows import WindowSpec, WindowSpecError, window_starts, windows_from_array
from birdbridge.errors import BirdbridgeError
from birdbridge.serve.app import create_app
from cli_fixtures import run, start
from serve_fixtures import FakeSearchEngine, ServerThread, write_png
from train_fixtures import SPECIES, corpus, make_tone_dataset

# Names new with the bounds are imported in the tests that use them, so that each test fails on its own
# account on code without them.
FLOOR = 0.01  # birdbridge.audio.windows.MIN_HOP_S, checked in test_impossible_window_and_hop_values_are_refused
IMPOSSIBLE = [0.0, -1.0, math.nan, math.inf, -math.inf, 1e-300, 1e300, 1e-9, FLOOR / 2]


# ---------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A tiny distilled student (16 kHz, 1 s windows) and a gallery of four species, built with the real code."""
    from birdbridge.gallery.build import build_gallery
    from birdbridge.models.standins import build_small_clap, build_small_clip
    from birdbridge.train.config import load_config
    from birdbridge.train.loop import train

    root = tmp_path_factory.mktemp("bounds")
    teacher = build_small_clip(root / "teacher")
    student = build_small_clap(root / "student", corpus=corpus())
    settings = {"data.dataset": make_tone_dataset(root / "data", per_species=3, test_per_species=1),
                "student": student, "teacher": teacher, "output": root / "distill", "run.batch_size": 4,
                "run.epochs": 1, "data.num_workers": 0, "run.progress": "false"}
    model = train(load_config(None, [f"{k}={v}" for k, v in settings.items()])).model
    for s, (sci, common, _freq) in enumerate(SPECIES):
        write_png(root / "pictures" / f"{sci}_{common}" / "0.png", (50 * s, 90, 40), seed=s)
    build_gallery([root / "pictures"], root / "gallery", str(teacher), progress=False)
    return {"root": root, "model": model, "gallery": root / "gallery"}


@pytest.fixture()
def engine(world):
    """The real search engine."""
    from birdbridge.search import SearchEngine

    return SearchEngine.open(world["gallery"], str(world["model"]), device="cpu")


def count_embedded(student, delay_s: float = 0.0) -> None:
    """Wrap ``student.embed``: ``student.embedded`` counts windows, ``student.max_active`` overlapping calls.

    Loaded students are cached: the wrapper always wraps the student's own method, never an earlier wrapper.
    """
    inner, lock = type(student).embed.__get__(student), threading.Lock()
    student.embedded = student.active = student.max_active = 0

    def embed(waves, *args, **kwargs):
        with lock:
            student.active += 1
            student.max_active = max(student.max_active, student.active)
        try:
            if delay_s:
                time.sleep(delay_s)
            out = inner(waves, *args, **kwargs)
            with lock:
                student.embedded += len(waves)
            return out
        finally:
            with lock:
                student.active -= 1

    student.embed = embed


def silence_flac(path: Path, seconds: float, sr: int = 16_000, declare_length: bool = True) -> Path:
    """Digital silence as FLAC (2 h is about 360 KB). Without ``declare_length`` the STREAMINFO length is 0:
    the header then gives no length at all."""
    block = np.zeros(sr * 60, dtype=np.float32)
    with sf.SoundFile(path, "w", sr, 1, format="FLAC") as out:
        left = round(seconds * sr)
        while left > 0:
            out.write(block[: min(left, len(block))])
            left -= len(block)
    if not declare_length:
        data = bytearray(path.read_bytes())
        at = 8 + 10  # "fLaC", the metadata block header, then STREAMINFO's 10 bytes of block and frame sizes
        bits = int.from_bytes(data[at : at + 8], "big") & ~((1 << 36) - 1)  # total samples: the low 36 bits
        data[at : at + 8] = bits.to_bytes(8, "big")
        path.write_bytes(bytes(data))
    return path


def multipart(path: Path) -> tuple[bytes, str]:
    boundary = "bounds-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes()
    return body + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def raw_post(port: int, target: str, body: bytes, kind: str, *, declared: int | None = None) -> socket.socket:
    """Open a connection and send a POST's headers and ``body`` (``declared`` may promise more)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {declared if declared is not None else len(body)}\r\n\r\n").encode()
    sock.sendall(head + body)
    return sock


def read_reply(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
        chunk = sock.recv(65_536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(body) if body.strip().startswith(b"{") else {}


def _length(data: bytes) -> int:
    found = re.search(rb"content-length: *(\d+)", data.split(b"\r\n\r\n")[0], re.IGNORECASE)
    return int(found.group(1)) if found else 0


def port_of(srv: ServerThread) -> int:
    return int(srv.url.rsplit(":", 1)[1])


def wait_for(condition, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


# ---------------------------------------------------------------------------------------------------
# Window and hop values (library and CLI)


@pytest.mark.parametrize("value", IMPOSSIBLE)
def test_impossible_window_and_hop_values_are_refused(value) -> None:
    with pytest.raises(WindowSpecError) as hop_error:
        WindowSpec(10.0, value)
    with pytest.raises(WindowSpecError) as window_error:
        WindowSpec(value)
    for caught, what, most in ((hop_error, "hop", "86400"), (window_error, "window", "600")):
        message = str(caught.value)
        assert isinstance(caught.value, BirdbridgeError) and what in message, message
        assert f"{FLOOR:g}" in message or f"most is {most} s" in message, message  # names the bound


def test_the_floor_is_documented() -> None:
    from birdbridge.audio.windows import MAX_HOP_S, MAX_WINDOW_S, MIN_HOP_S, check_window_args

    assert (MIN_HOP_S, MAX_WINDOW_S, MAX_HOP_S) == (FLOOR, 600.0, 86_400.0)
    WindowSpec(MIN_HOP_S, MIN_HOP_S)  # the bounds themselves are fine
    WindowSpec(MAX_WINDOW_S, MAX_HOP_S)
    check_window_args(None, None)
    with pytest.raises(WindowSpecError, match="too long"):
        check_window_args(MAX_WINDOW_S * 1.01, None)  # a window is held in memory whole


def test_window_counting_is_arithmetic() -> None:
    """count_windows agrees with the sample-by-sample windowing, and never lists every start."""
    from birdbridge.audio.windows import MIN_HOP_S, count_windows

    sr = 1000
    rng = np.random.default_rng(0)
    for _ in range(300):
        window = int(rng.integers(10, 3000)) / sr
        spec = WindowSpec(window, int(rng.integers(10, 4000)) / sr, int(rng.integers(0, 2000)) / sr)
        samples = int(rng.integers(1, 20_000))
        reference = windows_from_array(np.zeros(samples, np.float32), sr, spec)
        assert count_windows(samples / sr, spec) == len(reference), (samples, spec)
        starts = window_starts(samples / sr, spec)
        assert [round(s * sr) for s in starts] == [round(w.start_s * sr) for w in reference]
    # 100 days at the floor hop: 864 million windows, counted without a list of them.
    spec = WindowSpec(10.0, MIN_HOP_S)
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        n = count_windows(8_640_000.0, spec)
        starts = window_starts(8_640_000.0, spec)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == len(starts) == 863_999_001 and starts[-1] == pytest.approx(8_639_990.0)
    assert peak < 100_000 and seconds < 0.1, (peak, seconds)


def test_long_arrays_are_windowed_one_window_at_a_time() -> None:
    """An hour in memory at a 10 ms hop would be 360,000 windows of 64 KB: they are made one by one."""
    from birdbridge.audio.windows import MIN_HOP_S, iter_array_windows

    hour = np.zeros(16_000 * 3600, np.float32)
    tracemalloc.start()
    try:
        windows = iter_array_windows(hour, 16_000, WindowSpec(1.0, MIN_HOP_S))
        first = [next(windows) for _ in range(100)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [w.start_s for w in first[:3]] == pytest.approx([0.0, 0.01, 0.02])
    assert peak < 50 * 2**20, peak


@pytest.mark.parametrize("option", ["--hop", "--window"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e-300", "1e300", "1e-9"])
def test_cli_refuses_impossible_window_and_hop(world, tiny_clap, tmp_path, capsys, option, value) -> None:
    wav = write_wav(tmp_path / "call.wav", 2.5)
    commands = {
        "search": ["search", str(wav), "--model", str(world["model"]), "--gallery", str(world["gallery"])],
        "embed audio": ["embed", "audio", str(wav), "--model", str(tiny_clap), "-o", str(tmp_path / "e.npy")],
    }
    for name, args in commands.items():
        t0 = time.perf_counter()
        result = run(capsys, *args, f"{option}={value}")
        err = result.stderr
        assert result.returncode == 1, (name, err)
        assert "Traceback" not in err and ("hop" if option == "--hop" else "window") in err, (name, err)
        assert time.perf_counter() - t0 < 30, name
    assert not (tmp_path / "e.npy").exists()


def test_cli_serve_refuses_a_min_hop_below_the_floor(tmp_path, capsys) -> None:
    result = run(capsys, "serve", "--model", tmp_path, "--gallery", tmp_path, "--min-hop", "1e-300")
    err = result.stderr
    assert result.returncode == 1 and "too short" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------
# Limits in the core: from the header, and while decoding


def test_limits_from_the_header_and_while_decoding(tmp_path, tiny_clap) -> None:
    from birdbridge.audio.windows import LimitExceeded, WindowLimits, declared_length
    from birdbridge.embed.audio import embed_audio_windows
    from birdbridge.models.loader import load_student

    student = load_student(str(tiny_clap), "cpu")
    count_embedded(student)
    declared = silence_flac(tmp_path / "declared.flac", 7200)
    hidden = silence_flac(tmp_path / "hidden.flac", 7200, declare_length=False)
    assert declared.stat().st_size < 600_000 and declared_length(declared) == (16_000, 7200.0)
    assert declared_length(hidden) == (16_000, None)

    limits = WindowLimits(max_windows=100_000, max_audio_s=120)
    with pytest.raises(LimitExceeded) as from_header:
        embed_audio_windows([declared], student, limits=limits)
    assert from_header.value.bound == "max_audio_s" and from_header.value.needed == pytest.approx(7200)
    assert "7200.0 s" in str(from_header.value) and "max_audio_s" in str(from_header.value)
    assert student.embedded == 0  # refused before decoding

    t0 = time.perf_counter()
    with pytest.raises(LimitExceeded) as while_decoding:
        embed_audio_windows([hidden], student, limits=limits)
    assert while_decoding.value.bound == "max_audio_s" and "max_audio_s" in str(while_decoding.value)
    assert 120 < while_decoding.value.needed <= 120 + 60 + 1  # stopped within one 60 s block
    assert student.embedded <= 180 and time.perf_counter() - t0 < 30

    student.embedded = 0
    with pytest.raises(LimitExceeded) as windows:  # 600 s at a 0.05 s hop: 11,981 windows
        embed_audio_windows([silence_flac(tmp_path / "ten.flac", 600)], student, hop_s=0.05,
                            limits=WindowLimits(max_windows=500))
    assert windows.value.bound == "max_windows" and windows.value.needed == 11_981
    assert "11981 windows" in str(windows.value) and student.embedded == 0
    with pytest.raises(LimitExceeded) as array_windows:  # arrays have no header: counted as they come
        embed_audio_windows([np.zeros(16_000 * 600, np.float32)], student, sample_rate=16_000, hop_s=0.05,
                            limits=WindowLimits(max_windows=50))
    assert array_windows.value.bound == "max_windows" and student.embedded <= 50


def test_embedding_stops_when_cancelled(tmp_path, tiny_clap) -> None:
    from birdbridge.embed.audio import Cancelled, embed_audio_windows
    from birdbridge.models.loader import load_student

    student = load_student(str(tiny_clap), "cpu")
    count_embedded(student)
    cancel = threading.Event()
    inner = student.embed  # the counting wrapper

    def embed_then_cancel(waves, *args, **kwargs):
        out = inner(waves, *args, **kwargs)
        if student.embedded >= 32:
            cancel.set()
        return out

    student.embed = embed_then_cancel
    with pytest.raises(Cancelled):
        embed_audio_windows([silence_flac(tmp_path / "long.flac", 300)], student, batch_size=16, cancel=cancel)
    assert student.embedded == 32  # two batches of 16, then the check before the third


# ---------------------------------------------------------------------------------------------------
# Limits on the server


def test_server_limits_are_reported_and_enforced(world, engine, tmp_path) -> None:
    count_embedded(engine.student)
    app = create_app(engine, max_windows=150, max_audio_s=120, min_hop_s=0.5)
    with TestClient(app) as client:
        limits = client.get("/api/info").json()["limits"]
        assert {k: limits[k] for k in ("max_windows", "max_audio_s", "min_hop_s")} == \
            {"max_windows": 150, "max_audio_s": 120, "min_hop_s": 0.5}

        def search(path: Path, **params):
            with open(path, "rb") as fh:
                return client.post("/api/search/audio", params=params,
                                   files={"file": (path.name, fh, "application/octet-stream")})

        ok = search(write_wav(tmp_path / "ok.wav", 3.0), hop=0.5)
        assert ok.status_code == 200 and len(ok.json()["windows"]) == 5

        for value in ("0", "-1", "nan", "inf", "1e-300", "1e300", "0.1"):
            response = search(write_wav(tmp_path / "ok.wav", 3.0), hop=value)
            assert response.status_code == 422, (value, response.text)
            assert "hop" in response.json()["detail"]
        assert "min_hop_s" in search(tmp_path / "ok.wav", hop="0.1").json()["detail"]
        assert "min_hop_s" in search(tmp_path / "ok.wav", window="0.2").json()["detail"]  # the window is the hop

        too_many = search(silence_flac(tmp_path / "two minutes.flac", 120), hop=0.5)  # 239 windows
        assert too_many.status_code == 413
        assert "239 windows" in too_many.json()["detail"] and "max_windows" in too_many.json()["detail"]

        long = search(silence_flac(tmp_path / "two hours.flac", 7200))
        assert long.status_code == 413
        assert long.json()["detail"].startswith("two hours.flac: ") and "7200.0 s" in long.json()["detail"]
        assert "max_audio_s" in long.json()["detail"] and "birdbridge-uploads" not in long.json()["detail"]

        engine.student.embedded = 0
        t0 = time.perf_counter()
        hidden = search(silence_flac(tmp_path / "no length.flac", 7200, declare_length=False))
        assert hidden.status_code == 413 and "max_audio_s" in hidden.json()["detail"], hidden.text
        assert engine.student.embedded <= 180 and time.perf_counter() - t0 < 30


def test_min_hop_is_checked_before_the_upload_is_read(engine) -> None:
    with ServerThread(create_app(engine, min_hop_s=0.5)) as srv:
        sock = raw_post(port_of(srv), "/api/search/audio?hop=0.1", b"", "multipart/form-data; boundary=b",
                        declared=10 * 2**20)  # 10 MB promised, none sent
        with sock:
            status, body = read_reply(sock)
    assert status == 422 and "min_hop_s" in body["detail"]


def test_a_stalled_upload_times_out(tmp_path) -> None:
    app = create_app(FakeSearchEngine(tmp_path / "gallery"), body_timeout_s=1.0, upload_dir=tmp_path)
    body, kind = multipart(write_wav(tmp_path / "call.wav", 1.0))
    with ServerThread(app) as srv:
        t0 = time.monotonic()
        with raw_post(port_of(srv), "/api/search/audio", body[:1000], kind, declared=len(body)) as sock:
            status, reply = read_reply(sock)
        waited = time.monotonic() - t0
        assert status == 408 and "body_timeout_s" in reply["detail"]
        assert 0.9 < waited < 10, waited
        sock = raw_post(port_of(srv), "/api/search/audio", body, kind)  # the server is free again
        with sock:
            assert read_reply(sock)[0] == 200
    assert list(tmp_path.glob("birdbridge-uploads-*")) == []


def test_work_for_a_client_that_left_is_cancelled(engine, tmp_path) -> None:
    """A long search is dropped by its client: the embedding stops, and the next request is served at once."""
    count_embedded(engine.student, delay_s=0.1)
    student = engine.student
    long_body, kind = multipart(silence_flac(tmp_path / "two minutes.flac", 120))  # 239 windows at hop 0.5
    short_body, _ = multipart(write_wav(tmp_path / "short.wav", 2.0))
    with ServerThread(create_app(engine)) as srv:
        sock = raw_post(port_of(srv), "/api/search/audio?hop=0.5&spectrogram=false", long_body, kind)
        assert wait_for(lambda: student.embedded >= 32, 60), student.embedded
        sock.close()
        time.sleep(1.5)  # a poll, plus the batch under way
        stopped_at = student.embedded
        time.sleep(1.5)
        assert student.embedded == stopped_at < 150, (stopped_at, student.embedded)
        t0 = time.monotonic()
        with raw_post(port_of(srv), "/api/search/audio?spectrogram=false", short_body, kind) as sock:
            status, result = read_reply(sock)
        assert status == 200 and len(result["windows"]) == 2 and time.monotonic() - t0 < 10


def test_one_concurrency_limit(engine, tmp_path) -> None:
    """--max-concurrency is the only limit: two at once really run at once (the engine adds no lock)."""
    count_embedded(engine.student, delay_s=0.5)
    body, kind = multipart(write_wav(tmp_path / "call.wav", 2.0))

    def one(srv) -> int:
        with raw_post(port_of(srv), "/api/search/audio?spectrogram=false", body, kind) as sock:
            return read_reply(sock)[0]

    for limit in (2, 1):
        engine.student.max_active = 0
        with ServerThread(create_app(engine, max_concurrency=limit)) as srv, ThreadPoolExecutor(3) as pool:
            assert list(pool.map(lambda _: one(srv), range(3))) == [200] * 3
        assert engine.student.max_active == limit


# ---------------------------------------------------------------------------------------------------
# Shutdown


def start_serve(world, tmp: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    proc = start("serve", "--model", world["model"], "--gallery", world["gallery"], "--port", "0", "--device", "cpu",
                 *extra, stdout=None, env=env)
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            return proc, int(found.group(1))
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError("birdbridge serve did not start")


def uploads_in(tmp: Path) -> list[Path]:
    return [p for p in tmp.rglob("*") if "upload" in p.name]


def stop(proc: subprocess.Popen, timeout: float) -> float | None:
    """SIGTERM; seconds until the process ended (None: it had not ended after ``timeout`` and was killed)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    return time.monotonic() - t0


@pytest.mark.slow  # real processes: over 15 s on a loaded 2-core machine
def test_sigterm_removes_uploads(world, tmp_path) -> None:
    """SIGTERM during a half-sent upload, and during a long search: the server ends soon, leaving no upload."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    body, kind = multipart(silence_flac(tmp_path / "ten minutes.flac", 600))

    proc, port = start_serve(world, tmp)
    with raw_post(port, "/api/search/audio", body[: len(body) // 2], kind, declared=len(body)):
        time.sleep(1.0)
        ended = stop(proc, 20)
    assert ended is not None and uploads_in(tmp) == []

    proc, port = start_serve(world, tmp, "--max-windows", "100000", "--min-hop", "0.05")
    with raw_post(port, "/api/search/audio?hop=0.05", body, kind):  # 11,981 windows: minutes of work
        assert wait_for(lambda: any(p.is_file() for p in uploads_in(tmp)), 60), "the search never started"
        time.sleep(1.0)
        ended = stop(proc, 20)
        left = uploads_in(tmp)
    assert ended is not None and ended < 15, ended
    assert left == []
