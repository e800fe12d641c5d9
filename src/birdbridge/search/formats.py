"""Output formats: a table on the terminal, and the files BirdNET-Analyzer users already load.

* ``csv``: BirdNET-Analyzer's columns ``Start (s), End (s), Scientific name, Common name, Confidence,
  File``, plus ``Similarity`` and ``Image 1`` … ``Image n`` (paths, or ids for pictures without a file);
* ``raven``: a Raven selection table with BirdNET-Analyzer's columns (tab-separated); a file without a
  detection gets BirdNET-Analyzer 2.4's ``nocall`` row, so that every file searched is in its table;
* ``json``: one object per file, with its windows that hold a detection and a summary of the rest;
* ``parquet``: one row per (window, species) with the picture ids as a list column.

Rows are detections only: a window where no species reaches the threshold has none. ``Confidence`` is the
score the species were ranked and thresholded by (:attr:`FileResult.ranked_by`): the calibrated confidence
by default.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from birdbridge.errors import BirdbridgeError
from birdbridge.search.results import FileResult
from birdbridge.utils.atomic import atomic_path, write_text
from birdbridge.utils.selection_tables import RAVEN_FILE, RAVEN_LEAD, Selection, raven_table

FORMATS = ("table", "csv", "raven", "json", "parquet")
FILE_FORMATS = FORMATS[1:]
TEXT_FORMATS = ("csv", "raven", "json")  # the file formats that are text (and can go to standard output)
SUFFIX = {"csv": ".birdbridge.results.csv", "raven": ".birdbridge.selection.table.txt",
          "json": ".birdbridge.results.json", "parquet": ".birdbridge.results.parquet"}
BIRDNET_CSV_COLUMNS = ["Start (s)", "End (s)", "Scientific name", "Common name", "Confidence", "File"]
CSV_COLUMNS = [*BIRDNET_CSV_COLUMNS, "Similarity"]
NOCALL = "nocall"  # BirdNET-Analyzer 2.4's common name and code of the row of a file without a detection
RAVEN_CELLS = ("Common Name", "Species Code", "Confidence")
RAVEN_COLUMNS = [*RAVEN_LEAD, *RAVEN_CELLS, *RAVEN_FILE]


def detections(results: Sequence[FileResult]):
    """(file, window, species hit) for every species hit of every window, in order."""
    for result in results:
        for window in result.windows:
            for hit in window.species:
                yield result, window, hit


def to_csv(results: Sequence[FileResult], n_images: int) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + [f"Image {i + 1}" for i in range(n_images)])
    for result, window, hit in detections(results):
        images = [img.path or img.id for img in window.images[:n_images]]
        writer.writerow([f"{window.start_s:.1f}", f"{window.end_s:.1f}", hit.scientific_name,
                         hit.common_name or hit.scientific_name, f"{hit.score:.4f}", result.file,
                         f"{hit.similarity:.4f}", *images, *[""] * (n_images - len(images))])
    return buffer.getvalue()


def to_raven(results: Sequence[FileResult], low_hz: float, high_hz: float) -> str:
    """A Raven selection table (:func:`~birdbridge.utils.selection_tables.raven_table`, times within each file);
    a file without a detection gets BirdNET-Analyzer 2.4's ``nocall`` row (begin 0, end one window, confidence
    1.0), which BirdNET-Analyzer's own tools skip."""
    selections = []
    for result in results:
        path = str(Path(result.file).resolve())
        rows = [(window, hit) for window in result.windows for hit in window.species]
        selections += [Selection(path, window.start_s, window.end_s, low_hz, high_hz, {
            "Common Name": hit.common_name or hit.scientific_name, "Species Code": hit.code or "",
            "Confidence": f"{hit.score:.4f}"}) for window, hit in rows]
        if not rows:
            end = result.windows[0].end_s - result.windows[0].start_s if result.windows else 0.0
            selections.append(Selection(path, 0.0, end, low_hz, high_hz, {
                "Common Name": NOCALL, "Species Code": NOCALL, "Confidence": "1.0"}, time_format="g"))
    return raven_table(selections, RAVEN_CELLS, time_format=".1f", run_on=False)


def to_json(results: Sequence[FileResult]) -> str:
    return json.dumps([r.to_dict(all_windows=False) for r in results], indent=2) + "\n"


def write_parquet(path: Path, results: Sequence[FileResult]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("file", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()), ("rank", pa.int64()),
        ("species", pa.string()), ("common_name", pa.string()), ("code", pa.string()), ("score", pa.float64()),
        ("confidence", pa.float64()), ("similarity", pa.float64()), ("ranked_by", pa.string()),
        ("images", pa.list_(pa.string())), ("image_scores", pa.list_(pa.float64())),
    ])
    rows = [{"file": r.file, "start_s": w.start_s, "end_s": w.end_s, "rank": rank + 1, "species": h.key,
             "common_name": h.common_name, "code": h.code, "score": h.score, "confidence": h.confidence,
             "similarity": h.similarity, "ranked_by": r.ranked_by, "images": [i.id for i in w.images],
             "image_scores": [i.score for i in w.images]}
            for r in results for w in r.windows for rank, h in enumerate(w.species)]
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def check_format(fmt: str, formats: Sequence[str] = FORMATS) -> str:
    """``fmt`` if it is one of ``formats``, else a clear error."""
    if fmt not in formats:
        raise BirdbridgeError(f"unknown format {fmt!r}; use one of {', '.join(formats)}")
    return fmt


def format_text(fmt: str, results: Sequence[FileResult], *, n_images: int, band_hz: tuple[float, float]) -> str:
    """The results in a text format (csv, raven or json), as written to files or standard output."""
    check_format(fmt, TEXT_FORMATS)
    if fmt == "csv":
        return to_csv(results, n_images)
    if fmt == "raven":
        return to_raven(results, *band_hz)
    return to_json(results)


def write_results(path: Path, fmt: str, results: Sequence[FileResult], *, n_images: int, band_hz: tuple[float, float]
                  ) -> Path:
    if check_format(fmt, FILE_FORMATS) == "parquet":
        write_parquet(path, results)
    else:
        write_text(path, format_text(fmt, results, n_images=n_images, band_hz=band_hz))
    return path


def results_table(results: Sequence[FileResult], n_images: int) -> Table:
    """The windows with a detection (see :func:`results_summary` for the rest)."""
    ranked_by = results[0].ranked_by if results else "confidence"
    table = Table(title="birdbridge search", show_lines=False)
    for column in ("file", "start (s)", "end (s)", "species", ranked_by, "closest pictures"):
        table.add_column(column, justify="right" if column in ("start (s)", "end (s)", ranked_by) else "left")
    for result in results:
        for window in result.detected:
            pictures = ", ".join(Path(i.path).name if i.path else i.id for i in window.images[:n_images])
            for rank, hit in enumerate(window.species):
                label = f"{hit.common_name} ({hit.scientific_name})" if hit.common_name else hit.scientific_name
                first = rank == 0
                table.add_row(Path(result.file).name if first else "", f"{window.start_s:.1f}" if first else "",
                              f"{window.end_s:.1f}" if first else "", label, f"{hit.score:.3f}",
                              pictures if first else "")
    return table


def results_summary(results: Sequence[FileResult]) -> str:
    """One line: windows with and without a detection (and the latter's background classes), and the score."""
    windows = sum(len(r.windows) for r in results)
    detected = sum(len(r.detected) for r in results)
    background: Counter[str] = Counter()
    for result in results:
        background.update(result.background_counts())
    quiet = ", ".join(f"{label} {n}" for label, n in background.most_common() if label)
    first = results[0] if results else None
    threshold = "" if first is None or first.threshold is None else f" ≥ {first.threshold:g}"
    return (f"{detected} of {windows} windows in {len(results)} file{'s' if len(results) != 1 else ''} with a "
            f"detection; {windows - detected} without{f' ({quiet})' if quiet else ''}; ranked by "
            f"{first.ranked_by if first else 'confidence'}{threshold}")
