"""Archive search results as files: CSV, a Raven selection table, JSON, parquet, and a table on the terminal.

* ``csv``: ``Rank, Score, File, Start (s), End (s), Date, Time, Site, Window`` (the window's row), one hit a row;
* ``raven``: a selection table that opens in Raven, one selection a hit (``Begin Path`` = the recording,
  ``File Offset (s)`` = the hit's start in it, and ``Rank, Score, Date, Time, Site``). Hits of several
  recordings make one table as BirdNET-Analyzer combines them (:mod:`birdbridge.utils.selection_tables`):
  grouped by recording (sorted by path, hits by time), begin times running on across the recordings;
* ``json``: the query, the filters, the method and the hits; ``parquet``: one row a hit.

With candidate species (``--gallery``) CSV and Raven add the best one's :data:`SPECIES_COLUMNS`, parquet its
``species``, ``common_name``, ``species_score``, ``taxon_rank`` and all of them as ``candidates``, JSON all of them
per hit (``species``) and how they were scored (``candidates``). Without, nothing changes.

``birdbridge archive label ... --rows`` reads the CSV, Raven and JSON back by their ``Rank``.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from birdbridge.archive.search import ArchiveHit, ArchiveResults
from birdbridge.errors import BirdbridgeError
from birdbridge.utils.atomic import atomic_path, write_text
from birdbridge.utils.selection_tables import Selection, csv_table, raven_table

FORMATS = ("table", "csv", "raven", "json", "parquet")
CSV_COLUMNS = ("Rank", "Score", "File", "Start (s)", "End (s)", "Date", "Time", "Site", "Window")
RAVEN_COLUMNS = ("Rank", "Score", "Date", "Time", "Site")
#: With candidate species (``--gallery``): the best one's, after the columns above (all of them in JSON and parquet).
SPECIES_COLUMNS = ("Scientific name", "Common name", "Species score", "Taxon rank")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise BirdbridgeError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt


def _species_cells(hit: ArchiveHit) -> tuple:
    """The best candidate's name, common name, score and rank (blank when it has none)."""
    top = hit.top
    if top is None:
        return ("", "", "", "")
    return (top.scientific_name, top.common_name or top.scientific_name, f"{top.score:.4f}", top.taxon_rank)


def to_csv(results: ArchiveResults) -> str:
    species = results.candidates is not None
    columns = CSV_COLUMNS + (SPECIES_COLUMNS if species else ())
    return csv_table(columns, ((h.rank, f"{h.score:.4f}", h.file, f"{h.start_s:.3f}", f"{h.end_s:.3f}", h.date,
                                h.time, h.site, h.row, *(_species_cells(h) if species else ())) for h in results.hits))


def to_raven(results: ArchiveResults) -> str:
    low, high = results.band_hz
    species = results.candidates is not None
    columns = RAVEN_COLUMNS + (SPECIES_COLUMNS if species else ())
    hits = sorted(results.hits, key=lambda h: (h.file, h.start_s, h.rank))
    selections = [Selection(h.file, h.start_s, h.end_s, low, high,
                            {"Rank": h.rank, "Score": f"{h.score:.4f}", "Date": h.date, "Time": h.time,
                             "Site": h.site, **(dict(zip(SPECIES_COLUMNS, _species_cells(h), strict=True))
                                                if species else {})}) for h in hits]
    return raven_table(selections, columns, durations=results.durations)


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

        rows = [_parquet_row(h) for h in results.hits]
        table = pa.Table.from_pylist(rows) if rows else pa.table({"rank": pa.array([], pa.int64())})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    else:
        write_text(path, format_text(fmt, results))
    return path


def _parquet_row(hit: ArchiveHit) -> dict:
    """A hit as a parquet row: its fields; with candidates the best one's ``species``, ``common_name``,
    ``species_score`` and ``taxon_rank``, and all of them as ``candidates``."""
    row = hit.to_dict()
    if hit.species is None:
        return row
    row["candidates"] = row.pop("species")
    top = hit.top
    row.update(species=top and top.scientific_name, common_name=top and (top.common_name or top.scientific_name),
               species_score=top and top.score, taxon_rank=top and top.taxon_rank)
    return row


def hits_table(results: ArchiveResults) -> Table:
    """The hits as a table for the terminal (with candidate species: a species column)."""
    table = Table(title=f"{describe(results.query)}: {len(results.hits)} of {results.searched:,} windows "
                        f"({results.method})")
    columns = ["rank", "score", "recording", "start (s)", "end (s)", "date", "time", "site"]
    species = results.candidates is not None
    for column in columns + (["species"] if species else []):
        table.add_column(column, justify="right" if column in ("rank", "score", "start (s)", "end (s)") else "left")
    for h in results.hits:
        cells = [str(h.rank), f"{h.score:.3f}", Path(h.file).name, f"{h.start_s:.1f}", f"{h.end_s:.1f}", h.date or "",
                 h.time or "", h.site or ""]
        if species:
            cells.append(", ".join(f"{_name(sp)} {sp.score:.2f}" for sp in h.species or ()) or "-")
        table.add_row(*cells)
    return table


def _name(sp) -> str:
    return f"{sp.scientific_name} ({sp.taxon_rank})" if sp.taxon_rank != "species" else (sp.common_name or
                                                                                        sp.scientific_name)


def describe(query: dict) -> str:
    """One line saying what was searched for and how a text was read."""
    kind = query.get("kind")
    if kind == "text" and query.get("read_as") == "taxon":
        return f"{query['rank']} {query['taxon']} ({len(query['members'])} species)"
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


__all__ = ["CSV_COLUMNS", "FORMATS", "RAVEN_COLUMNS", "SPECIES_COLUMNS", "check_format", "describe", "format_text",
           "hits_table", "to_csv", "to_json", "to_raven", "write_results"]
