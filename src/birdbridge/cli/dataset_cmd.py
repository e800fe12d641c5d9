"""``birdbridge dataset info``: what a dataset folder, descriptor or manifest holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import console

app = typer.Typer(
    no_args_is_help=True, help="Inspect datasets: SSW60, iNatSounds, dataset.yaml descriptors, manifests."
)

SHOWN_PROBLEMS = 20
PATH_HELP = "Dataset folder, dataset.yaml, iNatSounds JSON, or manifest (.csv, .tsv, .parquet)."


@app.command("info")
def info_cmd(
    path: Annotated[Path, typer.Argument(help=PATH_HELP)],
    check_files: Annotated[bool, typer.Option(
        "--check-files", help="Also list missing or empty files (exit status 1 if there are any).")] = False,
) -> None:
    """Print the species and the item counts per modality and split."""
    from birdbridge.datasets import MODALITIES, load_dataset

    dataset = load_dataset(path)
    console.print(dataset.summary(), highlight=False, markup=False, soft_wrap=True)
    if not check_files:
        return
    problems = dataset.check_files()
    total = sum(len(getattr(dataset, m)) for m in MODALITIES)
    console.print()
    if not problems:
        console.print(f"all {total:,} files present", highlight=False)
        return
    console.print(f"[yellow]{len(problems):,} of {total:,} files have problems:[/]", highlight=False)
    for file, problem in problems[:SHOWN_PROBLEMS]:
        console.print(f"  {problem}: {file}", highlight=False, markup=False, soft_wrap=True)
    if len(problems) > SHOWN_PROBLEMS:
        console.print(f"  ... and {len(problems) - SHOWN_PROBLEMS:,} more", highlight=False)
    raise typer.Exit(1)
