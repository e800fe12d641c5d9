"""Labels of archive windows: read from Raven selection tables, labels CSVs or archive search results, attached
to the windows they overlap, and kept with their provenance in the archive's ``labels`` table.

Sources:

* **Raven selection table** (tab-separated, ``Begin Time (s)``, ``End Time (s)``): every selection is a
  *yes* for its label, taken from ``label_column`` (default: the first of Annotation, Label, Species,
  Common Name, Scientific Name, Class). The recording is ``Begin Path``, else ``Begin File``, else
  ``file`` (one recording for the whole table). With ``File Offset (s)`` the selection starts there in its
  recording (as in BirdNET-Analyzer's combined tables), else at its begin time (then the table may name
  only one recording). Raven's repeated rows of one selection (one per view) count once.
* **Labels CSV**: ``file, start, end, label, value`` (value yes/no, 1/0, true/false; default yes).
  ``file`` is relative to the CSV's folder, or absolute.
* **Archive search results** (``birdbridge archive search`` as CSV, Raven or JSON) with one label, yes or
  no, for the hits of the given ranks: those exact windows.

A recording is found by its path, else by its file name if one recording of the archive has it. A label
attaches to each window it overlaps by at least ``min_overlap`` of the shorter of the two (a zero-length
label: the windows that hold its moment). Rows that are malformed, or name no recording or no window of
the archive, are reported with their line (or hit) and the others are added. The same label from the same
row of the same source by the same person is stored once; a later label of a window overrides an earlier
one where counts and ``latest`` are concerned.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from birdbridge.datasets.base import Row, Table, read_table, resolve_path
from birdbridge.errors import BirdbridgeError, Failure, InputError
from birdbridge.store.records import placeholders
from birdbridge.utils.clock import now_iso
from birdbridge.utils.input_files import read_text_file

if TYPE_CHECKING:
    from birdbridge.archive.store import Archive

LABEL_COLUMNS = ("Annotation", "Label", "Species", "Common Name", "Scientific Name", "Class")
#: Seconds within which a search hit's start and end name a window.
HIT_TOLERANCE_S = 0.0015
_RAVEN_ALIASES = {"begin time (s)": "begin", "end time (s)": "end", "begin path": "path", "begin file": "file_name",
                  "file offset (s)": "offset", "selection": "selection"}
_CSV_ALIASES = {"path": "file", "start (s)": "start", "start_s": "start", "begin": "start", "end (s)": "end",
                "end_s": "end"}


@dataclass(frozen=True)
class LabelSpan:
    """A label of a span of a recording: ``value`` True (present) or False (absent). ``where`` names the source
    row for messages (``labels.csv, line 7``), ``line`` is its number; ``exact`` spans are search hits (their
    window exactly)."""

    file: str
    start_s: float
    end_s: float
    label: str
    value: bool = True
    where: str = ""
    line: int = 0
    exact: bool = False


@dataclass(frozen=True)
class Label:
    """A label stored in the archive: the window (``row``; its recording and span), the label and its provenance."""

    id: int
    row: int
    file: str
    start_s: float
    end_s: float
    label: str
    value: bool
    who: str
    at: str
    source: str
    source_row: int


@dataclass(frozen=True)
class LabelCount:
    label: str
    yes: int
    no: int


@dataclass
class LabelReport:
    """What :func:`add_labels` did: labels read, window labels added and already there, and the rows skipped."""

    read: int = 0
    added: int = 0
    already: int = 0
    windows: int = 0  # distinct windows that got a label from this source
    skipped: list[Failure] = field(default_factory=list)


def default_user() -> str:
    """Who labels, when not given: the user's login name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no password entry (some containers)
        return os.environ.get("USER") or "unknown"


# ------------------------------------------------------------------------------------------ reading sources


def read_labels(
    path: str | os.PathLike[str], *, label_column: str | None = None, file: str | os.PathLike[str] | None = None,
) -> tuple[list[LabelSpan], list[Failure]]:
    """The labels of a Raven selection table or a labels CSV (told apart by their header), and the rows that
    could not be read."""
    header = read_table(path, required=()).columns
    lowered = {c.lower() for c in header}
    if "begin time (s)" in lowered:
        return _raven_labels(Path(path), label_column, file)
    return _csv_labels(Path(path))


def _raven_labels(path: Path, label_column: str | None, file: str | os.PathLike[str] | None
                  ) -> tuple[list[LabelSpan], list[Failure]]:
    table = read_table(path, required=("begin", "end"), optional=("path", "file_name", "offset", "selection"),
                       aliases=_RAVEN_ALIASES)
    column = _label_column(table, label_column)
    if file is None and "path" not in table and "file_name" not in table:
        raise InputError(str(path), "no Begin Path or Begin File column says which recording the selections are of",
                         "give the recording with --file (Python: file=)")
    spans, bad, seen = [], [], set()
    for row in table.rows:
        selection = table.optional_text(row, "selection")
        if selection is not None:
            if selection in seen:
                continue  # the same selection in another view
            seen.add(selection)
        try:
            label = table.text(row, column)
            begin, end = _number(table, row, "begin"), _number(table, row, "end")
            offset = table.number(row, "offset") if "offset" in table else None
            recording = str(file) if file is not None else (
                table.optional_text(row, "path") or table.text(row, "file_name"))
        except InputError as exc:
            bad.append(Failure(f"{path}, {row.where}", str(exc)))
            continue
        start = begin if offset is None else offset
        spans.append(LabelSpan(recording, start, start + (end - begin), label, True, f"{path}, {row.where}",
                               _line(row)))
    if "offset" not in table and len({s.file for s in spans}) > 1:
        raise InputError(str(path), "names several recordings but has no File Offset (s) column, so its begin times "
                         "cannot be placed in the recordings", "export the table with File Offset (s)")
    return spans, bad


def _label_column(table: Table, given: str | None) -> str:
    by_lower = {c.lower(): c for c in table.columns}
    if given is not None:
        if given.lower() not in by_lower:
            raise InputError(table.source, f"no column {given!r} (found: {', '.join(table.columns)})",
                             "give the column that holds the labels with --label-column")
        return by_lower[given.lower()]
    for name in LABEL_COLUMNS:
        if name.lower() in by_lower:
            return by_lower[name.lower()]
    raise InputError(table.source, f"no label column (looked for {', '.join(LABEL_COLUMNS)}; found: "
                     f"{', '.join(table.columns)})", "name the column with --label-column")


def _csv_labels(path: Path) -> tuple[list[LabelSpan], list[Failure]]:
    table = read_table(path, required=("file", "start", "end", "label"), optional=("value",), aliases=_CSV_ALIASES)
    base = path.resolve().parent
    spans, bad = [], []
    for row in table.rows:
        try:
            written = table.text(row, "file")
            start, end = _number(table, row, "start"), _number(table, row, "end")
            label = table.text(row, "label")
            value = table.flag(row, "value") if "value" in table else True
            if value is None:
                raise table.error(row, "column 'value' is empty", "write yes/no or 1/0")
        except InputError as exc:
            bad.append(Failure(f"{path}, {row.where}", str(exc)))
            continue
        recording = written if _name_only(written) else str(resolve_path(base, written))
        spans.append(LabelSpan(recording, start, end, label, value, f"{path}, {row.where}", _line(row)))
    return spans, bad


def hit_labels(path: str | os.PathLike[str], label: str, value: bool, ranks: Sequence[int] | None
               ) -> list[LabelSpan]:
    """Labels for the hits of ``ranks`` (all if None) of an archive search result file (CSV, Raven or JSON)."""
    path = Path(path)
    label = label.strip()
    if not label:
        raise BirdbridgeError("the label must not be empty")
    hits = _read_hits(path)
    by_rank = {rank: hit for rank, hit in hits}
    wanted = sorted(by_rank) if ranks is None else list(dict.fromkeys(ranks))
    missing = [r for r in wanted if r not in by_rank]
    if missing:
        held = f"ranks {min(by_rank)}-{max(by_rank)}" if by_rank else "no hits"
        raise InputError(str(path), f"has no hit of rank {', '.join(map(str, missing))} (it holds {held})",
                         "give ranks from its Rank column")
    return [LabelSpan(*by_rank[r], label, value, f"{path}, hit {r}", r, exact=True) for r in wanted]


def _read_hits(path: Path) -> list[tuple[int, tuple[str, float, float]]]:
    """(rank, (file, start, end)) of each hit of a result file of ``birdbridge archive search``."""
    text = read_text_file(path)
    if text.lstrip().startswith("{"):
        try:
            hits = json.loads(text)["hits"]
            return [(int(h["rank"]), (str(h["file"]), float(h["start_s"]), float(h["end_s"]))) for h in hits]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(str(path), f"not the JSON of `birdbridge archive search` ({exc})") from None
    header = {c.lower() for c in read_table(path, required=()).columns}
    if "begin path" in header:
        table = read_table(path, required=("rank", "begin", "end", "path", "offset"), aliases=_RAVEN_ALIASES)
        out = []
        for row in table.rows:
            offset, begin, end = (_number(table, row, c) for c in ("offset", "begin", "end"))
            out.append((_rank(table, row), (table.text(row, "path"), offset, offset + end - begin)))
        return out
    table = read_table(path, required=("rank", "file", "start", "end"), aliases=_CSV_ALIASES)
    return [(_rank(table, row), (table.text(row, "file"), _number(table, row, "start"), _number(table, row, "end")))
            for row in table.rows]


def _rank(table: Table, row: Row) -> int:
    rank = table.integer(row, "rank")
    if rank is None:
        raise table.error(row, "column 'Rank' is empty")
    return rank


def _number(table: Table, row: Row, column: str) -> float:
    value = table.number(row, column)
    if value is None:
        raise table.error(row, f"column {column!r} is empty")
    return value


def _line(row: Row) -> int:
    digits = re.findall(r"\d+", row.where)
    return int(digits[0]) if digits else 0


def _name_only(text: str) -> bool:
    return "/" not in text and "\\" not in text


def _basename(text: str) -> str:
    return re.split(r"[\\/]", text)[-1]


# ------------------------------------------------------------------------------------------ attaching


def add_labels(
    archive: Archive, labels: str | os.PathLike[str] | Iterable[LabelSpan], *, who: str | None = None,
    source: str | None = None, min_overlap: float = 0.5, label_column: str | None = None,
    file: str | os.PathLike[str] | None = None,
) -> LabelReport:
    """Attach labels to the archive's windows in one transaction (see the module docs); ``labels`` is a Raven
    selection table or labels CSV (read with :func:`read_labels` and its ``label_column`` and ``file``), or
    label spans. ``who`` defaults to the user's login name, ``source`` to the file's path."""
    if not 0 < min_overlap <= 1:
        raise BirdbridgeError(f"the minimum overlap is a fraction above 0 and at most 1, not {min_overlap}")
    report = LabelReport()
    if isinstance(labels, (str, os.PathLike)):
        spans, report.skipped = read_labels(labels, label_column=label_column, file=file)
        source = source or str(Path(labels).resolve())
    else:
        spans = list(labels)
    report.read = len(spans) + len(report.skipped)
    who = (who or default_user()).strip() or default_user()
    source = source or "python"
    count = len(archive)
    file_ids = _file_ids(archive, {span.file for span in spans})
    at = now_iso()
    inserts: list[tuple] = []
    for span in spans:
        where = span.where or f"{span.file} {span.start_s:g}-{span.end_s:g} s"
        file_id = file_ids.get(span.file)
        if isinstance(file_id, list):
            shown = ", ".join(file_id[:3]) + (f" and {len(file_id) - 3} more" if len(file_id) > 3 else "")
            report.skipped.append(Failure(where, f"{where}: {len(file_id)} recordings of archive {archive.folder} are "
                                                 f"called {_basename(span.file)} ({shown}); give the recording's path"))
            continue
        if file_id is None:
            report.skipped.append(Failure(where, f"{where}: recording {span.file} is not in archive {archive.folder}"))
            continue
        rows = _windows_of(archive, file_id, span, min_overlap, count)
        if not rows:
            what = "no window starts and ends there" if span.exact else (
                f"no window overlaps {span.start_s:g}-{span.end_s:g} s by at least {min_overlap:.0%}")
            report.skipped.append(Failure(where, f"{where}: {what} in {span.file}"))
            continue
        inserts += [(row, span.label, int(span.value), who, at, source, span.line) for row in rows]
    with archive.transaction() as conn:
        before = conn.total_changes
        conn.executemany("INSERT OR IGNORE INTO labels (row, label, value, who, at, source, source_row) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", inserts)
        report.added = conn.total_changes - before
    report.already = len(inserts) - report.added
    report.windows = len({i[0] for i in inserts})
    return report


def _file_ids(archive: Archive, names: set[str]) -> dict[str, int | list[str]]:
    """The archive's recording of each name: by its path as written or resolved, else by its file name if exactly
    one recording has it (if several do: their paths). Only these names are looked up (a label click does not read
    every recording's row)."""
    resolved = {name: str(Path(name).expanduser().resolve()) for name in names}
    by_path = {f.path: f.id for f in archive.files([*names, *resolved.values()])}
    found = {}
    for name in names:
        file_id = by_path.get(name) or by_path.get(resolved[name])
        if file_id is None:  # by file name: the paths that end with it, then those whose last part is it
            base = _basename(name)
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", base)
            named = [(i, path) for i, path in archive.query("SELECT id, path FROM files WHERE path LIKE ? ESCAPE "
                                                            "'\\'", [pattern]) if _basename(path) == base]
            file_id = named[0][0] if len(named) == 1 else None
            if len(named) > 1:  # not one recording: the message lists them
                found[name] = [path for _, path in named]
        if file_id is not None:
            found[name] = file_id
    return found


def _windows_of(archive: Archive, file_id: int, span: LabelSpan, min_overlap: float, count: int) -> list[int]:
    s, e = span.start_s, span.end_s
    if span.exact:
        t = HIT_TOLERANCE_S
        found = archive.query("SELECT row FROM windows WHERE row < ? AND file = ? AND start_s BETWEEN ? AND ? AND "
                              "end_s BETWEEN ? AND ?", [count, file_id, s - t, s + t, e - t, e + t])
        return [r[0] for r in found]
    if e <= s:  # a moment: the windows that hold it
        found = archive.query("SELECT row FROM windows WHERE row < ? AND file = ? AND start_s <= ? AND end_s > ?",
                              [count, file_id, s, s])
        return [r[0] for r in found]
    found = archive.query("SELECT row, start_s, end_s FROM windows WHERE row < ? AND file = ? AND start_s < ? AND "
                          "end_s > ? ORDER BY row", [count, file_id, e, s])
    return [row for row, ws, we in found if (min(e, we) - max(s, ws)) >= min_overlap * min(e - s, we - ws) - 1e-9]


# ------------------------------------------------------------------------------------------ reading back


def read_labels_table(archive: Archive, label: str | None = None, *, latest: bool = False,
                      rows: Sequence[int] | None = None) -> list[Label]:
    """The stored labels (see :meth:`Archive.labels`); ``rows``: only those of these windows (at most 900)."""
    clauses, args = ["l.row < ?"], [len(archive)]
    if label is not None:
        clauses.append("l.label = ?")
        args.append(label)
    if rows is not None:
        wanted = [int(r) for r in rows]
        clauses.append(f"l.row IN ({placeholders(len(wanted))})" if wanted else "0")
        args += wanted
    if latest:
        clauses.append("l.id IN (SELECT MAX(id) FROM labels GROUP BY row, label)")
    rows = archive.query(
        "SELECT l.id, l.row, f.path, w.start_s, w.end_s, l.label, l.value, l.who, l.at, l.source, l.source_row "
        f"FROM labels l JOIN windows w ON w.row = l.row JOIN files f ON f.id = w.file WHERE {' AND '.join(clauses)} "
        "ORDER BY l.id", args)
    return [Label(*r[:6], bool(r[6]), *r[7:]) for r in rows]


def label_counts(archive: Archive) -> dict[str, LabelCount]:
    """Windows whose last label of each name is yes, and no (see :meth:`Archive.label_counts`)."""
    rows = archive.query(
        "SELECT label, SUM(value), SUM(1 - value) FROM labels WHERE row < ? AND id IN (SELECT MAX(id) FROM labels "
        "GROUP BY row, label) GROUP BY label ORDER BY label", [len(archive)])
    return {name: LabelCount(name, int(yes), int(no)) for name, yes, no in rows}


__all__ = ["LABEL_COLUMNS", "Label", "LabelCount", "LabelReport", "LabelSpan", "add_labels", "default_user",
           "hit_labels", "label_counts", "read_labels", "read_labels_table"]
