"""`--rank`: answers at genus, family or order (the species of a taxon combined), auto, and every output saying so."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from rich.console import Console

from audio_fixtures import write_wav
from birdbridge.embed.table import EmbeddingTable
from birdbridge.errors import BirdbridgeError
from birdbridge.models.calibration import Calibration
from birdbridge.search import SearchEngine
from birdbridge.search.formats import format_text, results_table, write_parquet
from birdbridge.search.results import FileResult
from birdbridge.search.scoring import Scoring, combine_scores, score_windows
from birdbridge.serve.app import create_app
from birdbridge.species import Species, Taxonomy
from birdbridge.species.ranks import rank_groups, taxon_at
from cli_fixtures import run
from search_fixtures import distilled_world
from train_fixtures import SPECIES

PATHS = {  # scientific name -> kingdom ... specific epithet
    "Corvus corax": ("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus", "corax"),
    "Corvus corone": ("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus", "corone"),
    "Pica pica": ("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Pica", "pica"),
    "Turdus merula": ("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "merula"),
}
NAMES = list(PATHS)
COMMON = {"Corvus corax": "Common Raven", "Corvus corone": "Carrion Crow", "Pica pica": "Eurasian Magpie",
          "Turdus merula": "Eurasian Blackbird"}


def species_of(names=NAMES, paths=PATHS):
    return [(name, paths.get(name, ())) for name in names]


def test_taxon_names_from_the_taxonomy_or_the_scientific_name() -> None:
    assert taxon_at("Corvus corax", PATHS["Corvus corax"], "family") == "Corvidae"
    assert taxon_at("Corvus corax", PATHS["Corvus corax"], "order") == "Passeriformes"
    assert taxon_at("Corvus corax", (), "genus") == "Corvus"  # no taxonomy: the genus from the name
    assert taxon_at("Corvus corax", (), "family") is None
    groups = rank_groups([("Corvus corax", ()), ("Corvus corone", ()), ("Pica pica", ())], "family")
    assert groups.names == ["Corvus corax", "Corvus corone", "Pica pica"]  # unknown family: each species alone
    assert groups.ranks == ["species"] * 3


def test_combination_rule_by_hand() -> None:
    """Summed probabilities (softmax), noisy-OR of confidences, best similarity: against hand arithmetic."""
    genus = rank_groups(species_of(), "genus")
    assert genus.names == ["Corvus", "Pica", "Turdus"] and genus.ranks == ["genus"] * 3
    probs = np.array([[0.30, 0.25, 0.40, 0.05], [0.1, 0.1, 0.1, 0.7]])
    assert np.allclose(combine_scores(probs, genus, "softmax"), [[0.55, 0.40, 0.05], [0.2, 0.1, 0.7]])
    conf = np.array([[0.4, 0.5, 0.3, 0.9]])
    assert np.allclose(combine_scores(conf, genus, "confidence"), [[1 - 0.6 * 0.5, 0.3, 0.9]])
    assert np.allclose(combine_scores(np.array([[1.0, 0.5, 0.0, 0.0]]), genus, "confidence"), [[1.0, 0.0, 0.0]])
    sims = np.array([[0.2, 0.35, -0.1, 0.0]])
    assert np.allclose(combine_scores(sims, genus, "similarity"), [[0.35, -0.1, 0.0]])
    family = rank_groups(species_of(), "family")
    assert family.names == ["Corvidae", "Turdidae"]
    assert np.allclose(combine_scores(conf, family, "confidence"), [[1 - 0.6 * 0.5 * 0.7, 0.9]])
    order = rank_groups(species_of(), "order")
    assert np.allclose(combine_scores(probs, order, "softmax"), [[1.0], [1.0]])


CAL = Calibration(slope=10.0, intercept=-4.0)  # confidence = sigmoid(10 s - 4): 0.35 -> 0.378, 0.6 -> 0.881


def _auto(sims: list[list[float]], **kwargs) -> list[list[tuple[str, str]]]:
    """(rank, name) of each window's hits under rank=auto."""
    groups = {rank: rank_groups(species_of(), rank) for rank in ("genus", "family", "order")}
    scored = score_windows(np.array(sims), Scoring(rank="auto", min_conf=0.5, **kwargs), CAL, top_k=3,
                           groups=groups, scale=10.0)
    return [[(h.level, NAMES[h.column] if h.level == "species" else groups[h.level].names[h.column]) for h in row]
            for row in scored.hits]


def test_auto_answers_at_genus_when_the_species_are_split_and_at_species_when_one_dominates() -> None:
    split, dominant, nothing = [0.35, 0.35, 0.0, 0.0], [0.6, 0.35, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]
    assert _auto([split, dominant, nothing]) == [[("genus", "Corvus")], [("species", "Corvus corax")], []]
    # both congeners at 0.378 (< 0.5); their genus at 1 - 0.622^2 = 0.613: "a Corvus, species uncertain"
    # a raven and a magpie at 0.269 each (the others at 0.018): Corvus 0.282, Corvidae 1 - 0.731^2 0.982 = 0.475,
    # Passeriformes 0.485: nothing reaches 0.5
    assert _auto([[0.3, 0.0, 0.3, 0.0]]) == [[]]
    three = [0.33, 0.0, 0.33, 0.0]  # 0.332 each: Corvus 0.344, Corvidae 1 - 0.668^2 0.982 = 0.562
    assert _auto([three]) == [[("family", "Corvidae")]]
    # softmax: the summed probability of the genus reaches min_conf while no species does
    assert _auto([[0.5, 0.5, 0.0, 0.0]], score="softmax")[0][0] == ("genus", "Corvus")
    assert _auto([[0.9, 0.5, 0.0, 0.0]], score="softmax")[0][0] == ("species", "Corvus corax")


def test_a_bad_rank_is_refused() -> None:
    with pytest.raises(BirdbridgeError, match=r"unknown rank 'class'.*species, genus, family, order, auto"):
        Scoring(rank="class")


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_clip) -> SearchEngine:
    """A gallery of four species (two crows, a magpie, a blackbird) with their taxonomy, on the tiny teacher."""
    from birdbridge.gallery.build import build_gallery

    root = tmp_path_factory.mktemp("ranks")
    rng = np.random.default_rng(0)
    for s, name in enumerate(NAMES):
        folder = root / "photos" / f"{name}_{COMMON[name]}"
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.clip(60 * s + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)).save(
                folder / f"{i}.png")
    taxonomy = Taxonomy(Species(*PATHS[name], COMMON[name]) for name in NAMES)
    build_gallery([root / "photos"], root / "gallery", str(tiny_clip), species=taxonomy, progress=False,
                  background=False)
    return SearchEngine.open(root / "gallery")


def _crow_table(engine: SearchEngine) -> EmbeddingTable:
    """One window halfway between the two crows' text embeddings (as close to one as to the other)."""
    keys = [sp.key for sp in engine.gallery.species()]
    vectors = np.asarray(engine.gallery.species_vectors, dtype=np.float64)
    mix = vectors[keys.index("Corvus corax")] + vectors[keys.index("Corvus corone")]
    return EmbeddingTable((mix / np.linalg.norm(mix))[None].astype(np.float32), ["crow.wav"], np.array([0.0]),
                          np.array([3.0]))


def test_engine_answers_with_the_genus_and_its_species_pictures(engine) -> None:
    table = _crow_table(engine)
    [species] = engine.search_table(table, top_k=5, n_images=4, scoring=Scoring("softmax", min_score=0.0))
    probs = {h.key: h.score for h in species.windows[0].species}
    [result] = engine.search_table(table, top_k=5, n_images=4, scoring=Scoring("softmax", min_score=0.0, rank="genus"))
    assert result.rank == "genus"
    top = result.windows[0].species[0]
    assert (top.key, top.taxon_rank, set(top.members)) == ("Corvus", "genus", {"Corvus corax", "Corvus corone"})
    assert top.score == pytest.approx(probs["Corvus corax"] + probs["Corvus corone"], abs=1e-6)
    assert {im.species for im in result.windows[0].images} == {"Corvus corax", "Corvus corone"}  # the taxon's pictures
    [family] = engine.search_table(table, top_k=5, n_images=2, scoring=Scoring("softmax", min_score=0.0,
                                                                               rank="family"))
    assert (family.windows[0].species[0].key, family.windows[0].species[0].taxon_rank) == ("Corvidae", "family")
    assert sum(h.score for h in family.windows[0].species) == pytest.approx(1.0, abs=1e-6)


def test_every_output_carries_the_rank(engine, tmp_path) -> None:
    table = _crow_table(engine)
    results = engine.search_table(table, top_k=1, n_images=2, scoring=Scoring("softmax", min_score=0.0, rank="genus"))
    rows = list(csv.DictReader(io.StringIO(format_text("csv", results, n_images=2, band_hz=(0, 8000)))))
    assert [(r["Scientific name"], r["Rank"]) for r in rows] == [("Corvus", "genus")]
    raven = list(csv.DictReader(io.StringIO(format_text("raven", results, n_images=2, band_hz=(0, 8000))),
                                delimiter="\t"))
    assert [(r["Common Name"], r["Rank"]) for r in raven] == [("Corvus", "genus")]
    kaleidoscope = list(csv.DictReader(io.StringIO(format_text("kaleidoscope", results, n_images=2,
                                                               band_hz=(0, 8000)))))
    assert [(r["scientific_name"], r["RANK"]) for r in kaleidoscope] == [("Corvus", "genus")]
    assert format_text("audacity", results, n_images=2, band_hz=(0, 8000)).split("\t")[2] == "Corvus, Corvus (genus)"
    [data] = json.loads(format_text("json", results, n_images=2, band_hz=(0, 8000)))
    assert data["rank"] == "genus" and data["windows"][0]["species"][0]["taxon_rank"] == "genus"
    assert sorted(data["windows"][0]["species"][0]["members"]) == ["Corvus corax", "Corvus corone"]
    write_parquet(tmp_path / "r.parquet", results)
    assert pq.read_table(tmp_path / "r.parquet").column("taxon_rank").to_pylist() == ["genus"]
    console = Console(file=io.StringIO(), width=200)
    console.print(results_table(results, 2))
    assert "Corvus (genus, species uncertain)" in console.file.getvalue()
    again = FileResult.from_dict(results[0].to_dict())  # combined runs read their partial results back
    assert again.rank == "genus" and again.windows[0].species[0] == results[0].windows[0].species[0]


class CrowService:
    """The real engine behind the web app; every window of an upload is the crows' mix (no student needed)."""

    def __init__(self, engine: SearchEngine) -> None:
        self.engine = engine
        self.scorings: list[Scoring] = []

    def info(self) -> dict:
        return {**self.engine.info(), "model": "crow-mix", "window_s": 1.0, "sample_rate": 16_000}

    def search_audio(self, inputs, *, top_k: int = 5, n_images: int = 5, scoring: Scoring | None = None, **_):
        self.scorings.append(scoring)
        [path] = inputs
        table = _crow_table(self.engine)
        table.names = [str(path)]
        return self.engine.search_table(table, top_k=top_k, n_images=n_images, scoring=scoring), []

    def search_texts(self, texts, **kwargs):
        return self.engine.search_texts(texts, **kwargs)

    def image_file(self, image_id: str):
        return self.engine.image_file(image_id)


def test_api_takes_the_rank(engine, tmp_path) -> None:
    service = CrowService(engine)
    wav = write_wav(tmp_path / "crow.wav", 1.0)
    uploads = tmp_path / "uploads"
    uploads.mkdir()

    def post(**params):
        with open(wav, "rb") as fh:
            return client.post("/api/search/audio", params={"spectrogram": "false", **params},
                               files={"file": ("crow.wav", fh, "application/octet-stream")})

    with TestClient(create_app(service, upload_dir=uploads)) as client:
        result = post(rank="genus", score="softmax", n_images=4).json()
        assert service.scorings[-1].rank == "genus" and result["rank"] == "genus"
        top = result["windows"][0]["species"][0]
        assert (top["key"], top["taxon_rank"], sorted(top["members"])) == ("Corvus", "genus",
                                                                           ["Corvus corax", "Corvus corone"])
        pictures = result["windows"][0]["images"]
        assert {p["species"] for p in pictures} == {"Corvus corax", "Corvus corone"}
        assert all(client.get(p["url"]).status_code == 200 for p in pictures)
        assert post(score="softmax").json()["windows"][0]["species"][0]["taxon_rank"] == "species"  # the default
        refused = post(rank="class")
        assert refused.status_code == 422 and "rank" in refused.json()["detail"]
        text = client.get("/api/search/text", params={"q": "Corvus corax", "rank": "genus"}).json()
        [(direct, _)] = engine.search_texts(["Corvus corax"], rank="genus")
        assert [(h["key"], h["taxon_rank"]) for h in text["species"]] == [(h.key, "genus") for h in direct]
        assert "Corvus" in [h["key"] for h in text["species"]]
        assert client.get("/api/search/text", params={"q": "Corvus corax"}).json()["species"][0]["taxon_rank"] == \
            "species"
        assert client.get("/api/search/text", params={"q": "Corvus corax", "rank": "class"}).status_code == 422


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = distilled_world(tmp_path_factory.mktemp("rank-cli"))
    world["recording"] = write_wav(world["root"] / "rec" / "raven.wav", 2.5, freq=SPECIES[2][2])
    return world


def test_cli_search_at_genus_rank(world, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    done = run(capsys, "search", world["recording"], "-m", world["model"], "-g", world["gallery"], "--rank", "genus",
               "--score", "softmax", "--min-score", "0", "--format", "csv", "--output", out)
    assert done.returncode == 0, done.stderr
    with open(out / "raven.birdbridge.results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["Rank"] for r in rows} == {"genus"}
    assert {r["Scientific name"] for r in rows} <= {"Pica", "Turdus", "Corvus", "Sitta"}
    params = json.loads((out / "birdbridge.search-params.json").read_text())
    assert params["score"]["rank"] == "genus"
    # This gallery's species index has no families (pictures in folders, no taxonomy): each species stays a species.
    family = run(capsys, "search", world["recording"], "-m", world["model"], "-g", world["gallery"], "--rank", "family",
                 "--score", "softmax", "--min-score", "0", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(family.stdout)))
    assert rows and {r["Rank"] for r in rows} == {"species"}
    assert {r["Scientific name"] for r in rows} <= {sci for sci, _, _ in SPECIES}
    table = run(capsys, "search", world["recording"], "-m", world["model"], "-g", world["gallery"], "--rank", "auto",
                "--score", "softmax")
    assert table.returncode == 0 and "rank" in table.stdout
    bad = run(capsys, "search", world["recording"], "-m", world["model"], "-g", world["gallery"], "--rank", "class")
    assert bad.returncode != 0 and "unknown rank 'class'" in bad.stderr and "Traceback" not in bad.stderr


def test_page_shows_the_rank_and_the_taxons_pictures(engine, tmp_path) -> None:
    """The web page's Rank option: the window names the genus, says the species is uncertain and which species it
    stands for, and shows pictures of those species."""
    from playwright.sync_api import sync_playwright

    from serve_fixtures import ServerThread
    from test_serve_browser import launch

    wav = write_wav(tmp_path / "crow.wav", 1.0)
    problems: list[str] = []
    with ServerThread(create_app(CrowService(engine), upload_dir=tmp_path)) as server, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(server.url + "/")
        page.wait_for_function("() => document.getElementById('info').textContent.includes('gallery of')")
        page.click("details.options summary")
        page.select_option("#opt-score", "softmax")
        page.select_option("#opt-rank", "genus")
        page.set_input_files("#file-input", str(wav))
        page.wait_for_selector("#results:not([hidden]) #species-list li.species", timeout=60_000)
        top = page.locator("#species-list li.species").first
        assert top.get_attribute("data-rank") == "genus"
        assert top.locator(".common").text_content() == "Corvus"
        assert top.locator(".rank").text_content() == "genus, species uncertain: one of Corvus corax, Corvus corone"
        page.wait_for_selector("#image-grid img")
        species = page.eval_on_selector_all("#image-grid figcaption .scientific, #image-grid figcaption .common",
                                            "e => e.map(x => x.textContent)")
        assert species and set(species) <= {"Corvus corax", "Corvus corone", "Common Raven", "Carrion Crow"}
        assert "Corvus (genus)" in page.text_content("#windows")
        browser.close()
    assert problems == []
