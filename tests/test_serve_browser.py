"""The web page end to end: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, against a
real uvicorn server over the real search engine with a tiny distilled student and a generated gallery.

Needs ``apt-get install -y chromium`` and ``pip install playwright`` (never ``playwright install``).
Screenshots go to the test's tmp folder (the path is printed), or to ``$BIRDBRIDGE_SCREENSHOT_DIR``.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from audio_fixtures import write_wav
from cli_fixtures import start
from detection_fixtures import calibrated_copy, noise, noise_background, window_vectors
from serve_fixtures import ServerThread, write_png
from train_fixtures import SPECIES, corpus, make_tone_dataset

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
FAKE_MICROPHONE = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
COLOURS = [(20, 20, 20), (200, 90, 40), (60, 60, 110), (120, 150, 190)]
GERMAN = {"Pica hudsonia": "Hudsonelster", "Turdus migratorius": "Wanderdrossel", "Corvus corax": "Kolkrabe"}


def launch(playwright, extra_args: tuple[str, ...] = ()):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's Chromium with `apt-get install -y chromium` "
                    "(the browser tests use it through Playwright; do not run `playwright install`)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A tiny distilled student (calibrated so that each call window's best species is detected) and a gallery of
    generated pictures whose background vocabulary's one class is what noise sounds like to that student."""
    from birdbridge.archive.build import build_archive
    from birdbridge.gallery import Gallery, build_background
    from birdbridge.gallery.build import build_gallery
    from birdbridge.models.calibration import Calibration
    from birdbridge.models.loader import load_teacher
    from birdbridge.models.standins import build_small_clap, build_small_clip
    from birdbridge.species.background import load_background_vocabulary
    from birdbridge.train.config import load_config
    from birdbridge.train.loop import train

    root = tmp_path_factory.mktemp("serve-browser")
    teacher = build_small_clip(root / "teacher")
    student = build_small_clap(root / "student", corpus=corpus())
    settings = {
        "data.dataset": make_tone_dataset(root / "data", per_species=6, test_per_species=2), "student": student,
        "teacher": teacher, "output": root / "distill", "run.batch_size": 8, "run.epochs": 8, "optim.lr": 3e-3,
        "optim.head_lr": 3e-3, "data.num_workers": 0, "run.progress": "false", "optim.warmup_steps": 1,
    }  # 16 steps, a few seconds: enough for windows of different calls to rank species differently
    model = train(load_config(None, [f"{k}={v}" for k, v in settings.items()])).model
    pictures = root / "pictures"
    for s, (sci, common, _freq) in enumerate(SPECIES):
        for i in range(3):  # BirdNET-style folder names give the species' common names too
            write_png(pictures / f"{sci}_{common}" / f"{i}.png", COLOURS[s], seed=i, size=(120, 90))
    gallery = root / "gallery"
    build_gallery([pictures], gallery, str(teacher))
    calls = calls_wav(root / "calls.wav")
    quiet = write_wav(root / "noise.wav", noise(3))
    top = (window_vectors(model, [calls]) @ Gallery.open(gallery).species_vectors.T).max(axis=1)
    calibrated = calibrated_copy(model, root / "calibrated", Calibration(10.0, -10.0 * float(top.min())))
    vocabulary = root / "vocabulary.txt"
    noise_background(gallery, teacher, model, [quiet], [calls], vocabulary)
    build_background(Gallery.open(gallery), load_teacher(str(teacher)), load_background_vocabulary(vocabulary))
    (gallery / "labels").mkdir()  # the gallery's own label files: the page's "Names in" menu offers German
    (gallery / "labels" / "BirdNET_GLOBAL_6K_V2.4_Labels_de.txt").write_text(
        "".join(f"{sci}_{name}\n" for sci, name in GERMAN.items()), encoding="utf-8")
    archive = root / "archive"  # the four calls, a window each, embedded by the served student
    build_archive([calls_wav(root / "archived" / "20240515_063000.wav")], archive, calibrated, progress=False)
    return {"model": calibrated, "gallery": gallery, "noise": quiet, "archive": archive}


@pytest.fixture(scope="module")
def server(world):
    """A real uvicorn server over the real ``SearchEngine``, with the archive."""
    from birdbridge.archive.store import Archive
    from birdbridge.search import SearchEngine
    from birdbridge.serve.app import create_app

    engine = SearchEngine.open(world["gallery"], str(world["model"]), device="cpu")
    with ServerThread(create_app(engine, archive=Archive.open(world["archive"]))) as srv:
        srv.engine = engine
        yield srv


def api_search(url: str, path: Path) -> dict:
    boundary = "----birdbridge-test"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n\r\n"
            ).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}/api/search/audio?spectrogram=false", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def api_text(url: str, q: str) -> dict:
    with urllib.request.urlopen(f"{url}/api/search/text?{urllib.parse.urlencode({'q': q})}", timeout=60) as r:
        return json.loads(r.read())


def calls_wav(path: Path) -> Path:
    """Four seconds: a different species' call frequency in each second."""
    sr = 16_000
    t = np.arange(sr) / sr
    x = np.concatenate([0.3 * np.sin(2 * np.pi * freq * t) for _, _, freq in SPECIES])
    return write_wav(path, x.astype(np.float32), sr)


def shown_species(page) -> list[tuple[str, float]]:
    """(scientific name, score shown in %) for each species listed for the selected window."""
    rows = page.eval_on_selector_all(
        "#species-list li.species",
        "items => items.map(li => [li.querySelector('.scientific').textContent,"
        " li.querySelector('.score').textContent])",
    )
    return [(name, float(score.rstrip("%"))) for name, score in rows]


def image_sources(page, grid: str) -> list[str]:
    return page.eval_on_selector_all(f"{grid} img", "imgs => imgs.map(i => new URL(i.src).pathname)")


def wait_images_loaded(page, grid: str) -> None:
    page.wait_for_function(
        "grid => { const imgs = [...document.querySelectorAll(grid + ' img')];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=grid, timeout=30_000,
    )


def test_page_end_to_end(server, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    wav = calls_wav(tmp_path / "four calls.wav")
    expected = api_search(server.url, wav)
    assert len(expected["windows"]) == 4
    problems: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.goto(server.url + "/")
        page.wait_for_function("() => document.getElementById('info').textContent.includes('gallery of')")

        # Upload through the file input; wait for the results.
        page.set_input_files("#file-input", str(wav))
        page.wait_for_selector("#results:not([hidden]) #windows button", timeout=120_000)
        assert page.text_content("#file-name") == "four calls.wav"
        assert page.locator("#windows button").count() == 4
        page.wait_for_function("() => document.getElementById('spectrogram').naturalWidth > 0")

        def check_window(index: int) -> None:
            window = expected["windows"][index]
            assert page.get_attribute(f"#windows button >> nth={index}", "aria-pressed") == "true"
            assert page.text_content("#window-title").startswith(f"Window {index + 1} of 4")
            shown = shown_species(page)
            assert [name for name, _ in shown] == [s["scientific_name"] for s in window["species"]]
            scores = [100 * s["score"] for s in window["species"]]
            assert all(abs(pct - score) <= 0.51 for (_, pct), score in zip(shown, scores, strict=True))
            wait_images_loaded(page, "#image-grid")
            assert image_sources(page, "#image-grid") == [im["url"] for im in window["images"]]
            names = page.eval_on_selector_all("#image-grid figcaption .common", "e => e.map(x => x.textContent)")
            assert names == [im["common_name"] or im["species"] for im in window["images"]]
            alts = page.eval_on_selector_all("#image-grid img", "imgs => imgs.map(i => i.alt)")
            assert all(alt.startswith("Picture of ") for alt in alts)

        check_window(0)
        first = (shown_species(page), image_sources(page, "#image-grid"))
        page.click("#windows button >> nth=2")
        check_window(2)
        assert (shown_species(page), image_sources(page, "#image-grid")) != first, "window 3 shows window 1's results"
        common = page.eval_on_selector_all("#species-list .common", "e => e.map(x => x.textContent)")
        assert common and set(common) <= {c for _, c, _ in SPECIES}

        # Text search.
        text = api_text(server.url, "Turdus migratorius")
        page.fill("#text-query", "Turdus migratorius")
        page.press("#text-query", "Enter")
        wait_images_loaded(page, "#text-grid")
        assert image_sources(page, "#text-grid") == [im["url"] for im in text["images"]]
        assert "Turdus migratorius" in page.text_content("#text-status")

        shots = Path(os.environ.get("BIRDBRIDGE_SCREENSHOT_DIR") or tmp_path)  # a folder to keep them, if set
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "serve.png"), full_page=True)
        narrow = browser.new_page(viewport={"width": 390, "height": 844})
        narrow.goto(server.url + "/")
        narrow.set_input_files("#file-input", str(wav))
        narrow.wait_for_selector("#results:not([hidden]) #windows button", timeout=120_000)
        wait_images_loaded(narrow, "#image-grid")
        assert narrow.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
        narrow.screenshot(path=str(shots / "serve-narrow.png"), full_page=True)
        print(f"\nscreenshots: {shots / 'serve.png'} and {shots / 'serve-narrow.png'}")

        assert problems == [], problems
        # A file that is not audio: a readable message on the page, and the page keeps working.
        notes = tmp_path / "notes.wav"
        notes.write_text("field notes, not a recording\n" * 10)
        page.set_input_files("#file-input", str(notes))
        page.wait_for_selector("#error:not([hidden])")
        message = page.text_content("#error")
        assert "notes.wav" in message and "not audio" in message and "HTTP 422" in message
        page.fill("#text-query", "")
        page.press("#text-query", "Enter")
        assert "Type a species name" in page.text_content("#text-error")

        # Drag and drop a recording onto the page.
        dropped = base64.b64encode(wav.read_bytes()).decode()
        page.evaluate(
            """b64 => {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const data = new DataTransfer();
                data.items.add(new File([bytes], "dropped call.wav", { type: "audio/wav" }));
                document.getElementById("dropzone").dispatchEvent(
                    new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
            }""",
            dropped,
        )
        page.wait_for_function("() => document.getElementById('file-name').textContent === 'dropped call.wav'")
        assert page.is_hidden("#error") and page.locator("#windows button").count() == 4
        browser.close()
    assert not [p for p in problems if "status of 422" not in p], problems  # the 422 is the expected one


def test_recording_in_the_browser(server) -> None:
    """Record from Chromium's fake microphone (a beep); the page encodes a 16-bit WAV and searches it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p, tuple(FAKE_MICROPHONE))
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")
        page.wait_for_function("() => document.getElementById('info').textContent.includes('gallery of')")
        page.click("#record-button")
        page.wait_for_selector("#record-button[aria-pressed='true']")
        page.wait_for_timeout(2500)
        page.click("#record-button")
        page.wait_for_selector("#results:not([hidden]) #windows button", timeout=120_000)
        name = page.text_content("#file-name")
        assert name.startswith("recording-") and name.endswith(".wav")
        assert page.locator("#windows button").count() >= 2  # about 2.5 s in 1 s windows
        assert page.is_hidden("#error") and errors == []
        if page.locator("#species-list li.species").count():  # a beep with a detection: its pictures
            wait_images_loaded(page, "#image-grid")
        else:  # a beep that sounds like no bird to the tiny model
            assert page.text_content("#species-list").startswith("No bird detected")
        browser.close()


def test_no_bird_detected_for_noise(server, world) -> None:
    """Noise: every window says "no bird detected — static" (its background class), with no species, no pictures."""
    from playwright.sync_api import sync_playwright

    expected = api_search(server.url, world["noise"])
    assert [(w["species"], w["images"], w["background"]) for w in expected["windows"]] == [([], [], "static")] * 3
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")
        page.wait_for_function("() => document.getElementById('info').textContent.includes('gallery of')")
        assert "calibrated confidences" in page.text_content("#info")
        page.set_input_files("#file-input", str(world["noise"]))
        page.wait_for_selector("#results:not([hidden]) #windows button", timeout=120_000)
        labels = page.eval_on_selector_all("#windows .w-top", "e => e.map(x => x.textContent)")
        assert labels == ["no bird detected — static"] * 3
        assert page.text_content("#species-list") == "No bird detected — static."
        assert page.locator("#species-list li.species").count() == 0 and page.locator("#image-grid img").count() == 0
        assert "no bird was detected" in page.text_content("#image-grid")
        assert "no bird detected in any window" in page.text_content("#summary")
        assert "a bird detected in 0" in page.text_content("#status")
        page.click("details.options summary")
        page.select_option("#opt-score", "softmax")  # plain retrieval names a species, with pictures, all the same
        page.click("#apply-options")
        page.wait_for_function("() => document.querySelectorAll('#species-list li.species').length > 0",
                               timeout=120_000)
        wait_images_loaded(page, "#image-grid")
        assert errors == []
        browser.close()


def test_missing_chromium_fails_loudly(monkeypatch) -> None:
    """Without the browser the tests must fail with an instruction, never skip silently."""
    monkeypatch.setattr(f"{__name__}.CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        launch(None)


def test_page_names_species_in_the_chosen_language(server, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    names = {sci: GERMAN.get(sci, common) for sci, common, _ in SPECIES}  # the nuthatch has no German name: English
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server.url + "/")
        page.wait_for_function("() => document.getElementById('info').textContent.includes('gallery of')")
        assert page.eval_on_selector_all("#opt-locale option", "e => e.map(x => x.value)") == ["", "de", "en"]
        page.click("details.options summary")
        page.select_option("#opt-locale", "de")
        page.set_input_files("#file-input", str(calls_wav(tmp_path / "calls.wav")))
        page.wait_for_selector("#results:not([hidden]) #windows button", timeout=120_000)
        shown = page.eval_on_selector_all("#species-list li.species", "e => e.map(x => [x.querySelector("
                                          "'.scientific').textContent, x.querySelector('.common').textContent])")
        assert shown and all(names[sci] == common for sci, common in shown)
        page.fill("#text-query", "Pica hudsonia")
        page.press("#text-query", "Enter")
        page.wait_for_selector("#text-grid figcaption .common")
        captions = page.eval_on_selector_all("#text-grid figcaption .common", "e => e.map(x => x.textContent)")
        assert captions and set(captions) <= set(names.values()) and set(captions) & set(GERMAN.values())
        browser.close()


def test_archive_tab(server, world) -> None:
    """Search the archive by name; a hit's audio and spectrogram load, its "yes" is stored in the archive."""
    from playwright.sync_api import sync_playwright

    from birdbridge.archive.store import Archive
    from birdbridge.serve.app import create_app

    query = urllib.parse.urlencode({"q": "Turdus migratorius", "top_k": 12})
    with urllib.request.urlopen(f"{server.url}/api/archive/search/text?{query}", timeout=60) as response:
        expected = json.loads(response.read())
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")
        page.wait_for_function("() => document.getElementById('archive-info').textContent.includes('4 windows')")
        page.click("#tab-button-archive")
        assert page.is_hidden("#tab-search") and page.is_hidden("#archive-none")
        page.fill("#archive-query", "Turdus migratorius")
        page.press("#archive-query", "Enter")
        page.wait_for_selector("#archive-hits .hit", timeout=60_000)
        rows = page.eval_on_selector_all("#archive-hits .hit", "hits => hits.map(h => Number(h.dataset.row))")
        assert rows == [hit["row"] for hit in expected["hits"]]
        card = page.locator("#archive-hits .hit").first
        audio = card.locator("audio").get_attribute("src")
        loaded = page.evaluate("async src => { const r = await fetch(src); return [r.status, "
                               "r.headers.get('content-type')]; }", audio)
        assert loaded == [200, "audio/wav"]
        assert page.evaluate("() => new Promise(done => { const a = document.querySelector('.hit audio');"
                             " a.onloadedmetadata = () => done(a.duration); a.preload = 'metadata'; a.load(); })"
                             ) == pytest.approx(1.0, abs=0.01)  # the player reads it: one 1 s window
        page.wait_for_function("() => { const i = document.querySelector('.hit .hit-spectro');"
                               " return i.complete && i.naturalWidth > 0; }")
        wait_images_loaded(page, "#archive-hits .hit:first-child .candidates")
        names = card.locator(".candidates .scientific").all_text_contents()
        assert names == [c["scientific_name"] for c in expected["hits"][0]["candidates"]]
        assert card.locator(".label-name").input_value() == "Turdus migratorius"
        assert card.locator(".label-state").text_content() == "not labelled"
        card.locator(".label-yes").click()
        page.wait_for_function("() => document.querySelector('.hit .label-state').textContent.includes('yes')")
        assert card.locator(".label-state").text_content() == "Turdus migratorius: yes (web page)"
        assert card.locator(".label-yes").get_attribute("aria-pressed") == "true"
        stored = Archive.open(world["archive"]).labels()
        assert [(s.row, s.label, s.value, s.who, s.source) for s in stored] == [
            (rows[0], "Turdus migratorius", True, "web page", "web page")]
        assert errors == []
        shots = Path(os.environ.get("BIRDBRIDGE_SCREENSHOT_DIR") or world["archive"].parent)
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "serve-archive.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
        page.screenshot(path=str(shots / "serve-archive-narrow.png"), full_page=True)
        print(f"\nscreenshots: {shots / 'serve-archive.png'} and {shots / 'serve-archive-narrow.png'}")

        with ServerThread(create_app(server.engine)) as bare:  # a server without an archive: a note, no controls
            page.goto(bare.url + "/")
            page.wait_for_function("() => document.getElementById('info').textContent.includes('gallery of')")
            page.click("#tab-button-archive")
            assert page.is_visible("#archive-none") and page.is_disabled("#archive-query")
        browser.close()


def test_place_and_week_fields(server, tmp_path) -> None:
    """The options' place, week and date reach the API (the page says what the range filter kept); a bad latitude
    shows the API's error."""
    from playwright.sync_api import sync_playwright

    wav = calls_wav(tmp_path / "calls.wav")
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server.url + "/")
        page.wait_for_function("() => document.getElementById('info').textContent.includes('gallery of')")
        assert page.is_hidden("#range-note")
        page.click("details.options summary")
        page.fill("#opt-lat", "42.48")
        page.fill("#opt-lon", "-76.45")
        page.fill("#opt-week", "20")
        page.set_input_files("#file-input", str(wav))
        page.wait_for_selector("#range-note:not([hidden])", timeout=120_000)
        note = page.text_content("#range-note")
        assert note.startswith("Range filter at 42.48, -76.45 in week 20 (sf_thresh 0.03): ")
        assert "of the 132 species BirdNET expects there are in the gallery" in note
        page.fill("#opt-week", "")
        page.fill("#opt-date", "2024-01-05")
        page.click("#apply-options")
        page.wait_for_function("() => document.getElementById('range-note').textContent.includes('in week 1 ')")
        page.fill("#opt-lat", "100")
        page.click("#apply-options")
        page.wait_for_selector("#error:not([hidden])")
        message = page.text_content("#error")
        assert "--lat: latitude 100.0 is out of range [-90, 90]" in message and "HTTP 422" in message
        browser.close()


@pytest.mark.slow  # real processes: over 15 s on a loaded 2-core machine
def test_cli_serve(world, tmp_path) -> None:
    """`birdbridge serve` (with an archive) prints its URL, answers the API and stops cleanly on SIGINT."""
    env = {**os.environ, "BIRDBRIDGE_NO_PROGRESS": "1"}
    process = start("serve", "--model", world["model"], "--gallery", world["gallery"], "--port", "0", "--max-upload-mb",
                    "2", "--device", "cpu", "--archive", world["archive"], stdout=subprocess.DEVNULL, env=env)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "serving on" in line:
                break
        url = next((w.rstrip("/") for line in lines for w in line.split() if w.startswith("http://")), None)
        assert url, "".join(lines)
        with urllib.request.urlopen(f"{url}/api/info", timeout=30) as response:
            info = json.loads(response.read())
        assert info["limits"]["max_upload_mb"] == 2 and info["gallery"]["images"] == 12
        assert info["archive"]["windows"] == 4
        with urllib.request.urlopen(f"{url}/", timeout=30) as response:
            assert b"birdbridge" in response.read()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) in (0, 130)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
