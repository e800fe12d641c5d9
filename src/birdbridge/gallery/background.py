"""The gallery's background vocabulary: what a window holds when no bird calls in it, beside the species index.

``background.npy`` holds one teacher text embedding per class of a
:class:`~birdbridge.species.background.BackgroundVocabulary` (wind, rain, running water, insects, frogs,
human speech, engine, silence by default), ``background.json`` the vocabulary, the teacher's fingerprint
and the sha256 of the ``.npy``, checked as the species index is. A search names no bird in a window whose
embedding is nearer to a background class than to every species (:mod:`birdbridge.search.scoring`).

``birdbridge index`` writes the default vocabulary; ``birdbridge gallery background`` replaces or removes
it. A gallery without one still opens and searches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from birdbridge.gallery.text_vectors import TextVectors
from birdbridge.species.background import BackgroundVocabulary, background_text_embeddings

if TYPE_CHECKING:
    from birdbridge.gallery.store import Gallery

BACKGROUND_NPY = "background.npy"
BACKGROUND_JSON = "background.json"
BACKGROUND_FORMAT = "birdbridge-background"


def background_command(folder: Path | str) -> str:
    """The command that (re)builds a gallery's background vocabulary."""
    return f"`birdbridge gallery background {folder}`"


class BackgroundIndex:
    """The background files of the gallery in ``folder``, read lazily and checked as the species index is."""

    def __init__(self, folder: Path, fingerprint: str, dim: int, damaged: Callable[[str], Exception]) -> None:
        self._files = TextVectors(folder, BACKGROUND_NPY, BACKGROUND_JSON, fingerprint, dim,
                                  what="the background vocabulary", rebuild=background_command(folder),
                                  damaged=damaged)
        self._damaged = damaged
        self._cache: tuple[BackgroundVocabulary, np.ndarray] | None = None

    def exists(self) -> bool:
        return self._files.exists()

    def forget(self) -> None:
        self._cache = None

    def load(self) -> tuple[BackgroundVocabulary, np.ndarray] | None:
        """The vocabulary and its float32 ``[B, D]`` embeddings, or None if the gallery has none."""
        if self._cache is None:
            header = self._files.read_header()
            if header is None:
                return None
            try:
                vocabulary = BackgroundVocabulary.from_dict(header["vocabulary"])
            except (KeyError, TypeError, ValueError) as exc:
                raise self._damaged(f"{BACKGROUND_JSON} is unreadable ({exc})") from None
            self._cache = (vocabulary, self._files.read_vectors(len(vocabulary), header))
        return self._cache

    def write(self, vocabulary: BackgroundVocabulary, vectors: np.ndarray, info: dict[str, Any]) -> None:
        """Replace the files (the caller holds the gallery's writer lock)."""
        if len(vectors) != len(vocabulary):
            raise ValueError(f"{len(vectors)} background vectors for {len(vocabulary)} classes")
        self._files.write(vectors, {"format": BACKGROUND_FORMAT, "version": 1, **info,
                                    "vocabulary": vocabulary.as_dict()})
        self.forget()

    def remove(self) -> None:
        self._files.remove()
        self.forget()


def build_background(gallery: Gallery, teacher: Any, vocabulary: BackgroundVocabulary | None = None) -> None:
    """Embed ``vocabulary`` (default: :data:`~birdbridge.species.background.DEFAULT_BACKGROUND`) with the gallery's
    teacher and store it as the gallery's background vocabulary."""
    gallery.check_teacher(teacher, "the background text embeddings")
    vocabulary = vocabulary or BackgroundVocabulary()
    gallery.set_background(vocabulary, background_text_embeddings(teacher, vocabulary))
