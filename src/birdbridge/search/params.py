"""A search run's settings: the params file beside its outputs, and BirdNET-Analyzer's ``--additional_columns``.

Every run that writes files also writes its params file (JSON, atomically; :func:`params_path`) beside its
outputs, as BirdNET-Analyzer writes ``birdnet.analyze-params.csv``: the model and teacher (with their fingerprints), the
gallery, window and hop, the score and thresholds, the species filter and its source (a list file, labels, or
BirdNET's range model at a place and week), the output options, the birdbridge version and the command line.
A resumed run rewrites it.

``--additional-columns`` adds chosen settings to each row of the csv (and parquet) outputs, for R users who
combine runs: BirdNET-Analyzer's :data:`BIRDNET_COLUMNS` and birdbridge's own (:data:`ADDITIONAL_COLUMNS`). With
``--week auto`` the ``week`` column holds each recording's week (from its file name).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from birdbridge.errors import InputError
from birdbridge.search.engine import SearchEngine
from birdbridge.search.scoring import Scoring
from birdbridge.species import SpeciesArg, Taxonomy
from birdbridge.species.geo import MODEL_FILE
from birdbridge.species.where import RangeFilter

PARAMS_FILE = "birdbridge.search-params.json"
BIRDNET_COLUMNS = ("lat", "lon", "week", "overlap", "sensitivity", "min_conf", "species_list", "model")
"""BirdNET-Analyzer's ``--additional_columns`` values (its POSSIBLE_ADDITIONAL_COLUMNS), with its meanings."""
ADDITIONAL_COLUMNS = (*BIRDNET_COLUMNS, "sf_thresh", "score", "threshold", "window", "hop", "gallery", "teacher")


def check_columns(columns: Sequence[str] | None) -> list[str]:
    """The additional columns asked for (comma-separated items are split; each once, in order), or an InputError
    naming ``--additional-columns`` and the choices."""
    names: list[str] = []
    for item in columns or ():
        for name in (part.strip().lower() for part in str(item).split(",")):
            if not name:
                continue
            if name not in ADDITIONAL_COLUMNS:
                raise InputError("--additional-columns", f"unknown column {name!r}",
                                 f"choose from {', '.join(ADDITIONAL_COLUMNS)}")
            if name not in names:
                names.append(name)
    return names


def _species_filter(species: SpeciesArg | RangeFilter | None) -> dict[str, Any]:
    """What restricted the species, and where it came from."""
    if species is None:
        return {"kind": "none", "source": "every species of the gallery's species index"}
    if isinstance(species, RangeFilter):
        return {"kind": "range", "source": species.model or f"BirdNET's range model {MODEL_FILE} (birdbridge[geo])",
                "lat": species.lat, "lon": species.lon, "week": species.week, "sf_thresh": species.sf_thresh,
                "where": species.describe()}
    if isinstance(species, Taxonomy):
        return {"kind": "taxonomy", "source": "a Taxonomy given in Python", "species": list(species.keys)}
    if isinstance(species, (str, os.PathLike)) and Path(species).is_file():
        return {"kind": "list", "source": str(Path(species).resolve())}
    labels = [os.fspath(species)] if isinstance(species, (str, os.PathLike)) else [str(s) for s in species]
    return {"kind": "labels", "source": "names given", "species": labels}


def run_params(engine: SearchEngine, *, window_s: float | None, hop_s: float | None, scoring: Scoring,
               species: SpeciesArg | RangeFilter | None, top_k: int, n_images: int, merge: bool, fmt: str,
               combined: bool, birdnet_names: bool, additional_columns: Sequence[str], output: Path,
               command: Sequence[str] | None, locale: str | None = None, channel: int | None = None
               ) -> dict[str, Any]:
    """The settings of a run, as its params file holds them (window and hop as used: the model's by default)."""
    from birdbridge import __version__

    student = engine.student
    window = window_s if window_s is not None else (student.window_s if student else None)
    ranked_by = scoring.ranked_by(engine.calibration)
    teacher = engine.gallery.teacher
    return {
        "birdbridge_version": __version__,
        "command": list(command) if command is not None else None,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"ref": engine.model_ref, "name": student.name if student else None,
                  "fingerprint": student.fingerprint if student else None,
                  "calibrated": engine.calibration is not None, "backend": student.backend if student else None},
        "teacher": {"name": teacher.get("name"), "ref": teacher.get("ref"), "fingerprint": teacher.get("fingerprint")},
        "gallery": {"path": str(Path(engine.gallery.folder).resolve()), "images": len(engine.gallery),
                    "species": len(engine.taxonomy)},
        "window_s": window,
        "hop_s": hop_s if hop_s is not None else window,
        "channel": "mix" if channel is None else channel + 1,
        "score": {"asked": scoring.score, "ranked_by": ranked_by, "threshold": scoring.threshold(ranked_by),
                  "min_conf": scoring.min_conf, "sensitivity": scoring.sensitivity, "min_sim": scoring.min_sim,
                  "min_score": scoring.min_score, "rank": scoring.rank},
        "top_k": top_k,
        "images": n_images,
        "merge": merge,
        "species_filter": _species_filter(species),
        "names": {"locale": engine.names.check(locale) if locale else engine.locale or "en",
                  "source": engine.names.source or None},
        "output": {"path": str(output), "format": fmt, "combined": combined, "birdnet_names": birdnet_names,
                   "additional_columns": list(additional_columns)},
    }


def params_path(output: Path, combined: bool = False) -> Path:
    """Where a run's params file goes: :data:`PARAMS_FILE` in the folder of per-file (or combined) outputs, or
    ``<file>.search-params.json`` beside a combined file (two of them in one folder keep theirs)."""
    if combined and output.suffix:
        return output.with_name(f"{output.name}.search-params.json")
    return output / PARAMS_FILE


class ExtraColumns:
    """Each recording's additional columns (name -> text), from a run's params (the week per file with ``--week
    auto``); called by the csv and parquet writers with a recording's path."""

    def __init__(self, params: dict[str, Any], columns: Sequence[str], where: RangeFilter | None = None) -> None:
        self.columns = list(columns)
        self.where = where
        window, hop = params["window_s"], params["hop_s"]
        species = params["species_filter"]
        model = params["model"]["ref"] or params["model"]["name"] or ""
        self.values: dict[str, Any] = {
            "lat": species.get("lat"), "lon": species.get("lon"), "week": species.get("week"),
            "overlap": None if window is None or hop is None else round(window - hop, 6),
            "sensitivity": params["score"]["sensitivity"], "min_conf": params["score"]["min_conf"],
            "species_list": species["source"] if species["kind"] == "list" else None,
            "model": os.path.basename(os.path.normpath(model)) if model else None,
            "sf_thresh": species.get("sf_thresh"), "score": params["score"]["ranked_by"],
            "threshold": params["score"]["threshold"], "window": window, "hop": hop,
            "gallery": params["gallery"]["path"], "teacher": params["teacher"]["name"] or params["teacher"]["ref"],
        }

    def __call__(self, file: str) -> dict[str, str]:
        row = {}
        for name in self.columns:
            value = self.values[name]
            if name == "week" and self.where is not None and self.where.auto and file:
                try:
                    value = self.where.for_file(file).week
                except InputError:
                    value = None
            row[name] = "" if value is None else f"{value:.10g}" if isinstance(value, float) else str(value)
        return row
