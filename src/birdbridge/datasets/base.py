"""Dataset items and the :class:`Dataset` container, plus the table reading shared by the adapters.

Items hold absolute paths (the dataset root joined with the path the source gives); a missing file is
not an error when loading, :meth:`Dataset.check_files` lists them. Every item's ``species`` is a key
(scientific name) of the dataset's :class:`~birdbridge.species.Taxonomy`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.species.taxonomy import Taxonomy
from birdbridge.utils.input_files import read_text_file
from birdbridge.utils.text import optional_text

__all__ = ["MODALITIES", "AudioItem", "Dataset", "ImageItem", "Item", "Row", "Table", "VideoItem", "read_table"]

MODALITIES = ("audio", "images", "videos")
_SPLIT_ORDER = ("train", "training", "val", "valid", "validation", "dev", "test", "testing")


@dataclass(frozen=True)
class AudioItem:
    """One recording of one species."""

    id: str
    path: Path
    species: str  # Taxonomy key (scientific name)
    split: str
    duration_s: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ImageItem:
    """One picture of one species; ``source`` names the collection (e.g. ``"nabirds"``, ``"inat"``)."""

    id: str
    path: Path
    species: str
    split: str
    source: str | None = None
    licence: str | None = None
    photographer: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class VideoItem:
    """One video of one species; ``target_second`` is when the bird is shown, ``reliable_audio`` whether it is heard."""

    id: str
    path: Path
    species: str
    split: str
    fps: float | None = None
    frame_count: int | None = None
    duration_s: float | None = None
    target_second: float | None = None
    reliable_audio: bool | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)


Item = AudioItem | ImageItem | VideoItem
_I = TypeVar("_I", AudioItem, ImageItem, VideoItem)


def _split_sort_key(split: str) -> tuple[int, str]:
    low = split.lower()
    return (_SPLIT_ORDER.index(low) if low in _SPLIT_ORDER else len(_SPLIT_ORDER), split)


@dataclass
class Dataset:
    """Recordings, pictures and videos of the species of one taxonomy, with their splits."""

    name: str
    root: Path
    taxonomy: Taxonomy
    audio: list[AudioItem] = field(default_factory=list)
    images: list[ImageItem] = field(default_factory=list)
    videos: list[VideoItem] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Raises BirdbridgeError if an item's species is not a taxonomy key or an id repeats in a modality."""
        self.root = Path(self.root)
        keys = set(self.taxonomy.keys)
        for modality in MODALITIES:
            seen: set[str] = set()
            for item in getattr(self, modality):
                if item.species not in keys:
                    raise BirdbridgeError(
                        f"dataset {self.name!r}: {modality} item {item.id!r} has species {item.species!r}, "
                        "which is not a scientific name of the dataset's taxonomy"
                    )
                if item.id in seen:
                    raise BirdbridgeError(f"dataset {self.name!r}: two {modality} items have the id {item.id!r}")
                seen.add(item.id)

    def __repr__(self) -> str:
        counts = ", ".join(f"{len(getattr(self, m))} {m}" for m in MODALITIES)
        return f"Dataset({self.name!r}, {len(self.taxonomy)} species, {counts})"

    def splits(self) -> dict[str, dict[str, int]]:
        """Item counts: modality -> split -> count (train, val, test first; every modality present)."""
        out: dict[str, dict[str, int]] = {}
        for modality in MODALITIES:
            counts: dict[str, int] = {}
            for item in getattr(self, modality):
                counts[item.split] = counts.get(item.split, 0) + 1
            out[modality] = {s: counts[s] for s in sorted(counts, key=_split_sort_key)}
        return out

    def split_names(self) -> list[str]:
        """Every split name used by any modality, train/val/test first."""
        names = {item.split for m in MODALITIES for item in getattr(self, m)}
        return sorted(names, key=_split_sort_key)

    def _select(self, items: list[_I], splits: tuple[str, ...]) -> list[_I]:
        if not splits:
            return list(items)
        known = self.split_names()
        unknown = [s for s in splits if s not in known]
        if unknown:
            raise BirdbridgeError(
                f"dataset {self.name!r} has no split {', '.join(map(repr, unknown))} "
                f"(its splits: {', '.join(known) or 'none'})"
            )
        wanted = set(splits)
        return [item for item in items if item.split in wanted]

    def audio_split(self, *splits: str) -> list[AudioItem]:
        """Recordings in any of the given splits (all if none given); an unknown split name raises."""
        return self._select(self.audio, splits)

    def images_split(self, *splits: str) -> list[ImageItem]:
        """Pictures in any of the given splits (all if none given); an unknown split name raises."""
        return self._select(self.images, splits)

    def videos_split(self, *splits: str) -> list[VideoItem]:
        """Videos in any of the given splits (all if none given); an unknown split name raises."""
        return self._select(self.videos, splits)

    def species_in(self, items: Iterable[Item]) -> list[str]:
        """The species keys the items cover, in taxonomy order."""
        present = {item.species for item in items}
        return [key for key in self.taxonomy.keys if key in present]

    def summary(self) -> str:
        """A few lines for people: name, root, species, and per modality the items per split."""
        splits = self.splits()
        columns = self.split_names()
        lines = [f"dataset  {self.name}", f"root     {self.root}", f"species  {len(self.taxonomy)}", ""]
        header = ["", "items", "species", *columns]
        table = [header]
        for modality in MODALITIES:
            items = getattr(self, modality)
            counts = splits[modality]
            table.append(
                [
                    modality,
                    f"{len(items):,}",
                    f"{len(self.species_in(items)):,}",
                    *(f"{counts[s]:,}" if s in counts else "-" for s in columns),
                ]
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def check_files(self, limit: int | None = None) -> list[tuple[str, str]]:
        """``(path, problem)`` for item files that are missing, not files, or empty; stops after ``limit``.

        Only the file system entry is checked; nothing is decoded.
        """
        problems: list[tuple[str, str]] = []
        for modality in MODALITIES:
            for item in getattr(self, modality):
                if limit is not None and len(problems) >= limit:
                    return problems
                try:
                    st = item.path.stat()
                except FileNotFoundError:
                    problems.append((str(item.path), "missing"))
                    continue
                except OSError as exc:
                    problems.append((str(item.path), f"cannot be read: {exc.strerror or exc}"))
                    continue
                if not item.path.is_file():
                    problems.append((str(item.path), "not a file"))
                elif st.st_size == 0:
                    problems.append((str(item.path), "empty file"))
        return problems


# ------------------------------------------------------------------------------------- table reading


def resolve_path(base: Path, value: str) -> Path:
    """``value`` if absolute (after ``~`` expansion), else ``base / value``."""
    return base / (os.path.expanduser(value) if value.startswith("~") else value)  # "/" joins an absolute path


def absolute_root(root: str | os.PathLike[str]) -> Path:
    """The folder as an absolute path (symlinks resolved once, not per item)."""
    return Path(root).expanduser().resolve()


def _empty(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, float) and math.isnan(value))
    )


@dataclass(frozen=True)
class Row:
    """One data row: ``where`` is ``"line 7"`` (CSV, the header is line 1) or ``"row 6"`` (parquet)."""

    where: str
    values: dict[str, Any]


@dataclass
class Table:
    """A CSV or parquet table whose known columns are renamed to canonical names; cell parsers raise InputError."""

    source: str
    columns: tuple[str, ...]  # canonical names for known columns, header text for the others
    rows: list[Row]
    known: frozenset[str] = frozenset()

    def __contains__(self, column: str) -> bool:
        return column in self.columns

    def error(self, row: Row, problem: str, hint: str = "") -> InputError:
        return InputError(self.source, f"{row.where}: {problem}", hint)

    def text(self, row: Row, column: str) -> str:
        """The stripped cell text; an empty cell raises."""
        value = row.values.get(column)
        if _empty(value):
            raise self.error(row, f"column {column!r} is empty", "every row needs a value there")
        return str(value).strip()

    def optional_text(self, row: Row, column: str) -> str | None:
        """The stripped cell text, or None for an empty cell or a missing column."""
        return optional_text(row.values.get(column))

    def number(self, row: Row, column: str) -> float | None:
        """A finite float, or None for an empty cell."""
        value = row.values.get(column)
        if _empty(value):
            return None
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise self.error(row, f"column {column!r} is not a number: {value!r}") from None
        if not math.isfinite(number):
            raise self.error(row, f"column {column!r} is not a finite number: {value!r}")
        return number

    def integer(self, row: Row, column: str) -> int | None:
        """A whole number (``"300"`` or ``"300.0"``), or None for an empty cell."""
        number = self.number(row, column)
        if number is None:
            return None
        if not number.is_integer():
            raise self.error(row, f"column {column!r} is not a whole number: {row.values.get(column)!r}")
        return int(number)

    def flag(self, row: Row, column: str) -> bool | None:
        """``1/0``, ``true/false``, ``yes/no``, ``t/f``, ``y/n`` (any case), or None for an empty cell."""
        value = row.values.get(column)
        if _empty(value):
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "1.0", "true", "t", "yes", "y"):
            return True
        if text in ("0", "0.0", "false", "f", "no", "n"):
            return False
        raise self.error(row, f"column {column!r} is not a yes/no value: {value!r}", "write 1/0, true/false or yes/no")

    def extras(self, row: Row) -> dict[str, Any]:
        """The cells of columns the adapter does not interpret (empty ones as None), for ``meta``."""
        return {
            k: (None if _empty(v) else v.strip() if isinstance(v, str) else v)
            for k, v in row.values.items()
            if k not in self.known
        }

    def claim(self, seen: dict[str, str], key: str, row: Row, what: str) -> None:
        """Record ``key`` as used by ``row``; raise naming both rows if it was used before."""
        if key in seen:
            raise self.error(row, f"duplicate {what} {key!r} (first at {seen[key]})", f"each {what} must appear once")
        seen[key] = row.where


def read_table(
    path: str | os.PathLike[str],
    required: Sequence[str],
    optional: Sequence[str] = (),
    aliases: Mapping[str, str] | None = None,
) -> Table:
    """Read a ``.csv``/``.tsv`` (UTF-8, header row) or ``.parquet`` table.

    Header names match ``required``/``optional`` case-insensitively (and through ``aliases``, lower-case
    alias -> canonical name); other columns keep their header text. Raises InputError for a missing file,
    a missing required column (listing the columns found), a repeated column, or malformed CSV.
    """
    path = Path(path)
    source = str(path)
    known = {name.lower(): name for name in (*required, *optional)}
    for alias, canon in (aliases or {}).items():
        known[alias.lower()] = canon
    if path.suffix.lower() in (".parquet", ".pq"):
        header, raw_rows, header_where = _read_parquet(path)
    else:
        header, raw_rows, header_where = _read_csv(path)

    names: list[str] = []
    first: dict[str, str] = {}
    for column in header:
        name = known.get(column.lower(), column)
        if name in first:
            raise InputError(
                source,
                f"{header_where}columns {first[name]!r} and {column!r} both give {name!r}",
                "keep one of them",
            )
        first[name] = column
        names.append(name)
    missing = [c for c in required if c not in first]
    if missing:
        found = ", ".join(repr(c) for c in header) or "none"
        raise InputError(
            source,
            f"{header_where}missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"(found: {found})",
            f"the header must include {', '.join(required)}",
        )
    rows = [Row(where, dict(zip(names, values, strict=False))) for where, values in raw_rows]
    return Table(source, tuple(names), rows, frozenset(known.values()))


def _read_csv(path: Path) -> tuple[list[str], list[tuple[str, list[Any]]], str]:
    source = str(path)
    text = read_text_file(path)
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    tab = path.suffix.lower() == ".tsv" or ("\t" in first_line and "," not in first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if tab else ",")
    header: list[str] | None = None
    header_line = 0
    rows: list[tuple[str, list[Any]]] = []
    end = 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header, header_line = [cell.strip() for cell in record], start
                continue
            if len(record) > len(header):
                raise InputError(
                    source,
                    f"line {start}: {len(record)} fields but the header (line {header_line}) has {len(header)}",
                    "quote values that contain the separator",
                )
            rows.append((f"line {start}", record + [""] * (len(header) - len(record))))
    except csv.Error as exc:
        raise InputError(source, f"line {reader.line_num}: malformed CSV: {exc}", "check the quoting") from None
    if header is None:
        raise InputError(source, "file is empty", "expected a header row, then one row per item")
    return header, rows, f"line {header_line}: "


def _read_parquet(path: Path) -> tuple[list[str], list[tuple[str, list[Any]]], str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputError(str(path), "file not found", "check the path")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(str(path), f"not a readable parquet file ({exc})", "write it again, or use CSV") from None
    header = [str(name).strip() for name in table.column_names]
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    rows = [(f"row {i + 1}", [col[i] for col in columns]) for i in range(table.num_rows)]
    return header, rows, ""
