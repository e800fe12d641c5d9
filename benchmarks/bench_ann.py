"""ANN engines side by side on 1,000,000 × 768 clustered float16 vectors: build time, peak RSS, recall@10, latency.

The vectors are those ``bench_gallery.py`` draws (a mixture of Gaussians: ``--centres`` unit centres plus noise
of norm ``--noise``, renormalised, stored float16), written once to ``--folder``; every engine reads the same
file and answers the same held-out queries. Each run builds one index in a fresh process (so its peak RSS is
its own), then for each search depth measures single-query latency (p50/p95) of the whole answer as the store
gives it (the engine's candidates, re-scored exactly from the float16 rows) and recall@10 against exact search.

A run is ``ENGINE:key=value,...``; a search setting may list values separated by ``/`` (one build, several
searches). Engines and their keys:

* ``usearch``: ``connectivity``, ``expansion_add``, ``expansion_search``, ``dtype`` (f16, bf16, i8, f32),
  ``threads`` (0 = every core), ``candidates`` (rows asked of the index, re-scored down to 10);
* ``faiss-hnsw``: ``M``, ``ef_construction``, ``ef_search``, ``storage`` (flat = float32, fp16, sq8), ``candidates``;
* ``faiss-ivfpq``: ``nlist``, ``m`` (sub-quantizers), ``nprobe``, ``train`` (rows to train on), ``candidates``;
* ``faiss-ivf``: an inverted file of ``nlist`` lists (spherical k-means on ``train`` rows, ``niter`` iterations) whose
  lists hold ``storage`` codes (flat = float32, fp16, sq8), ``nprobe`` lists scanned a query, ``candidates``.

    .venv/bin/python benchmarks/bench_ann.py [--n 1000000] [--run usearch:expansion_add=64 ...]

Without ``--run`` it compares the store's defaults, cheaper usearch builds and two FAISS indexes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_gallery import PeakRss, load, mixture

DEFAULT_RUNS = [
    "usearch:connectivity=16,expansion_add=128,expansion_search=128,dtype=f16",  # the store's defaults
    "usearch:connectivity=16,expansion_add=40,expansion_search=64/128,dtype=f16",
    "usearch:connectivity=16,expansion_add=40,expansion_search=64/128,dtype=i8,candidates=20",
    "faiss-hnsw:M=16,ef_construction=40,ef_search=64/128,storage=fp16",
    "faiss-ivfpq:nlist=4096,m=96,nprobe=16/32,candidates=100",
    "faiss-ivf:nlist=4096,storage=fp16,nprobe=16/32/64,candidates=20",
]


def parse_run(text: str) -> tuple[str, dict[str, list[str]]]:
    engine, _, rest = text.partition(":")
    params = {}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        params[key.strip()] = value.strip().split("/")
    return engine, params


def one(params: dict[str, list[str]], key: str, default: str) -> str:
    return params.get(key, [default])[0]


def write_data(args: argparse.Namespace) -> None:
    """The vectors (float16, as the store keeps them), the queries and their exact top-10, once per setting."""
    import torch

    folder = Path(args.folder)
    stamp = {"n": args.n, "dim": args.dim, "centres": args.centres, "noise": args.noise, "seed": args.seed,
             "queries": args.queries}
    info = folder / "data.json"
    if info.is_file() and json.loads(info.read_text()) == stamp:
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.centres, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    t = time.perf_counter()
    vectors = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float16, shape=(args.n, args.dim))
    for lo in range(0, args.n, 50_000):
        hi = min(lo + 50_000, args.n)
        vectors[lo:hi] = mixture(rng, centres, hi - lo, args.noise)[0]
    vectors.flush()
    queries = mixture(rng, centres, args.queries, args.noise)[0]
    np.save(folder / "queries.npy", queries)
    q = torch.from_numpy(queries.T.copy())
    best = torch.full((args.queries, 10), -np.inf)
    best_rows = torch.full((args.queries, 10), -1, dtype=torch.int64)
    for lo in range(0, args.n, 65_536):
        part = torch.from_numpy(np.asarray(vectors[lo:lo + 65_536], dtype=np.float32)) @ q
        s, i = torch.topk(part.T, min(10, part.shape[0]), dim=1)
        best, order = torch.topk(torch.cat([best, s], 1), 10, dim=1)
        best_rows = torch.gather(torch.cat([best_rows, i + lo], 1), 1, order)
    np.save(folder / "truth.npy", best_rows.numpy())
    info.write_text(json.dumps(stamp))
    print(f"wrote {args.n:,} × {args.dim} float16 ({args.centres:,} centres, noise {args.noise}) and the exact "
          f"top-10 of {args.queries} queries in {time.perf_counter() - t:.0f} s")


def rescored(vectors: np.ndarray, q: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The top-10 of ``candidates`` by exact inner product with ``q`` (as the store re-scores)."""
    rows = np.sort(candidates[candidates >= 0])
    scores = vectors[rows].astype(np.float32) @ q
    return rows[np.argsort(-scores, kind="stable")[:10]]


def build(engine: str, params: dict[str, list[str]], vectors: np.ndarray, scratch: Path):
    """The built index and a function (index, setting value) -> search(q, count) -> rows, and the setting's name."""
    n, dim = vectors.shape
    chunk = 65_536
    if engine == "usearch":
        from usearch.index import Index

        index = Index(ndim=dim, metric="ip", dtype=one(params, "dtype", "f16"),
                      connectivity=int(one(params, "connectivity", "16")),
                      expansion_add=int(one(params, "expansion_add", "128")))
        threads = int(one(params, "threads", "0"))
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            index.add(np.arange(lo, hi, dtype=np.uint64), np.ascontiguousarray(vectors[lo:hi]), threads=threads)
        path = scratch / "index.usearch"
        index.save(str(path))
        view = Index.restore(str(path), view=True)

        def searcher(ef: str):
            view.expansion_search = int(ef)
            return lambda q, count: np.asarray(view.search(q, count, threads=1).keys, dtype=np.int64)

        return searcher, "expansion_search", path.stat().st_size
    import faiss

    faiss.omp_set_num_threads(int(one(params, "threads", str(os.cpu_count() or 1))))
    if engine == "faiss-hnsw":
        storage = one(params, "storage", "flat")
        m = int(one(params, "M", "16"))
        if storage == "flat":
            index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        else:
            qtype = {"fp16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}[storage]
            index = faiss.IndexHNSWSQ(dim, qtype, m, faiss.METRIC_INNER_PRODUCT)
            index.train(np.asarray(vectors[: min(n, 100_000)], dtype=np.float32))
        index.hnsw.efConstruction = int(one(params, "ef_construction", "40"))
        setting = "ef_search"

        def configure(value: str) -> None:
            index.hnsw.efSearch = int(value)
    elif engine == "faiss-ivfpq":
        nlist = int(one(params, "nlist", "4096"))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, int(one(params, "m", "96")), 8, faiss.METRIC_INNER_PRODUCT)
        train = min(n, int(one(params, "train", str(max(40 * nlist, 100_000)))))
        sample = np.sort(np.random.default_rng(1).choice(n, train, replace=False))
        index.train(np.asarray(vectors[sample], dtype=np.float32))
        setting = "nprobe"

        def configure(value: str) -> None:
            index.nprobe = int(value)
    elif engine == "faiss-ivf":
        nlist = int(one(params, "nlist", "4096"))
        quantizer = faiss.IndexFlatIP(dim)
        storage = one(params, "storage", "fp16")
        if storage == "flat":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            qtype = {"fp16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}[storage]
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, qtype, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True
        index.cp.niter = int(one(params, "niter", "10"))
        train = min(n, int(one(params, "train", str(64 * nlist))))
        index.cp.max_points_per_centroid = -(-train // nlist)
        sample = np.sort(np.random.default_rng(1).choice(n, train, replace=False))
        index.train(np.asarray(vectors[sample], dtype=np.float32))
        setting = "nprobe"

        def configure(value: str) -> None:
            index.nprobe = int(value)
    else:
        raise SystemExit(f"unknown engine {engine!r}")
    for lo in range(0, n, chunk):
        index.add(np.asarray(vectors[lo:lo + chunk], dtype=np.float32))
    path = scratch / "index.faiss"
    faiss.write_index(index, str(path))
    faiss.omp_set_num_threads(1)  # one query at a time, as a request is answered

    def searcher(value: str):
        configure(value)
        return lambda q, count: index.search(q[None, :], count)[1][0].astype(np.int64)

    return searcher, setting, path.stat().st_size


def run_one(args: argparse.Namespace, text: str) -> None:
    engine, params = parse_run(text)
    folder = Path(args.folder)
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    queries = np.load(folder / "queries.npy")
    truth = np.load(folder / "truth.npy")
    load_before = load()
    t, cpu = time.perf_counter(), time.process_time()
    with PeakRss() as peak:
        searcher, setting, size = build(engine, params, vectors, folder)
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    result = {"run": text, "n": len(vectors), "build_s": round(took, 1), "cpu_s": round(cpu, 1),
              "rows_per_s": round(len(vectors) / took),
              "index_mb": round(size / 1e6), "peak_anon_mb": round(peak.peak["RssAnon"] / 1e6),
              "load_before": load_before, "load_after": load(), "search": []}
    print(f"{text}: build {took:.1f} s ({len(vectors) / took:,.0f} rows/s; CPU {cpu:.0f} s), index "
          f"{size / 1e6:,.0f} MB, peak anonymous RSS {peak.peak['RssAnon'] / 1e6:,.0f} MB, load {load_before} -> "
          f"{load()}", flush=True)
    default_key = {"usearch": "expansion_search", "faiss-hnsw": "ef_search"}.get(engine, "nprobe")
    default_value = {"usearch": "128", "faiss-hnsw": "64"}.get(engine, "32")
    count = int(one(params, "candidates", "10"))
    for value in params.get(default_key, [default_value]):
        search = searcher(value)
        search(queries[0], count)  # page the index in
        lat, hits = [], []
        for q, want in zip(queries, truth, strict=True):
            t = time.perf_counter()
            rows = rescored(vectors, q, search(q, count))
            lat.append((time.perf_counter() - t) * 1000)
            hits.append(len(set(rows.tolist()) & set(want.tolist())) / 10)
        p50, p95, rec = np.percentile(lat, 50), np.percentile(lat, 95), float(np.mean(hits))
        result["search"].append({setting: int(value), "candidates": count, "p50_ms": round(p50, 2),
                                 "p95_ms": round(p95, 2), "recall10": round(rec, 4)})
        print(f"    {setting} {value:>4s}, {count} candidates re-scored: recall@10 {rec:.4f}, p50 {p50:.2f} ms, "
              f"p95 {p95:.2f} ms (over {len(queries)} queries; load {load()})", flush=True)
    (folder / "index.usearch").unlink(missing_ok=True)
    (folder / "index.faiss").unlink(missing_ok=True)
    with open(folder / "results.jsonl", "a") as fh:
        fh.write(json.dumps(result) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--centres", type=int, default=10_000)
    parser.add_argument("--noise", type=float, default=0.8, help="norm of the Gaussian noise around a unit centre")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default="/tmp/bench-ann")
    parser.add_argument("--run", action="append", help="ENGINE:key=value,... (repeatable); see the module doc")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args, args.one)
        return
    write_data(args)
    print(f"{os.cpu_count()} cores; load average {load()}", flush=True)
    common = [a for a in sys.argv[1:] if not a.startswith("--run") and a not in (args.run or [])]
    for text in args.run or DEFAULT_RUNS:
        subprocess.run([sys.executable, __file__, *common, "--one", text], check=True)


if __name__ == "__main__":
    main()
