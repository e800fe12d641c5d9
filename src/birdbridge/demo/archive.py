"""The demo's archive: the world's soundscapes embedded once, searched by name and by picture, labelled, probed.

Given the output of ``birdbridge demo`` (its world, teacher and distilled student), this renders
soundscapes of the same world (same taxonomy; two-minute recordings of changing backgrounds with calls
now and then, :mod:`birdbridge.demo.soundscapes`), builds an archive of them (with a metadata CSV giving
each a date, time and site), and measures, per species that calls in them, the average precision of
ranking every window of the archive against the truth (the species calls in the window) for:

* ``text``: the species' scientific name through the teacher's text tower;
* ``picture``: one test picture of the species through the teacher's image tower;
* ``probe`` and ``probe + text prior`` after labelling the top five hits of the text search yes or no (by
  the truth, as a listener would): the labels go into the archive from the search result file (a species
  without a *yes* among them gets no probe and keeps its text query);
* the same two probes from 1, 4 and 16 windows per species labelled *yes* (drawn at random among the
  windows where it calls; ``repeats`` draws, averaged): the question whether the text prior helps.

AP is the mean over species (macro) of :func:`birdbridge.evaluate.metrics.average_precision`. The text and
picture queries rank every window of the archive; a probe ranks the windows that were not labelled for it
(held out), and the text query is measured again on those same windows beside it. A species without a
positive window among them does not count in that row (the report says how many do).
"""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.archive.build import build_archive
from birdbridge.archive.formats import write_results
from birdbridge.archive.labels import hit_labels
from birdbridge.archive.queries import image_query, text_query
from birdbridge.archive.store import Archive
from birdbridge.demo.run import DemoSettings
from birdbridge.demo.world import World, generate_world
from birdbridge.evaluate.metrics import average_precision
from birdbridge.models.loader import load_student, load_teacher
from birdbridge.probes.train import train_probes
from birdbridge.utils.atomic import write_json, write_text

LABELS_PER_CLASS = (1, 4, 16)
HITS_LABELLED = 5


@dataclass
class ArchiveDemo:
    """The figures: mean AP per way of ranking, per-species APs, and what the archive holds."""

    windows: int
    files: int
    species: list[str]
    ap: dict[str, float] = field(default_factory=dict)
    per_species: dict[str, dict[str, float]] = field(default_factory=dict)
    hit_labels: dict[str, int] = field(default_factory=dict)  # yes / no among the labelled hits
    without_probe: int = 0  # species none of whose labelled hits was a yes (their text query's AP counts)
    species_counted: dict[str, int] = field(default_factory=dict)  # species with a positive among the held-out
    seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"archive: {self.windows} windows of {self.files} soundscapes; {len(self.species)} species call "
               "in them; mean AP over species (every window ranked against the truth):"]
        out += [f"  {name:<52} {value:.3f}  ({self.species_counted.get(name, len(self.species))} species)"
                for name, value in self.ap.items()]
        out.append(f"  (the {HITS_LABELLED} top text hits per species, labelled by the truth: "
                   f"{self.hit_labels.get('yes', 0)} yes, {self.hit_labels.get('no', 0)} no; {self.without_probe} "
                   "species without a yes keep their text query's AP)")
        return out


def run_archive_demo(demo: str | Path, out: str | Path, *, soundscapes: int = 8, repeats: int = 3,
                     seed: int = 0, log=print) -> ArchiveDemo:
    """Build the archive of the demo world's soundscapes in ``out`` and measure (see the module docs)."""
    import time

    demo, out = Path(demo), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    base = World.load(demo / "world")
    cfg = dataclasses.replace(DemoSettings(seed=base.config.seed).world_config(), soundscapes=soundscapes,
                              soundscape_s=120.0)
    folder = out / "world"
    world = World.load(folder) if (folder / "world.json").exists() else generate_world(folder, cfg)
    if [s.key for s in world.taxonomy] != [s.key for s in base.taxonomy]:
        raise RuntimeError(f"{folder} is another world than {demo / 'world'}")
    seconds["soundscapes"] = time.perf_counter() - started

    model, teacher_ref = demo / "distill" / "model", demo / "models" / "teacher"
    student = load_student(str(model))
    window_s = min(5.0, student.window_s)
    items = world.soundscape_items()
    metadata = out / "metadata.csv"
    write_text(metadata, "file,date,time,site\n" + "".join(
        f"{world.root / s.path},2024-05-{1 + i // 4:02d},0{4 + i % 4}:00:00,site{i % 2 + 1}\n"
        for i, s in enumerate(items)))
    archive_dir = out / "archive"
    shutil.rmtree(archive_dir, ignore_errors=True)
    started = time.perf_counter()
    build_archive([world.root / s.path for s in items], archive_dir, str(model), window_s=window_s, hop_s=window_s,
                  metadata=metadata, progress=False)
    seconds["build"] = time.perf_counter() - started
    archive = Archive.open(archive_dir)
    truth = _truth(archive, world, items, window_s)
    species = sorted({s for calls in truth for s in calls})
    positives = np.array([[s in calls for s in species] for calls in truth])  # [windows, species]
    vectors = archive.vectors.astype(np.float32)
    teacher = load_teacher(str(teacher_ref))
    result = ArchiveDemo(len(archive), len(items), species)

    def ap_of(queries: np.ndarray, which: np.ndarray | None = None, held_out: np.ndarray | None = None) -> np.ndarray:
        """AP per species (all, or those ``which`` selects) of ranking the windows (all, or the ``held_out`` ones) by
        their cosine with the species' ``[S, D]`` query; NaN for a species without a window there."""
        keep = np.ones(len(vectors), bool) if held_out is None else held_out
        relevant = positives[keep].T if which is None else positives[keep].T[which]
        return average_precision((vectors[keep] @ queries.T).T, relevant)

    started = time.perf_counter()
    texts = np.concatenate([text_query(archive, name, teacher=teacher)[0] for name in species])
    pictures = np.concatenate([image_query(archive, world.root / _picture(world, name), teacher=teacher)[0]
                               for name in species])
    scores = {"text query": ap_of(texts), "picture query": ap_of(pictures)}
    seconds["queries"] = time.perf_counter() - started

    started = time.perf_counter()
    counts = {"yes": 0, "no": 0}
    for name in species:
        hits = archive.search(name, teacher=teacher, top_k=HITS_LABELLED)
        written = write_results(out / "hits" / f"{name.replace(' ', '_')}.csv", "csv", hits)
        spans = hit_labels(written, name, True, None)
        judged = [dataclasses.replace(span, value=name in truth[hit.row])
                  for span, hit in zip(spans, hits.hits, strict=True)]
        counts["yes"] += sum(s.value for s in judged)
        counts["no"] += sum(not s.value for s in judged)
        archive.add_labels(judged, who="demo listener (the truth)", source=str(written))
    result.hit_labels = counts
    held_out = np.ones(len(archive), bool)
    held_out[[lab.row for lab in archive.labels()]] = False
    hits_name = f"{HITS_LABELLED} hits labelled"
    scores[f"text query, {hits_name} (same windows)"] = ap_of(texts, held_out=held_out)
    for prior in (False, True):
        probes = train_probes(archive, labels=[n for n in species if n in archive.label_counts()], text_prior=prior,
                              teacher=teacher, seed=seed)
        found = _probe_ap(probes, species, ap_of, held_out)
        result.without_probe = sum(name not in probes.labels for name in species)  # no yes: the text query stays
        scores[f"probe{' + text prior' if prior else ''}, {hits_name}"] = np.where(
            np.isnan(found), scores[f"text query, {hits_name} (same windows)"], found)
    rng = np.random.default_rng(seed)
    for k in LABELS_PER_CLASS:
        runs: dict[str, list[np.ndarray]] = {"text query": [], "probe": [], "probe + text prior": []}
        for _ in range(repeats):
            examples = _draw(positives, species, k, rng)
            held_out = np.ones(len(archive), bool)
            held_out[sorted(set().union(*(p | n for p, n in examples.values())))] = False
            runs["text query"].append(ap_of(texts, held_out=held_out))
            for prior in (False, True):
                probes = train_probes(archive, text_prior=prior, teacher=teacher, seed=seed, examples=examples)
                runs[f"probe{' + text prior' if prior else ''}"].append(_probe_ap(probes, species, ap_of, held_out))
        for name, values in runs.items():
            same = " (same windows)" if name == "text query" else ""
            with warnings.catch_warnings():  # a species without a held-out positive in any draw stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                scores[f"{name}, {k} label{'s' if k > 1 else ''}/species{same}"] = np.nanmean(np.stack(values), axis=0)
    seconds["labels and probes"] = time.perf_counter() - started
    result.ap = {name: float(np.nanmean(values)) for name, values in scores.items()}
    result.species_counted = {name: int(np.isfinite(values).sum()) for name, values in scores.items()}
    result.per_species = {name: {s: round(float(v), 4) for s, v in zip(species, values, strict=True)}
                          for name, values in scores.items()}
    result.seconds = {k: round(v, 1) for k, v in seconds.items()}
    write_json(out / "archive_demo.json", dataclasses.asdict(result))
    for line in result.lines():
        log(line)
    return result


def _truth(archive: Archive, world: World, items, window_s: float) -> list[frozenset[str]]:
    """The species calling in each window of the archive, by row."""
    by_span: dict[tuple[str, float], frozenset[str]] = {}
    for item in items:
        path = str((world.root / item.path).resolve())
        for w in item.windows(window_s, window_s):
            by_span[(path, round(w.start_s, 3))] = w.species
    files = {f.id: f.path for f in archive.files()}
    out = []
    for w in archive.windows():
        key = (files[w.file], round(w.start_s, 3))
        out.append(by_span.get(key, frozenset()))  # a short tail window past the grid: no truth, no bird
    return out


def _picture(world: World, species: str) -> str:
    pictures = [i for i in world.image_items("test") if i.species == species] or [
        i for i in world.images if i.species == species]
    return pictures[0].path


def _draw(positives: np.ndarray, species: list[str], k: int, rng: np.random.Generator
          ) -> dict[str, tuple[set[int], set[int]]]:
    """``k`` random windows per species where it calls, labelled yes (no explicit no labels)."""
    chosen = {name: {int(r) for r in rng.choice(np.flatnonzero(positives[:, j]), min(k, int(positives[:, j].sum())),
                                                replace=False)}
              for j, name in enumerate(species)}
    every = set().union(*chosen.values())
    return {name: (rows, every - rows) for name, rows in chosen.items()}


def _probe_ap(probes, species: list[str], ap_of, held_out: np.ndarray) -> np.ndarray:
    """AP per species of the probes' rankings of the held-out windows (NaN for a species without a probe)."""
    found = np.array([name in probes.labels for name in species])
    out = np.full(len(species), np.nan)
    if found.any():
        queries = np.stack([probes[name].vector for name, ok in zip(species, found, strict=True) if ok])
        out[found] = ap_of(queries.astype(np.float32), found, held_out)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, required=True, help="the output folder of `birdbridge demo`")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--soundscapes", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    return dataclasses.asdict(run_archive_demo(args.demo, args.out, soundscapes=args.soundscapes,
                                               repeats=args.repeats))


__all__ = ["ArchiveDemo", "run_archive_demo"]
