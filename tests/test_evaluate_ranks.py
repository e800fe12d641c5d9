"""`birdbridge evaluate` at genus and family rank: MAP against scikit-learn on taxon-level relevance."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score

from birdbridge.embed import embed_audio, embed_images
from birdbridge.errors import InputError
from birdbridge.evaluate import baselines as B
from birdbridge.evaluate.ranks import direction_metrics, rank_metrics
from birdbridge.evaluate.results import EvalResult
from birdbridge.evaluate.runner import EvalSettings, evaluate
from birdbridge.models.loader import load_teacher
from birdbridge.species import PromptSpec, Species, Taxonomy, species_text_embeddings
from cli_fixtures import run
from train_fixtures import SPECIES, corpus, make_tone_dataset

# The tone dataset's species, one of them renamed into a second Corvus: two crows, a magpie, a nuthatch.
RENAMED = {"Turdus migratorius": ("Corvus brachyrhynchos", "American Crow")}
FAMILY = {"Pica": "Corvidae", "Corvus": "Corvidae", "Sitta": "Sittidae"}


def names() -> list[tuple[str, str]]:
    return [RENAMED.get(sci, (sci, common)) for sci, common, _ in SPECIES]


def sklearn_map(queries: np.ndarray, query_taxa: list[str], images: np.ndarray, image_taxa: list[str]) -> float:
    """Mean over queries (with a relevant picture) of scikit-learn's AP of the cosine ranking, ×100."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = images / np.linalg.norm(images, axis=1, keepdims=True)
    scores = q @ g.T
    aps = [average_precision_score([t == taxon for t in image_taxa], row)
           for taxon, row in zip(query_taxa, scores, strict=True) if taxon in image_taxa]
    return 100 * float(np.mean(aps))


def test_rank_metrics_against_sklearn() -> None:
    rng = np.random.default_rng(3)
    taxonomy = Taxonomy(Species("", "", "", "Passeriformes", FAMILY[sci.split()[0]], *sci.split(), common)
                        for sci, common in names())
    query_labels = rng.integers(0, 4, 30)
    image_labels = np.repeat(np.arange(4), 5)
    audio, images = rng.normal(size=(30, 8)), rng.normal(size=(20, 8))
    scores = rng.normal(size=(30, 4))
    got = rank_metrics(taxonomy, query_labels, audio=audio, images=images, image_labels=image_labels, scores=scores)
    genus = [sp.genus for sp in taxonomy]
    family = [sp.family for sp in taxonomy]
    for rank, taxon in (("genus", genus), ("family", family)):
        ref = sklearn_map(audio, [taxon[i] for i in query_labels], images, [taxon[i] for i in image_labels])
        assert got[f"a2i_map_{rank}"] == pytest.approx(ref, abs=1e-9)
        right = [taxon[int(np.argmax(s))] == taxon[i] for s, i in zip(scores, query_labels, strict=True)]
        assert got[f"zero_shot_top1_{rank}"] == pytest.approx(100 * np.mean(right))
    species_only = Taxonomy(Species.from_names(sci, common) for sci, common in names())  # no families given
    assert set(rank_metrics(species_only, query_labels, scores=scores)) == {"zero_shot_top1_genus"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from birdbridge.models.standins import build_small_clap, build_small_clip

    root = tmp_path_factory.mktemp("eval-ranks") / "data"
    manifest = make_tone_dataset(root, per_species=8, test_per_species=3)
    text = manifest.read_text()
    for (sci, common, _), (new_sci, new_common) in zip(SPECIES, names(), strict=True):
        text = text.replace(f"{sci}_{common}", f"{new_sci}_{new_common}")
    manifest.write_text(text)
    rows = ["path,species,split"]
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for s, (sci, common) in enumerate(names()):
        for i in range(3):
            pixels = np.clip(40 * s + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "images" / f"{s}_{i}.png")
            rows.append(f"images/{s}_{i}.png,{sci}_{common},test")
    (root / "images.csv").write_text("\n".join(rows) + "\n")
    with open(root / "taxonomy.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["scientific_name", "common_name", "order", "family"])
        writer.writerows([sci, common, "Passeriformes", FAMILY[sci.split()[0]]] for sci, common in names())
    (root / "dataset.yaml").write_text("type: manifest\nname: tones\naudio: audio.csv\nimages: images.csv\n"
                                       "taxonomy: taxonomy.csv\n")
    return {"dataset": root / "dataset.yaml", "student": build_small_clap(root.parent / "student", corpus=corpus()),
            "teacher": build_small_clip(root.parent / "teacher")}


def recomputed(world) -> tuple:
    """The dataset, its test recordings, their random projection (as the runner draws it) and the pictures'
    embeddings, from the public embedding API."""
    from birdbridge.datasets import load_dataset

    ds = load_dataset(world["dataset"])
    queries, train = ds.audio_split("test"), ds.audio_split("train")
    audio = embed_audio([q.path for q in queries], world["student"])
    projected = B.random_projection(np.vstack([audio, embed_audio([t.path for t in train], world["student"])]), 24,
                                    seed=0)[: len(audio)]
    return ds, queries, projected, embed_images([i.path for i in ds.images], world["teacher"])


def test_evaluate_reports_genus_and_family_map(world, tmp_path, capsys) -> None:
    """The runner's genus and family MAP of the random projection equal scikit-learn's on taxon-level relevance."""
    result = evaluate({}, world["dataset"], teacher=str(world["teacher"]), base_student=str(world["student"]),
                      baselines=("random",), settings=EvalSettings(bootstrap=0))
    metrics = result.to_dict()["methods"]["random projection"]
    ds, queries, projected, images = recomputed(world)
    for rank, taxon in (("genus", lambda key: key.split()[0]), ("family", lambda key: FAMILY[key.split()[0]])):
        ref = sklearn_map(projected, [taxon(q.species) for q in queries], images, [taxon(i.species) for i in ds.images])
        assert metrics[f"a2i_map_{rank}"] == pytest.approx(ref, abs=1e-4), rank
        assert metrics["zero_shot_top1"] <= metrics[f"zero_shot_top1_{rank}"] <= 100  # a right species: a right taxon
    assert metrics["a2i_map"] >= 0  # the species-level figures stay
    # Every direction at every rank: the student's four in the teacher's space, image↔text by the teacher alone.
    directions = result.method("random_projection").directions
    assert set(directions) == {f"{d}/{r}/{f}" for d in ("a2i", "i2a", "a2t", "t2a")
                               for r in ("species", "genus", "family") for f in ("map", "r1")}
    assert directions["a2i/genus/map"] == metrics["a2i_map_genus"] and directions["a2i/species/map"] == pytest.approx(
        metrics["a2i_map"]) and directions["i2a/species/map"] == metrics["i2a_map"]
    assert set(result.teacher_directions) == {f"{d}/{r}/{f}" for d in ("i2t", "t2i")
                                              for r in ("species", "genus", "family") for f in ("map", "r1")}
    spec = PromptSpec(forms=("taxonomic_common",), templates="openai")  # the evaluator's species texts
    texts = species_text_embeddings(load_teacher(str(world["teacher"])), ds.taxonomy, spec)
    genus = [key.split()[0] for key in ds.taxonomy.keys]
    ref = sklearn_map(images, [i.species.split()[0] for i in ds.images], texts, genus)
    assert result.teacher_directions["i2t/genus/map"] == pytest.approx(ref, abs=1e-4)
    out = tmp_path / "results.json"
    done = run(capsys, "evaluate", "-d", world["dataset"], "--teacher", world["teacher"], "--base-student",
               world["student"], "--baselines", "random", "--bootstrap", "0", "--holdout", "Pica hudsonia", "-o", out)
    assert done.returncode == 0, done.stderr
    assert "A→I MAP genus" in done.stdout and "ZS top-1 family" in done.stdout
    assert "every direction" in done.stdout and "teacher alone" in done.stdout and "unseen (1 species" in done.stdout
    saved = json.loads(out.read_text())
    assert saved["methods"]["random projection"]["a2i_map_genus"] == pytest.approx(metrics["a2i_map_genus"], abs=1e-6)
    assert saved["directions"]["methods"]["random projection"]["t2a/family/map"] == pytest.approx(
        directions["t2a/family/map"], abs=1e-6)
    assert saved["holdout"]["species"] == ["Pica hudsonia"] and saved["holdout"]["source"] == "settings"
    assert saved["groups"]["unseen"]["methods"]["random projection"]["n_queries"] == 3
    assert saved["groups"]["seen"]["teacher"]["t2i/species/map"] >= 0


def test_seen_and_unseen_species_against_a_direct_computation(world) -> None:
    """With a held-out species, each group's figures are its own queries' against the whole gallery; a held-out
    species the dataset does not have is an error naming it."""
    with pytest.raises(InputError, match="Pica nonexistens"):
        evaluate({}, world["dataset"], teacher=str(world["teacher"]), base_student=str(world["student"]),
                 baselines=("random",), settings=EvalSettings(bootstrap=0,
                                                              holdout=("Pica nonexistens", "Pica hudsonia")))
    result = evaluate({}, world["dataset"], teacher=str(world["teacher"]), base_student=str(world["student"]),
                      baselines=("random",), settings=EvalSettings(bootstrap=0, holdout=("Black-billed Magpie",)))
    assert result.holdout.species == ["Pica hudsonia"] and result.holdout.unseen_species == 1
    method = result.method("random_projection")
    ds, queries, projected, images = recomputed(world)
    image_species = [i.species for i in ds.images]
    for group, unseen in (("seen", False), ("unseen", True)):
        rows = np.array([(q.species == "Pica hudsonia") == unseen for q in queries])
        figures = method.groups[group]
        assert figures["n_queries"] == rows.sum()
        ref = sklearn_map(projected[rows], [q.species for q, r in zip(queries, rows, strict=True) if r], images,
                          image_species)
        assert figures["a2i_map"] == pytest.approx(ref, abs=1e-4)
        assert figures["a2i/species/map"] == pytest.approx(ref, abs=1e-4)
        picked = np.array([(s == "Pica hudsonia") == unseen for s in image_species])
        ref = sklearn_map(images[picked], [s for s, p in zip(image_species, picked, strict=True) if p], projected,
                          [q.species for q in queries])
        assert figures["i2a_map"] == pytest.approx(ref, abs=1e-4)
    whole = method.metrics["n_queries"]
    assert method.groups["seen"]["n_queries"] + method.groups["unseen"]["n_queries"] == whole
    again = EvalResult.from_dict(json.loads(json.dumps(result.to_dict(), allow_nan=True)))
    assert again.holdout == result.holdout and again.method("random_projection").groups.keys() == {"seen", "unseen"}


def brute_force_ap(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Average precision of one query by walking down its ranking (no ties in the test's scores)."""
    hits, total = 0, 0.0
    for rank, item in enumerate(np.argsort(-scores), start=1):
        if relevant[item]:
            hits += 1
            total += hits / rank
    return total / hits


def test_direction_metrics_against_a_direct_computation() -> None:
    """Text→audio MAP at genus rank by a brute-force loop, image→text by scikit-learn; every key is there."""
    rng = np.random.default_rng(5)
    taxonomy = Taxonomy(Species("", "", "", "Passeriformes", FAMILY[sci.split()[0]], *sci.split(), common)
                        for sci, common in names())
    genus = np.array([0, 1, 1, 2])  # Pica, Corvus, Corvus, Sitta
    audio_labels, image_labels = rng.integers(0, 4, 12), np.repeat(np.arange(4), 3)
    sides = {"a": (rng.normal(size=(12, 6)), audio_labels), "i": (rng.normal(size=(12, 6)), image_labels),
             "t": (rng.normal(size=(4, 6)), np.arange(4))}
    got = direction_metrics(taxonomy, sides)
    from birdbridge.evaluate.ranks import DIRECTIONS, RANKS

    assert set(got) == {f"{d}/{r}/{f}" for d in DIRECTIONS for r in RANKS for f in ("map", "r1")}
    unit = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, (v, _) in sides.items()}
    scores = unit["t"] @ unit["a"].T
    aps = [brute_force_ap(scores[s], genus[audio_labels] == genus[s]) for s in range(4)
           if (genus[audio_labels] == genus[s]).any()]
    assert got["t2a/genus/map"] == pytest.approx(100 * np.mean(aps), abs=1e-9)
    top = [genus[audio_labels[np.argmax(scores[s])]] == genus[s] for s in range(4)
           if (genus[audio_labels] == genus[s]).any()]
    assert got["t2a/genus/r1"] == pytest.approx(100 * np.mean(top))
    i2t = unit["i"] @ unit["t"].T
    family = np.array([FAMILY[sci.split()[0]] for sci, _ in names()])
    ref = np.mean([average_precision_score(family == family[label], row) for label, row in zip(image_labels, i2t,
                                                                                             strict=True)])
    assert got["i2t/family/map"] == pytest.approx(100 * ref, abs=1e-9)
    # The queries of some species only, against the whole gallery.
    corvus = np.array([False, True, True, False])
    part = direction_metrics(taxonomy, sides, ("a2i",), ranks=("genus",), species=corvus)
    rows = corvus[audio_labels]
    ref = sklearn_map(sides["a"][0][rows], list(genus[audio_labels[rows]]), sides["i"][0], list(genus[image_labels]))
    assert part == {"a2i/genus/map": pytest.approx(ref, abs=1e-9), "a2i/genus/r1": part["a2i/genus/r1"]}
    none = direction_metrics(taxonomy, sides, ("a2t",), ranks=("species",), species=np.zeros(4, bool))
    assert np.isnan(none["a2t/species/map"])
