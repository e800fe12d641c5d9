"""Unit vectors: the one L2 normalisation that every embedding goes through."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from birdbridge.errors import BirdbridgeError

MIN_NORM = 1e-12
"""Rows whose L2 norm is below this count as zero."""

_SHOWN = 5


def l2_normalize(
    x: ArrayLike, *, names: Sequence[str] | None = None, what: str = "vectors", dtype: DTypeLike = np.float32
) -> np.ndarray:
    """``x`` with every row (the last axis) scaled to unit L2 norm, as ``dtype`` (float32 unless told).

    A zero vector (norm below :data:`MIN_NORM`) or one holding NaN or infinity has no direction, so it
    cannot be compared by cosine similarity: it is an error, never silently left as it is. The
    :class:`~birdbridge.errors.BirdbridgeError` names ``what`` and the first few bad rows, by
    ``names[i]`` when given, else by position (rows of an array with more than two axes are counted in C
    order). An empty array is returned as it is.
    """
    arr = np.asarray(x, dtype=dtype)
    if arr.size == 0:
        return arr
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms < MIN_NORM))
    if bad.size:
        shown = [repr(names[i]) if names is not None else f"row {i}" for i in bad[:_SHOWN].tolist()]
        more = f" and {bad.size - _SHOWN} more" if bad.size > _SHOWN else ""
        raise BirdbridgeError(
            f"{what}: {bad.size} row(s) are all-zero or non-finite and have no direction "
            f"({', '.join(shown)}{more}); cosine similarity is undefined for them"
        )
    return arr / norms
