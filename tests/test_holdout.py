"""``data.holdout``: which species training leaves out (a list, whole genera, a seeded fraction), and its errors."""

from __future__ import annotations

import pytest

from birdbridge.datasets.holdout import Holdout, drop_species
from birdbridge.errors import InputError
from birdbridge.species import Species, Taxonomy
from birdbridge.train.config import load_config

TAXONOMY = Taxonomy(Species.from_names(sci, common) for sci, common in (
    ("Pica hudsonia", "Black-billed Magpie"), ("Corvus corax", "Common Raven"), ("Corvus brachyrhynchos",
                                                                                  "American Crow"),
    ("Sitta carolinensis", "White-breasted Nuthatch"), ("Turdus migratorius", "American Robin")))


def test_species_genera_and_fraction() -> None:
    assert Holdout(species=["Common Raven", "Sitta carolinensis"]).resolve(TAXONOMY) == ["Corvus corax",
                                                                                          "Sitta carolinensis"]
    assert Holdout(genera=["corvus"]).resolve(TAXONOMY) == ["Corvus corax", "Corvus brachyrhynchos"]
    two = Holdout(fraction=0.4, seed=3).resolve(TAXONOMY)
    assert len(two) == 2 and two == Holdout(fraction=0.4, seed=3).resolve(TAXONOMY)
    assert {tuple(Holdout(fraction=0.4, seed=s).resolve(TAXONOMY)) for s in range(6)} != {tuple(two)}
    union = Holdout(species=["Pica hudsonia"], genera=["Corvus"]).resolve(TAXONOMY)
    assert union == ["Pica hudsonia", "Corvus corax", "Corvus brachyrhynchos"]
    assert Holdout().resolve(TAXONOMY) == [] and not Holdout()


def test_unknown_names_and_holding_out_everything_are_errors() -> None:
    with pytest.raises(InputError, match=r"data\.holdout: species: 'Pica pika', 'Dodo' not in"):
        Holdout(species=["Pica pika", "Corvus corax", "Dodo"]).resolve(TAXONOMY)
    with pytest.raises(InputError, match=r"genera: 'Strix' not in .*Corvus"):
        Holdout(genera=["Strix"]).resolve(TAXONOMY)
    with pytest.raises(InputError, match="all 5 species"):
        Holdout(genera=["Corvus", "Pica", "Sitta", "Turdus"]).resolve(TAXONOMY)
    with pytest.raises(InputError, match="fraction"):
        Holdout(fraction=1.0).resolve(TAXONOMY)


def test_config_section() -> None:
    cfg = load_config(None, ["data.dataset=x", "data.holdout.species=[Pica hudsonia, Corvus corax]",
                             "data.holdout.fraction=0.2", "data.holdout.seed=4"])
    assert cfg.data.holdout == Holdout(species=["Pica hudsonia", "Corvus corax"], fraction=0.2, seed=4)
    assert load_config(None, ["data.dataset=x", "data.holdout.genera=Corvus"]).data.holdout.genera == ["Corvus"]
    with pytest.raises(InputError, match=r"data\.holdout\.fraction"):
        load_config(None, ["data.dataset=x", "data.holdout.fraction=1.5"])
    with pytest.raises(InputError, match=r"data\.holdout\.species"):
        load_config(None, ["data.dataset=x", "data.holdout.species={a: 1}"])
    with pytest.raises(InputError, match=r"unknown key\(s\) data\.holdout\.specie"):
        load_config(None, ["data.dataset=x", "data.holdout.specie=[a]"])


def test_drop_species() -> None:
    class Item:
        def __init__(self, species: str) -> None:
            self.species = species

    items = [Item("a"), Item("b"), Item("a"), Item("c")]
    assert [it.species for it in drop_species(items, ["a"])] == ["b", "c"]
