"""Gallery index at scale: 1,000,000 × 768 clustered float16 vectors (synthetic, no image decoding).

Writes a gallery with ``Gallery.append`` (a mixture of Gaussians: ``--centres`` unit centres plus
isotropic noise of total norm ``--noise``, renormalised), then, in a fresh process, measures: memory
(file size, RSS after open, peak RSS during exact search), open time, exact top-10 latency for 1 query and
a batch of 64, ANN build time, and ANN latency (p50/p95 over ``--queries`` single queries) and recall@10
against exact search for several ``expansion_search`` values. Queries are held-out draws from the mixture.

    .venv/bin/python benchmarks/bench_gallery.py [--n 1000000] [--dim 768] [--folder /tmp/bench-gallery]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

TEACHER = {"ref": "synthetic", "name": "synthetic", "fingerprint": "0" * 32}


def status() -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


class PeakRss:
    """Samples RssAnon / RssFile every 5 ms in a thread; ``peak`` holds the maxima."""

    def __init__(self) -> None:
        self.peak = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, value in status().items():
                if key in self.peak:
                    self.peak[key] = max(self.peak[key], value)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def load() -> str:
    """The 1-minute load average (other work on the machine inflates every timing)."""
    with open("/proc/loadavg") as fh:
        return fh.read().split()[0]


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def mixture(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    dim = centres.shape[1]
    labels = rng.integers(0, len(centres), n)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x *= noise / np.sqrt(dim)
    x += centres[labels]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def fresh_start(args: argparse.Namespace) -> tuple[Path, np.random.Generator, np.ndarray]:
    """The store's folder (emptied), the random generator and the unit centres of the mixture."""
    folder = Path(args.folder)
    if folder.exists():
        shutil.rmtree(folder)
    rng = np.random.default_rng(args.seed)
    return folder, rng, fresh_centres(args, rng)


def fresh_centres(args: argparse.Namespace, rng: np.random.Generator | None = None) -> np.ndarray:
    """The unit centres of the mixture (the first draw of ``--seed``'s generator)."""
    rng = np.random.default_rng(args.seed) if rng is None else rng
    centres = rng.standard_normal((args.centres, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return centres


def generate(args: argparse.Namespace) -> None:
    from birdbridge.gallery import Gallery

    folder, rng, centres = fresh_start(args)
    gallery = Gallery.create(folder, {**TEACHER, "embed_dim": args.dim}, args.dim)
    start = time.perf_counter()
    chunk = 50_000
    for lo in range(0, args.n, chunk):
        hi = min(lo + chunk, args.n)
        x, labels = mixture(rng, centres, hi - lo, args.noise)
        records = [{"id": f"img{lo + i:07d}", "species": f"Species {int(c):05d}", "source": "synthetic"}
                   for i, c in enumerate(labels)]
        gallery.append(x, records)
    elapsed = time.perf_counter() - start
    queries, _ = mixture(rng, centres, args.queries, args.noise)
    np.save(folder.parent / f"{folder.name}-queries.npy", queries)
    print(f"wrote {args.n:,} × {args.dim} float16 vectors ({args.centres:,} centres, noise {args.noise}) "
          f"with Gallery.append in {elapsed:.1f} s ({args.n / elapsed:,.0f} rows/s)")


def measure(args: argparse.Namespace) -> None:
    import torch

    from birdbridge.gallery import Gallery, build_ann

    folder = Path(args.folder)
    queries = np.load(folder.parent / f"{folder.name}-queries.npy")
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    vec_size = (folder / "vectors.f16").stat().st_size
    base = status()
    opens = []
    for _ in range(5):
        t = time.perf_counter()
        gallery = Gallery.open(folder)
        opens.append(time.perf_counter() - t)
    after_open = status()
    print(f"\nfolder {folder}: {mb(size)} on disk (vectors.f16 {mb(vec_size)}, "
          f"images.sqlite {mb((folder / 'images.sqlite').stat().st_size)})")
    print(f"open: first {opens[0] * 1000:.1f} ms, median {np.median(opens) * 1000:.1f} ms; "
          f"RSS {mb(base['VmRSS'])} before -> {mb(after_open['VmRSS'])} after "
          f"(+{mb(after_open['VmRSS'] - base['VmRSS'])}; file-backed +{mb(after_open['RssFile'] - base['RssFile'])})")
    print(f"torch threads: {torch.get_num_threads()}; load average {load()}")

    # exact search
    gallery.search(queries[:1], 10, exact=True)  # warm the page cache
    one, batch = [], []
    with PeakRss() as peak:
        for i in range(5):
            t = time.perf_counter()
            gallery.search(queries[i : i + 1], 10, exact=True)
            one.append(time.perf_counter() - t)
        for i in range(3):
            t = time.perf_counter()
            gallery.search(queries[64 * i : 64 * (i + 1)], 10, exact=True)
            batch.append(time.perf_counter() - t)
    print(f"exact top-10: 1 query median {np.median(one):.3f} s (min {min(one):.3f}); "
          f"64 queries median {np.median(batch):.3f} s (min {min(batch):.3f}; {np.median(batch) / 64 * 1000:.1f} "
          "ms/query)")
    print(f"RSS during exact search: peak anonymous {mb(peak.peak['RssAnon'])} "
          f"(+{mb(peak.peak['RssAnon'] - after_open['RssAnon'])} over open), peak file-backed (mapped vectors) "
          f"{mb(peak.peak['RssFile'])}, peak total {mb(peak.peak['VmRSS'])}")
    t = time.perf_counter()
    _, truth = gallery.search(queries, 10, exact=True)
    print(f"exact top-10 for all {len(queries)} queries: {time.perf_counter() - t:.2f} s")

    if args.skip_ann:
        return
    settings, key, depths = prepare_ann(args, gallery)
    for depth in depths:
        build_ann(gallery, settings=replace(settings, **{key: depth}), progress=False)
        g = Gallery.open(folder)
        assert g.ann_status()["up_to_date"]
        g.search(queries[:1], 10)  # load the index
        lat, found = [], []
        for q in queries:
            t = time.perf_counter()
            _, rows = g.search(q[None, :], 10)
            lat.append(time.perf_counter() - t)
            found.append(rows[0])
        hits = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        lat_ms = np.array(lat) * 1000
        print(f"  ANN {key} {depth:4d}: p50 {np.percentile(lat_ms, 50):.2f} ms, p95 "
              f"{np.percentile(lat_ms, 95):.2f} ms, recall@10 {hits:.4f} (over {len(queries)} queries, "
              f"Gallery.search incl. exact re-scoring; load {load()})")
    print(f"RSS after ANN searches: {mb(status()['VmRSS'])}")


def ann_settings(args: argparse.Namespace, entry: dict | None = None) -> tuple[Any, str, list[int]]:
    """The ANN settings the options give (the others: ``entry``'s, else the defaults), the name of the engine's search
    depth and the depths to measure."""
    from birdbridge.store.ann import ENGINES, AnnSettings

    given = {"engine": args.engine, "connectivity": args.connectivity, "expansion_add": args.expansion_add,
             "dtype": args.dtype, "nlist": args.nlist}
    settings = AnnSettings.from_entry(entry, **given)
    key = ENGINES[settings.engine].search_key
    depths = args.nprobe if key == "nprobe" else args.expansion_search
    return replace(settings, **{key: depths[0]}), key, depths


def prepare_ann(args: argparse.Namespace, store: Any) -> tuple[Any, str, list[int]]:
    """The store's ANN index as the options ask: kept (``--keep-ann``, if up to date) or built afresh and measured
    (wall and CPU time, index size, peak RSS, load); returns :func:`ann_settings`."""
    from birdbridge.store import build_ann

    if args.keep_ann and store.ann_status()["up_to_date"]:
        current = store.meta["ann"]
        print(f"\nANN index kept ({describe(current)}; built in {current.get('build_seconds')} s)")
        return ann_settings(args, current)
    settings, key, depths = ann_settings(args)
    before = load()
    t, cpu = time.perf_counter(), time.process_time()
    with PeakRss() as peak:
        entry = build_ann(store, rebuild=True, settings=settings, threads=0, progress=False)
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(f"\nANN build ({describe(entry)}, all cores): {took:.1f} s ({len(store) / took:,.0f} rows/s; CPU "
          f"{cpu:.0f} s), index file {mb((store.folder / entry['file']).stat().st_size)}, peak RSS "
          f"{mb(peak.peak['VmRSS'])}, load {before} -> {load()}")
    return settings, key, depths


def describe(entry: dict) -> str:
    """An index's engine and settings, as its meta-file entry records them."""
    shown = ("dtype", "connectivity", "expansion_add", "nlist", "trained_rows")
    return f"{entry['engine']} " + ", ".join(f"{k} {entry[k]}" for k in shown if k in entry)


def scale_parser(description: str, store: str, folder: str, queries: int, expansion_search: list[int]
                 ) -> argparse.ArgumentParser:
    """The options of a benchmark of a store at scale (this one and ``bench_archive.py``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--centres", type=int, default=10_000)
    parser.add_argument("--noise", type=float, default=0.8, help="norm of the Gaussian noise around a unit centre")
    parser.add_argument("--queries", type=int, default=queries)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default=folder)
    parser.add_argument("--engine", help="ANN engine (usearch, faiss-ivf); default: the store's (AnnSettings)")
    parser.add_argument("--connectivity", type=int, help="usearch; default: the store's")
    parser.add_argument("--expansion-add", type=int, help="usearch; default: the store's")
    parser.add_argument("--dtype", help="how the index stores vectors (i8, f16, ...); default: the store's")
    parser.add_argument("--expansion-search", type=int, nargs="+", default=expansion_search, help="usearch")
    parser.add_argument("--nlist", type=int, help="faiss-ivf; default: the store's (from the rows)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64], help="faiss-ivf")
    parser.add_argument("--reuse", action="store_true", help=f"measure an existing {store} instead of writing one")
    parser.add_argument("--keep-ann", action="store_true", help="with --reuse: keep its ANN index (no rebuild)")
    parser.add_argument("--phase", choices=["all", "measure"], default="all", help=argparse.SUPPRESS)
    return parser


def run_phases(args: argparse.Namespace, script: str, generate, measure) -> None:
    """Write the store (unless --reuse), then measure it in a fresh process, so that its memory figures hold only
    what the store costs."""
    if args.phase == "measure":
        measure(args)
        return
    if not args.reuse:
        generate(args)
    subprocess.run([sys.executable, script, *sys.argv[1:], "--phase", "measure"], check=True)
    print(json.dumps({"n": args.n, "dim": args.dim, "centres": args.centres, "noise": args.noise}))


def main() -> None:
    parser = scale_parser(__doc__.splitlines()[0], "gallery", "/tmp/bench-gallery", 256, [32, 64, 128, 256])
    parser.add_argument("--skip-ann", action="store_true")
    run_phases(parser.parse_args(), __file__, generate, measure)


if __name__ == "__main__":
    main()
