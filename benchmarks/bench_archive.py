"""Archive at scale: 1,000,000 windows × 768 float16 (synthetic: clustered vectors, no audio decoding).

Writes an archive with ``Archive.add_recordings`` (one-hour recordings of 720 five-second windows, dated, at
10 sites; vectors from a mixture of Gaussians as ``bench_gallery.py`` draws them), then, in a fresh process,
measures: opening time and RSS, the ANN build (``--engine``, default the store's) time, CPU and peak RSS, and
``Archive.search`` latency (p50/p95, the whole call: query check, ANN candidates re-scored exactly, the hits'
records from SQLite) with recall@10 against exact search, for three kinds of query as they land in the
teacher's space:

* ``text``: a class centre itself (a species' text embedding is the centre its windows lie around);
* ``picture``: a fresh draw around a centre (a picture lies near, not on, it);
* ``example``: a window of the archive (``--like``: a recording's own embedding).

    .venv/bin/python benchmarks/bench_archive.py [--n 1000000] [--dim 768] [--folder /tmp/bench-archive]
        [--engine faiss-ivf --nprobe 16 32 64 | --engine usearch --expansion-search 64 128]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from bench_gallery import (
    PeakRss,
    describe,
    fresh_centres,
    fresh_start,
    load,
    mb,
    mixture,
    prepare_ann,
    run_phases,
    scale_parser,
    status,
)

TEACHER = {"ref": "synthetic", "name": "synthetic", "fingerprint": "1" * 32}
WINDOWS_PER_FILE = 720  # one hour of 5 s windows
WINDOW_S = 5.0


def generate(args: argparse.Namespace) -> None:
    from birdbridge.archive.store import Archive

    folder, rng, centres = fresh_start(args)
    archive = Archive.create(folder, {**TEACHER, "embed_dim": args.dim}, args.dim)
    archive.update_meta(student={"ref": "synthetic", "name": "synthetic", "fingerprint": "2" * 32,
                                 "embed_dim": args.dim, "band_hz": [0.0, 8000.0]},
                        windowing={"window_s": WINDOW_S, "hop_s": WINDOW_S}, build={"complete": True})
    t0 = time.perf_counter()
    files = add_windows(archive, rng, centres, args.n, args.noise)
    elapsed = time.perf_counter() - t0
    picture, _ = mixture(rng, centres, args.queries, args.noise)
    np.save(folder.parent / f"{folder.name}-queries.npy", np.stack([centres[: args.queries], picture]))
    print(f"wrote {len(archive):,} windows × {args.dim} float16 ({files:,} recordings; {args.centres:,} centres, "
          f"noise {args.noise}) with Archive.add_recordings in {elapsed:.1f} s ({len(archive) / elapsed:,.0f} rows/s)")


def add_windows(archive, rng: np.random.Generator, centres: np.ndarray, n: int, noise: float) -> int:
    """Add ``n`` windows to ``archive`` as one-hour recordings numbered on from its files; returns how many."""
    from birdbridge.archive.metadata import RecordingMeta
    from birdbridge.archive.store import NewRecording

    starts = np.arange(WINDOWS_PER_FILE) * WINDOW_S
    first, files = len(archive.files()), -(-n // WINDOWS_PER_FILE)
    per_commit = max(1, 50_000 // WINDOWS_PER_FILE)
    for lo in range(0, files, per_commit):
        batch = []
        for j in range(lo, min(lo + per_commit, files)):
            i, rows = first + j, min(WINDOWS_PER_FILE, n - j * WINDOWS_PER_FILE)
            x, _ = mixture(rng, centres, rows, noise)
            day, hour = divmod(i, 24)
            meta = RecordingMeta(f"2024-{5 + day // 28:02d}-{1 + day % 28:02d}", f"{hour:02d}:00:00", f"site{i % 10}")
            batch.append(NewRecording(f"/field/site{i % 10}/{i:06d}.wav", rows * WINDOW_S, 48_000, 1, 1, i, meta, x,
                                      starts[:rows], starts[:rows] + WINDOW_S))
        archive.add_recordings(batch)
    return files


def grow(args: argparse.Namespace, archive) -> None:
    """Add ``--grow`` × the archive's windows and bring the ANN index up to date (only the new rows are added)."""
    from birdbridge.store import build_ann

    n0, extra = len(archive), int(len(archive) * args.grow)
    rng = np.random.default_rng(args.seed + 2)
    centres = fresh_centres(args)
    add_windows(archive, rng, centres, extra, args.noise)
    before, t, cpu = load(), time.perf_counter(), time.process_time()
    with PeakRss() as peak:
        entry = build_ann(archive, progress=False)
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(f"\ngrown by {extra:,} windows ({args.grow:.0%}) to {len(archive):,}: ANN brought up to date in {took:.1f} s "
          f"(CPU {cpu:.0f} s; {entry['added_rows']:,} rows added; {describe(entry)}; peak RSS "
          f"{mb(peak.peak['VmRSS'])}; load {before} -> {load()})")
    found = archive.search(vector=archive.vectors[n0].astype(np.float32), top_k=1)
    assert found.method == "ann" and found.hits[0].row == n0


def measure(args: argparse.Namespace) -> None:
    from birdbridge.archive.store import Archive
    from birdbridge.store import build_ann

    folder = Path(args.folder)
    text, picture = np.load(folder.parent / f"{folder.name}-queries.npy")
    base = status()
    opens = []
    for _ in range(5):
        t = time.perf_counter()
        archive = Archive.open(folder)
        opens.append(time.perf_counter() - t)
    after = status()
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    print(f"\nfolder {folder}: {mb(size)} on disk (vectors.f16 {mb((folder / 'vectors.f16').stat().st_size)}, "
          f"archive.sqlite {mb((folder / 'archive.sqlite').stat().st_size)})")
    print(f"open: first {opens[0] * 1000:.1f} ms, median {np.median(opens) * 1000:.1f} ms; RSS {mb(base['VmRSS'])} "
          f"before -> {mb(after['VmRSS'])} after (+{mb(after['VmRSS'] - base['VmRSS'])})")
    rng = np.random.default_rng(args.seed + 1)
    rows = np.sort(rng.choice(len(archive), args.queries, replace=False))
    queries = {"text": text, "picture": picture, "example": archive.vectors[rows].astype(np.float32)}

    truth = {}
    for kind, q in queries.items():
        t = time.perf_counter()
        truth[kind] = [[h.row for h in archive.search(vector=v, top_k=10, exact=True).hits] for v in q[:args.exact]]
        took = (time.perf_counter() - t) / args.exact
        print(f"exact Archive.search top-10, {kind}: {took * 1000:.0f} ms/query (over {args.exact} queries)")

    settings, key, depths = prepare_ann(args, archive)
    for depth in depths:
        build_ann(archive, settings=replace(settings, **{key: depth}), progress=False)
        arc = Archive.open(folder)
        arc.search(vector=text[0], top_k=10)  # load the index
        for kind, q in queries.items():
            lat, recall = [], []
            for i, v in enumerate(q):
                t = time.perf_counter()
                found = arc.search(vector=v, top_k=10)
                lat.append((time.perf_counter() - t) * 1000)
                if i < args.exact:
                    recall.append(len({h.row for h in found.hits} & set(truth[kind][i])) / 10)
            assert found.method == "ann"
            print(f"  {key} {depth:4d}, {kind:8s}: p50 {np.percentile(lat, 50):.2f} ms, p95 "
                  f"{np.percentile(lat, 95):.2f} ms over {len(q)} queries; recall@10 {np.mean(recall):.4f} "
                  f"(over {len(recall)}; load {load()})")
    print(f"RSS after the searches: {mb(status()['VmRSS'])}")
    if args.grow:
        grow(args, arc)


def main() -> None:
    parser = scale_parser(__doc__.splitlines()[0], "archive", "/tmp/bench-archive", 200, [64, 128, 256])
    parser.add_argument("--exact", type=int, default=50, help="queries whose exact top-10 is the recall reference")
    parser.add_argument("--grow", type=float, default=0.0, help="then add this fraction of windows (0.1: 10 %%) and "
                        "time bringing the ANN index up to date")
    run_phases(parser.parse_args(), __file__, generate, measure)


if __name__ == "__main__":
    main()
