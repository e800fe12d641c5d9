"""`birdbridge evaluate` at genus and family rank: MAP against scikit-learn on taxon-level relevance."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score

from birdbridge.embed import embed_audio, embed_images
from birdbridge.evaluate import baselines as B
from birdbridge.evaluate.ranks import rank_metrics
from birdbridge.evaluate.runner import EvalSettings, evaluate
from birdbridge.species import Species, Taxonomy
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


def test_evaluate_reports_genus_and_family_map(world, tmp_path, capsys) -> None:
    """The runner's genus and family MAP of the random projection equal scikit-learn's on taxon-level relevance."""
    from birdbridge.datasets import load_dataset

    result = evaluate({}, world["dataset"], teacher=str(world["teacher"]), base_student=str(world["student"]),
                      baselines=("random",), settings=EvalSettings(bootstrap=0))
    metrics = result.to_dict()["methods"]["random projection"]
    ds = load_dataset(world["dataset"])
    queries, train = ds.audio_split("test"), ds.audio_split("train")
    audio = embed_audio([q.path for q in queries], world["student"])
    projected = B.random_projection(np.vstack([audio, embed_audio([t.path for t in train], world["student"])]), 24,
                                    seed=0)[: len(audio)]
    images = embed_images([i.path for i in ds.images], world["teacher"])
    for rank, taxon in (("genus", lambda key: key.split()[0]), ("family", lambda key: FAMILY[key.split()[0]])):
        ref = sklearn_map(projected, [taxon(q.species) for q in queries], images, [taxon(i.species) for i in ds.images])
        assert metrics[f"a2i_map_{rank}"] == pytest.approx(ref, abs=1e-4), rank
        assert metrics["zero_shot_top1"] <= metrics[f"zero_shot_top1_{rank}"] <= 100  # a right species: a right taxon
    assert metrics["a2i_map"] >= 0  # the species-level figures stay
    out = tmp_path / "results.json"
    done = run(capsys, "evaluate", "-d", world["dataset"], "--teacher", world["teacher"], "--base-student",
               world["student"], "--baselines", "random", "--bootstrap", "0", "-o", out)
    assert done.returncode == 0, done.stderr
    assert "A→I MAP genus" in done.stdout and "ZS top-1 family" in done.stdout
    saved = json.loads(out.read_text())["methods"]["random projection"]
    assert saved["a2i_map_genus"] == pytest.approx(metrics["a2i_map_genus"], abs=1e-6)
