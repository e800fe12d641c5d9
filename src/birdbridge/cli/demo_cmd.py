"""``birdbridge demo``: the offline end-to-end demonstration on a synthetic world."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from birdbridge.cli.common import DemoOutput, console, console_err

if TYPE_CHECKING:
    from birdbridge.demo.run import DemoSettings


def demo_cmd(
    out: DemoOutput = Path("demo_out"),
    species: Annotated[int, typer.Option("--species", "-n", min=8, help="Number of species (rounded to 8s).")] = 24,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the world and of every training run (with --seeds: "
                                      "the first seed).")] = 0,
    seeds: Annotated[int | None, typer.Option(
        "--seeds", min=1, help="Run the demo on N seeds (--seed .. --seed+N-1), each into OUT/seed<K>/ (a rerun "
        "skips the seeds already complete), and report every figure as mean ± sd with a 95% t interval over them "
        "(OUT/seeds.md, OUT/seeds.json), the orderings that hold on every seed and those that flip.")] = None,
    distill_epochs: Annotated[int, typer.Option(help="Epochs of distillation.")] = 30,
    pivots: Annotated[bool, typer.Option(
        "--pivots", help="Also train image-pivot students (VIP-ANT with random, nearest and multiframe frame "
        "selection, and text + image) on the world's videos, and compare them all in one table.")] = False,
    soundscapes: Annotated[int, typer.Option(
        "--soundscapes", min=0, help="Soundscapes in the world (a share for calibration, the rest for the "
        "soundscape table); a second student is trained with background audio. 0: none.")] = 10,
    holdout: Annotated[float, typer.Option(
        "--holdout", min=0.0, max=0.9, help="Share of the species left out of distillation (seeded by --seed); the "
        "evaluation then reports seen and unseen species apart. 0: none.")] = 0.0,
) -> None:
    """Generate a world, pretrain stand-in models, distil, evaluate against the baselines, report; on soundscapes,
    students trained with and without background audio."""
    from birdbridge.demo.run import DemoSettings, run_demo, summary_lines
    from birdbridge.evaluate.report import detection_lines, group_table, results_table
    from birdbridge.evaluate.results import EvalResult

    settings = DemoSettings(species=species, seed=seed, distill_epochs=distill_epochs, pivots=pivots,
                            soundscapes=soundscapes, holdout=holdout)
    if seeds is not None:
        _several_seeds(out, settings, seeds)
        return
    results = run_demo(out, settings, log=_log)
    evaluation = EvalResult.from_dict(results)
    console.print(results_table(evaluation, "demo world: audio→image retrieval and friends"))
    if (groups := group_table(evaluation)) is not None:
        console.print(groups)
    for line in summary_lines(results):
        console.print(line)
    if pivots:
        console.print("audio→image MAP on this seed, best first: " + " > ".join(results["ordering_a2i_map"]))
    for key, scapes in ((k, EvalResult.from_dict(v)) for k, v in results.get("soundscapes", {}).items()):
        d = scapes.dataset
        console.print(results_table(scapes, f"demo soundscapes: {d.queries} windows of {d.window_s:g} s, "
                                            f"{d.bird_free_windows} bird-free; min-conf {scapes.settings.min_conf:g}"
                                            + (" (default)" if key == "default" else "")))
        if key == "default":
            for line in detection_lines(scapes):
                console.print(line, highlight=False, markup=False)
    for name, rel in results["figures"].items():
        console.print(f"figure: {out / rel} ({name})", highlight=False, markup=False)
    console.print(f"results: {out / 'results.json'}; report: {out / 'report.md'}; "
                  f"student: {out / 'distill' / 'model'}; gallery: {out / 'gallery'}")
    console.print(f"try:  birdbridge search --model {out / 'distill' / 'model'} --gallery {out / 'gallery'} "
                  f"{out / 'world' / 'audio'}")
    console.print(f"      birdbridge serve --model {out / 'distill' / 'model'} --gallery {out / 'gallery'}")
    if not all(results["checks"].values()):
        raise typer.Exit(1)


def _log(message: str) -> None:
    console_err.print(message, highlight=False, markup=False)


def _several_seeds(out: Path, settings: DemoSettings, n: int) -> None:
    from birdbridge.demo.seeds import markdown, run_seeds

    summary = run_seeds(out, settings, n, log=_log)
    console.print(markdown(summary), highlight=False, markup=False, soft_wrap=True)
    console.print(f"per seed: {out}/seed<K>/; over the seeds: {out / 'seeds.md'}, {out / 'seeds.json'}",
                  highlight=False, markup=False)
    if summary["failed"] or not all(check["passed"] for check in summary["checks"].values()):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
