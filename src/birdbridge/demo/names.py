"""Generated bird names: a Linnaean tree with Latin-looking names and English-looking common names.

Latin names are built from syllables, as real ones are built from a type genus: a family is named
after its first genus (``Thalorus`` -> ``Thaloridae``) and an order after its first family
(``Thaloriformes``). Common names share words the way real ones do: the genera of a family share a
group noun (``Thrush``, ``Rock-Thrush``) and the species of a genus differ by a modifier
(``Amber-crowned Rock-Thrush``). Everything is deterministic for a seed, unique, and valid for
:class:`~birdbridge.species.taxonomy.Species`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from birdbridge.species.taxonomy import Species, Taxonomy

__all__ = ["ebird_code", "generate_taxonomy"]

KINGDOM, PHYLUM, CLASS = "Animalia", "Chordata", "Aves"

_ONSETS = ("b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_CLUSTERS = ("br", "cr", "dr", "gr", "pr", "tr", "ch", "ph", "th", "st", "sc", "pl", "cl", "qu")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "y", "ae", "au")
_CODAS = ("n", "r", "s", "l", "m", "x", "c", "t", "d", "n", "r", "s", "ph", "th", "nth", "rn", "st")
_SYLLABLES = (1, 2, 2, 2, 2, 2, 3)
_GENUS_ENDINGS = ("us", "a", "is", "ops", "ornis", "ura", "ax", "ella", "ia", "odes", "ipes", "onyx")
_EPITHET_ENDINGS = ("us", "a", "um", "is", "ensis", "ii", "ata", "icus", "ina", "oides", "ipes", "eus")

_GROUP_NOUNS = (
    "Thrush", "Warbler", "Finch", "Tanager", "Wren", "Babbler", "Shrike", "Pipit", "Lark", "Flycatcher",
    "Sparrow", "Bunting", "Oriole", "Starling", "Swallow", "Vireo", "Tit", "Robin", "Chat", "Dove",
    "Parakeet", "Kingfisher", "Woodpecker", "Cuckoo", "Nightjar", "Swift", "Sunbird", "Honeyeater",
    "Bulbul", "Myna", "Treecreeper", "Nuthatch", "Grosbeak", "Seedeater", "Antbird", "Manakin",
)  # fmt: skip
_GROUP_PREFIXES = (
    "Rock", "Bush", "Ground", "Leaf", "Tree", "Reed", "Cliff", "Marsh", "Moss", "Thorn", "Fern",
    "Brush", "Stream", "Cloud", "Sand", "Palm", "Scrub", "Forest",
)  # fmt: skip
_COLOURS = (
    "Amber", "Rufous", "Slaty", "Olive", "Ochre", "Crimson", "Ashy", "Buff", "Chestnut", "Cinnamon",
    "Dusky", "Golden", "Grey", "Ivory", "Scarlet", "Sooty", "Tawny", "Vermilion", "White", "Black",
    "Yellow", "Blue", "Rosy", "Copper", "Lemon", "Cobalt", "Russet", "Pale", "Dark", "Silver",
)  # fmt: skip
_PARTS = (
    "crowned", "throated", "bellied", "breasted", "winged", "tailed", "capped", "backed", "naped",
    "browed", "cheeked", "eyed", "billed", "rumped", "collared", "fronted", "headed", "vented",
)  # fmt: skip
_ADJECTIVES = (
    "Lesser", "Greater", "Spotted", "Streaked", "Barred", "Plain", "Little", "Dwarf", "Mountain",
    "Forest", "Marsh", "Desert", "Island", "Northern", "Southern", "Eastern", "Western", "Common",
    "Scaly", "Speckled", "Crested", "Painted", "Mottled", "Dappled", "Lowland", "Highland",
)  # fmt: skip
_PLACE_SUFFIXES = ("an", "ian", "ese")
_MAX_TRIES = 10_000
T = TypeVar("T")


class _Namer:
    """Draws unique stems and names from one random stream."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.stems: set[str] = set()
        self.used_latin: set[str] = set()
        self.common: set[str] = set()

    def pick(self, options: Sequence[T]) -> T:
        return options[int(self.rng.integers(len(options)))]

    def onset(self) -> str:
        return self.pick(_CLUSTERS) if self.rng.random() < 0.2 else self.pick(_ONSETS)

    def stem(self) -> str:
        """A new lower-case stem ending in a consonant, e.g. ``thalor``; never returned twice."""
        for _ in range(_MAX_TRIES):
            n_syllables = self.pick(_SYLLABLES)
            first = "" if self.rng.random() < 0.15 else self.onset()
            parts = [first + self.pick(_VOWELS)]
            parts += [self.onset() + self.pick(_VOWELS) for _ in range(n_syllables - 1)]
            stem = "".join(parts) + self.pick(_CODAS)
            if len(stem) < 4:
                continue
            if stem not in self.stems and not re.search(r"(.)\1\1|[aeiouy]{3}", stem):
                self.stems.add(stem)
                return stem
        raise RuntimeError("ran out of unique name stems")

    def latin(self, stem: str, endings: tuple[str, ...], *, capital: bool) -> str:
        """``stem`` plus one of ``endings``, a Latin name not given before (a fresh stem if need be)."""
        for _ in range(_MAX_TRIES):
            name = stem + self.pick(endings)
            name = name.capitalize() if capital else name
            if name.lower() not in self.used_latin:
                self.used_latin.add(name.lower())
                return name
            stem = self.stem()
        raise RuntimeError("ran out of unique Latin names")

    def common_name(self, group: str) -> str:
        """A new common name ``<modifier> <group>``, unique in the world."""
        for _ in range(_MAX_TRIES):
            roll = self.rng.random()
            if roll < 0.55:
                modifier = f"{self.pick(_COLOURS)}-{self.pick(_PARTS)}"
            elif roll < 0.85:
                modifier = self.pick(_ADJECTIVES)
            else:
                modifier = self.stem().capitalize() + self.pick(_PLACE_SUFFIXES)
            name = f"{modifier} {group}"
            if name.casefold() not in self.common:
                self.common.add(name.casefold())
                return name
        raise RuntimeError("ran out of unique common names")


def ebird_code(common_name: str) -> str:
    """An eBird-style 6-letter code: ``Amber-crowned Rock-Thrush`` -> ``acrthr``.

    1 word: its first 6 letters; 2 words: 3 + 3; 3 words: 1 + 2 + 3; more: one letter of each but the
    last, which gives 3 (words are split at spaces and hyphens).
    """
    words = [w.lower() for w in re.split(r"[\s-]+", common_name) if w]
    if not words:
        raise ValueError("a common name needs at least one word")
    if len(words) == 1:
        return words[0][:6]
    if len(words) == 2:
        return words[0][:3] + words[1][:3]
    if len(words) == 3:
        return words[0][:1] + words[1][:2] + words[2][:3]
    return "".join(w[:1] for w in words[:-1]) + words[-1][:3]


def _unique_code(common_name: str, used: set[str]) -> str:
    base = ebird_code(common_name)
    code, n = base, 0
    while code in used:
        n += 1
        code = f"{base}{n}"
    used.add(code)
    return code


def generate_taxonomy(
    n_orders: int = 3,
    families_per_order: int = 2,
    genera_per_family: int = 2,
    species_per_genus: int = 2,
    *,
    seed: int = 0,
) -> Taxonomy:
    """A balanced tree Animalia > Chordata > Aves > orders > families > genera > species.

    Species are listed depth-first (siblings next to each other); codes are eBird-style and unique.
    """
    sizes = (n_orders, families_per_order, genera_per_family, species_per_genus)
    if any(int(n) != n or n < 1 for n in sizes):
        raise ValueError(f"every level needs at least one member, got {sizes}")
    namer = _Namer(np.random.default_rng([seed, 0x4E414D45]))  # "NAME"
    nouns = [str(n) for n in namer.rng.permutation(_GROUP_NOUNS)]
    codes: set[str] = set()
    species: list[Species] = []
    for _ in range(n_orders):
        order = ""
        for _ in range(families_per_order):
            genus_stems = [namer.stem() for _ in range(genera_per_family)]
            family = namer.latin(genus_stems[0], ("idae",), capital=True)
            order = order or namer.latin(genus_stems[0], ("iformes",), capital=True)
            base = nouns.pop() if nouns else namer.stem().capitalize() + namer.pick(("bill", "wing", "let"))
            prefixes = [str(p) for p in namer.rng.permutation(_GROUP_PREFIXES)]
            for g, stem in enumerate(genus_stems):
                genus = namer.latin(stem, _GENUS_ENDINGS, capital=True)
                if g == 0:
                    group = base
                elif prefixes:
                    group = f"{prefixes.pop()}-{base}"
                else:
                    group = f"{namer.stem().capitalize()}-{base}"
                for _ in range(species_per_genus):
                    epithet = namer.latin(namer.stem(), _EPITHET_ENDINGS, capital=False)
                    common = namer.common_name(group)
                    species.append(
                        Species(KINGDOM, PHYLUM, CLASS, order, family, genus, epithet, common,
                                _unique_code(common, codes))
                    )
    return Taxonomy(species)
