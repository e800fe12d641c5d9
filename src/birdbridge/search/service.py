"""The search service behind ``birdbridge serve``: JSON-ready results for the web page and its API."""

from __future__ import annotations

import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from birdbridge.errors import AudioError
from birdbridge.search.engine import SearchEngine
from birdbridge.search.results import ImageHit

if TYPE_CHECKING:
    from birdbridge.audio.windows import WindowLimits


class SearchService:
    """One loaded student + gallery, safe to call from several threads.

    Calls are not serialised here: the caller limits how many run at once (``birdbridge serve``'s
    ``--max-concurrency``). The teacher, loaded on the first text or picture query, is loaded once.
    """

    def __init__(self, engine: SearchEngine) -> None:
        self.engine = engine
        self._teacher_lock = threading.Lock()

    @classmethod
    def open(cls, model: str | os.PathLike[str], gallery: str | os.PathLike[str], *, device: str | None = None,
             teacher: str | None = None) -> SearchService:
        return cls(SearchEngine.open(gallery, model, teacher=teacher, device=device))

    def info(self) -> dict[str, Any]:
        student = self.engine.student
        gallery = self.engine.gallery
        return {
            "model": student.name if student else None,
            "teacher": {k: v for k, v in gallery.teacher.items() if k != "ref"},  # ref may be a server path
            "gallery": {"images": len(gallery), "species": len(gallery.species())},
            "window_s": student.window_s if student else None,
            "sample_rate": student.sample_rate if student else None,
        }

    def search_audio(self, path: Path, *, top_k: int = 5, n_images: int = 8, window_s: float | None = None,
                     hop_s: float | None = None, min_score: float = 0.0, name: str | None = None,
                     limits: WindowLimits | None = None, cancel: threading.Event | None = None) -> dict[str, Any]:
        """Per-window species and pictures of one recording; ``AudioError`` for a bad file.

        ``limits`` bound the work (``LimitExceeded``); setting ``cancel`` stops it (``Cancelled``).
        """
        results, failures = self.engine.search_audio(
            [path], window_s=window_s, hop_s=hop_s, top_k=top_k, n_images=n_images, min_score=min_score,
            progress=False, limits=limits, cancel=cancel,
        )
        if failures or not results:
            message = failures[0].message.split(": ", 1)[-1] if failures else "contains no audio windows"
            raise AudioError(name or str(path), message)
        data = results[0].to_dict()
        for window in data["windows"]:  # the server's file paths are not the client's business
            for image in window["images"]:
                image.pop("path", None)
        data["file"] = name or data["file"]
        return data

    def search_text(self, text: str, *, n_images: int = 12, top_k: int = 5) -> dict[str, Any]:
        self._load_teacher()
        species, images = self.engine.search_texts([text], n_images=n_images, top_k=top_k)[0]
        return {"query": text, "species": [asdict(h) for h in species], "images": [_image(i) for i in images]}

    def search_image(self, image, *, n_images: int = 12, top_k: int = 5) -> dict[str, Any]:
        self._load_teacher()
        species, images = self.engine.search_images([image], n_images=n_images, top_k=top_k)[0]
        return {"species": [asdict(h) for h in species], "images": [_image(i) for i in images]}

    def _load_teacher(self) -> None:
        with self._teacher_lock:  # two first queries at once load it once
            self.engine.teacher  # noqa: B018

    def image_file(self, image_id: str) -> Path | None:
        """The gallery's own file for ``image_id`` (None for unknown ids or pictures without a file)."""
        gallery = self.engine.gallery
        if not gallery.has_id(image_id):
            return None
        return gallery.image_file(image_id)


def _image(hit: ImageHit) -> dict[str, Any]:
    data = asdict(hit)
    data.pop("path", None)
    return data
