"""Benchmark: distillation training on CPU with the full-size BioLingual architecture.

Random weights in the real architectures (BioLingual for the student; BioCLIP-2's ViT-L/14 text tower
for the teacher). Data: synthetic 10 s recordings at 22.05 kHz, iNatSounds' rate, so that the data
workers decode, crop and resample to 48 kHz as they would on the real set. Prints:
  * training samples/second (steady state, after the first step);
  * the share of step time spent waiting for data;
  * the saving from cached teacher text targets: the time to run the teacher's text encoder on one
    step's prompts, against looking the cached embeddings up.

    python benchmarks/bench_train.py [--steps 8] [--batch-size 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

RATE = 22_050  # iNatSounds' sample rate: the data workers resample to the student's 48 kHz


def species_names(n: int) -> list[str]:
    return [f"Avis {chr(97 + s // 26)}{chr(97 + s % 26)}ensis" for s in range(n)]


def tone(species: int, rng: np.random.Generator, seconds: float = 10.0) -> np.ndarray:
    """A species' synthetic call: a tone at its own pitch in light noise, float32 at :data:`RATE`."""
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.2 * np.sin(2 * np.pi * (1000 + 150 * species) * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32)


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_data(root: Path, n: int, species: int) -> Path:
    rng = np.random.default_rng(0)
    names = species_names(species)
    (root / "audio").mkdir(parents=True)
    rows = []
    for i in range(n):
        path = root / "audio" / f"{i:04d}.wav"
        sf.write(path, tone(i % species, rng), RATE)
        rows.append((str(path), names[i % species], "train"))
    return write_csv(root / "audio.csv", ["path", "species", "split"], rows)


def build_teacher(folder: Path) -> Path:
    """BioCLIP-2's architecture (open_clip ViT-L/14) with random weights, in open_clip's layout."""
    from transformers import CLIPConfig, CLIPModel

    from birdbridge.models.openclip_convert import save_openclip_folder

    config = CLIPConfig(
        text_config={"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                     "num_hidden_layers": 12, "max_position_embeddings": 77, "hidden_act": "gelu",
                     "projection_dim": 768},
        vision_config={"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                       "num_hidden_layers": 24, "image_size": 224, "patch_size": 14, "hidden_act": "gelu",
                       "projection_dim": 768},
        projection_dim=768,
    )
    return save_openclip_folder(CLIPModel(config).eval(), folder)


def training_args(steps: int, batch_size: int, species: int) -> argparse.ArgumentParser:
    """The options every training benchmark takes (``--steps``, ``--batch-size``, ``--species``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--species", type=int, default=species)
    return parser


def steady_state(output: Path) -> tuple[list[float], list[float], float]:
    """Step and data-wait times of a run's steps after the first (worker start-up), and all steps' total."""
    with open(output / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    steps = [float(r["step_s"]) for r in rows]
    return steps[1:], [float(r["data_wait_s"]) for r in rows[1:]], sum(steps)


@contextlib.contextmanager
def full_size_setup(args: argparse.Namespace, make: Callable[[Path, int, int], Path],
                    teacher: Callable[[Path], Path]) -> Iterator[tuple[Path, Path, Path, Path]]:
    """A temporary folder with the data, full-size BioLingual (random weights) and a teacher."""
    from birdbridge.models.standins import build_full_size_biolingual

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make(tmp / "data", args.batch_size * (args.steps + 1), args.species)
        yield tmp, data, build_full_size_biolingual(tmp / "biolingual"), teacher(tmp / "teacher")


def main() -> None:
    parser = training_args(steps=8, batch_size=8, species=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from birdbridge.models.loader import clear_model_cache, load_teacher
    from birdbridge.species import PromptSampler
    from birdbridge.train.config import load_config
    from birdbridge.train.loop import train

    with full_size_setup(args, make_data, build_teacher) as (tmp, manifest, student, teacher):
        cfg = load_config(None, [
            f"data.dataset={manifest}", f"student={student}", f"teacher={teacher}", f"output={tmp / 'run'}",
            f"run.batch_size={args.batch_size}", f"run.max_steps={args.steps}", f"data.num_workers={args.workers}",
            "run.log_every=1", f"run.checkpoint_every={10 * args.steps}", "run.progress=false",
        ])
        started = time.perf_counter()
        result = train(cfg)
        wall = time.perf_counter() - started
        step_s, wait_s, _ = steady_state(result.output)
        print(f"training, full-size BioLingual, batch {args.batch_size}, {args.workers} data workers, "
              f"{args.steps} steps ({wall:.0f} s wall including set-up):")
        print(f"  {args.batch_size / statistics.mean(step_s):.2f} samples/s "
              f"(median step {statistics.median(step_s):.2f} s)")
        print(f"  waiting for data: {100 * sum(wait_s) / sum(step_s):.1f}% of step time")

        # Cached targets against running the teacher's text tower on every step's prompts.
        clear_model_cache()
        encoder = load_teacher(str(teacher), "cpu")
        from birdbridge.datasets import load_dataset

        taxonomy = load_dataset(manifest).taxonomy
        sampler = PromptSampler(taxonomy, cfg.prompts.mix, cfg.prompts.templates)
        rng = np.random.default_rng(0)
        per_step_teacher = []
        for _ in range(5):
            species = rng.choice(len(taxonomy), size=min(args.batch_size, len(taxonomy)), replace=False)
            texts = [sampler.text(int(s), int(v)) for s, v in zip(species, sampler.sample_variant_indices(
                len(species), rng), strict=True)]
            t0 = time.perf_counter()
            encoder.encode_texts(texts)
            per_step_teacher.append(time.perf_counter() - t0)
        from birdbridge.train.targets import TextTargets

        targets = TextTargets.build(encoder, taxonomy, cfg.prompts.mix, cfg.prompts.templates, 0, progress=False)
        t0 = time.perf_counter()
        for step in range(100):
            targets.for_step(step, torch.arange(min(args.batch_size, len(taxonomy))))
        lookup = (time.perf_counter() - t0) / 100
        teacher_s = statistics.median(per_step_teacher)
        print("teacher text targets per step:")
        print(f"  running the ViT-L/14 text tower: {teacher_s * 1000:.0f} ms "
              f"({100 * teacher_s / statistics.median(step_s):.1f}% of a training step)")
        print(f"  cached lookup:                   {lookup * 1000:.3f} ms")
        print(f"  saving: {teacher_s * 1000 - lookup * 1000:.0f} ms per step")


if __name__ == "__main__":
    main()
