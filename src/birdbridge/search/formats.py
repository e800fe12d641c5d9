"""Output formats: a table on the terminal, and the files BirdNET-Analyzer users already load.

* ``csv``: BirdNET-Analyzer's columns ``Start (s), End (s), Scientific name, Common name, Confidence,
  File``, plus ``Similarity`` and ``Image 1`` … ``Image n`` (paths, or ids for pictures without a file);
* ``raven``: a Raven selection table with BirdNET-Analyzer's columns (tab-separated); a file without a
  detection gets BirdNET-Analyzer 2.4's ``nocall`` row, so that every file searched is in its table;
* ``audacity``: Audacity labels as BirdNET-Analyzer 2.4 writes them: ``start<TAB>end<TAB>Scientific, Common<TAB>
  confidence``, no header (BirdNET's segments command takes the common name after ``", "`` and the confidence
  from the last field);
* ``kaleidoscope``: a Kaleidoscope CSV, ``INDIR,FOLDER,IN FILE,OFFSET,DURATION`` (the recording's grandparent
  folder, its folder, its name; the window's start and length), then ``scientific_name,common_name,confidence``
  (BirdNET-Analyzer 2.4's columns, which its segments command reads) and ``TOP1MATCH,TOP1DIST`` (the common
  name and confidence under Kaleidoscope's own names, as BirdNET-Analyzer 2.5 writes them);
* ``json``: one object per file, with its windows that hold a detection and a summary of the rest;
* ``parquet``: one row per (window, species) with the picture ids as a list column.

With ``--birdnet-names`` per-file results are named as BirdNET-Analyzer names them (:data:`BIRDNET_SUFFIX`;
combined files :data:`BIRDNET_COMBINED`), so that its segments and review tools pair them with the recordings.

Every format says the rank each row answers at (``Rank``; Kaleidoscope's ``RANK``; parquet's ``taxon_rank``;
Audacity's label, after the name, for a taxon above species): with ``--rank`` a row may name a genus, a family or
an order (:mod:`birdbridge.search.scoring`).

Rows are detections only: a window where no species reaches the threshold has none. ``Confidence`` is the
score the species were ranked and thresholded by (:attr:`FileResult.ranked_by`): the calibrated confidence
by default.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.table import Table

from birdbridge.errors import BirdbridgeError
from birdbridge.search.results import FileResult
from birdbridge.utils.atomic import atomic_path, json_text, write_text
from birdbridge.utils.selection_tables import RAVEN_FILE, RAVEN_LEAD, Selection, raven_table

FORMATS = ("table", "csv", "raven", "audacity", "kaleidoscope", "json", "parquet")
FILE_FORMATS = FORMATS[1:]
TEXT_FORMATS = ("csv", "raven", "audacity", "kaleidoscope", "json")  # text file formats (can go to standard output)
COLUMN_FORMATS = ("csv", "parquet")  # those that take additional columns (as BirdNET-Analyzer's)
SUFFIX = {"csv": ".birdbridge.results.csv", "raven": ".birdbridge.selection.table.txt",
          "audacity": ".birdbridge.audacity.txt", "kaleidoscope": ".birdbridge.kaleidoscope.csv",
          "json": ".birdbridge.results.json", "parquet": ".birdbridge.results.parquet"}
BIRDNET_SUFFIX = {"csv": ".BirdNET.results.csv", "raven": ".BirdNET.selection.table.txt",
                  "audacity": ".BirdNET.results.txt", "kaleidoscope": ".BirdNET.results.kaleidoscope.csv",
                  "json": ".BirdNET.results.json", "parquet": ".BirdNET.results.parquet"}
"""BirdNET-Analyzer's per-file result names (``--birdnet-names``): its segments and review tools find them."""
BIRDNET_COMBINED = {"csv": "BirdNET_CombinedTable.csv", "raven": "BirdNET_SelectionTable.txt",
                    "audacity": "BirdNET_AudacityLabels.txt", "kaleidoscope": "BirdNET_Kaleidoscope.csv",
                    "json": "BirdNET_Results.json", "parquet": "BirdNET_CombinedTable.parquet"}
"""BirdNET-Analyzer's names of combined result files (``--birdnet-names --combined`` into a folder)."""
KALEIDOSCOPE_COLUMNS = ["INDIR", "FOLDER", "IN FILE", "OFFSET", "DURATION", "scientific_name", "common_name",
                        "confidence", "TOP1MATCH", "TOP1DIST", "RANK"]
BIRDNET_CSV_COLUMNS = ["Start (s)", "End (s)", "Scientific name", "Common name", "Confidence", "File"]
CSV_COLUMNS = [*BIRDNET_CSV_COLUMNS, "Similarity", "Rank"]
Extra = Callable[[str], dict[str, str]]  # a recording's additional columns: name -> value (see search.params)
NOCALL = "nocall"  # BirdNET-Analyzer 2.4's common name and code of the row of a file without a detection
RAVEN_CELLS = ("Common Name", "Species Code", "Confidence")
RAVEN_TRAILING = ("Rank",)  # after BirdNET-Analyzer's columns, so readers by position still find theirs
RAVEN_COLUMNS = [*RAVEN_LEAD, *RAVEN_CELLS, *RAVEN_FILE, *RAVEN_TRAILING]


def detections(results: Sequence[FileResult]):
    """(file, window, species hit) for every species hit of every window, in order."""
    for result in results:
        for window in result.windows:
            for hit in window.species:
                yield result, window, hit


def _rank_note(taxon_rank: str) -> str:
    """What a one-field label adds after the name of a taxon above species: `` (genus)``."""
    return "" if taxon_rank == "species" else f" ({taxon_rank})"


def result_name(fmt: str, birdnet_names: bool = False) -> str:
    """The suffix of a recording's result file in ``fmt`` (``<stem>`` + this), birdbridge's or BirdNET's."""
    return (BIRDNET_SUFFIX if birdnet_names else SUFFIX)[fmt]


def combined_name(fmt: str, birdnet_names: bool = False) -> str:
    """The name of a combined result file written into a folder."""
    return BIRDNET_COMBINED[fmt] if birdnet_names else SUFFIX[fmt].lstrip(".")


def _extra_columns(results: Sequence[FileResult], extra: Extra | None) -> tuple[list[str], dict[str, list[str]]]:
    """The additional columns' names and each recording's values (``extra`` gives them per file)."""
    if extra is None:
        return [], {}
    values = {r.file: extra(r.file) for r in results}
    names = list(next(iter(values.values()))) if values else list(extra(""))
    return names, {file: [row[name] for name in names] for file, row in values.items()}


def to_csv(results: Sequence[FileResult], n_images: int, extra: Extra | None = None) -> str:
    """BirdNET-Analyzer's CSV (and birdbridge's columns after it); ``extra`` adds settings after them all."""
    names, values = _extra_columns(results, extra)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + [f"Image {i + 1}" for i in range(n_images)] + names)
    for result, window, hit in detections(results):
        images = [img.path or img.id for img in window.images[:n_images]]
        writer.writerow([f"{window.start_s:.1f}", f"{window.end_s:.1f}", hit.scientific_name,
                         hit.common_name or hit.scientific_name, f"{hit.score:.4f}", result.file,
                         f"{hit.similarity:.4f}", hit.taxon_rank, *images, *[""] * (n_images - len(images)),
                         *values.get(result.file, [])])
    return buffer.getvalue()


def to_audacity(results: Sequence[FileResult]) -> str:
    """Audacity labels, BirdNET-Analyzer's way: ``start, end, "Scientific, Common", confidence`` tab-separated."""
    return "".join(f"{window.start_s:.1f}\t{window.end_s:.1f}\t{hit.scientific_name}, "
                   f"{hit.common_name or hit.scientific_name}{_rank_note(hit.taxon_rank)}\t{hit.score:.4f}\n"
                   for _, window, hit in detections(results))


def to_kaleidoscope(results: Sequence[FileResult]) -> str:
    """A Kaleidoscope CSV (:data:`KALEIDOSCOPE_COLUMNS`) with the recording's absolute path split in three."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(KALEIDOSCOPE_COLUMNS)
    for result, window, hit in detections(results):
        path = Path(result.file).resolve()
        common = hit.common_name or hit.scientific_name
        writer.writerow([str(path.parent.parent), path.parent.name, path.name, f"{window.start_s:.1f}",
                         f"{window.end_s - window.start_s:.1f}", hit.scientific_name, common, f"{hit.score:.4f}",
                         common, f"{hit.score:.4f}", hit.taxon_rank])
    return buffer.getvalue()


def to_raven(results: Sequence[FileResult], low_hz: float, high_hz: float) -> str:
    """A Raven selection table (:func:`~birdbridge.utils.selection_tables.raven_table`, times within each file);
    a file without a detection gets BirdNET-Analyzer 2.4's ``nocall`` row (begin 0, end one window, confidence
    1.0), which BirdNET-Analyzer's own tools skip."""
    selections = []
    for result in results:
        path = str(Path(result.file).resolve())
        rows = [(window, hit) for window in result.windows for hit in window.species]
        channel = result.channel or 1  # the channel searched (the first for the channels' mean, as BirdNET)
        selections += [Selection(path, window.start_s, window.end_s, low_hz, high_hz, {
            "Common Name": hit.common_name or hit.scientific_name, "Species Code": hit.code or "",
            "Confidence": f"{hit.score:.4f}", "Rank": hit.taxon_rank}, channel=channel) for window, hit in rows]
        if not rows:
            end = result.windows[0].end_s - result.windows[0].start_s if result.windows else 0.0
            selections.append(Selection(path, 0.0, end, low_hz, high_hz, {
                "Common Name": NOCALL, "Species Code": NOCALL, "Confidence": "1.0"}, channel=channel, time_format="g"))
    return raven_table(selections, RAVEN_CELLS, time_format=".1f", run_on=False, trailing=RAVEN_TRAILING)


def to_json(results: Sequence[FileResult]) -> str:
    return json_text([r.to_dict(all_windows=False) for r in results])


def write_parquet(path: Path, results: Sequence[FileResult], extra: Extra | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names, values = _extra_columns(results, extra)
    schema = pa.schema([
        ("file", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()), ("rank", pa.int64()),
        ("species", pa.string()), ("common_name", pa.string()), ("code", pa.string()), ("score", pa.float64()),
        ("confidence", pa.float64()), ("similarity", pa.float64()), ("ranked_by", pa.string()),
        ("taxon_rank", pa.string()), ("channel", pa.int64()),
        ("images", pa.list_(pa.string())), ("image_scores", pa.list_(pa.float64())),
        *[(name, pa.string()) for name in names],
    ])
    rows = [{"file": r.file, "start_s": w.start_s, "end_s": w.end_s, "rank": rank + 1, "species": h.key,
             "common_name": h.common_name, "code": h.code, "score": h.score, "confidence": h.confidence,
             "similarity": h.similarity, "ranked_by": r.ranked_by, "taxon_rank": h.taxon_rank, "channel": r.channel,
             "images": [i.id for i in w.images],
             "image_scores": [i.score for i in w.images], **dict(zip(names, values.get(r.file, []), strict=True))}
            for r in results for w in r.windows for rank, h in enumerate(w.species)]
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def check_format(fmt: str, formats: Sequence[str] = FORMATS) -> str:
    """``fmt`` if it is one of ``formats``, else a clear error."""
    if fmt not in formats:
        raise BirdbridgeError(f"unknown format {fmt!r}; use one of {', '.join(formats)}")
    return fmt


def format_text(fmt: str, results: Sequence[FileResult], *, n_images: int, band_hz: tuple[float, float],
                extra: Extra | None = None) -> str:
    """The results in a text format (:data:`TEXT_FORMATS`), as written to files or standard output; ``extra``:
    each recording's additional columns (csv only)."""
    check_format(fmt, TEXT_FORMATS)
    if fmt == "csv":
        return to_csv(results, n_images, extra)
    if fmt == "raven":
        return to_raven(results, *band_hz)
    if fmt == "audacity":
        return to_audacity(results)
    if fmt == "kaleidoscope":
        return to_kaleidoscope(results)
    return to_json(results)


def write_results(path: Path, fmt: str, results: Sequence[FileResult], *, n_images: int, band_hz: tuple[float, float],
                  extra: Extra | None = None) -> Path:
    if check_format(fmt, FILE_FORMATS) == "parquet":
        write_parquet(path, results, extra)
    else:
        write_text(path, format_text(fmt, results, n_images=n_images, band_hz=band_hz, extra=extra))
    return path


def results_table(results: Sequence[FileResult], n_images: int) -> Table:
    """The windows with a detection (see :func:`results_summary` for the rest)."""
    ranked_by = results[0].ranked_by if results else "confidence"
    table = Table(title="birdbridge search", show_lines=False)
    for column in ("file", "start (s)", "end (s)", "species", "rank", ranked_by, "closest pictures"):
        table.add_column(column, justify="right" if column in ("start (s)", "end (s)", ranked_by) else "left")
    for result in results:
        for window in result.detected:
            pictures = ", ".join(Path(i.path).name if i.path else i.id for i in window.images[:n_images])
            for rank, hit in enumerate(window.species):
                first = rank == 0
                table.add_row(Path(result.file).name if first else "", f"{window.start_s:.1f}" if first else "",
                              f"{window.end_s:.1f}" if first else "", hit.label, hit.taxon_rank, f"{hit.score:.3f}",
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
