"""Archive search results as files: CSV, a Raven selection table, JSON, parquet, and a table on the terminal.

* ``csv``: ``Rank, Score, File, Start (s), End (s), Date, Time, Site, Window`` (the window's row), one hit a row;
* ``raven``: a selection table that opens in Raven, one selection a hit (``Begin Path`` = the recording,
  ``File Offset (s)`` = the hit's start in it, and ``Rank, Score, Date, Time, Site``). Hits of several
  recordings make one table as BirdNET-Analyzer combines them (:mod:`birdbridge.utils.selection_tables`):
  grouped by recording (sorted by path, hits by time), begin times running on across the recordings;
* ``json``: the query, the filters, the method and the hits; ``parquet``: one row a hit.

``birdbridge archive label ... --rows`` reads the CSV, Raven and JSON back by their ``Rank``.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from birdbridge.archive.search import ArchiveResults
from birdbridge.errors import BirdbridgeError
from birdbridge.utils.atomic import atomic_path, write_text
from birdbridge.utils.selection_tables import Selection, csv_table, raven_table

FORMATS = ("table", "csv", "raven", "json", "parquet")
CSV_COLUMNS = ("Rank", "Score", "File", "Start (s)", "End (s)", "Date", "Time", "Site", "Window")
RAVEN_COLUMNS = ("Rank", "Score", "Date", "Time", "Site")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise BirdbridgeError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt


def to_csv(results: ArchiveResults) -> str:
    return csv_table(CSV_COLUMNS, ((h.rank, f"{h.score:.4f}", h.file, f"{h.start_s:.3f}", f"{h.end_s:.3f}", h.date,
                                    h.time, h.site, h.row) for h in results.hits))


def to_raven(results: ArchiveResults) -> str:
    low, high = results.band_hz
    hits = sorted(results.hits, key=lambda h: (h.file, h.start_s, h.rank))
    selections = [Selection(h.file, h.start_s, h.end_s, low, high,
                            {"Rank": h.rank, "Score": f"{h.score:.4f}", "Date": h.date, "Time": h.time,
                             "Site": h.site}) for h in hits]
    return raven_table(selections, RAVEN_COLUMNS, durations=results.durations)


def to_json(results: ArchiveResults) -> str:
    return json.dumps(results.to_dict(), indent=2) + "\n"


def format_text(fmt: str, results: ArchiveResults) -> str:
    """The results as CSV, Raven or JSON text."""
    writers = {"csv": to_csv, "raven": to_raven, "json": to_json}
    if fmt not in writers:
        raise BirdbridgeError(f"{fmt} is not a text format; use csv, raven or json (or write parquet to a file)")
    return writers[fmt](results)


def write_results(path: str | Path, fmt: str, results: ArchiveResults) -> Path:
    """Write the results to ``path`` (atomically) in ``fmt``: csv, raven, json or parquet."""
    path = Path(path)
    if check_format(fmt) == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [h.to_dict() for h in results.hits]
        table = pa.Table.from_pylist(rows) if rows else pa.table({"rank": pa.array([], pa.int64())})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    else:
        write_text(path, format_text(fmt, results))
    return path


def hits_table(results: ArchiveResults) -> Table:
    """The hits as a table for the terminal."""
    table = Table(title=f"{describe(results.query)}: {len(results.hits)} of {results.searched:,} windows "
                        f"({results.method})")
    for column in ("rank", "score", "recording", "start (s)", "end (s)", "date", "time", "site"):
        table.add_column(column, justify="right" if column in ("rank", "score", "start (s)", "end (s)") else "left")
    for h in results.hits:
        table.add_row(str(h.rank), f"{h.score:.3f}", Path(h.file).name, f"{h.start_s:.1f}", f"{h.end_s:.1f}",
                      h.date or "", h.time or "", h.site or "")
    return table


def describe(query: dict) -> str:
    """One line saying what was searched for and how a text was read."""
    kind = query.get("kind")
    if kind == "text" and query.get("read_as") == "species":
        common = f" ({query['common_name']})" if query.get("common_name") else ""
        return f"species {query['species']}{common}"
    if kind == "text":
        return f"text {query['text']!r}"
    if kind == "image":
        return f"picture {query['image']}"
    if kind == "like":
        part = "" if query.get("start_s") is None else f" {query['start_s']:g}-{query['end_s']:g} s"
        return f"like {query['like']}{part}"
    return "vector"


__all__ = ["CSV_COLUMNS", "FORMATS", "RAVEN_COLUMNS", "check_format", "describe", "format_text", "hits_table",
           "to_csv", "to_json", "to_raven", "write_results"]
