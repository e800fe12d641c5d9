"""What a kind of vector store is called, which files it has, and how it keeps its records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from birdbridge.store.records import RecordSchema

#: float16 ``[count, dim]`` unit rows, little-endian, row-major, append-only.
VECTORS_FILE = "vectors.f16"
#: The optional ANN index: usearch's HNSW graph (keys = rows), or a FAISS inverted file (birdbridge.store.ann).
ANN_FILE = "ann.usearch"
IVF_FILE = "ann.faiss"
ANN_FILES = (ANN_FILE, IVF_FILE)
#: Writers hold an exclusive ``flock`` on it.
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class StoreKind:
    """One kind of store (the image gallery, an audio archive): its names in messages and its files.

    ``noun`` and ``item`` name the store and one of its rows ("gallery", "image"). ``format`` and
    ``version`` are written into the JSON ``meta_file``; ``db_file`` holds the records described by
    ``schema``; ``files`` are other files of the user's in the folder (kept by create, not foreign).
    ``build_command`` builds or resumes a store, ``create_hint`` says how to make one,
    ``exists_hint`` what to do instead of creating one over another, ``ann_command`` builds the ANN.
    """

    noun: str
    item: str
    format: str
    version: int
    meta_file: str
    db_file: str
    schema: RecordSchema[Any]
    build_command: str
    create_hint: str
    exists_hint: str
    ann_command: str
    files: tuple[str, ...] = ()

    @property
    def a_noun(self) -> str:
        """The noun with its article: "a gallery", "an archive"."""
        return f"{'an' if self.noun[:1].lower() in 'aeiou' else 'a'} {self.noun}"

    @property
    def own_files(self) -> frozenset[str]:
        """Every file name the store may hold (temporary ``.*.tmp`` files aside)."""
        db = self.db_file
        return frozenset({self.meta_file, VECTORS_FILE, db, f"{db}-journal", *ANN_FILES, LOCK_FILE, *self.files})
