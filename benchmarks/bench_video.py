"""Benchmark: video frames decoded, and decoded + embedded by BioCLIP-2's ViT-L/14, on this CPU.

Videos are generated like SSW60's (10 s, 25 fps, 320 x 240 H.264 with AAC sound, a moving bird-like
shape over a noisy background). Random weights in BioCLIP-2's architecture (open_clip ViT-L/14: vision
24 layers, width 1024, patch 14, 224 px; text 12 layers, width 768; projection 768) give the real
compute cost. Prints, for sampling at 1, 2 and 5 fps:
  * decoding: video frames decoded per second (every frame must be decoded, whatever the rate) and
    sampled frames returned per second (``sample_frames``);
  * decoding + embedding: sampled frames embedded per second (``frame_embeddings`` without the cache);
plus container facts and sound decoding speed, and the peak RSS of streaming through a long video.

    python benchmarks/bench_video.py [--videos 6] [--embed-videos 2] [--long-minutes 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SIZE = (320, 240)
FPS = 25
SECONDS = 10.0
SR = 44_100
RATES = (1.0, 2.0, 5.0)


def make_video(path: Path, seconds: float = SECONDS, seed: int = 0) -> Path:
    """An SSW60-like clip: a bird-like ellipse crossing a noisy, slowly panning background, with sound."""
    import av

    rng = np.random.default_rng(seed)
    w, h = SIZE
    n = round(seconds * FPS)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([60 + 80 * xx / w, 90 + 60 * yy / h, 70 + 40 * np.sin(xx / 17.0)], axis=2)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.options = {"crf": "23", "preset": "veryfast"}
        sound = container.add_stream("aac", rate=SR, layout="stereo")
        for i in range(n):
            img = np.roll(base, i, axis=1) + rng.normal(0, 6, (h, w, 1))
            cx, cy = (40 + 9 * i) % w, h / 2 + 30 * np.sin(i / 20)
            bird = ((xx - cx) / 28) ** 2 + ((yy - cy) / 16) ** 2 < 1
            img[bird] = (200, 60, 40)
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        t = np.arange(round(seconds * SR)) / SR
        x = 0.2 * np.sin(2 * np.pi * 3000 * t) * (np.sin(2 * np.pi * 2 * t) > 0) + 0.02 * rng.standard_normal(t.size)
        frame = av.AudioFrame.from_ndarray(np.stack([x, x]).astype(np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = SR, 0
        container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    return path


def stream_long(path: str) -> None:
    """Runs in a child process: walk through every sampled frame of a long video; prints JSON."""
    from birdbridge.video import iter_frames

    start = time.perf_counter()
    count = sum(1 for _ in iter_frames(path, 1.0))
    seconds = time.perf_counter() - start
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork + exec from the (large) parent
    status = Path("/proc/self/status").read_text()
    rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024
    print(json.dumps({"frames": count, "seconds": seconds, "peak_rss_mb": rss}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=6, help="videos for the decoding figures")
    parser.add_argument("--embed-videos", type=int, default=2, help="videos for the decode + embed figures")
    parser.add_argument("--long-minutes", type=float, default=3.0, help="long video for peak RSS (0: skip)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--_stream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._stream:
        stream_long(args._stream)
        return

    import av
    from bench_train import build_teacher  # BioCLIP-2's ViT-L/14 with random weights, in open_clip's layout

    from birdbridge.models.loader import load_teacher
    from birdbridge.video import frame_embeddings, read_video_audio, sample_frames, video_info

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; PyAV {av.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        paths = [make_video(root / f"clip{i}.mp4", seed=i) for i in range(max(args.videos, args.embed_videos))]
        print(f"{len(paths)} videos of {SECONDS:.0f} s, {FPS} fps, {SIZE[0]}x{SIZE[1]} H.264 + AAC "
              f"({np.mean([p.stat().st_size for p in paths]) / 1e6:.2f} MB each), "
              f"written in {time.perf_counter() - start:.1f} s")

        start = time.perf_counter()
        infos = [video_info(p) for p in paths[: args.videos]]
        print(f"video_info: {1000 * (time.perf_counter() - start) / len(infos):.1f} ms per video "
              f"({infos[0].frame_count} frames, {infos[0].fps:.2f} fps, VFR {infos[0].variable_frame_rate})")
        start = time.perf_counter()
        for p in paths[: args.videos]:
            read_video_audio(p, 48_000)
        elapsed = time.perf_counter() - start
        print(f"read_video_audio (44.1 kHz stereo AAC -> 48 kHz mono): {args.videos * SECONDS / elapsed:.0f}x "
              "real time")

        print("\ndecoding (sample_frames):")
        for rate in RATES:
            sample_frames(paths[0], rate)  # warm-up
            start = time.perf_counter()
            sampled = sum(len(sample_frames(p, rate)[0]) for p in paths[: args.videos])
            elapsed = time.perf_counter() - start
            decoded = sum(i.frame_count for i in infos)
            print(f"  {rate:.0f} fps: {decoded / elapsed:7.0f} video frames decoded/s, "
                  f"{sampled / elapsed:6.1f} sampled frames/s, {args.videos * SECONDS / elapsed:5.1f}x real time")

        start = time.perf_counter()
        teacher_dir = build_teacher(root / "vit-l-14")
        built = time.perf_counter() - start
        start = time.perf_counter()
        teacher = load_teacher(str(teacher_dir), device="cpu")
        print(f"\nViT-L/14 teacher (random weights): built + saved in {built:.0f} s, loaded in "
              f"{time.perf_counter() - start:.1f} s")
        teacher.encode_images(torch.zeros(2, 3, 224, 224))  # warm-up
        print("decoding + embedding (frame_embeddings, no cache):")
        for rate in RATES:
            start = time.perf_counter()
            frames = sum(len(frame_embeddings(p, teacher, rate, cache=False, batch_size=args.batch_size))
                         for p in paths[: args.embed_videos])
            elapsed = time.perf_counter() - start
            print(f"  {rate:.0f} fps: {frames / elapsed:5.2f} sampled frames embedded/s "
                  f"({frames} frames, {elapsed / args.embed_videos:.1f} s per 10 s video)")
        start = time.perf_counter()
        pixels = torch.randn(args.batch_size, 3, 224, 224)
        teacher.encode_images(pixels, batch_size=args.batch_size)
        print(f"  (the ViT-L/14 alone: {args.batch_size / (time.perf_counter() - start):.2f} images/s)")

        if args.long_minutes > 0:
            long = make_video(root / "long.mp4", seconds=60 * args.long_minutes, seed=99)
            child = subprocess.run([sys.executable, __file__, "--_stream", str(long)], check=True,
                                   capture_output=True, text=True)
            stats = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"\nstreaming a {args.long_minutes:g}-minute video at 1 fps ({long.stat().st_size / 1e6:.0f} MB, "
                  f"{round(60 * args.long_minutes * FPS)} frames): {stats['frames']} frames in "
                  f"{stats['seconds']:.1f} s, peak RSS {stats['peak_rss_mb']:.0f} MB (fresh process)")


if __name__ == "__main__":
    main()
