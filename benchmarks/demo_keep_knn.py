"""Does a loss that keeps the student's geometry (``loss.keep``) trade audio→image MAP for kNN accuracy? Trains the
demo's distilled student again with each weight of one keep loss and prints both figures, for every query and for
the species seen and held out of training.

Reuses a ``birdbridge demo`` output (its world, its stand-in models and its distillation's config.yaml; built here
with a quarter of the species held out, on ``--seed`` and without soundscapes, when the folder has none).
Calibration is skipped.

    python benchmarks/demo_keep_knn.py --demo /tmp/demo-holdout --out /tmp/keep-knn --keep relational --weights 0 1

On a machine other jobs load, OMP_NUM_THREADS=1 trains the demo's small students several times faster.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from birdbridge.demo.run import DemoSettings, run_demo
from birdbridge.evaluate.results import BASELINE_IDS, DISTILLED
from birdbridge.evaluate.runner import EvalSettings, evaluate
from birdbridge.train.config import load_config
from birdbridge.train.loop import train

nan = float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, required=True, help="a birdbridge demo output (built if missing)")
    parser.add_argument("--out", type=Path, required=True, help="where the students are trained")
    parser.add_argument("--keep", default="relational", choices=("relational", "feature", "classify"))
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--seed", type=int, default=0, help="the seed of a demo built here")
    args = parser.parse_args()
    demo = args.demo
    if not (demo / "distill" / "config.yaml").exists():
        run_demo(demo, DemoSettings(holdout=0.25, seed=args.seed, soundscapes=0))
    for weight in args.weights:
        started = time.perf_counter()
        cfg = load_config(demo / "distill" / "config.yaml", [
            f"data.dataset={demo / 'world' / 'dataset.yaml'}", f"student={demo / 'models' / 'student'}",
            f"teacher={demo / 'models' / 'teacher'}", f"output={args.out / f'{args.keep}-{weight:g}'}",
            "calibration.enabled=false", "run.progress=false", f"loss.keep={args.keep if weight else 'none'}",
            f"loss.keep_weight={weight}",
        ])
        model = train(cfg, fresh=True).model
        trained_s = time.perf_counter() - started
        result = evaluate({DISTILLED: str(model)}, demo / "world" / "dataset.yaml", baselines=("undistilled",),
                          settings=EvalSettings(image_split="test", bootstrap=0), progress=False)
        if weight == args.weights[0]:
            print(f"undistilled student: {cells(result.method(BASELINE_IDS['undistilled']))}")
        print(f"{args.keep} weight {weight:g} ({trained_s:.0f} s training): {cells(result.method(DISTILLED))}",
              flush=True)


def cells(method) -> str:
    """kNN accuracy and A→I MAP of all queries, then of the seen and unseen species'."""
    groups = {"all": method.metrics, **method.groups}
    return "  ".join(f"{g}: kNN {m.get('knn_acc', nan):5.1f} A→I MAP {m.get('a2i_map', nan):5.1f}"
                     for g, m in groups.items())


if __name__ == "__main__":
    main()
