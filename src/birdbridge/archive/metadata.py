"""When and where a recording was made: from its file name (AudioMoth, Song Meter, BirdNET-style) or a metadata CSV.

File names (the first timestamp in the name counts; the site is the text before it, else the folder)::

    20240501_053000.WAV                 AudioMoth: 2024-05-01 05:30:00, site = the parent folder's name
    SITE01_20240501_053000.wav          site SITE01
    SMA12345_20240501_053000.wav        Song Meter: site SMA12345 (the recorder's prefix)
    x_20240501T053000_y.flac            ISO basic; also 2024-05-01_05-30-00 and 20240501053000
    SITE01_20240501.wav                 a date alone: no time
    5E9D3A30.WAV                        old AudioMoth firmware: the UTC time as 8 hex digits

Times are kept as the names (or the CSV) give them, without time zones (AudioMoth writes UTC unless it
was set to local time). A metadata CSV (``file``/``path``, ``date``, ``time``, ``site``, ``lat``,
``lon``) wins over the names: its non-empty cells replace what a name says.
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from birdbridge.datasets.base import read_table, resolve_path
from birdbridge.errors import BirdbridgeError

_STAMP = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?:[_T\- ]?(\d{2})[:\-]?(\d{2})[:\-]?(\d{2}))?(?!\d)")
_HEX = re.compile(r"[0-9A-Fa-f]{8}")
_HEX_RANGE = (calendar.timegm((2015, 1, 1, 0, 0, 0)), calendar.timegm((2040, 1, 1, 0, 0, 0)))
_SEPARATORS = "_-. "
_ALIASES = {"path": "file", "filename": "file", "latitude": "lat", "longitude": "lon", "lng": "lon",
            "long": "lon", "datetime": "date"}


@dataclass(frozen=True)
class RecordingMeta:
    """The date (``YYYY-MM-DD``), time of day (``HH:MM:SS``), site and position of a recording (None: unknown)."""

    date: str | None = None
    time: str | None = None
    site: str | None = None
    lat: float | None = None
    lon: float | None = None

    @property
    def epoch(self) -> float | None:
        """Seconds from 1970-01-01 00:00 to the start, read as the naive clock time it is (None without a time)."""
        if self.date is None or self.time is None:
            return None
        return float(calendar.timegm(dt.datetime.fromisoformat(f"{self.date}T{self.time}").timetuple()))


def from_name(path: str | os.PathLike[str]) -> RecordingMeta:
    """The date, time and site that a recording's file name gives (see the module docs)."""
    p = Path(path)
    stem = p.stem
    folder = p.parent.name or None
    if _HEX.fullmatch(stem):
        seconds = int(stem, 16)
        if _HEX_RANGE[0] <= seconds < _HEX_RANGE[1]:
            when = dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
            return RecordingMeta(when.date().isoformat(), when.time().isoformat(), folder)
    for match in _STAMP.finditer(stem):
        year, month, day, hour, minute, second = match.groups()
        try:
            day_ = dt.date(int(year), int(month), int(day))
            clock = None if hour is None else dt.time(int(hour), int(minute), int(second))
        except ValueError:
            continue
        if not 1970 <= day_.year <= 2100:
            continue
        site = stem[: match.start()].strip(_SEPARATORS) or folder
        return RecordingMeta(day_.isoformat(), None if clock is None else clock.isoformat(), site)
    return RecordingMeta(site=folder)


def parse_date(text: str, where: str = "date") -> str:
    """``YYYY-MM-DD`` from ``2024-05-01`` or ``20240501``; raises BirdbridgeError naming ``where``."""
    value = text.strip()
    digits = value.replace("-", "")
    try:
        if not (len(digits) == 8 and digits.isdigit()):
            raise ValueError
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:])).isoformat()
    except ValueError:
        raise BirdbridgeError(f"{where}: {text!r} is not a date; write YYYY-MM-DD (e.g. 2024-05-01)") from None


def parse_time(text: str, where: str = "time") -> str:
    """``HH:MM:SS`` from ``05:30``, ``05:30:00``, ``0530`` or ``053000``; raises BirdbridgeError naming ``where``."""
    value = text.strip()
    parts = value.split(":") if ":" in value else [value[i : i + 2] for i in range(0, len(value), 2)]
    try:
        if not 2 <= len(parts) <= 3 or not all(len(p) <= 2 and p.isdigit() for p in parts):
            raise ValueError
        numbers = [int(p) for p in parts] + [0] * (3 - len(parts))
        return dt.time(*numbers).isoformat()
    except ValueError:
        raise BirdbridgeError(f"{where}: {text!r} is not a time of day; write HH:MM or HH:MM:SS (e.g. 05:30)") from None


def read_metadata_csv(path: str | os.PathLike[str], recordings: Sequence[Path]) -> tuple[dict[Path, RecordingMeta],
                                                                                        int]:
    """The rows of a metadata CSV (``file``/``path``, ``date``, ``time``, ``site``, ``lat``, ``lon``) by recording,
    and how many rows name none of ``recordings`` (resolved paths).

    A ``file`` cell is a path relative to the CSV's folder (or absolute), or a bare file name that names one
    recording. A ``date`` cell may hold the time too (``2024-05-01T05:30:00``). Errors name the line.
    """
    table = read_table(path, required=("file",), optional=("date", "time", "site", "lat", "lon"), aliases=_ALIASES)
    base = Path(path).resolve().parent
    by_path = {p: p for p in recordings}
    by_name: dict[str, list[Path]] = {}
    for p in recordings:
        by_name.setdefault(p.name, []).append(p)
    found: dict[Path, RecordingMeta] = {}
    unmatched = 0
    for row in table.rows:
        written = table.text(row, "file")
        target = by_path.get(resolve_path(base, written).resolve())
        if target is None and os.sep not in written and "/" not in written:
            named = by_name.get(written, [])
            if len(named) > 1:
                raise table.error(row, f"{len(named)} recordings are named {written!r}",
                                  "give the path (relative to the CSV's folder)")
            target = named[0] if named else None
        if target is None:
            unmatched += 1
            continue
        if target in found:
            raise table.error(row, f"{written!r} is listed twice", "give one row per recording")
        try:
            found[target] = _row_meta(table.optional_text(row, "date"), table.optional_text(row, "time"),
                                      table.optional_text(row, "site"), table.number(row, "lat"),
                                      table.number(row, "lon"))
        except BirdbridgeError as exc:
            raise table.error(row, str(exc)) from None
    return found, unmatched


def merge(name: RecordingMeta, given: RecordingMeta | None) -> RecordingMeta:
    """``name``'s values replaced by the non-empty ones of ``given`` (a CSV row)."""
    if given is None:
        return name
    return replace(name, **{k: v for k, v in asdict(given).items() if v is not None})


def _row_meta(day: str | None, clock: str | None, site: str | None, lat: float | None, lon: float | None
              ) -> RecordingMeta:
    if day is not None and ("T" in day or " " in day.strip()):
        day, _, inline = day.replace("T", " ").partition(" ")
        clock = clock or inline.strip() or None
    if lat is not None and not -90 <= lat <= 90:
        raise BirdbridgeError(f"lat {lat} is not a latitude (-90 to 90)")
    if lon is not None and not -180 <= lon <= 180:
        raise BirdbridgeError(f"lon {lon} is not a longitude (-180 to 180)")
    return RecordingMeta(None if day is None else parse_date(day, "date"),
                         None if clock is None else parse_time(clock, "time"), site, lat, lon)


__all__ = ["RecordingMeta", "from_name", "merge", "parse_date", "parse_time", "read_metadata_csv"]
