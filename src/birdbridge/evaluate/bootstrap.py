"""Percentile-bootstrap confidence intervals over queries (or samples), vectorised in blocks of resamples.

Resampling draws N indices with replacement, ``n_resamples`` times, as [block, N] integer arrays (block size
is a fixed function of N, so results depend only on the data, ``seed``, ``n_resamples`` and ``strata``).
With ``strata`` (e.g. the query class labels) each stratum is resampled separately, keeping its size, so
every resample has the original class composition: the right choice when the class set and sizes are fixed
by design (as in SSW60), and narrower than plain resampling when classes differ in their mean.

NaN values mean "no value for this query" (e.g. AP of a query without relevant items): positions that are
NaN in every metric are dropped before resampling; remaining NaNs are ignored inside each resample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from birdbridge.errors import BirdbridgeError
from birdbridge.evaluate.metrics import as_labels, factorize

Statistic = Callable[..., Any]
"""A reduction called as ``statistic(values [B, N], axis=1) -> [B]``, e.g. ``np.mean`` or ``np.median``."""

_BLOCK_ELEMS = 4_000_000  # indices per block: 32 MB of int64, plus one gathered float64 copy per metric
_NAN_AWARE: dict[Any, Any] = {np.mean: np.nanmean, np.median: np.nanmedian}


def check_count(value: int, name: str) -> None:
    """A clear error unless ``value`` is an integer of at least 1 (``name`` says which argument it is)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BirdbridgeError(f"{name} must be an integer >= 1, got {value!r}")


def check_confidence(confidence: float) -> None:
    """A clear error unless ``confidence`` (an interval's level) lies strictly between 0 and 1."""
    if not 0 < confidence < 1:
        raise BirdbridgeError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _strata_labels(strata: ArrayLike, n: int) -> np.ndarray:
    labels = as_labels(strata, "strata")
    if labels.size != n:
        raise BirdbridgeError(f"strata must have one label per value ({n}), got {labels.size}")
    return labels


def _strata_groups(strata: ArrayLike, n: int) -> list[np.ndarray]:
    """Positions (ascending) of the values of each stratum."""
    codes = factorize(_strata_labels(strata, n))[1]
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, bounds)


def bootstrap_indices(
    n: int, n_resamples: int = 1000, seed: int = 0, strata: ArrayLike | None = None
) -> Iterator[np.ndarray]:
    """Yield blocks of resample indices, int arrays [block, n], ``n_resamples`` rows in all.

    These are the indices ``bootstrap_cis`` uses (after it drops all-NaN positions), so a caller can compute
    any paired statistic on the same resamples.
    """
    check_count(n, "n (the number of values)")
    check_count(n_resamples, "n_resamples")
    rng = np.random.default_rng(seed)
    groups = _strata_groups(strata, n) if strata is not None else None
    block = max(1, min(n_resamples, _BLOCK_ELEMS // n))
    for done in range(0, n_resamples, block):
        b = min(block, n_resamples - done)
        if groups is None:
            yield rng.integers(0, n, size=(b, n))
            continue
        idx = np.empty((b, n), dtype=np.int64)
        col = 0
        for members in groups:
            m = members.size
            idx[:, col:col + m] = members[rng.integers(0, m, size=(b, m))]
            col += m
        yield idx


def _reduce(values: np.ndarray, has_nan: bool, statistic: Statistic, name: str) -> np.ndarray:
    """statistic over axis 1 of a [B, N] block, ignoring NaN."""
    if not has_nan:
        out = statistic(values, axis=1)
    elif statistic in (np.mean, np.nanmean):
        present = ~np.isnan(values)
        counts = present.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(present, values, 0.0).sum(axis=1) / counts
    else:
        fn = _NAN_AWARE.get(statistic, statistic)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = fn(values, axis=1)
    out = np.asarray(out, dtype=np.float64)
    if out.shape != (values.shape[0],):
        raise BirdbridgeError(f"statistic must reduce [B, N] to [B] with axis=1; got shape {out.shape} for {name!r}")
    return out


def bootstrap_cis(
    values: Mapping[str, ArrayLike],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: Statistic = np.mean,
    *,
    strata: ArrayLike | None = None,
) -> dict[str, tuple[float, float]]:
    """Paired percentile-bootstrap CIs: ``{name: (low, high)}`` for per-query arrays of equal length.

    Every metric is evaluated on the **same** resampled indices, so the intervals are paired (e.g.
    ``RetrievalResult.per_query()`` for MAP and R@k together, or two models' per-query AP on one query set).
    ``strata`` (one label per value, e.g. the query classes) resamples within each stratum.
    """
    check_count(n_resamples, "n_resamples")
    check_confidence(confidence)
    if not values:
        raise BirdbridgeError("no metrics given to bootstrap")
    names = list(values)
    arrays = []
    for name in names:
        arr = np.asarray(values[name], dtype=np.float64)
        if arr.ndim != 1:
            raise BirdbridgeError(f"{name!r} must be a 1-D array of per-query values, got shape {arr.shape}")
        if arrays and arr.size != arrays[0].size:
            raise BirdbridgeError(f"{name!r} has {arr.size} values but {names[0]!r} has {arrays[0].size}")
        arrays.append(arr)
    data = np.stack(arrays)  # [M, N]
    nan = np.isnan(data)
    keep = ~nan.all(axis=0)
    if strata is not None:
        strata = _strata_labels(strata, data.shape[1])[keep]
    data, nan = data[:, keep], nan[:, keep]
    if data.shape[1] == 0:
        raise BirdbridgeError("every value is NaN (or none were given): nothing to bootstrap")
    has_nan = nan.any(axis=1)
    stats = np.empty((len(names), n_resamples), dtype=np.float64)
    done = 0
    for idx in bootstrap_indices(data.shape[1], n_resamples, seed, strata):
        for m, name in enumerate(names):
            stats[m, done:done + idx.shape[0]] = _reduce(data[m][idx], bool(has_nan[m]), statistic, name)
        done += idx.shape[0]
    alpha = 100.0 * (1.0 - confidence) / 2.0
    out: dict[str, tuple[float, float]] = {}
    for m, name in enumerate(names):
        finite = stats[m][~np.isnan(stats[m])]
        if finite.size == 0:
            raise BirdbridgeError(
                f"the statistic is NaN on every resample of {name!r}; with NaN values use a NaN-aware statistic "
                "(np.mean, np.median or e.g. np.nanpercentile via a wrapper)"
            )
        low, high = np.percentile(finite, [alpha, 100.0 - alpha])
        out[name] = (float(low), float(high))
    return out


def bootstrap_ci(
    values: ArrayLike,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: Statistic = np.mean,
    *,
    strata: ArrayLike | None = None,
) -> tuple[float, float]:
    """Percentile-bootstrap CI (low, high) of ``statistic`` over per-query ``values`` (NaN ignored)."""
    return bootstrap_cis({"values": values}, n_resamples, confidence, seed, statistic, strata=strata)["values"]
