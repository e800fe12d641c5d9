"""Exports of an archive with its labels: a perch-hoplite database, or parquet files any tool reads.

* **hoplite** (the optional extra ``birdbridge[hoplite]``): a ``SQLiteUSearchDB`` made through
  perch-hoplite's own API, so its agile-modelling tools open it: one deployment per site (project: the
  archive's name), one recording per file (with its date and time), one window per archive window
  (offsets ``[start, end]`` in seconds, the float16 embedding), and every label as an annotation
  (positive or negative; provenance ``who, at, source``). The archive's models go into its metadata
  under ``birdbridge``.
* **parquet**: ``windows.parquet`` (``row, file, start_s, end_s, channel, date, time, site, embedding``:
  a list of float16) and ``labels.parquet`` (``row, label, value, who, at, source, source_row``), with
  ``archive.json`` beside them (the archive's models and windowing).

The output folder must be new or empty. Writing is not resumable: a killed export is made again.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.archive.store import Archive
from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.utils.atomic import atomic_path, write_json

FORMATS = ("hoplite", "parquet")
CHUNK_ROWS = 65_536


def export_archive(archive: Archive, out: str | os.PathLike[str], fmt: str = "hoplite") -> dict[str, Any]:
    """Export ``archive`` to the folder ``out`` in ``fmt`` (hoplite or parquet); returns counts of what was written."""
    if fmt not in FORMATS:
        raise BirdbridgeError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    archive.check_searchable()
    folder = Path(out).expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(str(folder), "exists and is not an empty folder", "choose a new folder for the export")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return export_hoplite(archive, folder) if fmt == "hoplite" else export_parquet(archive, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # half an export is no export
        raise


def export_parquet(archive: Archive, folder: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("row", pa.int64()), ("file", pa.string()), ("start_s", pa.float64()),
                        ("end_s", pa.float64()), ("channel", pa.int32()), ("date", pa.string()),
                        ("time", pa.string()), ("site", pa.string()), ("embedding", pa.list_(pa.float16()))])
    files = {f.id: f for f in archive.files()}
    with atomic_path(folder / "windows.parquet") as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, len(archive), CHUNK_ROWS):
            windows = archive.records(range(start, min(start + CHUNK_ROWS, len(archive))))
            vectors = np.asarray(archive.vectors[start : start + len(windows)], dtype=np.float16)
            embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float16()), archive.dim)
            writer.write_table(pa.table({
                "row": [w.row for w in windows], "file": [files[w.file].path for w in windows],
                "start_s": [w.start_s for w in windows], "end_s": [w.end_s for w in windows],
                "channel": pa.array([w.channel for w in windows], pa.int32()),
                "date": [files[w.file].date for w in windows], "time": [files[w.file].time for w in windows],
                "site": [files[w.file].site for w in windows], "embedding": embedding.cast(pa.list_(pa.float16())),
            }, schema=schema))
    labels = archive.labels()
    table = pa.table({"row": pa.array([lab.row for lab in labels], pa.int64()),
                      "label": pa.array([lab.label for lab in labels], pa.string()),
                      "value": pa.array([lab.value for lab in labels], pa.bool_()),
                      "who": pa.array([lab.who for lab in labels], pa.string()),
                      "at": pa.array([lab.at for lab in labels], pa.string()),
                      "source": pa.array([lab.source for lab in labels], pa.string()),
                      "source_row": pa.array([lab.source_row for lab in labels], pa.int64())})
    with atomic_path(folder / "labels.parquet") as tmp:
        pq.write_table(table, tmp)
    write_json(folder / "archive.json", _about(archive))
    return {"windows": len(archive), "files": len(files), "labels": len(labels)}


def export_hoplite(archive: Archive, folder: Path, *, project: str | None = None) -> dict[str, Any]:
    try:
        from ml_collections import config_dict
        from perch_hoplite.db import datatypes, sqlite_usearch_impl
    except ImportError:
        raise BirdbridgeError("exporting to perch-hoplite needs the hoplite extra: pip install 'birdbridge[hoplite]' "
                              "(or export parquet: --to parquet)") from None
    db = sqlite_usearch_impl.SQLiteUSearchDB.create(
        str(folder), sqlite_usearch_impl.get_default_usearch_config(archive.dim))
    db.insert_metadata("birdbridge", config_dict.ConfigDict(_about(archive)))
    project = project or archive.folder.name
    deployments: dict[str, int] = {}
    recordings: dict[int, int] = {}
    windows: dict[int, int] = {}  # archive row -> hoplite window id
    for f in archive.files():
        site = f.site or "unknown"
        if site not in deployments:
            deployments[site] = db.insert_deployment(site, project, f.lat, f.lon)
        when = dt.datetime.fromisoformat(f"{f.date}T{f.time}") if f.date and f.time else None
        recordings[f.id] = db.insert_recording(f.path, when, deployments[site])
        rows = np.arange(f.first_row, f.first_row + f.n_windows)
        spans = archive.records(rows)
        ids = db.insert_windows_batch([{"recording_id": recordings[f.id], "offsets": [w.start_s, w.end_s]}
                                       for w in spans], np.asarray(archive.vectors[rows], np.float32),
                                      handle_duplicates="allow")
        windows.update(zip(rows.tolist(), ids, strict=True))
    labels = archive.labels()
    files = {w.row: w for w in archive.records(sorted({lab.row for lab in labels}))} if labels else {}
    for lab in labels:
        w = files[lab.row]
        kind = datatypes.LabelType.POSITIVE if lab.value else datatypes.LabelType.NEGATIVE
        db.insert_annotation(recordings[w.file], [w.start_s, w.end_s], lab.label, kind,
                             provenance=f"{lab.who}, {lab.at}, {lab.source}", handle_duplicates="allow")
    db.commit()
    return {"windows": len(windows), "files": len(recordings), "labels": len(labels), "deployments": len(deployments)}


def _about(archive: Archive) -> dict[str, Any]:
    return {"archive": str(archive.folder), "teacher": archive.teacher, "student": archive.student,
            "windowing": archive.windowing, "windows": len(archive)}


__all__ = ["FORMATS", "export_archive", "export_hoplite", "export_parquet"]
