"""Species, Taxonomy, CSV taxonomies and BirdNET-style species lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.species import as_taxonomy, parse_species_list, taxonomy_from_names
from birdbridge.species.taxonomy import (
    CSV_COLUMNS,
    Species,
    Taxonomy,
    UnknownSpeciesError,
    load_taxonomy_csv,
    normalize_rank_name,
    split_scientific_name,
)

HEADER = "kingdom,phylum,class,order,family,genus,specific_epithet,common_name,code"
MAGPIE = "Animalia,Chordata,Aves,Passeriformes,Corvidae,Pica,hudsonia,Black-billed Magpie,bkbmag1"
ROBIN = "Animalia,Chordata,Aves,Passeriformes,Turdidae,Turdus,migratorius,American Robin,amerob"
MALLARD = (
    'Animalia,Chordata,Aves,Anseriformes,"Anatidae (Ducks, Geese, and Waterfowl)",'
    "Anas,platyrhynchos,Mallard,mallar3"
)


def write(tmp_path: Path, text: str, name: str = "species.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def load_error(tmp_path: Path, text: str, name: str = "species.csv") -> str:
    with pytest.raises(InputError) as info:
        load_taxonomy_csv(write(tmp_path, text, name))
    assert info.value.source.endswith(name)
    return str(info.value)


# ------------------------------------------------------------------------------------------- Species


def test_species_properties():
    sp = Species(
        "Animalia",
        "Chordata",
        "Aves",
        "Passeriformes",
        "Corvidae",
        "Pica",
        "hudsonia",
        "Black-billed Magpie",
        "x",
    )
    assert sp.scientific_name == sp.key == "Pica hudsonia"
    assert sp.taxonomy_path == (
        "Animalia",
        "Chordata",
        "Aves",
        "Passeriformes",
        "Corvidae",
        "Pica",
        "hudsonia",
    )
    assert sp.label == "Black-billed Magpie"
    assert sp.as_dict()["class"] == "Aves"
    assert list(sp.as_dict()) == list(CSV_COLUMNS)
    bare = Species.from_names("Pica hudsonia")
    assert bare.label == "Pica hudsonia" and bare.common_name is None and bare.kingdom == ""
    assert Species("", "", "", "", "", "Pica", "pica", "", "").common_name is None


def test_normalize_rank_name():
    assert normalize_rank_name("Anatidae (Ducks, Geese, and Waterfowl)") == "Anatidae"
    assert normalize_rank_name("  Corvidae  ") == "Corvidae"
    assert normalize_rank_name("") == ""


@pytest.mark.parametrize(
    "bad", ["Pica", "Pica hudsonia hudsonia", "Anas sp.", "pica hudsonia", "Pica Hudsonia", ""]
)
def test_split_scientific_name_rejects(bad):
    with pytest.raises(ValueError):
        split_scientific_name(bad)


# -------------------------------------------------------------------------------------------- loading


def test_load_full_csv(tmp_path):
    tax = load_taxonomy_csv(write(tmp_path, "\n".join([HEADER, MAGPIE, ROBIN, MALLARD]) + "\n"))
    assert len(tax) == 3
    assert tax.keys == ("Pica hudsonia", "Turdus migratorius", "Anas platyrhynchos")
    magpie = tax[0]
    assert magpie.taxonomy_path[:5] == ("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae")
    assert magpie.common_name == "Black-billed Magpie" and magpie.code == "bkbmag1"
    assert tax[2].family == "Anatidae"  # SSW60/eBird family description dropped
    assert [sp.key for sp in tax] == list(tax.keys)


def test_load_bom_and_whitespace(tmp_path):
    text = (
        "\ufeff"
        + HEADER
        + "\n"
        + " Animalia , Chordata,Aves,Passeriformes,Corvidae, Pica ,hudsonia , Black-billed  Magpie ,bkbmag1\n"
    )
    tax = load_taxonomy_csv(write(tmp_path, text))
    assert tax[0].kingdom == "Animalia" and tax[0].genus == "Pica" and tax[0].specific_epithet == "hudsonia"
    assert tax[0].common_name == "Black-billed Magpie"


def test_load_scientific_name_only_with_header_variants(tmp_path):
    text = (
        "Scientific Name,Common Name,species_code,Notes\n"
        "Pica hudsonia,Black-billed Magpie,bkbmag1,ignored\n"
        "Turdus  migratorius,,amerob,\n"
        "Cyanocitta cristata\n"
    )
    tax = load_taxonomy_csv(write(tmp_path, text))
    assert tax.keys == ("Pica hudsonia", "Turdus migratorius", "Cyanocitta cristata")
    assert tax[0].code == "bkbmag1" and tax[1].common_name is None and tax[2].code is None
    assert tax[0].kingdom == "" and tax[0].family == ""


def test_load_ssw60_ebird_style(tmp_path):
    text = (
        "TAXON_ORDER,CATEGORY,SPECIES_CODE,PRIMARY_COM_NAME,SCI_NAME,ORDER1,FAMILY\n"
        '1,species,mallar3,Mallard,Anas platyrhynchos,Anseriformes,"Anatidae (Ducks, Geese, and Waterfowl)"\n'
        "2,hybrid,x00001,Mallard x American Black Duck,Anas platyrhynchos x rubripes,Anseriformes,Anatidae\n"
        '3,spuh,duck1,duck sp.,Anatidae sp.,Anseriformes,"Anatidae (Ducks, Geese, and Waterfowl)"\n'
        "4,species,bkbmag1,Black-billed Magpie,Pica hudsonia,Passeriformes,Corvidae (Crows and Jays)\n"
    )
    tax = load_taxonomy_csv(write(tmp_path, text))
    assert tax.keys == ("Anas platyrhynchos", "Pica hudsonia")
    assert tax[0].family == "Anatidae" and tax[0].order == "Anseriformes" and tax[0].code == "mallar3"
    assert tax[1].family == "Corvidae"


def test_load_tsv(tmp_path):
    text = "scientific_name\tcommon_name\nPica hudsonia\tBlack-billed Magpie\n"
    assert load_taxonomy_csv(write(tmp_path, text, "s.tsv"))[0].common_name == "Black-billed Magpie"


def test_genus_epithet_and_scientific_name_must_agree(tmp_path):
    ok = "genus,specific_epithet,scientific_name\nPica,hudsonia,Pica hudsonia\nTurdus,,Turdus migratorius\n"
    assert load_taxonomy_csv(write(tmp_path, ok)).keys == ("Pica hudsonia", "Turdus migratorius")
    message = load_error(tmp_path, "genus,specific_epithet,scientific_name\nPica,pica,Pica hudsonia\n")
    assert "line 2" in message and "scientific_name" in message


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        # missing genus on the third file line (blank line 3 still counts)
        (
            HEADER
            + "\n"
            + MAGPIE
            + "\n\nAnimalia,Chordata,Aves,Passeriformes,Turdidae,,migratorius,Robin,r\n",
            ["line 4", "'genus'", "empty"],
        ),
        (
            HEADER + "\n" + "Animalia,Chordata,Aves,Passeriformes,Turdidae,Turdus,,Robin,r\n",
            ["line 2", "'specific_epithet'", "empty"],
        ),
        (
            "scientific_name,common_name\nPica hudsonia,Magpie\n,Robin\n",
            ["line 3", "'scientific_name'", "empty"],
        ),
        (
            "scientific_name,common_name\nPica hudsonia,Magpie\nTurdus,Robin\n",
            ["line 3", "'scientific_name'", "two words"],
        ),
        ("Sci Name,Common Name\nPica hudsonia hudsonia,Magpie\n", ["line 2", "'Sci Name'", "two words"]),
        ("scientific_name\nAnas sp.\n", ["line 2", "letters"]),
        ("scientific_name\npica hudsonia\n", ["line 2", "'Pica'"]),
        ("genus,specific_epithet\nPica,Hudsonia\n", ["line 2", "'specific_epithet'", "lower case"]),
        (
            HEADER + "\n" + MAGPIE + "\n" + MAGPIE.replace("bkbmag1", "other") + "\n",
            ["duplicate species 'Pica hudsonia'", "lines 2 and 3"],
        ),
        (
            "scientific_name,code\nPica hudsonia,x1\n\nPica pica,x1\n",
            ["duplicate code 'x1'", "lines 2 and 4"],
        ),
        (
            "scientific_name,common_name\nPica hudsonia,Magpie\nPica pica,magpie\n",
            ["duplicate common name", "lines 2 and 3"],
        ),
        (
            "scientific_name,family\nAnas platyrhynchos,Anatidae (Ducks, Geese)\n",
            ["line 2", "3 fields", "quote"],
        ),
    ],
)
def test_row_errors_name_line_and_field(tmp_path, text, needles):
    message = load_error(tmp_path, text)
    for needle in needles:
        assert needle in message, (needle, message)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        (HEADER + "\n", "no species rows"),
        ("Pica hudsonia,Black-billed Magpie\nTurdus migratorius,American Robin\n", "no header"),
        ("common_name,code\nMagpie,bkbmag1\n", "no species name column"),
        ("scientific_name,Scientific Name\nPica hudsonia,Pica hudsonia\n", "both give"),
    ],
)
def test_file_errors(tmp_path, text, needle):
    assert needle in load_error(tmp_path, text)


def test_bad_encoding_and_missing_file(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("scientific_name,common_name\nPica hudsonia,Pie à bec noir\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"line 2: not valid UTF-8.*UTF-8"):
        load_taxonomy_csv(path)
    with pytest.raises(InputError, match="not found"):
        load_taxonomy_csv(tmp_path / "missing.csv")


# ------------------------------------------------------------------------------------------- Taxonomy


@pytest.fixture()
def tax(tmp_path) -> Taxonomy:
    return load_taxonomy_csv(write(tmp_path, "\n".join([HEADER, MAGPIE, ROBIN, MALLARD]) + "\n"))


def test_lookup(tax):
    assert tax.index("Turdus migratorius") == 1
    assert tax.index("american robin") == 1
    assert tax.index("AMERICAN  ROBIN") == 1
    assert tax.index("amerob") == 1
    assert tax.index("turdus migratorius") == 1
    assert tax.index("Turdus migratorius_American Robin") == 1  # BirdNET label
    assert tax.index("Turdus_migratorius") == 1
    assert tax.index(tax[2]) == 2
    assert tax.get("Mallard") is tax[2]
    assert tax.get("Dodo") is None
    assert "Black-billed Magpie" in tax and "Dodo" not in tax


def test_unknown_species_error(tax):
    with pytest.raises(UnknownSpeciesError) as info:
        tax.index("American Robbin")
    err = info.value
    assert isinstance(err, KeyError) and isinstance(err, BirdbridgeError)
    assert str(err).startswith("species 'American Robbin' is not in")
    assert "American Robin" in str(err)


def test_subset_keeps_given_order(tax):
    sub = tax.subset(["Mallard", "bkbmag1"])
    assert sub.keys == ("Anas platyrhynchos", "Pica hudsonia")
    with pytest.raises(BirdbridgeError, match="twice"):
        tax.subset(["Mallard", "Anas platyrhynchos"])
    with pytest.raises(UnknownSpeciesError):
        tax.subset(["Dodo"])


def test_fingerprint(tax):
    same = Taxonomy(list(tax))
    assert same.fingerprint == tax.fingerprint and same == tax
    assert len(tax.fingerprint) == 64
    assert Taxonomy(list(reversed(list(tax)))).fingerprint != tax.fingerprint
    renamed = [*list(tax)[:2], Species(*list(tax[2].as_dict().values())[:7], "Mallard Duck", "mallar3")]
    assert Taxonomy(renamed).fingerprint != tax.fingerprint


def test_taxonomy_rejects_duplicates():
    a = Species.from_names("Pica hudsonia", "Magpie")
    with pytest.raises(BirdbridgeError, match="scientific name"):
        Taxonomy([a, Species.from_names("Pica hudsonia")])
    with pytest.raises(BirdbridgeError, match="common name"):
        Taxonomy([a, Species.from_names("Pica pica", "magpie")])


def test_to_csv_round_trip(tax, tmp_path):
    out = tmp_path / "sub" / "out.csv"
    tax.to_csv(out)
    assert out.read_text(encoding="utf-8").splitlines()[0] == ",".join(CSV_COLUMNS)
    assert '"Anatidae' not in out.read_text()
    again = load_taxonomy_csv(out)
    assert again == tax and again.fingerprint == tax.fingerprint
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.csv"]


# ---------------------------------------------------------------------------------------- species lists


def test_parse_species_list(tmp_path):
    text = (
        "# my site\n"
        "Turdus migratorius_American Robin\n"
        "\n"
        "  Pica hudsonia_Black-billed Magpie  \n"
        "Cyanocitta cristata\n"
        "Corvus corax_\n"
    )
    pairs = parse_species_list(write(tmp_path, "\ufeff" + text, "list.txt"))
    assert pairs == [
        ("Turdus migratorius", "American Robin"),
        ("Pica hudsonia", "Black-billed Magpie"),
        ("Cyanocitta cristata", None),
        ("Corvus corax", None),
    ]


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("Pica hudsonia_Magpie\n\nCorvus_Crow\n", ["line 3", "two words"]),
        ("Pica hudsonia_Magpie\nDog_Dog\n", ["line 2", "not a species"]),
        ("Pica hudsonia_Magpie\nHuman vocal_Human vocal\n", ["line 2", "not a species"]),
        (
            "# c\nPica hudsonia_Magpie\nTurdus migratorius_Robin\nPica hudsonia_Black-billed Magpie\n",
            ["duplicate species 'Pica hudsonia'", "lines 2 and 4"],
        ),
        ("# only comments\n\n", ["no species"]),
        ("Turdus Migratorius_American Robin\n", ["line 1", "lower case"]),
    ],
)
def test_species_list_errors(tmp_path, text, needles):
    with pytest.raises(InputError) as info:
        parse_species_list(write(tmp_path, text, "list.txt"))
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    assert "list.txt" in str(info.value)


def test_taxonomy_from_names_and_as_taxonomy(tmp_path):
    tax = taxonomy_from_names([("Pica hudsonia", "Black-billed Magpie"), "Turdus migratorius"])
    assert tax.keys == ("Pica hudsonia", "Turdus migratorius") and tax[1].common_name is None
    assert tax[0].taxonomy_path == ("", "", "", "", "", "Pica", "hudsonia")
    with pytest.raises(InputError, match="entry 2"):
        taxonomy_from_names(["Pica hudsonia", "Pica"])
    with pytest.raises(InputError, match="entries 1 and 2"):
        taxonomy_from_names(["Pica hudsonia", "Pica hudsonia"])
    listed = as_taxonomy(write(tmp_path, "Pica hudsonia_Black-billed Magpie\n", "list.txt"))
    assert listed[0].common_name == "Black-billed Magpie"
    from_csv = as_taxonomy(write(tmp_path, "scientific_name\nPica hudsonia\n", "t.csv"))
    assert from_csv.keys == ("Pica hudsonia",)


def test_species_validates_its_name():
    with pytest.raises(ValueError, match="genus"):
        Species("", "", "", "", "", "Pica hudsonia", "hudsonia")
    with pytest.raises(ValueError, match="specific epithet"):
        Species("", "", "", "", "", "Pica", "Hudsonia")
    with pytest.raises(ValueError, match="needs a genus"):
        Species("", "", "", "", "", "", "hudsonia")
