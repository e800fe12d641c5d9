"""Search: recordings (or texts, or pictures) in; species with scores and the closest gallery pictures out.

One engine (:class:`SearchEngine`: audio, text and picture queries, for Python users and ``birdbridge
serve``), one function (:func:`search`: recordings and folders, as ``birdbridge search``), and one result
type (:class:`FileResult` and its parts) that the CLI, the output files and the web API all read. How species
are scored and which are detections is :class:`Scoring` (:mod:`birdbridge.search.scoring`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from birdbridge.errors import BirdbridgeError
from birdbridge.gallery import Gallery
from birdbridge.models.calibration import DEFAULT_SENSITIVITY
from birdbridge.search.engine import SearchEngine
from birdbridge.search.formats import FILE_FORMATS, check_format
from birdbridge.search.like import SimilarWindows, search_like
from birdbridge.search.results import FileResult, ImageHit, RunReport, SpeciesHit, WindowResult
from birdbridge.search.runner import run_folder
from birdbridge.search.scoring import DEFAULT_MIN_CONF, DEFAULT_MIN_SCORE, DEFAULT_MIN_SIM, SCORES, Scoring
from birdbridge.species import SpeciesArg

PathLike = str | os.PathLike[str]


def search(
    inputs: PathLike | Sequence[PathLike],
    *,
    model: PathLike | None = None,
    gallery: PathLike | Gallery | None = None,
    engine: SearchEngine | None = None,
    teacher: str | None = None,
    window_s: float | None = None,
    hop_s: float | None = None,
    top_k: int = 5,
    n_images: int = 5,
    score: str = "confidence",
    min_conf: float = DEFAULT_MIN_CONF,
    sensitivity: float = DEFAULT_SENSITIVITY,
    min_sim: float = DEFAULT_MIN_SIM,
    min_score: float = DEFAULT_MIN_SCORE,
    species: SpeciesArg | None = None,
    merge: bool = False,
    output: PathLike | None = None,
    format: str = "csv",  # as `birdbridge search --format`
    combined: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool | None = None,
) -> RunReport:
    """Species and pictures per window of each recording (files or folders, searched recursively), as
    ``birdbridge search``.

    Args:
        inputs: recordings or folders of recordings.
        model: the student distilled for the gallery's teacher (a ``birdbridge train`` output folder).
        gallery: a gallery built with ``birdbridge index`` (or an open :class:`~birdbridge.gallery.Gallery`).
        engine: an open :class:`SearchEngine` instead of ``model`` and ``gallery`` (load once, search often).
        teacher: the gallery's teacher, if its recorded reference moved.
        window_s, hop_s: analysis window and hop in seconds (default: the model's window, hop = window).
        top_k, n_images: species (detections) and pictures per window.
        score: what ranks species and makes detections (see :mod:`birdbridge.search.scoring`): ``confidence``
            (the model's calibration; a model without one falls back to ``similarity``, with a warning),
            ``similarity`` (raw cosine) or ``softmax`` (plain retrieval: every window names a species).
        min_conf, sensitivity: the lowest confidence of a detection, and BirdNET-Analyzer's detection
            sensitivity (0.5-1.5; higher gives higher confidences).
        min_sim: the lowest similarity of a detection when ranking by similarity.
        min_score: the lowest softmax score kept when ranking by softmax.
        species: only these species (a Taxonomy, a taxonomy CSV, a BirdNET-style list file, or labels).
        merge: merge consecutive windows with the same top species.
        output: a folder for one result file per recording (or, with ``combined``, a file or folder for one
            file); without it the results stay in memory (:attr:`RunReport.results`).
        format: the output files' format: csv (BirdNET-Analyzer's columns), raven, json or parquet.
        combined: one file for all recordings.
        overwrite: redo recordings whose result files exist (by default they are skipped: runs resume).

    Returns:
        A :class:`RunReport`: results in memory (in input order), files written, recordings skipped as
        already done, and the inputs that could not be searched (each named, with why).

    Raises:
        BirdbridgeError: a gallery or model that cannot answer, a bad argument, or inputs of which not one
            could be searched.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    scoring = Scoring(score, min_conf=min_conf, sensitivity=sensitivity, min_sim=min_sim, min_score=min_score)
    if output is not None:
        check_format(format, FILE_FORMATS)
    if engine is None:
        if gallery is None:
            raise BirdbridgeError("give a gallery (and the model distilled for it), or an open SearchEngine")
        engine = SearchEngine.open(gallery, model, teacher=teacher, device=device)
    report = run_folder(
        engine, [Path(p) for p in inputs], window_s=window_s, hop_s=hop_s, top_k=top_k, n_images=n_images,
        scoring=scoring, species=species, merge=merge, output=None if output is None else Path(output),
        fmt=format, combined=combined, overwrite=overwrite, progress=progress,
    )
    if report.nothing_done:
        raise BirdbridgeError("; ".join(f.message for f in report.failures))
    return report


__all__ = ["SCORES", "FileResult", "ImageHit", "RunReport", "Scoring", "SearchEngine", "SimilarWindows", "SpeciesHit",
           "WindowResult", "search", "search_like"]
