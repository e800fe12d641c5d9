"""Species and ordered species lists (taxonomies), and taxonomy CSV files.

Errors in input files name the file and the physical line number ("line 5"; the header is line 1)
and the column, as :class:`~birdbridge.errors.InputError`.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.species.names import (
    check_name_word,
    fold,
    normalize_locale,
    split_scientific_name,
    split_species_label,
)
from birdbridge.utils.atomic import write_text
from birdbridge.utils.input_files import read_text_file

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "specific_epithet")
CSV_COLUMNS = (*RANKS, "common_name", "code")

_HIGHER_RANKS = RANKS[:5]
_FINGERPRINT_VERSION = "birdbridge-taxonomy-v1"


class UnknownSpeciesError(BirdbridgeError, KeyError):
    """A name that matches no species of a taxonomy."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Species:
    """One species with its Linnaean ranks; higher ranks may be empty strings when unknown."""

    kingdom: str
    phylum: str
    cls: str
    order: str
    family: str
    genus: str
    specific_epithet: str
    common_name: str | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        """Raises ValueError unless genus and specific epithet are single, correctly cased words."""
        if not self.genus or not self.specific_epithet:
            raise ValueError(f"a species needs a genus and a specific epithet, got {self!r}")
        check_name_word(self.genus, "genus", capital=True)
        check_name_word(self.specific_epithet, "specific epithet", capital=False)
        for name in ("common_name", "code"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)

    @classmethod
    def from_names(
        cls, scientific_name: str, common_name: str | None = None, code: str | None = None
    ) -> Species:
        """A species known only by its scientific (and optionally common) name; raises ValueError."""
        genus, epithet = split_scientific_name(scientific_name)
        return cls("", "", "", "", "", genus, epithet, common_name or None, code or None)

    @property
    def scientific_name(self) -> str:
        return f"{self.genus} {self.specific_epithet}"

    @property
    def key(self) -> str:
        """The species id: its scientific name."""
        return self.scientific_name

    @property
    def taxonomy_path(self) -> tuple[str, str, str, str, str, str, str]:
        """Kingdom to specific epithet; unknown ranks are empty strings."""
        return (
            self.kingdom,
            self.phylum,
            self.cls,
            self.order,
            self.family,
            self.genus,
            self.specific_epithet,
        )

    @property
    def label(self) -> str:
        """The common name if known, else the scientific name."""
        return self.common_name or self.scientific_name

    def as_dict(self) -> dict[str, str]:
        """The CSV row, with ``class`` for :attr:`cls` and empty strings for missing values."""
        values = (*self.taxonomy_path, self.common_name or "", self.code or "")
        return dict(zip(CSV_COLUMNS, values, strict=True))


def normalize_rank_name(value: str) -> str:
    """Drop a parenthesised description: ``"Anatidae (Ducks, Geese, and Waterfowl)"`` -> ``"Anatidae"``."""
    value = " ".join(value.split())
    head = value.split("(", 1)[0].strip()
    return head if head else value


class Taxonomy:
    """An ordered list of unique species, looked up by scientific name, common name or code."""

    def __init__(self, species: Iterable[Species]) -> None:
        self._species: tuple[Species, ...] = tuple(species)
        self._by_key: dict[str, int] = {}
        self._by_folded: dict[str, int] = {}
        self._by_code: dict[str, int] = {}
        self._by_common: dict[str, int] = {}
        for i, sp in enumerate(self._species):
            if not isinstance(sp, Species):
                raise TypeError(f"Taxonomy takes Species objects, got {type(sp).__name__} at position {i}")
            _add_unique(self._by_key, sp.key, i, "scientific name", self._species)
            self._by_folded.setdefault(fold(sp.key), i)
            if sp.code is not None:
                _add_unique(self._by_code, fold(sp.code), i, "code", self._species)
            if sp.common_name is not None:
                _add_unique(self._by_common, fold(sp.common_name), i, "common name", self._species)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self._species)

    def __iter__(self) -> Iterator[Species]:
        return iter(self._species)

    def __getitem__(self, item: int) -> Species:
        return self._species[item]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, (str, Species)) and self._find(name) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Taxonomy) and self._species == other._species

    def __hash__(self) -> int:
        return hash(self._species)

    def __repr__(self) -> str:
        shown = ", ".join(self.keys[:3]) + (", ..." if len(self) > 3 else "")
        return f"Taxonomy({len(self)} species: {shown})"

    @property
    def species(self) -> tuple[Species, ...]:
        return self._species

    @property
    def keys(self) -> tuple[str, ...]:
        """Scientific names, in order."""
        return tuple(sp.key for sp in self._species)

    def _find(self, name: str | Species) -> int | None:
        if isinstance(name, Species):
            return self._by_key.get(name.key)
        for cand in split_species_label(str(name)).lookups():
            for table, query in (
                (self._by_key, cand),
                (self._by_folded, fold(cand)),
                (self._by_code, fold(cand)),
                (self._by_common, fold(cand)),
            ):
                if query in table:
                    return table[query]
        return None

    def index(self, name: str | Species) -> int:
        """Position of a species given its scientific name, common name (any case) or code."""
        found = self._find(name)
        if found is None:
            names = [*self.keys, *(sp.common_name for sp in self._species if sp.common_name)]
            close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            message = f"species {str(name)!r} is not in this taxonomy of {len(self)} species"
            raise UnknownSpeciesError(message + (f" ({hint})" if hint else ""))
        return found

    def get(self, name: str | Species, default: Species | None = None) -> Species | None:
        """The species for a scientific name, common name or code, or ``default``."""
        found = self._find(name)
        return default if found is None else self._species[found]

    def subset(self, keys: Iterable[str | Species]) -> Taxonomy:
        """The given species, in the order given (names as accepted by :meth:`index`)."""
        picked: list[Species] = []
        seen: set[int] = set()
        for name in keys:
            i = self.index(name)
            if i in seen:
                raise BirdbridgeError(f"species {self._species[i].key!r} is listed twice in the subset")
            seen.add(i)
            picked.append(self._species[i])
        return Taxonomy(picked)

    @property
    def fingerprint(self) -> str:
        """sha256 over the canonical rows (all fields, in order); any change or reordering changes it."""
        if self._fingerprint is None:
            rows = [list(sp.as_dict().values()) for sp in self._species]
            payload = json.dumps([_FINGERPRINT_VERSION, rows], ensure_ascii=False, separators=(",", ":"))
            self._fingerprint = hashlib.sha256(payload.encode("utf-8")).hexdigest()
        return self._fingerprint

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the canonical CSV (UTF-8, header ``kingdom,...,code``) atomically."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for sp in self._species:
            writer.writerow(sp.as_dict())
        write_text(path, buffer.getvalue())


def _add_unique(table: dict[str, int], value: str, i: int, what: str, species: Sequence[Species]) -> None:
    if value in table:
        first = species[table[value]].key
        raise BirdbridgeError(
            f"two species share the {what} {value!r}: {first!r} (position {table[value] + 1}) "
            f"and {species[i].key!r} (position {i + 1})"
        )
    table[value] = i


# ---------------------------------------------------------------------------------------------- CSV

_ALIASES: dict[str, str] = {
    "kingdom": "kingdom",
    "phylum": "phylum",
    "class": "class",
    "cls": "class",
    "class_name": "class",
    "order": "order",
    "order1": "order",
    "order_name": "order",
    "family": "family",
    "family_name": "family",
    "family_sci_name": "family",
    "genus": "genus",
    "genus_name": "genus",
    "specific_epithet": "specific_epithet",
    "specificepithet": "specific_epithet",
    "species_epithet": "specific_epithet",
    "epithet": "specific_epithet",
    "scientific_name": "scientific_name",
    "scientificname": "scientific_name",
    "sci_name": "scientific_name",
    "latin_name": "scientific_name",
    "binomial": "scientific_name",
    "common_name": "common_name",
    "commonname": "common_name",
    "com_name": "common_name",
    "primary_com_name": "common_name",
    "english_name": "common_name",
    "vernacular_name": "common_name",
    "vernacularname": "common_name",
    "code": "code",
    "species_code": "code",
    "speciescode": "code",
    "ebird_code": "code",
    "category": "category",
}


_TRANSLATED = re.compile(r"(?:common_name|com_name|vernacular_name)_(?P<locale>[a-z]{2,3}(?:_[a-z0-9]{2,4})?)")


def _column_key(header: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", header.strip().lower()).strip("_")


def _canonical_column(header: str) -> str | None:
    return _ALIASES.get(_column_key(header))


def _locale_columns(header: Sequence[str]) -> dict[str, int]:
    """The columns of common names in other languages (``common_name_de``, ...) by locale."""
    found: dict[str, int] = {}
    for i, cell in enumerate(header):
        match = _TRANSLATED.fullmatch(_column_key(cell))
        if match:
            found.setdefault(normalize_locale(match["locale"]), i)
    return found


def is_taxonomy_header(line: str) -> bool:
    """Whether ``line`` is the header of a taxonomy CSV: it names a species column (see :func:`load_taxonomy_csv`)."""
    delimiter = "\t" if "\t" in line and "," not in line else ","
    columns = {_canonical_column(cell) for cell in next(csv.reader([line], delimiter=delimiter), [])}
    return "scientific_name" in columns or {"genus", "specific_epithet"} <= columns


def load_taxonomy_csv(path: str | os.PathLike[str]) -> Taxonomy:
    """Read a species CSV (comma- or tab-separated, UTF-8 with or without BOM) with a header row.

    Columns (any case; spaces or underscores): ``kingdom, phylum, class, order, family, genus,
    specific_epithet, common_name, code``, or ``scientific_name`` instead of genus + epithet. Aliases
    such as ``Common Name``, ``species_code``, ``SCI_NAME``, ``PRIMARY_COM_NAME`` are accepted; other
    columns are ignored (``common_name_de`` and the like are :func:`load_translated_names`'). If a ``category``
    column exists (eBird taxonomy), rows whose category is not ``species`` are skipped. Family and other higher
    ranks lose parenthesised descriptions.
    """
    return Taxonomy(_read_taxonomy_csv(path)[0])


def load_translated_names(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """The common names in other languages of a taxonomy CSV: ``{locale: {scientific name: name}}`` from columns
    ``common_name_<locale>`` (``common_name_de``, ``Common name (fr)``, ``common_name_pt_BR``; locales as
    :func:`~birdbridge.species.names.normalize_locale` gives them); empty cells are left out."""
    return _read_taxonomy_csv(path)[1]


def _read_taxonomy_csv(path: str | os.PathLike[str]) -> tuple[list[Species], dict[str, dict[str, str]]]:
    """The species of a taxonomy CSV, and its names in other languages (see :func:`load_translated_names`)."""
    path = Path(path)
    source = str(path)
    text = read_text_file(path)
    if not text.strip():
        raise InputError(source, "file is empty", "expected a header row such as " + ",".join(CSV_COLUMNS))
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = (
        "\t" if path.suffix.lower() == ".tsv" or ("\t" in first_line and "," not in first_line) else ","
    )
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)

    header: list[str] | None = None
    header_line = 0
    columns: dict[str, int] = {}
    rows: list[tuple[int, list[str]]] = []
    end = 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header, header_line = record, start
                columns = _map_header(source, header, header_line)
                translated = _locale_columns(header)
            else:
                rows.append((start, record))
    except csv.Error as exc:
        raise InputError(source, f"line {reader.line_num}: malformed CSV: {exc}", "check quoting") from None
    if header is None:
        raise InputError(source, "no header row", "expected a header such as " + ",".join(CSV_COLUMNS))

    names = {canon: header[i].strip() for canon, i in columns.items()}
    species: list[Species] = []
    lines: list[int] = []
    names_in: dict[str, dict[str, str]] = {locale: {} for locale in translated}
    for line, record in rows:
        if len(record) > len(header):
            raise InputError(
                source,
                f"line {line}: {len(record)} fields but the header (line {header_line}) has {len(header)}",
                'quote values that contain the separator, e.g. "Anatidae (Ducks, Geese, and Waterfowl)"',
            )
        values = {canon: record[i].strip() if i < len(record) else "" for canon, i in columns.items()}
        if "category" in values and values["category"] and values["category"].lower() != "species":
            continue
        species.append(_species_from_row(source, line, values, names))
        lines.append(line)
        for locale, i in translated.items():
            name = " ".join(record[i].split()) if i < len(record) else ""
            if name:
                names_in[locale].setdefault(species[-1].key, name)
    if not species:
        raise InputError(source, "no species rows after the header", "add one row per species")
    check_duplicates(source, species, lines, "lines")
    return species, names_in


def _map_header(source: str, header: list[str], line: int) -> dict[str, int]:
    columns: dict[str, int] = {}
    for i, name in enumerate(header):
        canon = _canonical_column(name)
        if canon is None:
            continue
        if canon in columns:
            raise InputError(
                source,
                f"line {line}: columns {header[columns[canon]].strip()!r} and {name.strip()!r} "
                f"both give the {canon.replace('_', ' ')}",
                "keep one of them",
            )
        columns[canon] = i
    expected = f"start with a header row such as {','.join(CSV_COLUMNS)} or scientific_name,common_name"
    if not columns:
        raise InputError(
            source, f"line {line}: no header row with known column names (found {header[:4]!r})", expected
        )
    if "scientific_name" not in columns and not {"genus", "specific_epithet"} <= columns.keys():
        found = ", ".join(repr(h.strip()) for h in header)
        raise InputError(
            source,
            f"line {line}: the header has no species name column (found {found})",
            "add 'scientific_name', or both 'genus' and 'specific_epithet'",
        )
    return columns


def _species_from_row(source: str, line: int, values: dict[str, str], names: dict[str, str]) -> Species:
    def fail(problem: str, hint: str = "") -> InputError:
        return InputError(source, f"line {line}: {problem}", hint)

    genus, epithet = values.get("genus", ""), values.get("specific_epithet", "")
    scientific = " ".join(values.get("scientific_name", "").split())
    if scientific:
        try:
            sci_genus, sci_epithet = split_scientific_name(scientific)
        except ValueError as exc:
            raise fail(f"column {names['scientific_name']!r}: {exc}") from None
        if (genus and genus != sci_genus) or (epithet and epithet != sci_epithet):
            raise fail(
                f"column {names['scientific_name']!r} says {scientific!r} but the genus and epithet columns "
                f"say {f'{genus} {epithet}'.strip()!r}",
                "make them agree or leave genus/specific_epithet empty",
            )
        genus, epithet = sci_genus, sci_epithet
    else:
        for canon, value in (("genus", genus), ("specific_epithet", epithet)):
            if not value:
                column = names.get(canon) or names.get("scientific_name")
                raise fail(f"column {column!r} is empty: every row needs a species name")
        for canon, value, capital in (("genus", genus, True), ("specific_epithet", epithet, False)):
            try:
                check_name_word(value, canon.replace("_", " "), capital=capital)
            except ValueError as exc:
                raise fail(f"column {names[canon]!r}: {exc}") from None
    ranks = [normalize_rank_name(values.get(rank, "")) for rank in _HIGHER_RANKS]
    common = " ".join(values.get("common_name", "").split()) or None
    code = values.get("code") or None
    return Species(*ranks, genus, epithet, common, code)


def check_duplicates(source: str, species: Sequence[Species], positions: Sequence[int], units: str) -> None:
    """Raise InputError naming both lines (or entries) of a repeated scientific name, common name or code."""
    checks = (
        ("species", lambda sp: sp.key),
        ("common name", lambda sp: fold(sp.common_name) if sp.common_name else None),
        ("code", lambda sp: fold(sp.code) if sp.code else None),
    )
    for what, get in checks:
        seen: dict[str, int] = {}
        for sp, pos in zip(species, positions, strict=True):
            value = get(sp)
            if value is None:
                continue
            if value in seen:
                shown = (
                    sp.key if what == "species" else (sp.common_name if what == "common name" else sp.code)
                )
                raise InputError(
                    source,
                    f"duplicate {what} {shown!r}: {units} {seen[value]} and {pos}",
                    "each species must appear once",
                )
            seen[value] = pos
