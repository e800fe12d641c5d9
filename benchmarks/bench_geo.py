"""Benchmark: BirdNET's range model (``birdbridge[geo]``), the species list for a place and a week.

Each repeat runs in a fresh process so the first call pays what a new ``birdbridge search`` pays: importing LiteRT,
loading the model and its labels, and the first list. Later calls (other places and weeks, as ``--week auto`` asks
for) reuse the loaded model. Prints the median over the repeats.

    python benchmarks/bench_geo.py [--repeat 5] [--calls 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CHILD = """
import json, random, time
started = time.perf_counter()
from birdbridge.species.where import RangeFilter
imported = time.perf_counter()
first = RangeFilter(42.48, -76.45, 20).species()
loaded = time.perf_counter()
rng = random.Random(0)
times = []
for _ in range({calls}):
    place = RangeFilter(rng.uniform(-60, 70), rng.uniform(-180, 180), rng.randint(1, 48))
    t = time.perf_counter()
    place.species()
    times.append(time.perf_counter() - t)
print(json.dumps({{"import_s": imported - started, "first_s": loaded - imported, "species": len(first),
                  "later_ms": sorted(times)[len(times) // 2] * 1000, "later_max_ms": max(times) * 1000}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", CHILD.format(calls=args.calls)], capture_output=True, text=True,
                             check=True)
        runs.append(json.loads(out.stdout))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "birdbridge", "species", "--lat", "42.48", "--lon", "-76.45", "--week", "20"],
                   capture_output=True, check=True)
    command_s = time.perf_counter() - started
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(f"first list (model load + list, {median['species']:.0f} species): {median['first_s'] * 1000:.0f} ms "
          f"(importing birdbridge.species.where before it: {median['import_s']:.2f} s)")
    print(f"later lists ({args.calls} random places and weeks): median {median['later_ms']:.2f} ms, "
          f"slowest {median['later_max_ms']:.2f} ms")
    print(f"`birdbridge species` end to end (a new process): {command_s:.2f} s")


if __name__ == "__main__":
    main()
