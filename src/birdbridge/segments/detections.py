"""Detections read from result files: birdbridge's (every ``search --format``) and BirdNET-Analyzer's.

A file's kind is told from its header, as BirdNET-Analyzer's segments command tells it (a first column
``Selection``: a Raven table; ``INDIR``: Kaleidoscope; ``Start (s)``: its CSV; no header: Audacity labels), plus
birdbridge's parquet (``start_s``) and JSON. Each kind gives, per row: the recording it names (Raven's
``Begin Path``, the CSV's ``File``, Kaleidoscope's ``INDIR``/``FOLDER``/``IN FILE``; Audacity labels name none,
so the file's own name does: ``<stem>.BirdNET.results.txt``), the span (a combined Raven table's ``File Offset
(s)``), the species (scientific and common names where the file has them) and the confidence (the ``Confidence``
column, which birdbridge fills with the score that ranked the species). ``nocall`` rows (BirdNET-Analyzer's
files without a detection) are no detections.

A bad row is a :class:`~birdbridge.errors.Failure` naming the file and line; the file's other rows are read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from birdbridge.datasets.base import Row, Table, read_table
from birdbridge.errors import Failure, InputError
from birdbridge.search.formats import BIRDNET_COMBINED, BIRDNET_SUFFIX, NOCALL, SUFFIX, combined_name
from birdbridge.search.results import FileResult
from birdbridge.utils.walk import FolderFiles, collect_files

RESULT_SUFFIXES = tuple(sorted({s.lower() for s in (*SUFFIX.values(), *BIRDNET_SUFFIX.values())}, key=len,
                               reverse=True))
COMBINED_NAMES = frozenset(n.lower() for n in (*BIRDNET_COMBINED.values(), *(combined_name(f) for f in SUFFIX)))
_EXTENSIONS = (".csv", ".txt", ".json", ".parquet")

# canonical (lower-case) column names of every kind; read_table matches headers case-insensitively
_RAVEN = ("begin time (s)", "end time (s)", "file offset (s)", "begin path", "common name", "scientific name",
          "species code", "confidence")
_CSV = ("start (s)", "end (s)", "scientific name", "common name", "confidence", "file")
_KALEIDOSCOPE = ("indir", "folder", "in file", "offset", "duration", "scientific_name", "common_name", "confidence",
                 "top1match", "top1dist")
_PARQUET = ("start_s", "end_s", "species", "common_name", "score", "file")
_COLUMNS = tuple(dict.fromkeys((*_RAVEN, *_CSV, *_KALEIDOSCOPE, *_PARQUET)))


@dataclass(frozen=True)
class Detection:
    """One detection of a result file: ``recording`` as the file names it (None: the file names none)."""

    results: str  # the result file
    where: str  # "line 7", "row 3", "window 2"
    recording: str | None
    start_s: float
    end_s: float
    scientific_name: str | None
    common_name: str | None
    confidence: float

    @property
    def species(self) -> str:
        """The species as a label: its common name (as BirdNET-Analyzer's segments folders), else scientific."""
        return self.common_name or self.scientific_name or ""

    @property
    def key(self) -> str:
        """What groups detections by species (and names their folder): :attr:`species`, in any letter case. Raven
        tables of BirdNET-Analyzer 2.4 hold common names only, so the common name is what every kind shares."""
        return self.species.casefold()


def is_result_file(path: Path) -> bool:
    """Whether ``path`` is named as birdbridge or BirdNET-Analyzer name their result files."""
    name = path.name.lower()
    return name in COMBINED_NAMES or name.endswith(RESULT_SUFFIXES)


def stem_of(path: Path) -> str:
    """The recording stem a per-file result is named after (``call`` for ``call.BirdNET.results.txt``)."""
    name = path.name
    lower = name.lower()
    for marker in (".birdnet.", ".birdbridge."):
        if marker in lower:
            return name[: lower.index(marker)]
    return path.stem


def find_result_files(inputs: Sequence[str | os.PathLike[str]]) -> FolderFiles:
    """Result files: those given, and those under folders that are named as result files (see
    :func:`is_result_file`); InputError for a missing path or a folder without any."""
    found = collect_files(inputs, _EXTENSIONS, what="result files")
    explicit = {Path(os.fspath(p)) for p in inputs if not Path(os.fspath(p)).is_dir()}
    found.files = [f for f in found.files if f in explicit or is_result_file(f)]
    if not found.files and not found.problems:
        raise InputError(", ".join(map(os.fspath, inputs)), "holds no result files",
                         "give files written by `birdbridge search --output` or BirdNET-Analyzer "
                         f"(names ending {', '.join(sorted(set(BIRDNET_SUFFIX.values())))} or birdbridge's)")
    return found


def read_detections(path: str | os.PathLike[str]) -> tuple[list[Detection], list[Failure]]:
    """The detections of one result file, and its bad rows; InputError when the file cannot be read at all."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return _from_json(path), []
    if path.suffix.lower() != ".parquet" and not _has_header(path):
        return _from_audacity(path)
    table = read_table(path, (), _COLUMNS)
    columns = set(table.columns)
    if {"begin time (s)", "end time (s)"} <= columns:
        kind = _raven
    elif {"start (s)", "end (s)"} <= columns:
        kind = _csv
    elif {"offset", "duration"} <= columns:
        kind = _kaleidoscope
    elif {"start_s", "end_s", "species"} <= columns:
        kind = _parquet
    else:
        raise InputError(str(path), f"not a result file (columns: {', '.join(table.columns)})",
                         "give a Raven table, a BirdNET-style CSV, a Kaleidoscope CSV, Audacity labels, or "
                         "birdbridge's JSON or parquet results")
    found: list[Detection] = []
    failures: list[Failure] = []
    for row in table.rows:
        try:
            detection = kind(table, row)
        except InputError as exc:
            failures.append(Failure(str(path), str(exc)))
            continue
        if detection is not None and NOCALL not in (detection.species.casefold(), detection.key):
            found.append(detection)
    return found, failures


def _has_header(path: Path) -> bool:
    """Whether the first line is a header (BirdNET-Analyzer's rule: anything else is Audacity labels)."""
    if path.suffix.lower() == ".csv":
        return True
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        first = next((line for line in fh if line.strip()), "")
    return first.strip().lower().startswith(("selection", "indir", "start (s)"))


def _span(table: Table, row: Row, start: str, end: str) -> tuple[float, float]:
    begin, finish = _required(table, row, start), _required(table, row, end)
    if finish < begin:
        raise table.error(row, f"ends ({finish:g} s) before it starts ({begin:g} s)")
    return begin, finish


def _required(table: Table, row: Row, column: str) -> float:
    value = table.number(row, column)
    if value is None:
        raise table.error(row, f"column {column!r} is empty", "every detection needs a start, an end and a confidence")
    return value


def _detection(table: Table, row: Row, recording: str | None, span: tuple[float, float], scientific: str | None,
               common: str | None, confidence: str) -> Detection:
    if not (scientific or common):
        raise table.error(row, "no species name")
    return Detection(table.source, row.where, recording, span[0], span[1], scientific, common,
                     _required(table, row, confidence))


def _raven(table: Table, row: Row) -> Detection:
    begin, end = _span(table, row, "begin time (s)", "end time (s)")
    offset = table.number(row, "file offset (s)")  # a combined table's begin times run on across its files
    start = begin if offset is None else offset
    return _detection(table, row, table.optional_text(row, "begin path"), (start, start + end - begin),
                      table.optional_text(row, "scientific name"), table.optional_text(row, "common name")
                      or table.optional_text(row, "species code"), "confidence")


def _csv(table: Table, row: Row) -> Detection:
    return _detection(table, row, table.optional_text(row, "file"), _span(table, row, "start (s)", "end (s)"),
                      table.optional_text(row, "scientific name"), table.optional_text(row, "common name"),
                      "confidence")


def _kaleidoscope(table: Table, row: Row) -> Detection:
    start = _required(table, row, "offset")
    duration = _required(table, row, "duration")
    parts = [table.optional_text(row, c) or "" for c in ("indir", "folder", "in file")]
    recording = os.path.join(*parts) if parts[2] else None
    common = table.optional_text(row, "common_name") or table.optional_text(row, "top1match")
    confidence = "confidence" if table.optional_text(row, "confidence") is not None else "top1dist"
    return _detection(table, row, recording, (start, start + duration), table.optional_text(row, "scientific_name"),
                      common, confidence)


def _parquet(table: Table, row: Row) -> Detection:
    return _detection(table, row, table.optional_text(row, "file"), _span(table, row, "start_s", "end_s"),
                      table.optional_text(row, "species"), table.optional_text(row, "common_name"), "score")


def _from_audacity(path: Path) -> tuple[list[Detection], list[Failure]]:
    """Audacity labels as BirdNET-Analyzer writes them: start, end, ``Scientific, Common`` (or ``Scientific_Common``),
    confidence; the recording is the one the file is named after."""
    found, failures = [], []
    with open(path, encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            cells = line.rstrip("\r\n").split("\t")
            try:
                if len(cells) < 4:
                    raise ValueError(f"{len(cells)} tab-separated fields, not 4 (start, end, label, confidence)")
                start, end, confidence = float(cells[0]), float(cells[1]), float(cells[-1])
            except ValueError as exc:
                failures.append(Failure(str(path), f"{path}: line {number}: not an Audacity label with a confidence "
                                                   f"({exc})"))
                continue
            label = cells[2]
            scientific, _, common = label.partition(", ") if ", " in label else label.partition("_")
            if NOCALL in (scientific.casefold(), common.casefold()):
                continue
            found.append(Detection(str(path), f"line {number}", None, start, end, scientific.strip() or None,
                                   common.strip() or None, confidence))
    return found, failures


def _from_json(path: Path) -> list[Detection]:
    """birdbridge's JSON results (``search --format json``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        results = [FileResult.from_dict(item) for item in (data if isinstance(data, list) else [data])]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(str(path), f"not birdbridge's JSON results ({exc})",
                         "give a file written by `birdbridge search --format json`") from None
    return [Detection(str(path), f"window {window.index}", result.file, window.start_s, window.end_s,
                      hit.scientific_name, hit.common_name, hit.score)
            for result in results for window in result.windows for hit in window.species]
