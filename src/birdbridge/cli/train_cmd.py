"""``birdbridge train CONFIG [--set key=value ...]``."""

from __future__ import annotations

from pathlib import Path

import typer

from birdbridge.cli.common import console_err


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: Path | None = typer.Argument(None, help="YAML training config (see configs/distill.yaml)."),
        set_: list[str] = typer.Option([], "--set", "-s", help="Override a setting: --set optim.lr=3e-5"),
        fresh: bool = typer.Option(False, "--fresh", help="Ignore existing checkpoints in the output folder."),
        print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
    ) -> None:
        """Distil the teacher's text space into the student (resumes from the output's last checkpoint).

        Data-parallel: torchrun --nproc_per_node N -m birdbridge train CONFIG
        """
        from birdbridge.train.config import dump_config, load_config
        from birdbridge.train.loop import train

        cfg = load_config(config, set_)
        if print_config:
            print(dump_config(cfg))
            return
        result = train(cfg, fresh=fresh)
        if result.resumed_from is not None:
            console_err.print(f"resumed from step {result.resumed_from}")
        console_err.print(f"trained {result.steps} steps in {result.seconds:.0f} s; final loss {result.loss:.4f}")
        console_err.print(f"student written to {result.model}  (use it with --model {result.model})")
