"""Benchmark: `birdbridge segments`, detections of result files cut into clips with their index.

Writes a few long recordings (48 kHz mono FLAC, as field recorders write) and one birdbridge CSV per recording
with detections spread over it, then cuts them all (``--collection-mode confidence``, no per-species cap reached)
with the default context (1 s before and after, at least 3 s). Prints clips per second, the median of the repeats.

    python benchmarks/bench_segments.py [--recordings 4] [--detections 100] [--minutes 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from birdbridge.search.formats import to_csv
from birdbridge.search.results import FileResult, SpeciesHit, WindowResult
from birdbridge.segments import cut_segments

RATE = 48_000
SPECIES = [("Pica hudsonia", "Black-billed Magpie"), ("Turdus migratorius", "American Robin"),
           ("Corvus corax", "Common Raven"), ("Sitta carolinensis", "White-breasted Nuthatch")]


def make_inputs(root: Path, recordings: int, detections: int, minutes: float) -> Path:
    rng = np.random.default_rng(0)
    results = root / "results"
    results.mkdir()
    per_file = detections // recordings
    for r in range(recordings):
        path = root / "audio" / f"rec{r}.flac"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, (0.05 * rng.standard_normal(int(minutes * 60 * RATE))).astype(np.float32), RATE)
        starts = np.sort(rng.choice(int(minutes * 60 / 3) - 1, per_file, replace=False)) * 3.0
        windows = []
        for i, start in enumerate(starts):
            sci, common = SPECIES[i % len(SPECIES)]
            conf = float(rng.uniform(0.25, 1.0))
            windows.append(WindowResult(i, start, start + 3.0, [SpeciesHit(sci, sci, common, None, conf, 0.3,
                                                                           confidence=conf)]))
        (results / f"rec{r}.birdbridge.results.csv").write_text(to_csv([FileResult(str(path), minutes * 60,
                                                                                     windows)], 0))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=4)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = make_inputs(Path(tmp), args.recordings, args.detections, args.minutes)
        rates = []
        for i in range(args.repeat):
            started = time.perf_counter()
            report = cut_segments(results, Path(tmp) / f"clips{i}", collection_mode="confidence", progress=False)
            elapsed = time.perf_counter() - started
            assert not report.failures and len(report.clips) == args.detections // args.recordings * args.recordings
            rates.append(len(report.clips) / elapsed)
        print(f"{len(report.clips)} clips from {args.recordings} recordings of {args.minutes:g} min (48 kHz FLAC): "
              f"median {statistics.median(rates):.1f} clips/s ({', '.join(f'{r:.1f}' for r in rates)})")


if __name__ == "__main__":
    main()
