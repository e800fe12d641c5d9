"""A fake search engine for the web API tests: deterministic results over a few real PNG pictures.

It decodes uploads with birdbridge's own audio reader, so unreadable files fail (are reported as failures)
as they do in the real engine. Its windows' similarities are fixed (window i is nearest to species i % 4, then
the next ones) and scored by the real :func:`~birdbridge.search.scoring.score_windows` under a fixed calibration;
a silent window is nearest to the background class "silence". Its ``image_file`` is deliberately naive (any
existing file under its folder), so that the path traversal tests prove the server's own checks rather than the
fake's.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from birdbridge.audio.io import audio_info, read_audio
from birdbridge.errors import AudioError, BirdbridgeError, Failure
from birdbridge.models.calibration import Calibration
from birdbridge.search.results import FileResult, ImageHit, SpeciesHit, WindowResult
from birdbridge.search.scoring import Scoring, score_windows

if TYPE_CHECKING:
    from birdbridge.audio.windows import WindowLimits

SPECIES = [
    ("pica_hudsonia", "Pica hudsonia", "Black-billed Magpie", "BBMA", (20, 20, 20)),
    ("turdus_migratorius", "Turdus migratorius", "American Robin", "AMRO", (200, 90, 40)),
    ("corvus_corax", "Corvus corax", "Common Raven", "CORA", (60, 60, 110)),
    ("sitta_carolinensis", "Sitta carolinensis", "White-breasted Nuthatch", "WBNU", (120, 150, 190)),
]
PER_SPECIES = 2
SIMILARITIES = [0.5, 0.4, 0.3, 0.2]  # of a window's species, nearest first
CALIBRATION = Calibration(slope=10.0, intercept=-4.0)  # confidences 0.73, 0.5, 0.27, 0.12


def write_png(path: Path, colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (96, 72)) -> Path:
    """A small picture: a coloured ellipse ('bird') on a sky-blue background."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (170 + seed * 10 % 60, 205, 235))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse((w * 0.2, h * 0.25, w * 0.75, h * 0.8), fill=colour)
    draw.ellipse((w * 0.62, h * 0.2, w * 0.85, h * 0.45), fill=colour)
    draw.polygon([(w * 0.84, h * 0.3), (w * 0.95, h * 0.34), (w * 0.84, h * 0.38)], fill=(230, 180, 40))
    image.save(path)
    return path


class FakeSearchEngine:
    """Implements what the app uses of ``SearchEngine``, with fixed, window-dependent rankings."""

    window_s = 1.0
    sample_rate = 16_000

    def __init__(self, root: Path, delay_s: float = 0.0) -> None:
        self.root = Path(root)
        self.delay_s = delay_s
        self.images: list[ImageHit] = []
        for s, (_key, sci, common, _code, colour) in enumerate(SPECIES):
            for i in range(PER_SPECIES):
                image_id = f"{sci}/{i}.png"
                write_png(self.root / image_id, colour, seed=s * PER_SPECIES + i)
                self.images.append(ImageHit(image_id, sci, common, 0.0, path=str(self.root / image_id),
                                            source="test", licence="CC0", photographer="A. Tester"))
        self._lock = threading.Lock()
        self.active = self.max_active = self.calls = 0

    # -- bookkeeping for the concurrency tests
    def _enter(self) -> None:
        with self._lock:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        if self.delay_s:
            time.sleep(self.delay_s)

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1

    def info(self) -> dict:
        return {"model": "fake-student", "calibrated": True,
                "teacher": {"name": "fake-teacher", "embed_dim": 8, "ref": "/server/path"},
                "gallery": {"images": len(self.images), "species": len(SPECIES), "background": ["silence"]},
                "window_s": self.window_s, "sample_rate": self.sample_rate}

    def _images(self, order: list[int], n_images: int) -> list[ImageHit]:
        ranked = sorted(self.images, key=lambda im: [SPECIES[s][1] for s in order].index(im.species))
        return [replace(im, score=round(0.9 - 0.05 * i, 3)) for i, im in enumerate(ranked[:n_images])]

    def search_audio(self, inputs, *, window_s: float | None = None, hop_s: float | None = None, top_k: int = 5,
                     n_images: int = 5, scoring: Scoring | None = None, species=None, progress=None,
                     limits: WindowLimits | None = None, cancel=None, locale=None
                     ) -> tuple[list[FileResult], list[Failure]]:
        self._enter()
        try:
            [path] = inputs
            try:
                duration = audio_info(path).duration_s
            except AudioError as exc:  # as the real engine: a bad recording is a failure, not an exception
                return [], [Failure(str(path), str(exc))]
            window = window_s or self.window_s
            if window > 5:  # the real service refuses windows longer than its model's input the same way
                raise BirdbridgeError(f"--window {window:g} s is longer than the model's 5 s input")
            hop = hop_s or window
            if limits is not None:  # the server's bounds, checked as the real service checks them
                from birdbridge.audio.windows import WindowSpec, count_windows

                spec = WindowSpec(window, hop)
                limits.check_hop(hop)
                limits.check_audio(str(path), duration)
                limits.check_windows(count_windows(duration, spec), spec)
            try:  # decode it all: corrupt data fails as in the real engine
                audio = read_audio(path, self.sample_rate)
            except AudioError as exc:
                return [], [Failure(str(path), str(exc))]
            count = max(1, math.ceil(max(duration - window, 0) / hop - 1e-9) + 1)
            n = len(SPECIES)
            starts = [min(i * hop, max(duration - window, 0.0)) for i in range(count)]
            orders = [[(i + j) % n for j in range(n)] for i in range(count)]  # window i's best species is i % n
            sims = np.zeros((count, n))
            for i, order in enumerate(orders):
                sims[i, order] = SIMILARITIES
            rate = self.sample_rate
            silent = [float(np.abs(audio[round(s * rate): round((s + window) * rate)]).max(initial=0)) < 1e-3
                      for s in starts]
            background = np.array([[0.9 if quiet else 0.0] for quiet in silent])
            scoring = scoring or Scoring()
            scored = score_windows(sims, scoring, CALIBRATION, top_k=top_k, background=background, scale=10.0)
            windows = []
            for i, start in enumerate(starts):
                species = [SpeciesHit(*SPECIES[h.column][:4], h.score, h.similarity, True, h.confidence)
                           for h in scored.hits[i]]
                shown = species or scored.ranked_by == "softmax"
                windows.append(WindowResult(
                    i, round(start, 3), round(min(start + window, duration), 3), species,
                    self._images(orders[i], n_images) if shown else [],
                    None if scored.background[i] is None else "silence"))
            return [FileResult(str(path), duration, windows, scored.ranked_by, scored.threshold)], []
        finally:
            self._leave()

    def search_texts(self, texts, *, n_images: int = 12, locale=None, rank="species"
                     ) -> list[tuple[list[SpeciesHit], list[ImageHit]]]:
        self._enter()
        try:
            [text] = texts
            words = text.lower()
            hits = [s for s, sp in enumerate(SPECIES) if sp[1].lower() in words or sp[2].lower() in words]
            order = hits + [s for s in range(len(SPECIES)) if s not in hits]
            return [([], self._images(order, n_images))]
        finally:
            self._leave()

    def image_file(self, image_id: str) -> Path | None:
        path = self.root / image_id  # naive on purpose: the server must refuse traversal itself
        return path if path.is_file() else None


class ServerThread:
    """A real uvicorn server for ``app`` on a free loopback port, in a background thread."""

    def __init__(self, app, host: str = "127.0.0.1") -> None:
        import socket

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(128)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
