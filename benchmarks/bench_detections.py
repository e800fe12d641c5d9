"""Benchmark: detections in soundscapes of the demo's world, by score (confidence, softmax, similarity).

Needs the output of ``birdbridge demo`` (its distilled student and gallery). Renders soundscapes of the same
world (same seed and taxonomy: 8 two-minute recordings of backgrounds with calls now and then), fits a
calibration on the windows of the ``valid`` ones (every window × species pair one example), and searches the
``test`` ones. Prints, per way of scoring: the share of bird-free windows with a detection (false alarms), the
share of windows with birds where a species that calls is detected, and the share of detections that are right.

    python benchmarks/bench_detections.py --demo demo_out --out /tmp/detections
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from birdbridge.demo.run import DemoSettings
from birdbridge.demo.world import World, generate_world
from birdbridge.embed.audio import embed_audio_windows
from birdbridge.gallery import Gallery
from birdbridge.models.calibration import fit_calibration, write_calibration
from birdbridge.models.loader import load_student
from birdbridge.search import Scoring, SearchEngine


def labelled(world: World, items, student, keys: list[str], window_s: float):
    """Files, unit window embeddings, truth per window (species sets) and its [windows, species] matrix."""
    files = [world.root / s.path for s in items]
    table = embed_audio_windows(files, student, window_s=window_s, hop_s=window_s, progress=False)
    vectors = table.vectors / np.linalg.norm(table.vectors, axis=1, keepdims=True)
    truth = [w.species for s in items for w in s.windows(window_s, window_s)]
    assert len(truth) == len(vectors), (len(truth), len(vectors))
    column = {k: i for i, k in enumerate(keys)}
    positives = np.zeros((len(vectors), len(keys)), bool)
    for i, species in enumerate(truth):
        positives[i, [column[k] for k in species if k in column]] = True
    return files, vectors, truth, positives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, required=True, help="the output folder of `birdbridge demo`")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--soundscapes", type=int, default=8)
    args = parser.parse_args()
    demo, out = args.demo, args.out
    cfg = dataclasses.replace(DemoSettings().world_config(), soundscapes=args.soundscapes, soundscape_s=120.0)
    folder = out / "world"
    world = World.load(folder) if (folder / "world.json").exists() else generate_world(folder, cfg)
    assert [s.key for s in world.taxonomy] == [s.key for s in World.load(demo / "world").taxonomy], "another world"
    model = demo / "distill" / "model"
    student = load_student(str(model))
    window_s = min(5.0, student.window_s)  # the soundscapes' bird-free share is planned on 5 s windows
    gallery = Gallery.open(demo / "gallery")
    keys = [s.key for s in gallery.species()]

    _, vectors, _, positives = labelled(world, world.soundscape_items("valid"), student, keys, window_s)
    sims = vectors @ gallery.species_vectors.T
    calibration = fit_calibration(sims, positives, source="demo soundscapes: valid")
    bird_free = ~positives.any(axis=1)
    print(f"calibration on {len(sims)} valid windows: slope {calibration.slope:.2f}, intercept "
          f"{calibration.intercept:.2f}; similarity at confidence 0.25: {calibration.similarity_at(0.25):.3f}, "
          f"at 0.5: {calibration.similarity_at(0.5):.3f}")
    print(f"valid similarities: pairs that call median {np.median(sims[positives]):.3f}, pairs that do not "
          f"{np.median(sims[~positives]):.3f}; best species of bird-free windows median "
          f"{np.median(sims[bird_free].max(axis=1)):.3f}")
    calibrated = out / "calibrated"
    shutil.rmtree(calibrated, ignore_errors=True)
    shutil.copytree(model, calibrated)
    write_calibration(calibrated, calibration)
    bare = out / "gallery-without-background"
    shutil.rmtree(bare, ignore_errors=True)
    shutil.copytree(demo / "gallery", bare)
    Gallery.open(bare).remove_background()

    files, _, truth, positives = labelled(world, world.soundscape_items("test"), student, keys, window_s)
    bird_free = ~positives.any(axis=1)
    print(f"test: {len(truth)} windows of {window_s:g} s, {bird_free.sum()} bird-free")
    for name, where, which, scoring in [
        ("softmax, min_score 0.05", demo / "gallery", calibrated, Scoring("softmax")),
        ("confidence 0.25 + background", demo / "gallery", calibrated, Scoring()),
        ("confidence 0.05 + background", demo / "gallery", calibrated, Scoring(min_conf=0.05)),
        ("confidence 0.05, no background", bare, calibrated, Scoring(min_conf=0.05)),
        ("confidence 0.05, sensitivity 1.25 + background", demo / "gallery", calibrated,
         Scoring(min_conf=0.05, sensitivity=1.25)),
        ("uncalibrated: similarity 0.5 + background", demo / "gallery", model, Scoring()),
        ("uncalibrated: similarity 0.5, no background", bare, model, Scoring()),
        ("similarity -1 + background (the background rule alone)", demo / "gallery", calibrated,
         Scoring("similarity", min_sim=-1.0)),
    ]:
        engine = SearchEngine.open(where, which)
        results, _ = engine.search_audio(files, window_s=window_s, hop_s=window_s, top_k=5, n_images=0,
                                         scoring=scoring)
        windows = [w for r in results for w in r.windows]
        detected = np.array([bool(w.species) for w in windows])
        pairs = [(i, h.key) for i, w in enumerate(windows) for h in w.species]
        right = sum(key in truth[i] for i, key in pairs)
        heard = sum(any(h.key in truth[i] for h in w.species) for i, w in enumerate(windows) if truth[i])
        row = {"scoring": name,
               "bird-free windows with a detection": f"{detected[bird_free].mean():.1%} "
                                                     f"({detected[bird_free].sum()}/{bird_free.sum()})",
               "windows with birds, a calling species detected": f"{heard / (~bird_free).sum():.1%} "
                                                                 f"({heard}/{(~bird_free).sum()})",
               "detections right": f"{right / max(1, len(pairs)):.1%} ({right}/{len(pairs)})"}
        print(json.dumps(row))


if __name__ == "__main__":
    main()
