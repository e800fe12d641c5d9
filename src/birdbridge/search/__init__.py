"""Search: recordings (or texts, or pictures) in; species with scores and the closest gallery pictures out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from birdbridge.search.engine import SearchEngine
from birdbridge.search.results import FileResult, ImageHit, SpeciesHit, WindowResult
from birdbridge.search.runner import RunReport, SearchOptions, run_search
from birdbridge.species import SpeciesArg


def search(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    model: str | os.PathLike[str],
    gallery,
    window_s: float | None = None,
    hop_s: float | None = None,
    top_k: int = 5,
    n_images: int = 5,
    min_score: float = 0.05,
    species: SpeciesArg | None = None,
    merge: bool = False,
    device: str | None = None,
) -> list[FileResult]:
    """Species and pictures per window of each recording (files or folders), as ``birdbridge search``."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    engine = SearchEngine.open(gallery, model, device=device)
    options = SearchOptions(window_s, hop_s, top_k, n_images, min_score, species, merge)
    report = run_search(engine, [Path(p) for p in inputs], options, progress=None)
    if report.failures and not report.results:
        from birdbridge.errors import BirdbridgeError

        raise BirdbridgeError("; ".join(f.message for f in report.failures))
    return report.results


__all__ = ["FileResult", "ImageHit", "RunReport", "SearchEngine", "SearchOptions", "SpeciesHit", "WindowResult",
           "run_search", "search"]
