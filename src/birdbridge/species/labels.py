"""Species labels and species arguments: the one way from what people write to a Species or a Taxonomy.

A *label* is one species as people write it: ``Pica hudsonia``, ``Pica_hudsonia``, BirdNET's
``Pica hudsonia_Black-billed Magpie``, a trinomial (``Pica hudsonia hudsonia``, ``Pica hudsonia ssp.
hudsonia``: the species; the subspecies is dropped), an eBird code (``bkbmag1``) or a common name, with
any extra whitespace. Codes and common names need a taxonomy that lists them, which is also where
any case is accepted; without one, the scientific name must be cased as in ``Pica hudsonia``.

A *species argument* (:func:`as_taxonomy`) is a :class:`Taxonomy`, a taxonomy CSV (``.csv``/``.tsv``),
a BirdNET-style species list file (one label per line, ``#`` comments), or labels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from birdbridge.errors import InputError
from birdbridge.species.names import split_scientific_name, split_species_label
from birdbridge.species.taxonomy import Species, Taxonomy, check_duplicates, is_taxonomy_header, load_taxonomy_csv
from birdbridge.utils.input_files import read_text_file

SpeciesArg = Taxonomy | str | os.PathLike[str] | Sequence[str]
"""What every ``species=`` argument and ``--species-list``/``--taxonomy`` option takes; see :func:`as_taxonomy`."""

TAXONOMY_SUFFIXES = (".csv", ".tsv")
_LIST_SUFFIXES = (*TAXONOMY_SUFFIXES, ".txt")
_PLURAL = {"entry": "entries", "line": "lines"}
_LABEL_HINT = (
    "name it 'Genus epithet', 'Genus_epithet' or BirdNET-style 'Genus epithet_Common Name' (e.g. 'Pica hudsonia'), "
    "or pass --taxonomy/--species-list to look names and codes up"
)


def parse_species_label(label: str, taxonomy: Taxonomy | None = None) -> Species:
    """The species a label names (see the module docs); raises ValueError saying what is wrong.

    With a taxonomy, its entry wins (found by scientific name in any case, common name or code); a
    well-formed scientific name it lacks is still a species (with the label's common name).
    """
    parsed = split_species_label(label)
    if parsed.repeats_itself:
        raise ValueError(
            f"{label!r} is not a species (scientific and common name are the same); "
            "remove non-species labels such as 'Dog_Dog' or 'Human vocal_Human vocal'"
        )
    if taxonomy is not None:
        found = taxonomy.get(parsed.text)
        if found is not None:
            return found
    where = f" and it is not in the taxonomy of {len(taxonomy)} species" if taxonomy is not None else ""
    try:
        if parsed.scientific is None and parsed.looks_like_code:
            raise ValueError("it looks like an eBird code: codes and one-word common names are only understood "
                             "through a taxonomy that lists them, such as a CSV with a species_code column")
        split_scientific_name(parsed.scientific or parsed.name)
    except ValueError as exc:
        raise ValueError(f"{label!r} is not a species name ({exc}){where}; {_LABEL_HINT}") from None
    return Species.from_names(parsed.scientific or parsed.name, parsed.common)


def read_species_list(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """The labels of a BirdNET-style list file with their line numbers (blank and ``#`` lines skipped)."""
    text = read_text_file(path)
    found = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    return [(number, line) for number, line in found if line and not line.startswith("#")]


def parse_species_list(path: str | os.PathLike[str]) -> list[tuple[str, str | None]]:
    """A BirdNET-style list file as ``(scientific_name, common_name)`` pairs in file order; errors name the line."""
    return [(sp.scientific_name, sp.common_name) for sp in _list_taxonomy(Path(path), read_species_list(path), None)]


def taxonomy_from_names(
    items: Iterable[tuple[str, str | None] | str], *, source: str = "species names", known: Taxonomy | None = None
) -> Taxonomy:
    """A taxonomy from labels or ``(scientific_name, common_name)`` pairs, in order; errors name the entry.

    Labels are read by :func:`parse_species_label` (through ``known`` when given); species that ``known``
    does not hold have empty higher ranks.
    """
    numbered = list(enumerate(items, start=1))
    return _taxonomy(numbered, source, "entry", known)


def as_taxonomy(species: SpeciesArg, known: Taxonomy | None = None) -> Taxonomy:
    """A Taxonomy from a species argument: a Taxonomy (as it is), a taxonomy CSV, a BirdNET-style list
    file, or one label or a sequence of labels.

    A file is a taxonomy CSV when its first line is a taxonomy header (whatever its name), or when it
    ends in .csv/.tsv and its first line is no species label; otherwise it is a species list.

    Labels (in lists and as names) are read by :func:`parse_species_label` through ``known`` (for codes,
    common names and any case). A path that looks like a file (a separator, or ending in .csv, .tsv or
    .txt) but is none is an error, not a label.
    """
    if isinstance(species, Taxonomy):
        return species
    if isinstance(species, (str, os.PathLike)):
        path = Path(species)
        if path.is_file():
            labels = read_species_list(path)
            if _is_taxonomy_csv(path, labels):
                return load_taxonomy_csv(path)
            return _list_taxonomy(path, labels, known)
        text = os.fspath(species)
        if path.suffix.lower() in _LIST_SUFFIXES or os.sep in text or path.is_dir():
            problem = "is a folder, not a species list" if path.is_dir() else "file not found"
            raise InputError(text, problem, "give a taxonomy CSV, a species list file, or species names")
        species = [text]
    return taxonomy_from_names(species, known=known)


def _is_taxonomy_csv(path: Path, labels: Sequence[tuple[int, str]]) -> bool:
    """A file whose first line is a taxonomy header; or a .csv/.tsv file whose first line is no species label
    (so that :func:`load_taxonomy_csv` reports what is wrong with its header)."""
    if not labels:
        return path.suffix.lower() in TAXONOMY_SUFFIXES
    first = labels[0][1]
    if is_taxonomy_header(first):
        return True
    if path.suffix.lower() not in TAXONOMY_SUFFIXES:
        return False
    try:
        parse_species_label(first)
    except ValueError:
        return True
    return False


def _list_taxonomy(path: Path, labels: Sequence[tuple[int, str]], known: Taxonomy | None) -> Taxonomy:
    if not labels:
        raise InputError(str(path), "no species in the list", "write one 'Scientific name_Common Name' per line")
    return _taxonomy(labels, str(path), "line", known)


def _taxonomy(
    numbered: Sequence[tuple[int, tuple[str, str | None] | str]], source: str, unit: str, known: Taxonomy | None
) -> Taxonomy:
    species: list[Species] = []
    for number, item in numbered:
        try:
            if isinstance(item, str):
                species.append(parse_species_label(item, known))
            else:
                scientific, common = item
                species.append(Species.from_names(" ".join(scientific.split()), common and " ".join(common.split())))
        except ValueError as exc:
            raise InputError(source, f"{unit} {number}: {exc}") from None
    if not species:
        raise InputError(source, "no species given")
    check_duplicates(source, species, [number for number, _ in numbered], _PLURAL[unit])
    return Taxonomy(species)
