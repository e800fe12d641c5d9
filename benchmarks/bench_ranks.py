"""Benchmark: `--rank` on the demo world's test clips: how often each rank answers, and how often it is right.

Needs the output of ``birdbridge demo`` (its world, distilled student and gallery; the world's taxonomy has two
species per genus, two genera per family). Each test clip is one pooled embedding, searched under each score at
species, genus and family rank and with ``auto``. An answer is right when the clip's species is the answered
species or one of the answered taxon's species. Prints, per score and rank: the clips answered, the right ones,
and under ``auto`` the ranks answered at.

    python benchmarks/bench_ranks.py --demo demo_out
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

from birdbridge.embed.audio import embed_audio_windows
from birdbridge.search import Scoring, SearchEngine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, required=True, help="the output folder of `birdbridge demo`")
    parser.add_argument("--min-conf", type=float, nargs="+", default=[0.25, 0.9], help="auto's bars, each a run")
    args = parser.parse_args()
    world = args.demo / "world"
    with open(world / "audio.csv", newline="") as fh:
        clips = [(world / row["path"], row["species"]) for row in csv.DictReader(fh) if row["split"] == "test"]
    engine = SearchEngine.open(args.demo / "gallery", args.demo / "distill" / "model")
    table = embed_audio_windows([path for path, _ in clips], engine.student, progress=False).pooled()
    truth = dict((str(path), species) for path, species in clips)
    print(f"{len(table)} test clips, {len(engine.taxonomy)} species")
    print(f"{'score':<11} {'min_conf':>8} {'rank':<8} {'answered':>9} {'right':>14}  ranks answered at")
    runs = [(score, conf, rank) for score in ("softmax", "confidence") for conf in args.min_conf
            for rank in ("species", "genus", "family", "auto")]
    for score, conf, rank in runs:
        scoring = Scoring(score, min_conf=conf, min_score=0.0, rank=rank)
        results = engine.search_table(table, top_k=1, n_images=0, scoring=scoring)
        answered = right = 0
        ranks: Counter[str] = Counter()
        for result in results:
            top = result.windows[0].top
            if top is None:
                ranks["none"] += 1
                continue
            answered += 1
            ranks[top.taxon_rank] += 1
            right += truth[result.file] in (top.members or (top.key,))
        share = f"{right}/{answered} ({100 * right / max(answered, 1):.0f}%)"
        shown = ", ".join(f"{k} {n}" for k, n in ranks.most_common()) if rank == "auto" else ""
        print(f"{score:<11} {conf:>8g} {rank:<8} {answered:>9} {share:>14}  {shown}")


if __name__ == "__main__":
    main()
