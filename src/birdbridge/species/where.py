"""Where and when: a place and a week (or a date) that restrict the species to those expected there and then.

A :class:`RangeFilter` holds ``--lat``, ``--lon``, ``--week`` (or ``--date``) and ``--sf-thresh`` (BirdNET-Analyzer's
names and default), checks them (each error names its option), and gives the species of BirdNET's range model
(:mod:`birdbridge.species.geo`) that a taxonomy holds, labels read by :func:`parse_species_label`.

BirdNET's calendar has 48 weeks, 4 per month: days 1-7 of a month are its first week, 8-14 the second, 15-21 the
third and the rest the fourth (:func:`week_of_date`). With ``week="auto"`` each recording's date comes from its file
name, AudioMoth style ``20240515_063000.WAV`` (also behind a prefix, as Song Meters write ``SMA01234_20240515_063000``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.species.geo import SF_THRESH, YEAR_ROUND, RangeSpecies, load_range_model
from birdbridge.species.labels import parse_species_label
from birdbridge.species.taxonomy import Species, Taxonomy

AUTO = "auto"
WEEKS = 48
Week = int | Literal["auto"] | None  # 1-48; "auto": from each file's name; None (or -1): the whole year

_FILE_DATE = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})[_T-]?(\d{2})(\d{2})(\d{2})(?!\d)")
_WEEK_HINT = ("BirdNET's year has 48 weeks, 4 per month; -1 or no --week means the whole year; or give --date "
              "YYYY-MM-DD, or --week auto for each recording's date from its name, YYYYMMDD_HHMMSS")


def check_latitude(lat: float) -> float:
    """``lat`` as a float, or an InputError naming ``--lat``."""
    return _in_range(lat, "--lat", "latitude", 90.0, "decimal degrees, north positive, e.g. 42.48")


def check_longitude(lon: float) -> float:
    """``lon`` as a float, or an InputError naming ``--lon``."""
    return _in_range(lon, "--lon", "longitude", 180.0, "decimal degrees, east positive, e.g. -76.45")


def _in_range(value: float, option: str, what: str, limit: float, hint: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(option, f"{what} {value!r} is not a number", hint) from None
    if not -limit <= number <= limit:  # also refuses nan
        raise InputError(option, f"{what} {value} is out of range [{-limit:g}, {limit:g}]", hint)
    return number


def check_week(week: int | str | None) -> Week:
    """A week 1-48, ``"auto"``, or None for the whole year (also -1, BirdNET's year-round week); InputError naming
    ``--week`` for anything else (0 and 49 too)."""
    if week is None:
        return None
    text = str(week).strip()
    if text.casefold() == AUTO:
        return AUTO
    try:
        number = int(text)
    except ValueError:
        raise InputError("--week", f"{week!r} is not a week number", _WEEK_HINT) from None
    if number == YEAR_ROUND:
        return None
    if not 1 <= number <= WEEKS:
        raise InputError("--week", f"week {number} is out of range 1-{WEEKS}", _WEEK_HINT)
    return number


def check_sf_thresh(sf_thresh: float) -> float:
    """The lowest range-model score kept, in (0, 1); InputError naming ``--sf-thresh``."""
    try:
        value = float(sf_thresh)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise InputError("--sf-thresh", f"{sf_thresh!r} is out of range (0, 1)",
                         f"BirdNET's default is {SF_THRESH}; lower keeps more species")
    return value


def week_of_date(date: dt.date) -> int:
    """BirdNET's week 1-48 of a date: 4 per month, the fourth from day 22 to the month's end."""
    return (date.month - 1) * 4 + min((date.day - 1) // 7, 3) + 1


def parse_date(text: str | dt.date) -> dt.date:
    """A ``YYYY-MM-DD`` date (or a date), or an InputError naming ``--date``."""
    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise InputError("--date", f"{text!r} is not a date", "write it YYYY-MM-DD, e.g. 2024-05-15") from None


def date_from_filename(path: str | os.PathLike[str]) -> dt.datetime | None:
    """The recording time in an AudioMoth-style file name (``20240515_063000.WAV``, ``SMA01234_20240515_063000.wav``),
    or None when the name holds no valid one."""
    for match in _FILE_DATE.finditer(Path(path).stem):
        try:
            return dt.datetime(*(int(part) for part in match.groups()))
        except ValueError:
            continue
    return None


@dataclass(frozen=True)
class RangeMatch:
    """The species of a range list that a taxonomy holds (in the range list's order), and how many it expected."""

    taxonomy: Taxonomy
    expected: int
    where: str

    @property
    def note(self) -> str:
        return (f"species filter: BirdNET's range model expects {self.expected} species {self.where}; the gallery "
                f"has {len(self.taxonomy)} of them")

    def check(self) -> Taxonomy:
        """The species, or a BirdbridgeError when the taxonomy holds none of them."""
        if not len(self.taxonomy):
            raise BirdbridgeError(
                f"none of the {self.expected} species that BirdNET's range model expects {self.where} is in this "
                "gallery's species index: add them with `birdbridge gallery species` (a list from `birdbridge "
                "species`), or lower --sf-thresh")
        return self.taxonomy


@dataclass(frozen=True)
class RangeFilter:
    """The species expected at (``lat``, ``lon``) in ``week`` (1-48; None: the whole year; ``"auto"``: each
    recording's week from its file name) by BirdNET's range model, kept when their score reaches ``sf_thresh``.

    ``model``: a range model file or folder (default: the one installed with ``birdbridge[geo]``).
    Invalid values raise :class:`~birdbridge.errors.InputError` naming the option.
    """

    lat: float
    lon: float
    week: Week = None
    sf_thresh: float = SF_THRESH
    model: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lat", check_latitude(self.lat))
        object.__setattr__(self, "lon", check_longitude(self.lon))
        object.__setattr__(self, "week", check_week(self.week))
        object.__setattr__(self, "sf_thresh", check_sf_thresh(self.sf_thresh))
        if self.model is not None:
            object.__setattr__(self, "model", os.fspath(self.model))

    @classmethod
    def from_options(cls, lat: float | None = None, lon: float | None = None, week: int | str | None = None,
                     date: str | dt.date | None = None, sf_thresh: float = SF_THRESH,
                     model: str | os.PathLike[str] | None = None) -> RangeFilter | None:
        """The filter the options ask for, or None when no place is given (then a week or date is an error)."""
        if lat is None and lon is None:
            if week is not None or date is not None:
                raise InputError("--week" if week is not None else "--date", "a week or date needs a place",
                                 "give --lat and --lon too")
            return None
        if lat is None or lon is None:
            raise InputError("--lon" if lon is None else "--lat", "missing: --lat and --lon go together")
        if date is not None:
            if week is not None:
                raise InputError("--date", "give --week or --date, not both")
            week = week_of_date(parse_date(date))
        return cls(lat, lon, week, sf_thresh, None if model is None else os.fspath(model))

    @property
    def auto(self) -> bool:
        return self.week == AUTO

    def for_file(self, path: str | os.PathLike[str]) -> RangeFilter:
        """This filter with the week of the recording ``path`` when the week is ``"auto"`` (itself otherwise); an
        InputError naming the file when its name holds no date."""
        if not self.auto:
            return self
        when = date_from_filename(path)
        if when is None:
            raise InputError(os.fspath(path), "--week auto: the file name holds no date",
                             "name it AudioMoth-style YYYYMMDD_HHMMSS, or give --week N or --date YYYY-MM-DD")
        return RangeFilter(self.lat, self.lon, week_of_date(when), self.sf_thresh, self.model)

    def at(self, date: str | dt.date | None = None, lat: float | None = None, lon: float | None = None
           ) -> RangeFilter:
        """This filter for a recording made at (``lat``, ``lon``) (each None: this filter's) on ``date``, which gives
        the week when the week is ``"auto"``; an auto week without a date is an InputError naming ``--week``."""
        week = self.week
        if self.auto:
            if date is None:
                raise InputError("--week", "auto: the recording has no date", "give --week N or --date YYYY-MM-DD")
            week = week_of_date(date if isinstance(date, dt.date) else parse_date(str(date)[:10]))
        return RangeFilter(self.lat if lat is None else lat, self.lon if lon is None else lon, week, self.sf_thresh,
                           self.model)

    def describe(self) -> str:
        """``at 42.48, -76.45 in week 20 (sf_thresh 0.03)``."""
        when = f"in week {self.week}"
        if self.week is None or self.auto:
            when = "all year" if self.week is None else "in each recording's week"
        return f"at {self.lat:g}, {self.lon:g} {when} (sf_thresh {self.sf_thresh:g})"

    def species(self, sort: str = "freq") -> list[RangeSpecies]:
        """The range list, as BirdNET's ``species`` command (best first, or ``sort="alpha"``)."""
        if self.auto:
            raise BirdbridgeError("--week auto takes each recording's week: use for_file(recording) first")
        week = YEAR_ROUND if self.week is None else int(self.week)
        return load_range_model(self.model).species(self.lat, self.lon, week, self.sf_thresh, sort)

    def match(self, taxonomy: Taxonomy) -> RangeMatch:
        """The species of the range list that ``taxonomy`` holds: each label read by :func:`parse_species_label`
        through the taxonomy, then by its common name (for renamed genera); labels that are no species
        (``Dog_Dog``, ``Engine_Engine``) are left out."""
        expected = self.species()
        found: dict[str, Species] = {}
        for item in expected:
            try:
                species = parse_species_label(item.label, taxonomy)
            except ValueError:
                continue
            entry = taxonomy.get(species) or (taxonomy.get(species.common_name) if species.common_name else None)
            if entry is not None:
                found.setdefault(entry.key, entry)
        return RangeMatch(Taxonomy(found.values()), len(expected), self.describe())


def species_filter(where: RangeFilter | None, species: object | None) -> object | None:
    """The one species filter of a run: ``where`` (a place and week) or ``species`` (a list), never both (as
    BirdNET-Analyzer); None without either."""
    if where is not None and species is not None:
        raise BirdbridgeError("give --species-list or --lat/--lon, not both (as BirdNET-Analyzer)")
    return where if where is not None else species
