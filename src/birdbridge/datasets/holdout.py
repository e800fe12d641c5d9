"""Species held out of training (``data.holdout``), so an evaluation can compare seen and unseen species.

A :class:`Holdout` names them by a list of species, whole genera, or a seeded random fraction of the taxonomy
(any mix: the union). :meth:`Holdout.resolve` turns it into taxonomy keys, in taxonomy order; a species or genus
the taxonomy does not have is an error naming every one of them, since a misspelt name would otherwise train on
the species meant to be unseen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from birdbridge.errors import InputError
from birdbridge.species.ranks import taxon_at
from birdbridge.species.taxonomy import Taxonomy

__all__ = ["Holdout", "drop_species"]


@dataclass
class Holdout:
    """Which species training leaves out: ``species`` (names as the taxonomy accepts them: scientific, common,
    code), every species of ``genera``, and ``fraction`` of all species drawn with ``seed``."""

    species: list[str] = field(default_factory=list)
    fraction: float | None = None
    seed: int = 0
    genera: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.species or self.genera or self.fraction)

    def resolve(self, taxonomy: Taxonomy, source: str = "data.holdout") -> list[str]:
        """The held-out species keys, in taxonomy order; an InputError names the unknown species or genera, or a
        holdout that leaves no species to train on."""
        held: set[int] = set()
        unknown = [name for name in self.species if taxonomy.get(name) is None]
        if unknown:
            raise InputError(source, f"species: {', '.join(map(repr, unknown))} not in the dataset's taxonomy of "
                             f"{len(taxonomy)} species", "give scientific names, common names or codes it has "
                             "(`birdbridge dataset DATASET` lists them)")
        held.update(taxonomy.index(name) for name in self.species)
        genus_of = [taxon_at(sp.scientific_name, sp.taxonomy_path, "genus") or "" for sp in taxonomy]
        folded = [g.casefold() for g in genus_of]
        missing = [g for g in self.genera if g.casefold() not in folded]
        if missing:
            known = sorted(set(genus_of) - {""})
            raise InputError(source, f"genera: {', '.join(map(repr, missing))} not in the dataset's taxonomy",
                             f"its genera: {', '.join(known[:20])}{' …' if len(known) > 20 else ''}")
        wanted = {g.casefold() for g in self.genera}
        held.update(i for i, g in enumerate(folded) if g in wanted)
        if self.fraction is not None:
            if not 0 < self.fraction < 1:
                raise InputError(source, f"fraction: {self.fraction!r} must lie strictly between 0 and 1")
            n = max(1, round(self.fraction * len(taxonomy)))
            held.update(int(i) for i in np.random.default_rng(self.seed).permutation(len(taxonomy))[:n])
        if held and len(held) >= len(taxonomy):
            raise InputError(source, f"holds out all {len(taxonomy)} species: nothing would be left to train on")
        return [taxonomy.keys[i] for i in sorted(held)]


def drop_species(items: Iterable, species: Sequence[str]) -> list:
    """The items (anything with a ``species`` key) whose species is not one of ``species``."""
    out = set(species)
    return [it for it in items if it.species not in out]
