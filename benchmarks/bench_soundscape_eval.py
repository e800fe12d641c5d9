"""Benchmark: soundscape window metrics (cmAP, AUROC, T1, detections) streamed at archive scale.

Synthetic data with real sizes: ``--hours`` of 5 s windows (1,000 h = 720,000 windows) from 1-hour recordings,
``--dim``-d unit embeddings (768: the teacher's text space the student lands in), ``--species`` unit species
embeddings; ~5% of the windows hold 1–3 species (a skewed species mix), whose embeddings are mixed into the
window's (lifting its cosine to them by ~3 noise standard deviations, 3/√dim, the default detection threshold).
The scores, window × species cosine similarities, would be a ``windows × species × 4``-byte matrix (2.9 GB at
720,000 × 1,000); ``multilabel_metrics`` streams them through ``EmbeddingScores`` in blocks of at most
``--block-mb``. Each measurement runs in a fresh subprocess; printed: wall and CPU time (BLAS uses every core),
the peak RSS during the call (Linux VmHWM, reset once the inputs are built) and how far it rose above the
inputs (embeddings and labels), and the peak of memory allocated during the call (tracemalloc, which numpy
reports to).

  * the metrics, and the same with ``--resamples`` cluster-bootstrap resamples over recordings;
  * a check on a small case (``--check-windows`` × ``--check-species``): the streamed result (small blocks)
    equals the in-memory one (the precomputed score matrix in one block; bootstrap sums may differ in the last
    bit, from summing chunks of thresholds), and the result through ``EmbeddingScores`` matches it (float32
    products may round differently by block shape).

    python benchmarks/bench_soundscape_eval.py [--hours 1000] [--species 1000] [--dim 768] [--block-mb 256]
                                               [--resamples 1000] [--threshold 0.108]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np
from bench_audio_stream import vm_hwm_mb
from bench_metrics import cpu_s, normalised

WINDOWS_PER_HOUR = 720  # 5 s windows
SIGNAL = 3.0  # a heard species lifts the window's cosine to it by about this many noise standard deviations


def synthetic(n: int, species: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(window embeddings [n, dim], species embeddings, label rows, label cols), built in row blocks."""
    rng = np.random.default_rng(seed)
    sp = normalised(rng, species, dim)
    positive = np.flatnonzero(rng.random(n) < 0.05)
    per_window = rng.integers(1, 4, positive.size)
    popularity = 1.0 / (np.arange(species) + 10.0)  # a few common species, many rare ones
    rows = np.repeat(positive, per_window)
    cols = rng.choice(species, rows.size, p=popularity / popularity.sum())
    windows = np.empty((n, dim), dtype=np.float32)
    step = 65_536
    for i in range(0, n, step):
        block = rng.standard_normal((min(step, n - i), dim), dtype=np.float32) / np.float32(np.sqrt(dim))
        sel = (rows >= i) & (rows < i + step)
        np.add.at(block, rows[sel] - i, np.float32(SIGNAL / np.sqrt(dim)) * sp[cols[sel]])
        block /= np.sqrt(np.einsum("ij,ij->i", block, block))[:, None]
        windows[i:i + step] = block
    return windows, sp, rows, cols


def child_full(hours: float, species: int, dim: int, block_mb: float, resamples: int, threshold: float) -> dict:
    from birdbridge.evaluate.multilabel import EmbeddingScores, multilabel_metrics

    n = int(hours * WINDOWS_PER_HOUR)
    windows, sp, rows, cols = synthetic(n, species, dim)
    recordings = np.arange(n) // WINDOWS_PER_HOUR
    with open("/proc/self/clear_refs", "w") as fh:  # Linux: reset VmHWM to the current RSS (the inputs)
        fh.write("5")
    inputs = vm_hwm_mb()
    tracemalloc.start()
    cpu0, start = cpu_s(), time.perf_counter()
    res = multilabel_metrics(EmbeddingScores(windows, sp), (rows, cols), threshold=threshold, groups=recordings,
                             n_resamples=resamples, max_block_mb=block_mb)
    wall, cpu = time.perf_counter() - start, cpu_s() - cpu0
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": vm_hwm_mb(), "inputs_rss_mb": inputs, "traced_mb": traced,
            "windows": n, "labelled": res.n_labelled, "classes": res.n_classes, "summary": res.summary(),
            "ci": res.ci}


def child_check(n: int, species: int, dim: int, threshold: float) -> dict:
    from birdbridge.evaluate.multilabel import EmbeddingScores, multilabel_metrics

    windows, sp, rows, cols = synthetic(n, species, dim, seed=1)
    matrix = windows @ sp.T
    groups = np.arange(n) // WINDOWS_PER_HOUR
    kw = {"threshold": threshold, "groups": groups, "n_resamples": 200}
    memory = multilabel_metrics(matrix, (rows, cols), max_block_mb=4 * matrix.nbytes / 2**20, **kw)
    streamed = multilabel_metrics(matrix, (rows, cols), max_block_mb=0.5, **kw)
    embedded = multilabel_metrics(EmbeddingScores(windows, sp), (rows, cols), max_block_mb=0.5, **kw)

    def largest_difference(a, b) -> float:
        pairs = [(a.ap, b.ap), (a.auroc_per_class, b.auroc_per_class),
                 (list(a.summary().values()), list(b.summary().values())),
                 (list(a.ci.values()), list(b.ci.values()))]
        return max(float(np.nanmax(np.abs(np.asarray(x, float) - np.asarray(y, float)))) for x, y in pairs)

    return {"streamed_diff": largest_difference(memory, streamed),
            "embedding_diff": largest_difference(memory, embedded)}


def run_child(forward: list[str], *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *forward, "--_child", *args], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(summary: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in summary.items())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, default=1000.0)
    parser.add_argument("--species", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--block-mb", type=float, default=256.0)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--threshold", type=float, default=None, help="default: 3/sqrt(dim)")
    parser.add_argument("--check-windows", type=int, default=20_000)
    parser.add_argument("--check-species", type=int, default=200)
    parser.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threshold is None:
        args.threshold = SIGNAL / np.sqrt(args.dim)
    if args._child:
        kind, *rest = args._child
        if kind == "full":
            result = child_full(args.hours, args.species, args.dim, args.block_mb, int(rest[0]), args.threshold)
        else:
            result = child_check(args.check_windows, args.check_species, args.dim, args.threshold)
        print(json.dumps(result))
        return

    forward = ["--hours", str(args.hours), "--species", str(args.species), "--dim", str(args.dim),
               "--block-mb", str(args.block_mb), "--threshold", str(args.threshold),
               "--check-windows", str(args.check_windows), "--check-species", str(args.check_species)]
    print(f"numpy {np.__version__}, cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    r = run_child(forward, "check")
    print(f"check, {args.check_windows:,} windows x {args.check_species} species, 200 recording resamples: largest "
          f"difference to the in-memory result (one block): streamed in 0.5 MB blocks {r['streamed_diff']:.1e}, "
          f"through EmbeddingScores {r['embedding_diff']:.1e}")
    if r["streamed_diff"] > 1e-12:
        raise SystemExit("the streamed result differs from the in-memory one")
    n = int(args.hours * WINDOWS_PER_HOUR)
    print(f"{args.hours:,.0f} h = {n:,} windows x {args.species:,} species, {args.dim}-d "
          f"(a full score matrix: {n * args.species * 4 / 1e9:.1f} GB float32), blocks <= {args.block_mb:g} MB, "
          f"threshold {args.threshold:g}")
    for resamples in (0, args.resamples) if args.resamples else (0,):
        r = run_child(forward, "full", str(resamples))
        label = f"+ {resamples:,} recording resamples" if resamples else "metrics"
        print(f"  {label:32s}: {r['wall_s']:7.1f} s (CPU {r['cpu_s']:7.1f} s)  peak RSS {r['peak_rss_mb']:6.0f} MB, "
              f"+{r['peak_rss_mb'] - r['inputs_rss_mb']:.0f} MB over the inputs' {r['inputs_rss_mb']:.0f} MB "
              f"(largest allocated at once, tracemalloc: {r['traced_mb']:.0f} MB)")
        print(f"    {r['labelled']:,} labelled windows, {r['classes']} classes with positives; {show(r['summary'])}")
        if r["ci"]:
            print("    95% CI: " + ", ".join(f"{k} {lo:.3f}–{hi:.3f}" for k, (lo, hi) in r["ci"].items()))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
