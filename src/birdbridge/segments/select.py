"""Which detections become clips: BirdNET-Analyzer's collection modes, per species, then a cap on the total.

Detections with a confidence from ``min_conf`` to ``max_conf`` are grouped by species, and each species keeps at
most ``max_per_species`` (BirdNET-Analyzer's ``--max_segments``), chosen by ``mode``:

* ``random``: a random sample (seeded: the same results and seed give the same clips);
* ``confidence``: the most confident;
* ``balanced``: spread over ``n_bins`` equal confidence bins from ``min_conf`` to ``max_conf``, taking one random
  detection from each bin in turn. BirdNET-Analyzer takes at most ``max_segments // n_bins`` per bin, so sparse
  bins leave clips unused (and its top bin edge drops a confidence of exactly ``max_conf``); here every bin is
  used and the quota is filled from the bins that have more.

Then, if more than ``max_total`` clips remain, species take turns (each one's first, then each one's second...)
until ``max_total``: a cap on the work that leaves no species out while another has many.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from birdbridge.errors import InputError
from birdbridge.segments.detections import Detection

MODES = ("random", "confidence", "balanced")


def check_selection(mode: str, max_per_species: int, min_conf: float, max_conf: float, n_bins: int,
                    max_total: int) -> None:
    """InputError naming the option for a value that cannot select anything."""
    if mode not in MODES:
        raise InputError("--collection-mode", f"unknown mode {mode!r}", f"use one of {', '.join(MODES)}")
    for option, value, low in (("--max-segments", max_per_species, 1), ("--n-bins", n_bins, 1),
                               ("--max-total", max_total, 1)):
        if int(value) < low:
            raise InputError(option, f"{value} is below {low}")
    if not 0.0 <= min_conf <= max_conf <= 1.0:
        raise InputError("--min-conf", f"{min_conf:g} to --max-conf {max_conf:g} is no confidence range",
                         "give 0 <= --min-conf <= --max-conf <= 1")


def per_species(detections: Sequence[Detection], *, mode: str = "random", max_per_species: int = 100,
                min_conf: float = 0.0, max_conf: float = 1.0, n_bins: int = 10, seed: int = 42
                ) -> dict[str, list[Detection]]:
    """The detections chosen for each species (species in order of first appearance)."""
    groups: dict[str, list[Detection]] = {}
    for d in detections:
        if min_conf <= d.confidence <= max_conf:
            groups.setdefault(d.key, []).append(d)
    rng = np.random.default_rng(seed)
    chosen = {}
    for key, group in groups.items():
        if mode == "random":
            chosen[key] = [group[i] for i in rng.permutation(len(group))[:max_per_species]]
        elif mode == "confidence":
            chosen[key] = sorted(group, key=lambda d: -d.confidence)[:max_per_species]
        else:
            chosen[key] = _balanced(group, max_per_species, min_conf, max_conf, n_bins, rng)
    return chosen


def _balanced(group: list[Detection], cap: int, low: float, high: float, n_bins: int, rng: np.random.Generator
              ) -> list[Detection]:
    width = (high - low) / n_bins
    bins: list[list[Detection]] = [[] for _ in range(n_bins)]
    for d in group:
        index = n_bins - 1 if width == 0 else min(int((d.confidence - low) / width), n_bins - 1)
        bins[index].append(d)
    queues = [[b[i] for i in rng.permutation(len(b))] for b in bins if b]
    out: list[Detection] = []
    while queues and len(out) < cap:
        for queue in queues:
            if queue and len(out) < cap:
                out.append(queue.pop(0))
        queues = [q for q in queues if q]
    return out


def take_turns(chosen: dict[str, list[Detection]], max_total: int) -> tuple[list[Detection], int]:
    """At most ``max_total`` of the chosen detections, species taking turns; and how many were left out."""
    total = sum(len(v) for v in chosen.values())
    if total <= max_total:
        return [d for group in chosen.values() for d in group], 0
    out: list[Detection] = []
    rank = 0
    while len(out) < max_total:
        for group in chosen.values():
            if rank < len(group) and len(out) < max_total:
                out.append(group[rank])
        rank += 1
    return out, total - len(out)
