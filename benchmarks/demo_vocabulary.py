"""Vocabulary mismatch (the paper's third open question): does distillation pull ahead of the zero-shot chain when the
stand-in student's text tower learned only part of the species' names? Runs the demo world (no soundscapes, no
pivots) once per vocabulary setting and seed (``DemoSettings.student_vocabulary``: "all", a fraction such as 0.5,
"rare"; see ``birdbridge.demo.pretrain``) and reports A→I MAP of the distilled student and of the chain, over all
queries and over the queries of species whose names the text tower learned (for "rare": the frequent half) and
did not.

    python benchmarks/demo_vocabulary.py --out /tmp/vocab --settings all 0.5 rare --seeds 0 1 2

Writes ``OUT/vocabulary.md`` (table), ``OUT/vocabulary.json`` and ``OUT/vocabulary.png`` (MAP against the setting,
mean and 95% t interval over seeds) after every point; a rerun skips the finished (setting, seed) points
(``OUT/points/``), and several workers may share an OUT (each claims a point before it runs it). The stand-in
teacher is pretrained once per seed (``OUT/teachers/``). On a machine other jobs load, OMP_NUM_THREADS=1 trains the
demo's small models several times faster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

import birdbridge.demo.run as run_module
from birdbridge.demo.pretrain import PretrainSettings, name_rates, pretrain_teacher
from birdbridge.demo.run import DemoSettings, run_demo
from birdbridge.demo.world import World
from birdbridge.evaluate.results import BASELINE_IDS, DISTILLED, EvalResult
from birdbridge.evaluate.runner import EvalSettings, evaluate
from birdbridge.experiment.table import seed_cell
from birdbridge.utils.atomic import atomic_path, write_json, write_text

METHODS = {DISTILLED: "text distillation", BASELINE_IDS["chain"]: "zero-shot chain"}
GROUPS = {"seen": "names learned", "unseen": "names not learned"}  # the evaluation's holdout groups, renamed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--settings", nargs="+", default=["all", "0.5", "rare"], help='"all", "rare" or a fraction')
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-epochs", type=int, nargs=2, default=list(DemoSettings.teacher_epochs))
    parser.add_argument("--student-epochs", type=int, nargs=2, default=list(DemoSettings.student_epochs),
                        help="the stand-in student's prototype warm-up and names epochs")
    parser.add_argument("--distill-epochs", type=int, default=DemoSettings.distill_epochs)
    parser.add_argument("--keep-runs", action="store_true", help="keep each point's demo folder (~100 MB)")
    args = parser.parse_args()
    run_module.pretrain_teacher = cached_teacher(args.out / "teachers")
    for seed in args.seeds:  # seed-major: every setting has a seed early
        for setting in args.settings:
            point = args.out / "points" / f"{setting}-seed{seed}.json"
            if point.exists() or not claim(point.with_suffix(".claimed")):
                continue
            started = time.perf_counter()
            settings = DemoSettings(seed=seed, soundscapes=0, student_vocabulary=vocabulary(setting),
                                    teacher_epochs=tuple(args.teacher_epochs),
                                    student_epochs=tuple(args.student_epochs), distill_epochs=args.distill_epochs)
            folder = args.out / "runs" / f"{setting}-seed{seed}"
            results = run_demo(folder, settings, progress=False, log=lambda _: None)
            record = measure(folder, setting, seed, results)
            record.update(wall_s=time.perf_counter() - started, loadavg=os.getloadavg(),
                          settings={"teacher_epochs": args.teacher_epochs, "student_epochs": args.student_epochs,
                                    "distill_epochs": args.distill_epochs})
            write_json(point, record)
            if not args.keep_runs:
                shutil.rmtree(folder, ignore_errors=True)
            print(f"{setting} seed {seed} ({record['wall_s']:.0f} s, load {record['loadavg'][0]:.1f}): "
                  + "  ".join(f"{METHODS[m]} {v['all']:.1f}" for m, v in record["a2i_map"].items()), flush=True)
            summarise(args.out, args.settings)
    summarise(args.out, args.settings)


def claim(marker: Path) -> bool:
    """True if this process made ``marker`` (so several workers can share the points); remove it to rerun a point
    that a stopped worker left."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        marker.open("x").close()
    except FileExistsError:
        return False
    return True


def cached_teacher(cache: Path):
    """``pretrain_teacher`` pretraining each (seed, epochs) once: the teacher does not depend on the student's
    vocabulary, and its pretraining is deterministic for a seed, so later points copy the first one's."""
    def pretrain(world: World, folder: Path, settings: PretrainSettings, progress: bool | None = None):
        cached = cache / f"seed{settings.seed}-{settings.warmup_epochs}-{settings.epochs}"
        if not cached.exists():
            partial = cache / f".{cached.name}.{os.getpid()}"
            pretrain_teacher(world, partial, settings, progress)
            try:
                partial.rename(cached)
            except OSError:  # another worker cached it first
                shutil.rmtree(partial)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(cached, folder)
        return folder, []

    return pretrain


def vocabulary(setting: str) -> str | float:
    return setting if setting in ("all", "rare") else float(setting)


def learned_names(setting: str, n_species: int, seed: int) -> np.ndarray:
    """Bool [S]: the species whose names the text tower learned (for "rare": the more frequent half)."""
    rates = name_rates(vocabulary(setting), n_species, seed)
    return rates >= np.median(rates) if setting == "rare" else rates == 1.0


def measure(folder: Path, setting: str, seed: int, results: dict[str, Any]) -> dict[str, Any]:
    """A→I MAP of both methods over all queries (the demo's evaluation) and by group of species."""
    world = World.load(folder / "world")
    learned = learned_names(setting, len(world.taxonomy), seed)
    overall = EvalResult.from_dict(results)
    maps = {m: {"all": overall.method(m).metrics["a2i_map"]} for m in METHODS}
    if not learned.all():
        unlearned = tuple(sp.scientific_name for sp, ok in zip(world.taxonomy, learned, strict=True) if not ok)
        grouped = evaluate({DISTILLED: str(folder / "distill" / "model")}, folder / "world" / "dataset.yaml",
                           baselines=("chain",), settings=EvalSettings(image_split="test", holdout=unlearned,
                                                                       bootstrap=0), progress=False)
        for m in METHODS:
            maps[m].update({GROUPS[g]: v["a2i_map"] for g, v in grouped.method(m).groups.items()})
    return {"setting": setting, "seed": seed, "species_learned": int(learned.sum()), "a2i_map": maps}


def summarise(out: Path, settings: list[str]) -> None:
    """The table, JSON and plot of every finished point; ``difference`` is distillation minus the chain, seed by seed
    (the two methods of a point share the world, the teacher and the student)."""
    points = [p for s in settings for p in sorted((out / "points").glob(f"{s}-seed*.json"))]
    records = [json.loads(p.read_text(encoding="utf-8")) for p in points]
    if not records:
        return
    columns = ["all", *GROUPS.values()]
    rows, summary = [], {}
    for setting in settings:
        mine = [r for r in records if r["setting"] == setting]
        if not mine:
            continue
        summary[setting] = {"seeds": [r["seed"] for r in mine], "species_learned": [r["species_learned"] for r in mine]}
        maps = {m: [r["a2i_map"][m] for r in mine] for m in METHODS}
        maps["difference"] = [{c: d[c] - z[c] for c in d if c in z} for d, z in zip(*maps.values(), strict=True)]
        for m, name in {**METHODS, "difference": "distillation − chain"}.items():
            cells = {c: seed_cell([v[c] for v in maps[m] if c in v]) for c in columns}
            summary[setting][m] = {c: {"values": cell.values, "mean": cell.mean, "sd": cell.sd, "ci": cell.ci}
                                   for c, cell in cells.items() if cell.values}
            rows.append([label(setting), name, str(len(mine)), *(cells[c].text() for c in columns)])
    header = ["vocabulary", "method", "seeds", "A→I MAP", *(f"A→I MAP, {c}" for c in columns[1:])]
    table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2),
                       *("| " + " | ".join(r) + " |" for r in rows)])
    write_text(out / "vocabulary.md", table + "\n\nmean ± sd [95% t interval over seeds], ×100\n")
    write_json(out / "vocabulary.json", {"points": records, "summary": summary})
    plot(out / "vocabulary.png", summary)
    print(table, flush=True)


def plot(path: Path, summary: dict[str, Any]) -> None:
    """Left: A→I MAP of every query; right: of the species whose names were learned (solid) and not (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, groups in zip(axes, (["all"], list(GROUPS.values())), strict=True):
        for i, (m, name) in enumerate(METHODS.items()):
            for g_i, group in enumerate(groups):
                shown = [s for s in settings if group in summary[s][m]]
                cells = [summary[s][m][group] for s in shown]
                means = np.array([c["mean"] for c in cells])
                err = np.array([[c["mean"] - c["ci"][0], c["ci"][1] - c["mean"]] if c["ci"] else [0.0, 0.0]
                                for c in cells]).T
                x = np.array([settings.index(s) for s in shown]) + (2 * i + g_i - 1.5) * 0.05
                ax.errorbar(x, means, yerr=err, marker="o", capsize=4, color=f"C{i}", linestyle=("-", "--")[g_i],
                            label=name if group == "all" else f"{name}, {group}")
                for x_s, c in zip(x, cells, strict=True):
                    ax.scatter(np.full(len(c["values"]), x_s), c["values"], s=10, alpha=0.4, color=f"C{i}")
        ax.set_xticks(range(len(settings)), [label(s) for s in settings])
        ax.set_xlabel("names the stand-in student's text tower learned")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("A→I MAP (×100)")
    axes[0].set_ylim(0, 100)  # MAP's range: a t interval of few seeds may reach past it
    axes[0].set_title("every query")
    axes[1].set_title("names learned (solid) and not (dashed)\nrare: the frequent half and the rare half", fontsize=10)
    fig.suptitle("demo world: mean and 95% t interval over seeds (dots: seeds)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def label(setting: str) -> str:
    if setting == "all":
        return "all"
    if setting == "rare":
        return "rare (long tail)"
    return f"{float(setting):.0%} of species"


if __name__ == "__main__":
    main()
