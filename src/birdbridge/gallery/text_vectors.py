"""Teacher text embeddings kept beside a gallery: an ``.npy`` and a JSON header that vouches for it.

The species index (:mod:`~birdbridge.gallery.species_store`) and the background vocabulary
(:mod:`~birdbridge.gallery.background`) are both stored this way: the header names the teacher's
fingerprint and the sha256 of the ``.npy``, so a file written by another teacher, one that does not
match its header (an interrupted write) or one holding NaN or Inf is refused with the command that
rebuilds it.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.utils.atomic import write_bytes, write_json
from birdbridge.utils.clock import now_iso


class TextVectors:
    """``npy`` + ``header`` in a gallery ``folder``, checked against the gallery's teacher ``fingerprint`` and
    ``dim``. ``what`` names them in messages ("the species index"), ``rebuild`` is the command that rebuilds
    them, and ``damaged(problem)`` makes the gallery's error for an unreadable file."""

    def __init__(self, folder: Path, npy: str, header: str, fingerprint: str, dim: int, *, what: str, rebuild: str,
                 damaged: Callable[[str], Exception]) -> None:
        self.folder, self.npy, self.header_name = folder, npy, header
        self.fingerprint, self.dim = fingerprint, dim
        self.what, self.rebuild, self._damaged = what, rebuild, damaged

    def exists(self) -> bool:
        return (self.folder / self.header_name).is_file()

    def read_header(self) -> dict[str, Any] | None:
        """The header (None if there is none), refused if another teacher made the vectors."""
        path = self.folder / self.header_name
        if not path.is_file():
            return None
        try:
            header = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(header, dict):
                raise ValueError(f"a JSON {type(header).__name__}, not an object")
        except (OSError, ValueError) as exc:
            raise self._damaged(f"{self.header_name} is unreadable ({exc})") from None
        if header.get("teacher_fingerprint") != self.fingerprint:
            raise BirdbridgeError(f"{path}: {self.what} was made with another teacher than the images; rebuild it "
                                  f"with {self.rebuild}")
        return header

    def read_vectors(self, n: int, header: dict[str, Any]) -> np.ndarray:
        """float32 ``[n, dim]`` from the ``.npy``, refused unless it matches ``header`` and holds finite numbers."""
        path = self.folder / self.npy
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise self._damaged(f"cannot read {self.npy} ({exc})") from None
        if hashlib.sha256(data).hexdigest() != header.get("vectors_sha256"):
            raise BirdbridgeError(f"{path}: does not match {self.header_name} (an interrupted write?); rebuild "
                                  f"{self.what} with {self.rebuild}")
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise self._damaged(f"{self.npy} is unreadable ({exc})") from None
        if array.shape != (n, self.dim):
            raise self._damaged(f"{self.npy} has shape {list(array.shape)}, expected [{n}, {self.dim}]")
        if not np.isfinite(array).all():
            raise BirdbridgeError(
                f"gallery {self.folder} is damaged: {self.what} ({self.npy}) holds values that are not finite "
                f"numbers (NaN or Inf). Rebuild it with {self.rebuild}"
            )
        return array.astype(np.float32, copy=False)

    def write(self, vectors: np.ndarray, header: dict[str, Any]) -> None:
        """Replace both files (the ``.npy`` first, then the header naming its sha256); the caller holds the
        gallery's writer lock."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise BirdbridgeError(f"{self.what}: vectors have shape {list(vectors.shape)}; expected [N, {self.dim}]")
        if not np.all(np.isfinite(vectors)):
            raise BirdbridgeError(f"{self.what}: vectors hold NaN or Inf values")
        buffer = io.BytesIO()
        np.save(buffer, vectors)
        data = buffer.getvalue()
        write_bytes(self.folder / self.npy, data, durable=True)
        write_json(self.folder / self.header_name, {
            **header, "teacher_fingerprint": self.fingerprint, "count": len(vectors), "dim": self.dim,
            "created": now_iso(), "vectors_sha256": hashlib.sha256(data).hexdigest(),
        })

    def remove(self) -> None:
        """Delete both files (the header first, so a half-removed pair reads as none)."""
        (self.folder / self.header_name).unlink(missing_ok=True)
        (self.folder / self.npy).unlink(missing_ok=True)
