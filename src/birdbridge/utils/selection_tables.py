"""Tables of time selections in recordings, as files peers open: Raven selection tables and CSV.

A Raven selection table is tab-separated text: ``Selection, View, Channel, Begin Time (s), End Time (s),
Low Freq (Hz), High Freq (Hz)``, the caller's columns, then ``Begin Path`` (the recording) and
``File Offset (s)`` (where the selection begins in that recording). One table may hold selections of
several recordings; it then follows BirdNET-Analyzer's combined table (``save_as_rtable``): the rows are
grouped by recording, in the order the recordings first appear, and ``Begin Time``/``End Time`` run on
across the recordings as Raven shows a list of files opened together (each recording's selections are
shifted by the summed durations of the recordings before it), while ``File Offset (s)`` stays the time
within the recording. With one recording the two times are the same.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RAVEN_LEAD = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)")
RAVEN_FILE = ("Begin Path", "File Offset (s)")


@dataclass(frozen=True)
class Selection:
    """One selection: ``start_s``/``end_s`` within the recording ``path``, its band, and the caller's cells."""

    path: str
    start_s: float
    end_s: float
    low_hz: float = 0.0
    high_hz: float = 0.0
    cells: Mapping[str, Any] = field(default_factory=dict)
    channel: int = 1
    view: str = "Spectrogram 1"
    #: How this selection's times are written (a format spec such as ``".1f"`` or ``"g"``); None: the table's.
    time_format: str | None = None


def cell(value: Any) -> str:
    """A value as one cell of a tab-separated table: None is empty; tabs and line breaks become spaces."""
    if value is None:
        return ""
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return " ".join(text.replace("\t", " ").splitlines()) if any(c in text for c in "\t\r\n") else text


def raven_table(
    selections: Iterable[Selection], columns: Sequence[str] = (), *, durations: Mapping[str, float] | None = None,
    time_format: str = ".3f", run_on: bool = True, trailing: Sequence[str] = (),
) -> str:
    """A Raven selection table of ``selections`` with the caller's ``columns`` (their cells by name), and
    ``trailing`` columns after the file's (cells by name too).

    Rows are grouped by recording (first-appearance order; the order within a recording is kept) and
    numbered from 1. With ``run_on``, several recordings need their ``durations`` (seconds, by path) to
    run the begin and end times on across them (see the module docs; a missing one is a ValueError);
    without, every begin and end time is within its own recording (BirdNET-Analyzer's per-file tables).
    """
    groups: dict[str, list[Selection]] = {}
    for selection in selections:
        groups.setdefault(selection.path, []).append(selection)
    if run_on and len(groups) > 1:
        missing = [path for path in groups if durations is None or path not in durations]
        if missing:
            raise ValueError(f"a Raven table of several recordings needs their durations; missing: {missing[:3]}")
    lines = ["\t".join((*RAVEN_LEAD, *columns, *RAVEN_FILE, *trailing))]
    offset, number = 0.0, 0
    for path, group in groups.items():
        for s in group:
            number += 1
            fmt = s.time_format or time_format
            lines.append("\t".join([
                str(number), cell(s.view), str(s.channel), format(offset + s.start_s, fmt),
                format(offset + s.end_s, fmt), f"{s.low_hz:g}", f"{s.high_hz:g}",
                *(cell(s.cells.get(c)) for c in columns), cell(path), format(s.start_s, fmt),
                *(cell(s.cells.get(c)) for c in trailing),
            ]))
        if run_on and len(groups) > 1 and durations is not None:
            offset += float(durations[path])
    return "\n".join(lines) + "\n"


def csv_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV table (comma-separated, quoted where needed, ``\\n`` line ends); None cells are empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue()


__all__ = ["RAVEN_FILE", "RAVEN_LEAD", "Selection", "cell", "csv_table", "raven_table"]
