"""An on-disk cache of float32 embedding arrays, keyed by what they were computed from.

Each entry is ``<key>.npy`` + ``<key>.json`` (metadata) where ``key`` = sha256 of the identity
mapping. Files are written atomically, the ``.json`` last. An entry that cannot be read or does not
match its identity is recomputed and overwritten; a failed write is logged and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.utils.atomic import write_json, write_npy
from birdbridge.utils.clock import now_iso

CACHE_ENV = "BIRDBRIDGE_CACHE"
log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$BIRDBRIDGE_CACHE``, default ``~/.cache/birdbridge``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "birdbridge"


def identity_key(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()


def cached_array(
    folder: Path | None,
    identity: Mapping[str, Any],
    compute: Callable[[], np.ndarray],
    *,
    lead: tuple[int, ...],
    what: str = "embedding",
    extra_meta: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """``compute()`` once per ``identity``: a float32 array of unit rows whose shape starts with ``lead``."""
    return cached_entry(folder, identity, lambda: (compute(), dict(extra_meta or {})), lead=lead, what=what)[0]


def cached_entry(
    folder: Path | None,
    identity: Mapping[str, Any],
    compute: Callable[[], tuple[np.ndarray, dict[str, Any]]],
    *,
    lead: tuple[int, ...] | None = None,
    what: str = "embedding",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Like :func:`cached_array`, for a ``compute`` that returns (array, metadata to store with it)."""
    if folder is None:
        return compute()
    key = identity_key(identity)
    expected = {**identity, "key": key}
    npy, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    if meta_path.exists():
        try:
            return _load(npy, meta_path, expected, lead)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s cache %s is unusable (%s); recomputing", what, npy, exc)
    array, extra = compute()
    meta = {
        **expected,
        **extra,
        "shape": list(array.shape),
        "dtype": "float32",
        "created": now_iso(),
    }
    try:
        write_npy(npy, array)
        write_json(meta_path, meta)
    except OSError as exc:
        log.warning("could not write the %s cache in %s (%s); continuing without it", what, folder, exc)
    return array, meta


def _load(
    npy: Path, meta_path: Path, expected: Mapping[str, Any], lead: tuple[int, ...] | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """The cached array if metadata and contents match ``expected``; raises ValueError otherwise."""
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a JSON object")
    for name, value in expected.items():
        if meta.get(name) != value:
            raise ValueError(f"metadata field {name!r} does not match")
    array = np.load(npy, allow_pickle=False)
    shape = tuple(meta["shape"])
    lead = shape[:-1] if lead is None else lead
    if array.dtype != np.float32 or array.shape != shape or shape[: len(lead)] != lead or shape[-1] < 1:
        raise ValueError(f"array is {array.dtype} {list(array.shape)}, expected float32 {[*lead, 'D']}")
    norms = np.linalg.norm(array, axis=-1)
    if not np.all(np.isfinite(norms)) or not np.allclose(norms, 1.0, atol=1e-3):
        raise ValueError("rows are not finite unit vectors")
    return array, meta
