"""``birdbridge experiment GRID.yaml``: train and evaluate a grid of runs, and write one comparison table."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import console, console_err, report_failures


def experiment_cmd(
    grid: Annotated[Path, typer.Argument(help="Grid file (see configs/ablation_prompts.yaml).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the grid and list its runs; run nothing.")
                       ] = False,
) -> None:
    """Run a grid of `birdbridge train --set` overrides, evaluate every run, and compare them in one table.

    Writes OUTPUT/comparison.md and OUTPUT/comparison.json. Running it again skips the finished runs.
    """
    from birdbridge.experiment.grid import load_grid
    from birdbridge.experiment.runner import finished, run_experiment

    loaded = load_grid(grid)
    if dry_run:
        for run in loaded.runs:
            state = "finished" if finished(run.folder, loaded) else "to run"
            console.print(f"{run.id}  ({state})  " + " ".join(f"--set {shlex.quote(s)}" for s in run.set_args()),
                          highlight=False, markup=False, soft_wrap=True)
        return
    result = run_experiment(loaded, on_run=lambda run, status: console_err.print(f"{run}: {status}",
                                                                                 highlight=False, markup=False))
    console.print(result.markdown.read_text(encoding="utf-8"), highlight=False, markup=False, soft_wrap=True)
    console_err.print(f"{len(result.ran)} run(s) done now, {len(result.skipped)} skipped as finished; "
                      f"wrote {result.markdown} and {result.json}", highlight=False)
    if result.failures:
        report_failures(result.failures, "runs (they failed)")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("experiment")(experiment_cmd)
