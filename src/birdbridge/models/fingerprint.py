"""Stable, cheap identities of model folders (for caches and for refusing mismatched galleries)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_EDGE = 1 << 20  # bytes hashed at each end of a weights file


def folder_fingerprint(config_files: Iterable[Path], weight_files: Iterable[Path]) -> str:
    """sha256 over config texts and, per weights file, its size and first and last MiB."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in config_files):
        if path.exists():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    for path in sorted(Path(p) for p in weight_files):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as fh:
            digest.update(fh.read(_EDGE))
            if size > 2 * _EDGE:
                fh.seek(size - _EDGE)
                digest.update(fh.read(_EDGE))
    return digest.hexdigest()[:32]
