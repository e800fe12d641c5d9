"""Benchmark: retrieval metrics and bootstrap CIs at SSW60 scale (random data, real sizes).

Each measurement runs in a fresh subprocess so that its peak RSS is its own. Prints wall and CPU time (BLAS
uses every core), peak RSS, and peak RSS above the inputs (the metric's own working memory):
  * ``retrieval_metrics``: 3,900 audio queries × 32,000 images, 768-d random L2-normalised embeddings,
    60 classes, R@{1,5,10}, for a few ``chunk`` sizes; also through a ``scores_fn`` returning float64
    scores (the path for queries and gallery in different spaces);
  * ``bootstrap_ci`` / ``bootstrap_cis`` with 1,000 resamples over 3,900 per-query values (plain, paired
    over 4 metrics, and stratified by 60 classes).

    python benchmarks/bench_metrics.py [--queries 3900] [--gallery 32000] [--dim 768] [--chunks 256 1024]
                                       [--resamples 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def normalised(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]  # no [n, d] temporary to inflate the baseline peak
    return x


def child_retrieval(nq: int, ng: int, dim: int, classes: int, chunk: int, path: str) -> dict:
    from birdbridge.evaluate.metrics import retrieval_metrics

    rng = np.random.default_rng(0)
    q, g = normalised(rng, nq, dim), normalised(rng, ng, dim)
    ql, gl = rng.integers(0, classes, nq), rng.integers(0, classes, ng)
    base = peak_rss_mb()
    cpu0, start = cpu_s(), time.perf_counter()
    if path == "fast":
        res = retrieval_metrics(q, ql, g, gl, ks=(1, 5, 10), chunk=chunk)
    else:  # the same cosine scores, as float64, through scores_fn
        res = retrieval_metrics(None, ql, None, gl, ks=(1, 5, 10), chunk=chunk,
                                scores_fn=lambda idx: (q[idx] @ g.T).astype(np.float64))
    wall, cpu = time.perf_counter() - start, cpu_s() - cpu0
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_rss_mb(), "inputs_rss_mb": base, "map": res.map}


def child_bootstrap(n: int, resamples: int, classes: int, mode: str) -> dict:
    from birdbridge.evaluate.bootstrap import bootstrap_ci, bootstrap_cis

    rng = np.random.default_rng(0)
    ap = rng.beta(2, 5, n) * 100
    labels = rng.integers(0, classes, n)
    base = peak_rss_mb()
    cpu0, start = cpu_s(), time.perf_counter()
    if mode == "single":
        ci = bootstrap_ci(ap, n_resamples=resamples)
    elif mode == "paired":
        metrics = {"map": ap, **{f"recall@{k}": (rng.random(n) < 0.1 * k) * 100.0 for k in (1, 5, 10)}}
        ci = bootstrap_cis(metrics, n_resamples=resamples)["map"]
    else:
        ci = bootstrap_ci(ap, n_resamples=resamples, strata=labels)
    wall, cpu = time.perf_counter() - start, cpu_s() - cpu0
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_rss_mb(), "inputs_rss_mb": base, "ci": ci}


def run_child(forward: list[str], repeat: int, *args: str) -> dict:
    """Best wall time (and largest peak RSS) of ``repeat`` fresh subprocesses."""
    runs = []
    for _ in range(max(1, repeat)):
        out = subprocess.run([sys.executable, __file__, *forward, "--_child", *args],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["wall_s"])
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=3900)
    parser.add_argument("--gallery", type=int, default=32000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--chunks", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest is shown")
    parser.add_argument("--skip-scores-fn", action="store_true", help="skip the scores_fn run")
    parser.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        kind, *rest = args._child
        if kind == "retrieval":
            result = child_retrieval(args.queries, args.gallery, args.dim, args.classes, int(rest[0]), rest[1])
        else:
            result = child_bootstrap(args.queries, args.resamples, args.classes, rest[0])
        print(json.dumps(result))
        return

    forward = ["--queries", str(args.queries), "--gallery", str(args.gallery), "--dim", str(args.dim),
               "--classes", str(args.classes), "--resamples", str(args.resamples)]
    print(f"numpy {np.__version__}, cpus {os.cpu_count()}, best of {args.repeat} runs")
    print(f"retrieval_metrics: {args.queries} queries x {args.gallery} gallery, {args.dim}-d, {args.classes} classes")
    runs = [(c, "fast") for c in args.chunks] + ([] if args.skip_scores_fn else [(max(args.chunks), "scores_fn")])
    for chunk, path in runs:
        r = run_child(forward, args.repeat, "retrieval", str(chunk), path)
        label = "embeddings (float32 cosine)" if path == "fast" else "scores_fn (float64 scores)"
        print(f"  chunk {chunk:5d}, {label:28s}: {r['wall_s']:6.2f} s (CPU {r['cpu_s']:5.2f} s)  "
              f"peak RSS {r['peak_rss_mb']:6.0f} MB (+{r['peak_rss_mb'] - r['inputs_rss_mb']:.0f} MB over inputs)  "
              f"MAP {r['map']:.3f}")
    print(f"bootstrap, {args.resamples} resamples over {args.queries} values:")
    for mode, label in [("single", "bootstrap_ci"), ("paired", "bootstrap_cis, 4 paired metrics"),
                        ("stratified", f"bootstrap_ci, strata={args.classes} classes")]:
        r = run_child(forward, args.repeat, "bootstrap", mode)
        print(f"  {label:34s}: {r['wall_s']:6.3f} s (CPU {r['cpu_s']:5.3f} s)  peak RSS {r['peak_rss_mb']:6.0f} MB "
              f"(+{r['peak_rss_mb'] - r['inputs_rss_mb']:.0f} MB over inputs)  CI ({r['ci'][0]:.2f}, {r['ci'][1]:.2f})")


if __name__ == "__main__":
    main()
