"""The ranks a search answers at (species, genus, family, order) and each species' taxon at a rank.

The genus comes from the taxonomy, or else from the scientific name; family and order only from the taxonomy
(a gallery's species index keeps the taxonomy CSV's columns). A species whose taxon at a rank is unknown stays
on its own there (:func:`rank_groups` answers for it at species rank), so no score is lost or misnamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from birdbridge.errors import BirdbridgeError

ANSWER_RANKS = ("species", "genus", "family", "order")
RANK_CHOICES = (*ANSWER_RANKS, "auto")  # auto: the lowest rank that reaches the detection threshold
_POSITION = {"order": 3, "family": 4, "genus": 5}  # in a 7-rank taxonomy path (kingdom ... specific epithet)


def check_rank(rank: str) -> str:
    """``rank`` if it is one of :data:`RANK_CHOICES`, else a clear error."""
    if rank not in RANK_CHOICES:
        raise BirdbridgeError(f"unknown rank {rank!r}; use one of {', '.join(RANK_CHOICES)}")
    return rank


def taxon_at(scientific_name: str, taxonomy_path: Sequence[str], rank: str) -> str | None:
    """The name of a species' taxon at ``rank`` (None if unknown); ``taxonomy_path`` is kingdom to specific
    epithet (unknown ranks empty; may be empty altogether)."""
    if rank == "species":
        return scientific_name
    position = _POSITION[rank]
    if len(taxonomy_path) == 7 and taxonomy_path[position]:
        return taxonomy_path[position]
    return scientific_name.split()[0] if rank == "genus" and scientific_name.strip() else None


@dataclass(frozen=True)
class RankGroups:
    """The species (columns) grouped into taxa at one rank: ``of[column]`` is the column's group; each group has a
    name, the rank it stands at (``species`` for a species whose taxon at ``rank`` is unknown) and its columns."""

    rank: str
    of: np.ndarray  # int64 [species]
    names: list[str]
    ranks: list[str]
    members: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def order(self) -> np.ndarray:
        """The columns sorted by group (each group's columns together, groups in order)."""
        return np.concatenate(self.members) if self.members else np.zeros(0, dtype=np.int64)

    @property
    def starts(self) -> np.ndarray:
        """Where each group's columns start in :attr:`order` (for ``np.ufunc.reduceat``)."""
        sizes = np.array([len(m) for m in self.members], dtype=np.int64)
        return np.cumsum(sizes) - sizes


def rank_groups(species: Sequence[tuple[str, Sequence[str]]], rank: str) -> RankGroups:
    """Group ``species`` (scientific name, taxonomy path) at ``rank``, groups in order of first appearance."""
    position: dict[tuple[str, str], int] = {}
    of = np.empty(len(species), dtype=np.int64)
    names: list[str] = []
    ranks: list[str] = []
    for column, (name, path) in enumerate(species):
        taxon = taxon_at(name, path, rank)
        key = (rank, taxon) if taxon is not None else ("species", name)
        if key not in position:
            position[key] = len(names)
            names.append(key[1])
            ranks.append(key[0])
        of[column] = position[key]
    by_group = np.argsort(of, kind="stable")
    members = np.split(by_group, np.cumsum(np.bincount(of, minlength=len(names)))[:-1]) if len(names) else []
    return RankGroups(rank, of, names, ranks, members)


def taxon_labels(species: Sequence[tuple[str, Sequence[str]]], rank: str) -> np.ndarray:
    """Per species, the index of its taxon at ``rank`` (see :func:`rank_groups`): class labels for metrics."""
    return rank_groups(species, rank).of


def find_taxon(species: Sequence[tuple[str, Sequence[str]]], name: str, rank: str) -> tuple[str, str, list[int]] | None:
    """The taxon called ``name`` (any case) at ``rank`` (``auto``: genus, then family, then order) among ``species``
    (scientific name, taxonomy path): its name as the species spell it, its rank and the positions of its species;
    None when no species belongs to one."""
    wanted = " ".join(str(name).split()).casefold()
    for level in (ANSWER_RANKS[1:] if check_rank(rank) == "auto" else (rank,)):
        if level == "species":
            continue
        members = [i for i, (sci, path) in enumerate(species)
                   if (taxon_at(sci, path, level) or "").casefold() == wanted]
        if members:
            return taxon_at(*species[members[0]], level) or name, level, members
    return None
