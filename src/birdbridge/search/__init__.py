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

from birdbridge.audio.io import parse_channel
from birdbridge.errors import BirdbridgeError
from birdbridge.gallery import Gallery
from birdbridge.models.calibration import DEFAULT_SENSITIVITY
from birdbridge.search.engine import SearchEngine
from birdbridge.search.formats import COLUMN_FORMATS, FILE_FORMATS, check_format
from birdbridge.search.like import SimilarWindows, search_like
from birdbridge.search.params import ExtraColumns, check_columns, params_path, run_params
from birdbridge.search.results import FileResult, ImageHit, RunReport, SpeciesHit, WindowResult
from birdbridge.search.runner import run_folder
from birdbridge.search.scoring import DEFAULT_MIN_CONF, DEFAULT_MIN_SCORE, DEFAULT_MIN_SIM, SCORES, Scoring
from birdbridge.species import SpeciesArg
from birdbridge.species.where import RangeFilter
from birdbridge.utils.atomic import write_json

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
    rank: str = "species",
    species: SpeciesArg | RangeFilter | None = None,
    merge: bool = False,
    output: PathLike | None = None,
    format: str = "csv",  # as `birdbridge search --format`
    combined: bool = False,
    overwrite: bool = False,
    birdnet_names: bool = False,
    additional_columns: Sequence[str] | None = None,
    locale: str | None = None,
    labels: PathLike | None = None,
    command: Sequence[str] | None = None,
    device: str | None = None,
    batch_size: int = 16,
    channel: str | int | None = None,
    progress: bool | None = None,
    ray: str | None = None,
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
        rank: the rank answered at: ``species``, ``genus``, ``family``, ``order`` (the scores of each taxon's
            species combined, see :mod:`birdbridge.search.scoring`), or ``auto``: per window, the lowest rank
            whose best taxon reaches ``min_conf`` ("a Corvus, species uncertain").
        species: only these species (a Taxonomy, a taxonomy CSV, a BirdNET-style list file, or labels), or a
            :class:`~birdbridge.species.where.RangeFilter`: those BirdNET's range model expects at a place in a
            week (``week="auto"``: each recording's, from its file name), of which the run's notes say how many
            the gallery holds.
        merge: merge consecutive windows with the same top species.
        output: a folder for one result file per recording (or, with ``combined``, a file or folder for one
            file); without it the results stay in memory (:attr:`RunReport.results`).
        format: the output files' format: csv (BirdNET-Analyzer's columns), raven, audacity, kaleidoscope, json or
            parquet (see :mod:`birdbridge.search.formats`).
        combined: one file for all recordings.
        overwrite: redo recordings whose result files exist (by default they are skipped: runs resume).
        birdnet_names: name the files as BirdNET-Analyzer does (``<stem>.BirdNET.results.csv``,
            ``<stem>.BirdNET.selection.table.txt``, ...; combined: ``BirdNET_CombinedTable.csv``, ...), so that its
            segments and review tools find them.
        additional_columns: settings added to each csv or parquet row (BirdNET-Analyzer's ``--additional_columns``;
            :data:`birdbridge.search.params.ADDITIONAL_COLUMNS`).
        locale: the language of common names in every output (``de``, ``fr``, ``pt_BR``, ...; default: the engine's,
            else the gallery's own names); a species without a name in it gets its English name, else its
            scientific name. An unknown locale is an error listing the available ones.
        labels: where the names come from (see :mod:`birdbridge.species.common_names`): a folder of BirdNET-style
            label files (``BirdNET_GLOBAL_6K_V2.4_Labels_de.txt``, ...), one such file, or a taxonomy CSV with
            ``common_name_de``, ... columns; default: the label files in the gallery's ``labels/`` folder.
        command: the command line to record in the params file (the CLI gives its own).
        batch_size: windows per forward pass of the model (memory against speed; results do not change).
        channel: ``mix`` (default: the channels averaged), ``left``, ``right`` or a channel number from 1: search
            that channel of each recording (a recording without it is reported and skipped); results name it
            (Raven's ``Channel`` column, ``channel`` in JSON and parquet).
        ray: embed the recordings on Ray first (``local``, ``auto`` or a Ray address; needs ``birdbridge[ray]``; see
            :mod:`birdbridge.embed.ray_jobs`); the results are the same.

    A run with ``output`` writes its settings beside its outputs (:func:`birdbridge.search.params.params_path`):
    ``birdbridge.search-params.json`` in their folder, or ``<file>.search-params.json`` beside a combined file.

    Returns:
        A :class:`RunReport`: results in memory (in input order), files written, recordings skipped as
        already done, the inputs that could not be searched (each named, with why), and notes.

    Raises:
        BirdbridgeError: a gallery or model that cannot answer, a bad argument, or inputs of which not one
            could be searched.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    scoring = Scoring(score, min_conf=min_conf, sensitivity=sensitivity, min_sim=min_sim, min_score=min_score,
                      rank=rank)
    columns = check_columns(additional_columns)
    if batch_size < 1:
        raise BirdbridgeError(f"batch_size must be at least 1, not {batch_size}")
    try:
        picked = parse_channel(channel)
    except ValueError as exc:
        raise BirdbridgeError(f"--channel: {exc}") from None
    if output is not None:
        check_format(format, FILE_FORMATS)
    if columns and (output is None or format not in COLUMN_FORMATS):
        raise BirdbridgeError(f"--additional-columns adds columns to {' and '.join(COLUMN_FORMATS)} files (as "
                              "BirdNET-Analyzer's): give --format csv or parquet and --output")
    if engine is None:
        if gallery is None:
            raise BirdbridgeError("give a gallery (and the model distilled for it), or an open SearchEngine")
        engine = SearchEngine.open(gallery, model, teacher=teacher, device=device, labels=labels, locale=locale)
    elif labels is not None:
        raise BirdbridgeError("give labels to SearchEngine.open (an open engine has its names)")
    engine.common_names(locale)  # an unknown locale before anything is written
    extra = None
    if output is not None:
        params = run_params(engine, window_s=window_s, hop_s=hop_s, scoring=scoring, species=species, top_k=top_k,
                            n_images=n_images, merge=merge, fmt=format, combined=combined, birdnet_names=birdnet_names,
                            additional_columns=columns, output=Path(output), command=command, locale=locale,
                            channel=picked)
        write_json(params_path(Path(output), combined), params)
        if columns:
            extra = ExtraColumns(params, columns, species if isinstance(species, RangeFilter) else None)
    report = run_folder(
        engine, [Path(p) for p in inputs], window_s=window_s, hop_s=hop_s, top_k=top_k, n_images=n_images,
        scoring=scoring, species=species, merge=merge, output=None if output is None else Path(output),
        fmt=format, combined=combined, overwrite=overwrite, progress=progress, birdnet_names=birdnet_names,
        extra=extra, locale=locale, batch_size=batch_size, channel=picked, ray=ray,
    )
    if report.nothing_done:
        raise BirdbridgeError("; ".join(f.message for f in report.failures))
    return report


__all__ = ["SCORES", "FileResult", "ImageHit", "RunReport", "Scoring", "SearchEngine", "SimilarWindows", "SpeciesHit",
           "WindowResult", "search", "search_like"]
