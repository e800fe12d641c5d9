"""One reading of species labels (folder names, manifest cells, BirdNET lists, names) and one species argument."""

from __future__ import annotations

from pathlib import Path

import pytest

from birdbridge.embed.text import as_taxonomy as embed_as_taxonomy
from birdbridge.errors import InputError
from birdbridge.species import (
    Species,
    Taxonomy,
    as_taxonomy,
    parse_species_label,
    parse_species_list,
    split_species_label,
    taxonomy_from_names,
)

MAGPIE = Species("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Pica", "hudsonia",
                 "Black-billed Magpie", "bkbmag1")
ROBIN = Species("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "migratorius",
                "American Robin", "amerob")
TAXONOMY = Taxonomy([MAGPIE, ROBIN])

# (label, scientific name, common name, subspecies as kept by split_species_label)
FORMS = [
    ("Pica hudsonia", "Pica hudsonia", None, None),
    ("Pica_hudsonia", "Pica hudsonia", None, None),
    ("Pica hudsonia_Black-billed Magpie", "Pica hudsonia", "Black-billed Magpie", None),
    ("Pica_hudsonia_Black-billed Magpie", "Pica hudsonia", "Black-billed Magpie", None),
    ("Pica hudsonia hudsonia", "Pica hudsonia", None, "hudsonia"),
    ("Pica hudsonia ssp. hudsonia", "Pica hudsonia", None, "hudsonia"),
    ("Pica hudsonia subsp. hudsonia_Black-billed Magpie", "Pica hudsonia", "Black-billed Magpie", "hudsonia"),
    ("  Pica \t hudsonia _  Black-billed   Magpie ", "Pica hudsonia", "Black-billed Magpie", None),
]


@pytest.mark.parametrize(("label", "scientific", "common", "subspecies"), FORMS)
def test_label_forms_without_a_taxonomy(label, scientific, common, subspecies) -> None:
    parsed = split_species_label(label)
    assert (parsed.scientific, parsed.common, parsed.subspecies) == (scientific, common, subspecies)
    species = parse_species_label(label)
    assert (species.key, species.common_name) == (scientific, common)


@pytest.mark.parametrize(
    "label",
    [label for label, *_ in FORMS] + ["bkbmag1", "BKBMAG1", "black-billed magpie", "BLACK-BILLED MAGPIE",
                                      "pica hudsonia", "PICA_HUDSONIA", "pica hudsonia ssp. hudsonia"],
)
def test_through_a_taxonomy_codes_common_names_and_any_case_find_its_entry(label) -> None:
    assert parse_species_label(label, TAXONOMY) is MAGPIE
    assert TAXONOMY.index(label) == 0


@pytest.mark.parametrize(
    ("label", "needles"),
    [
        ("bkbmag1", ["'bkbmag1' is not a species name", "eBird code", "taxonomy"]),
        ("Pica Hudsonia", ["specific epithet 'Hudsonia' must be lower case (expected 'hudsonia')"]),
        ("pica_hudsonia", ["genus 'pica' must start with a capital letter", "(expected 'Pica')"]),
        ("Pica", ["'Pica' is not two words"]),
        ("Pica hudsonia x Pica pica", ["is not two words", "hybrids"]),
        ("Dog_Dog", ["is not a species", "scientific and common name are the same"]),
    ],
)
def test_labels_that_name_no_species_say_why(label, needles) -> None:
    with pytest.raises(ValueError) as info:
        parse_species_label(label)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_a_code_the_taxonomy_lacks_is_an_error_naming_the_taxonomy() -> None:
    with pytest.raises(ValueError, match=r"eBird code.*not in the taxonomy of 2 species"):
        parse_species_label("comrav", TAXONOMY)


def test_a_well_formed_name_the_taxonomy_lacks_is_still_a_species() -> None:
    raven = parse_species_label("Corvus corax_Common Raven", TAXONOMY)
    assert (raven.key, raven.common_name, raven.family) == ("Corvus corax", "Common Raven", "")


@pytest.mark.parametrize("function", [as_taxonomy, embed_as_taxonomy])
def test_as_taxonomy_takes_every_label_form_as_names(function) -> None:
    assert function(["Pica_hudsonia"]).keys == ("Pica hudsonia",)
    assert function("Pica_hudsonia").keys == ("Pica hudsonia",)
    labels = ["Pica_hudsonia_Black-billed Magpie", "Turdus migratorius ssp. migratorius", "  Corvus   corax_ "]
    tax = function(labels)
    assert tax.keys == ("Pica hudsonia", "Turdus migratorius", "Corvus corax")
    assert tax[0].common_name == "Black-billed Magpie"
    assert function(["amerob", "BLACK-BILLED MAGPIE"], known=TAXONOMY).species == (ROBIN, MAGPIE)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_as_taxonomy_reads_every_label_form_in_a_list_file(tmp_path) -> None:
    listed = write(tmp_path, "list.txt", "# mine\nPica_hudsonia_Black-billed Magpie\n\namerob\n"
                                         "corvus corax ssp. principalis_Common Raven\n")
    with pytest.raises(InputError, match=r"list.txt: line 4: 'amerob' is not a species name.*eBird code"):
        as_taxonomy(listed)
    known = Taxonomy([*TAXONOMY, Species.from_names("Corvus corax", "Common Raven", "comrav")])
    assert as_taxonomy(listed, known=known).keys == ("Pica hudsonia", "Turdus migratorius", "Corvus corax")
    assert parse_species_list(write(tmp_path, "b.txt", "Pica hudsonia hudsonia_Black-billed Magpie\n")) == [
        ("Pica hudsonia", "Black-billed Magpie")]


def test_a_file_is_a_taxonomy_by_its_header_and_a_list_by_its_labels(tmp_path) -> None:
    csv_as_txt = write(tmp_path, "taxa.txt", "scientific_name,common_name,species_code\nPica hudsonia,Magpie,bkbmag1\n")
    assert as_taxonomy(csv_as_txt)[0].code == "bkbmag1"
    list_as_csv = write(tmp_path, "birdnet.csv", "Pica hudsonia_Black-billed Magpie\nTurdus migratorius\n")
    assert as_taxonomy(list_as_csv).keys == ("Pica hudsonia", "Turdus migratorius")
    bad_header = write(tmp_path, "bad.csv", "name,colour\nPica hudsonia,black\n")
    with pytest.raises(InputError, match=r"bad.csv: line 1: no header row with known column names"):
        as_taxonomy(bad_header)


def test_a_missing_file_is_not_read_as_a_species_name(tmp_path) -> None:
    for missing in (tmp_path / "nope.txt", str(tmp_path / "nope"), "nope.csv"):
        with pytest.raises(InputError, match="file not found"):
            as_taxonomy(missing)


def test_taxonomy_from_names_reads_labels_and_pairs_and_names_the_entry() -> None:
    tax = taxonomy_from_names(["Pica_hudsonia", ("Turdus migratorius", "American Robin")])
    assert tax.keys == ("Pica hudsonia", "Turdus migratorius") and tax[1].common_name == "American Robin"
    with pytest.raises(InputError, match=r"entries 1 and 2"):
        taxonomy_from_names(["Pica hudsonia", "Pica hudsonia hudsonia"])
