"""The text rules of species names: scientific names, and the labels people write species as.

One reading of a label serves every input (folder names, manifest cells, BirdNET species lists,
``--species-list`` entries, names passed in Python); :func:`birdbridge.species.parse_species_label`
turns it into a species, through a taxonomy when one is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_CODE = re.compile(r"[a-z]+[0-9]*|[A-Z]+[0-9]*")
_RANK_MARKS = frozenset({"ssp", "ssp.", "subsp", "subsp."})
_LOCALE = re.compile(r"[a-z]{2,3}(?:_[a-z0-9]{2,4})?")
_LOCALE_ALIASES = {"en_us": "en"}  # BirdNET-Analyzer's default locale: the English names


def normalize_locale(text: str) -> str:
    """``"pt-BR"`` -> ``"pt_br"``, ``"en_US"`` -> ``"en"``: the form locales are compared in; raises ValueError
    for what is no locale code (``de``, ``fr``, ``pt_BR``, ``zh``, ...)."""
    code = str(text).strip().casefold().replace("-", "_")
    if not _LOCALE.fullmatch(code):
        raise ValueError(f"{text!r} is not a locale code such as 'de', 'fr' or 'pt_BR'")
    return _LOCALE_ALIASES.get(code, code)


def fold(text: str) -> str:
    """Whitespace collapsed and case folded: the form names are compared in."""
    return " ".join(text.split()).casefold()


def split_scientific_name(name: str) -> tuple[str, str]:
    """``"Pica hudsonia"`` -> ``("Pica", "hudsonia")``; raises ValueError saying what is wrong."""
    words = name.split()
    if len(words) != 2:
        raise ValueError(
            f"scientific name {name.strip()!r} is not two words 'Genus epithet' (e.g. 'Pica hudsonia'); "
            "hybrids and 'sp.' entries are not species"
        )
    genus, epithet = words
    check_name_word(genus, "genus", capital=True)
    check_name_word(epithet, "specific epithet", capital=False)
    return genus, epithet


def check_name_word(word: str, what: str, *, capital: bool) -> None:
    """Raise ValueError unless ``word`` is letters (and hyphens), capitalised (genus) or lower case."""
    if not _NAME_WORD.fullmatch(word):
        raise ValueError(f"{what} {word!r} must be letters (and hyphens) only")
    expected = word[0].upper() + word[1:].lower() if capital else word.lower()
    if word != expected:
        rule = "start with a capital letter, the rest lower case" if capital else "be lower case"
        raise ValueError(f"{what} {word!r} must {rule} (expected {expected!r})")


@dataclass(frozen=True)
class SpeciesLabel:
    """What a label says, before any taxonomy is asked.

    ``text``: the label with its whitespace collapsed. ``name``: the part before a BirdNET common name
    (``Genus epithet`` with underscores read as spaces in the folder style ``Genus_epithet``).
    ``scientific``: the binomial ``Genus epithet`` when ``name`` has one (case as written), else None
    (one word such as an eBird code, a genus or a common name; a hybrid; a ``sp.`` entry). ``common``: the
    BirdNET common name. ``subspecies``: the subspecies epithet of a trinomial (``Genus epithet sub`` or
    ``Genus epithet ssp. sub``); a species has no field for it, so it is dropped from the Species.
    """

    text: str
    name: str
    scientific: str | None
    common: str | None = None
    subspecies: str | None = None

    @property
    def looks_like_code(self) -> bool:
        """One word of lower-case (or upper-case) letters and digits, as eBird codes (``amerob``, ``mallar3``)."""
        return self.common is None and _CODE.fullmatch(self.name) is not None

    @property
    def repeats_itself(self) -> bool:
        """``Dog_Dog``, ``Human vocal_Human vocal``: BirdNET's labels for things that are not species."""
        return self.common is not None and fold(self.common) == fold(self.name)

    def lookups(self) -> list[str]:
        """What to look the label up by in a taxonomy, best first: the label, its binomial, its name."""
        found = [self.text, self.scientific, self.name, self.text.replace("_", " ")]
        return list(dict.fromkeys(f for f in found if f))


def split_species_label(label: str) -> SpeciesLabel:
    """Read a label: ``Genus epithet``, ``Genus_epithet``, ``Genus epithet_Common Name`` (BirdNET),
    ``Genus_epithet_Common Name``, trinomials (``Genus epithet sub``, ``Genus epithet ssp. sub``), a code
    or a common name; extra whitespace is ignored. Never raises: what it means is decided by the caller."""
    text = " ".join(str(label).split())
    parts = [" ".join(p.split()) for p in text.split("_")]
    if len(parts) >= 2 and len(parts[0].split()) == 1 and len(parts[1].split()) == 1 and (
        parts[1][:1].islower() or (parts[0].isupper() and parts[1].isupper())
    ):
        name, common = f"{parts[0]} {parts[1]}", "_".join(parts[2:])  # folder style "Pica_hudsonia[_Common]"
    else:
        name, common = parts[0], "_".join(parts[1:])
    words = name.split()
    scientific = subspecies = None
    if len(words) == 2:
        scientific = name
    elif len(words) in (3, 4) and _lower_word(words[1]) and _lower_word(words[-1]) and (
        len(words) == 3 or words[2].casefold() in _RANK_MARKS
    ):
        scientific, subspecies = " ".join(words[:2]), words[-1]
    return SpeciesLabel(text, name, scientific, common.strip() or None, subspecies)


def _lower_word(word: str) -> bool:
    return _NAME_WORD.fullmatch(word) is not None and word[:1].islower()
