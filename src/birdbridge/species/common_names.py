"""Common names in the user's language: BirdNET-style label files and taxonomy CSV columns.

A *label file* holds one ``Genus species_Common name`` per line in one language, read by
:func:`~birdbridge.species.parse_species_label` (lines that name no species, such as BirdNET's ``Dog_Hund``,
are skipped). A folder of them follows BirdNET-Analyzer's naming: ``BirdNET_GLOBAL_6K_V2.4_Labels_de.txt``
(German), ``..._Labels_pt_BR.txt``, ``..._Labels.txt`` (English); plain ``de.txt`` works too. A taxonomy CSV
gives the same with ``common_name_de``, ``common_name_fr``, ... columns.

A name is never blank: a species without a name in the chosen language gets its English name (the gallery's
common name, else that of an English label file), else its scientific name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from birdbridge.errors import InputError
from birdbridge.species.labels import TAXONOMY_SUFFIXES, parse_species_label, read_species_list
from birdbridge.species.names import normalize_locale
from birdbridge.species.taxonomy import load_translated_names

ENGLISH = "en"
_LABEL_FILE = re.compile(r"(?:.*_)?labels(?:_(?P<suffix>[a-z]{2,3}(?:[_-][a-z0-9]{2,4})?))?|(?P<plain>[a-z]{2,3}"
                         r"(?:[_-][a-z0-9]{2,4})?)", re.IGNORECASE)


def read_label_names(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{scientific name: common name}`` of a BirdNET-style label file (the first line of a species wins)."""
    names: dict[str, str] = {}
    for _, line in read_species_list(path):
        try:
            species = parse_species_label(line)
        except ValueError:  # "Dog_Hund", "Engine_Motor", "Human vocal_Mensch Stimme": not species
            continue
        if species.common_name:
            names.setdefault(species.key, species.common_name)
    if not names:
        raise InputError(str(path), "no 'Genus species_Common name' lines",
                         "give a BirdNET-style label file such as BirdNET_GLOBAL_6K_V2.4_Labels_de.txt")
    return names


def label_file_locale(path: str | os.PathLike[str]) -> str | None:
    """The locale a label file's name gives (``..._Labels_de.txt`` -> ``de``, ``..._Labels.txt`` -> ``en``,
    ``fr.txt`` -> ``fr``), or None for another name."""
    path = Path(path)
    if path.suffix.lower() != ".txt":
        return None
    match = _LABEL_FILE.fullmatch(path.stem)
    if match is None:
        return None
    code = match["suffix"] or match["plain"] or ENGLISH
    try:
        return normalize_locale(code)
    except ValueError:
        return None


class CommonNames:
    """Common names by locale, read lazily (a folder of label files is listed, a file read when its locale is
    first asked for). English (``en``) is always available: the gallery's own common names."""

    def __init__(self, loaders: Mapping[str, Callable[[], Mapping[str, str]]] | None = None,
                 source: str = "") -> None:
        self._loaders = dict(loaders or {})
        self._tables: dict[str, Mapping[str, str]] = {}
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CommonNames:
        """Names from a folder of label files, one label file, or a taxonomy CSV with ``common_name_<locale>``
        columns; raises InputError naming the path when it holds none."""
        path = Path(path)
        hint = ("give a folder of BirdNET-style label files (BirdNET_GLOBAL_6K_V2.4_Labels_de.txt, ...), one such "
                "file, or a taxonomy CSV with common_name_de, ... columns")
        if path.is_dir():
            loaders = {}
            for file in sorted(path.iterdir()):
                locale = label_file_locale(file)
                if locale is not None and file.is_file():
                    loaders.setdefault(locale, _reader(file))
            if not loaders:
                raise InputError(str(path), "no label files (*_Labels_<locale>.txt or <locale>.txt) in this folder",
                                 hint)
            return cls(loaders, str(path))
        if not path.is_file():
            raise InputError(str(path), "not found", hint)
        if path.suffix.lower() in TAXONOMY_SUFFIXES:
            tables = load_translated_names(path)
            if not tables:
                raise InputError(str(path), "no common_name_<locale> columns (such as common_name_de)", hint)
            return cls({locale: (lambda t=table: t) for locale, table in tables.items()}, str(path))
        locale = label_file_locale(path)
        if locale is None:
            raise InputError(str(path), "the file name names no locale", "name it like "
                             "BirdNET_GLOBAL_6K_V2.4_Labels_de.txt or de.txt, or give the folder that holds it")
        return cls({locale: _reader(path)}, str(path))

    @property
    def available(self) -> list[str]:
        """The locales names can be given in (always ``en``), sorted."""
        return sorted({ENGLISH, *self._loaders})

    def check(self, locale: str) -> str:
        """``locale`` in its normal form (``pt-BR`` -> ``pt_br``) if names can be given in it, else an InputError
        listing the available ones."""
        try:
            code = normalize_locale(locale)
        except ValueError as exc:
            code, problem = None, str(exc)
        if code is not None and code in self.available:
            return code
        if code is not None:
            problem = f"no names in {locale!r}"
        where = f" (from {self.source})" if self.source else ""
        raise InputError("--locale", f"{problem}; available: {', '.join(self.available)}{where}",
                         "for other languages give BirdNET-style label files (BirdNET_GLOBAL_6K_V2.4_Labels_de.txt, "
                         "...) or a taxonomy CSV with common_name_de, ... columns with --labels-dir, or put label "
                         "files in the gallery's labels/ folder")

    def table(self, locale: str) -> Mapping[str, str]:
        """``{scientific name: name}`` in ``locale`` (checked; empty for English without an English label file)."""
        code = self.check(locale)
        if code not in self._tables:
            self._tables[code] = self._loaders[code]() if code in self._loaders else {}
        return self._tables[code]

    def names(self, locale: str, species: Iterable[tuple[str, str | None]]) -> dict[str, str]:
        """``{key: name}`` for ``(scientific name, English common name)`` pairs: the name in ``locale``, else the
        English one, else the scientific name; never blank."""
        code = self.check(locale)
        own = {} if code == ENGLISH else self.table(code)  # in English the gallery's own names come first
        english = self.table(ENGLISH)
        return {key: own.get(key) or common or english.get(key) or key for key, common in species}


def _reader(path: Path) -> Callable[[], dict[str, str]]:
    return lambda: read_label_names(path)
