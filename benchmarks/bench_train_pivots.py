"""Benchmark: training speed of each objective and frame selection, with the full-size BioLingual student.

The student is BioLingual's architecture with random weights; the teacher is a small stand-in (its only
per-step work is a lookup of cached embeddings, and the cost of embedding frames once is measured by
``bench_video.py``). Data: synthetic 10 s videos at 4 fps with a 22.05 kHz sound track. For each of text,
image/random, image/nearest, image/multiframe and both/nearest, prints the one-off preparation (frame
embedding and sound-track decoding, cached after the first run) and steady-state training samples/second.

    python benchmarks/bench_train_pivots.py [--steps 3] [--batch-size 4] [--subwindows 4]
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from bench_train import (  # (run as a script: benchmarks/ is on the path)
    RATE,
    full_size_setup,
    species_names,
    steady_state,
    tone,
    training_args,
    write_csv,
)
from PIL import Image

RUNS = {
    "text (the paper)": ["objective=text"],
    "image, random frame (VIP-ANT)": ["objective=image", "video.frame_selection=random"],
    "image, nearest frame": ["objective=image", "video.frame_selection=nearest", "video.nearest_warmup_epochs=0"],
    "image, multiframe": ["objective=image", "video.frame_selection=multiframe"],
    "text + image (nearest)": ["objective=both", "video.frame_selection=nearest", "video.nearest_warmup_epochs=0"],
}


def make_data(root: Path, n: int, species: int) -> Path:
    """``n`` 10 s videos with sound, and their audio as WAV files, in one dataset.yaml."""
    import soundfile as sf

    from birdbridge.demo.videos import write_mp4

    rng = np.random.default_rng(0)
    names = species_names(species)
    (root / "media").mkdir(parents=True)
    audio_rows, video_rows = [], []
    for i in range(n):
        s = i % species
        x = tone(s, rng)
        frames = [Image.new("RGB", (96, 96), tuple(int(v) for v in rng.integers(0, 255, 3))) for _ in range(40)]
        write_mp4(root / "media" / f"{i:04d}.mp4", frames, 4.0, x, RATE)
        sf.write(root / "media" / f"{i:04d}.wav", x, RATE)
        audio_rows.append((f"media/{i:04d}.wav", names[s], "train"))
        video_rows.append((f"media/{i:04d}.mp4", names[s], "train", 4.0, 40, 10.0))
    write_csv(root / "audio.csv", ["path", "species", "split"], audio_rows)
    write_csv(root / "videos.csv", ["path", "species", "split", "fps", "frame_count", "duration_s"], video_rows)
    (root / "dataset.yaml").write_text("type: manifest\naudio: audio.csv\nvideos: videos.csv\n")
    return root / "dataset.yaml"


def main() -> None:
    parser = training_args(steps=3, batch_size=4, species=4)
    parser.add_argument("--subwindows", type=int, default=4)
    args = parser.parse_args()

    from birdbridge.models.standins import build_small_clip
    from birdbridge.train.config import load_config
    from birdbridge.train.loop import train

    with full_size_setup(args, make_data, build_small_clip) as (tmp, dataset, student, teacher):
        print(f"full-size BioLingual student, batch {args.batch_size}, {args.steps} steps, "
              f"multiframe sub-windows {args.subwindows}:")
        print(f"  {'objective':32s} {'prepare s':>9s} {'samples/s':>9s} {'median step s':>13s}")
        for i, (name, extra) in enumerate(RUNS.items()):
            cfg = load_config(None, [
                f"data.dataset={dataset}", f"student={student}", f"teacher={teacher}", f"output={tmp / str(i)}",
                f"run.batch_size={args.batch_size}", f"run.max_steps={args.steps}", "data.num_workers=1",
                "run.log_every=1", f"run.checkpoint_every={10 * args.steps}", "run.progress=false",
                "video.fps=4", f"video.subwindows={args.subwindows}", *extra,
            ])
            started = time.perf_counter()
            result = train(cfg)
            wall = time.perf_counter() - started
            step_s, _, all_steps = steady_state(result.output)
            prepare = wall - all_steps
            print(f"  {name:32s} {prepare:9.1f} {args.batch_size / statistics.mean(step_s):9.2f} "
                  f"{statistics.median(step_s):13.2f}")


if __name__ == "__main__":
    main()
