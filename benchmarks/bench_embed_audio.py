"""Benchmark: audio embedding throughput and a long recording, full-size BioLingual architecture.

Random weights in the real architecture (the real checkpoint cannot be downloaded here) give the real
compute cost. Prints:
  * clips/s of 10 s, 48 kHz files through ``embed_audio`` (batched, prefetching) against the naive use
    of transformers: per file, soundfile.read -> ClapFeatureExtractor -> ClapModel.get_audio_features;
  * for a 1-hour 48 kHz recording in 10 s windows: real-time factor and peak RSS (measured in a fresh
    subprocess so that nothing else counts towards it).

    python benchmarks/bench_embed_audio.py [--clips 24] [--hours 1.0] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SR = 48_000


def make_clips(folder: Path, n: int, seconds: float = 10.0) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        t = np.arange(int(seconds * SR)) / SR
        x = 0.2 * np.sin(2 * np.pi * (1500 + 100 * i) * t) + 0.05 * rng.standard_normal(t.size)
        path = folder / f"clip_{i:03d}.wav"
        sf.write(path, x.astype(np.float32), SR)
        paths.append(path)
    return paths


def make_long(path: Path, hours: float) -> None:
    rng = np.random.default_rng(1)
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as out:
        for _ in range(int(hours * 3600 / 60)):
            out.write((0.1 * rng.standard_normal(60 * SR)).astype(np.float32))


def naive(model_dir: Path, paths: list[Path]) -> float:
    from transformers import ClapFeatureExtractor, ClapModel

    model = ClapModel.from_pretrained(model_dir).eval()
    fe = ClapFeatureExtractor.from_pretrained(model_dir)
    start = time.perf_counter()
    with torch.inference_mode():
        for path in paths:
            audio, sr = sf.read(path, dtype="float32")
            inputs = fe(audio, sampling_rate=sr, return_tensors="pt")
            model.get_audio_features(input_features=inputs["input_features"])
    return len(paths) / (time.perf_counter() - start)


def ours(model_dir: Path, paths: list[Path], batch_size: int) -> float:
    from birdbridge.embed import embed_audio
    from birdbridge.models.loader import load_student

    student = load_student(str(model_dir), "cpu")
    embed_audio(paths[:1], student)  # warm-up, as naive's first call also pays one-off costs below
    start = time.perf_counter()
    embed_audio(paths, student, batch_size=batch_size)
    return len(paths) / (time.perf_counter() - start)


def long_run(model_dir: str, path: str, batch_size: int) -> None:
    """Runs in a child process; prints JSON."""
    from birdbridge.embed import embed_audio_windows

    start = time.perf_counter()
    table = embed_audio_windows([path], model_dir, batch_size=batch_size, device="cpu", progress=False)
    seconds = time.perf_counter() - start
    duration = sf.info(path).duration
    print(json.dumps({
        "windows": len(table), "audio_s": duration, "wall_s": seconds, "rtf": seconds / duration,
        "x_real_time": duration / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--long-only", action="store_true")
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        long_run(args._child[0], args._child[1], args.batch_size)
        return
    from birdbridge.models.standins import build_full_size_biolingual

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_full_size_biolingual(tmp / "biolingual-random")
        if not args.long_only:
            paths = make_clips(tmp, args.clips)
            n = naive(model_dir, paths)
            o = ours(model_dir, paths, args.batch_size)
            print(f"throughput, {args.clips} clips of 10 s @ 48 kHz:")
            print(f"  naive transformers : {n:6.2f} clips/s")
            print(f"  birdbridge         : {o:6.2f} clips/s  (batch {args.batch_size})")
            print(f"  speed-up           : {o / n:6.2f}x  (target >= 1.5x)")
        long_path = tmp / "long.wav"
        make_long(long_path, args.hours)
        child = subprocess.run(
            [sys.executable, __file__, "--batch-size", str(args.batch_size),
             "--_child", str(model_dir), str(long_path)],
            capture_output=True, text=True, check=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"long recording, {result['audio_s'] / 3600:.2f} h @ 48 kHz, 10 s windows ({result['windows']}):")
        print(f"  wall {result['wall_s']:.1f} s, real-time factor {result['rtf']:.4f} "
              f"({result['x_real_time']:.0f}x real time)")
        print(f"  peak RSS {result['peak_rss_mb']:.0f} MB  (target <= 2048 MB)")


if __name__ == "__main__":
    main()
