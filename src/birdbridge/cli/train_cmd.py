"""``birdbridge train CONFIG [--set key=value ...]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import console_err


def train_cmd(
    config: Annotated[Path | None, typer.Argument(help="YAML training config (see configs/distill.yaml).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a setting: --set optim.lr=3e-5")
                    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore existing checkpoints in the output folder.")] = False,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")] = False,
) -> None:
    """Distil the teacher's text space into the student (resumes from the output's last checkpoint).

    Data-parallel: torchrun --nproc_per_node N -m birdbridge train CONFIG
    """
    from birdbridge.train.config import dump_config, load_config
    from birdbridge.train.loop import train

    cfg = load_config(config, set_ or [])
    if print_config:
        print(dump_config(cfg))
        return
    result = train(cfg, fresh=fresh)
    if result.resumed_from is not None:
        console_err.print(f"resumed from step {result.resumed_from}")
    console_err.print(f"trained {result.steps} steps in {result.seconds:.0f} s; final loss {result.loss:.4f}")
    console_err.print(f"student written to {result.model}  (use it with --model {result.model})")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
