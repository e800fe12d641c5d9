"""Benchmark: stream a long recording through ``iter_windows`` and show that memory stays bounded.

Writes a long 48 kHz mono FLAC (16-bit: quiet noise plus a chirp every 7 s) in a temporary folder,
one minute at a time, so the whole signal is never in memory. Then, in a fresh subprocess (so that
nothing else counts towards its peak RSS), streams it through ``iter_windows`` with 10 s windows and
prints the window count, wall time, real-time factor and peak RSS.

    python benchmarks/bench_audio_stream.py [--hours 2] [--sample-rate 48000] [--window 10] [--block 60]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

FILE_SR = 48_000


def write_recording(path: Path, hours: float, chunk_s: int = 10) -> float:
    """Write ``hours`` of audio chunk by chunk (small chunks keep this process's peak RSS low, which a
    child inherits in ``ru_maxrss`` on Linux); return the duration in seconds."""
    rng = np.random.default_rng(0)
    total = round(hours * 3600 * FILE_SR)
    chunk = chunk_s * FILE_SR
    with sf.SoundFile(path, "w", samplerate=FILE_SR, channels=1, format="FLAC", subtype="PCM_16") as f:
        for start in range(0, total, chunk):
            t = (np.arange(start, min(start + chunk, total)) % (7 * FILE_SR)).astype(np.float32) / FILE_SR
            chirp = np.where(t < 1.0, 0.3 * np.sin(2 * np.pi * (2000 + 1500 * t) * t), 0.0)  # every 7 s
            f.write(chirp + 0.01 * rng.standard_normal(t.size, dtype=np.float32))
    return total / FILE_SR


def vm_hwm_mb() -> float | None:
    """Peak RSS of this process image (Linux /proc VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def stream(path: str, sample_rate: int, window_s: float, block_s: float) -> dict[str, float | None]:
    """Run in the child process: stream the file and measure."""
    from birdbridge.audio import WindowSpec, iter_windows, window_starts

    rss_start = vm_hwm_mb()
    spec = WindowSpec(window_s)
    t0 = time.perf_counter()
    count, checksum, samples = 0, 0.0, 0
    for w in iter_windows(path, sample_rate, spec, block_s=block_s):
        count += 1
        samples += w.samples.size
        checksum += float(w.samples[::997].sum())  # touch the data
    wall = time.perf_counter() - t0
    duration = sf.info(path).duration
    return {
        "windows": count,
        "expected_windows": len(window_starts(duration, spec)),
        "wall_s": wall,
        "duration_s": duration,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        "vm_hwm_mb": vm_hwm_mb(),
        "hwm_after_imports_mb": rss_start,
        "window_samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--sample-rate", type=int, default=48_000, help="rate the windows are made at")
    parser.add_argument("--window", type=float, default=10.0, help="window length in seconds")
    parser.add_argument("--block", type=float, default=60.0, help="decoding block in seconds")
    parser.add_argument("--file", type=Path, help="use this recording instead of generating one")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(stream(str(args.file), args.sample_rate, args.window, args.block)))
        return

    with tempfile.TemporaryDirectory(prefix="bb-bench-audio-") as tmp:
        path = args.file
        if path is None:
            path = Path(tmp) / "long.flac"
            t0 = time.perf_counter()
            write_recording(path, args.hours)
            size_mb = path.stat().st_size / 1e6
            print(f"wrote {args.hours:g} h of {FILE_SR} Hz mono 16-bit FLAC ({size_mb:.0f} MB) "
                  f"in {time.perf_counter() - t0:.1f} s")
        cmd = [sys.executable, __file__, "--child", "--file", str(path), "--sample-rate",
               str(args.sample_rate), "--window", str(args.window), "--block", str(args.block)]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

    sr, dur, wall = args.sample_rate, result["duration_s"], result["wall_s"]
    print(f"recording        : {dur / 3600:.2f} h; {args.window:g} s windows at {sr} Hz; "
          f"{args.block:g} s blocks")
    print(f"windows          : {result['windows']} (window_starts expects {result['expected_windows']})")
    print(f"wall time        : {wall:.1f} s")
    print(f"real-time factor : {wall / dur:.5f} (wall / audio; {dur / wall:.0f}x faster than real time)")
    print(f"peak RSS         : {result['peak_rss_mb']:.0f} MB (ru_maxrss of the streaming process)")
    if result["vm_hwm_mb"] is not None:
        print(f"                   VmHWM {result['vm_hwm_mb']:.0f} MB, {result['hwm_after_imports_mb']:.0f} "
              f"MB after imports; the decoded float32 signal is {dur * sr * 4 / 1e6:.0f} MB")

if __name__ == "__main__":
    main()
