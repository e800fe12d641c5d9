"""The ``birdbridge`` command: one Typer app, one module per feature."""

from __future__ import annotations

import sys

import typer

from birdbridge.cli import (
    archive_cmd,
    calibrate_cmd,
    dataset_cmd,
    demo_cmd,
    embed_cmd,
    evaluate_cmd,
    experiment_cmd,
    index_cmd,
    models_cmd,
    search_cmd,
    segments_cmd,
    serve_cmd,
    species_cmd,
    train_cmd,
)
from birdbridge.cli.common import console_err, ray_address_given, set_command_line

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="birdbridge: recognise birds across sound, text and pictures.",
)
models_cmd.register(app)
train_cmd.register(app)
evaluate_cmd.register(app)
experiment_cmd.register(app)
calibrate_cmd.register(app)
demo_cmd.register(app)
index_cmd.register(app)
search_cmd.register(app)
segments_cmd.register(app)
species_cmd.register(app)
serve_cmd.register(app)
archive_cmd.register(app)
app.add_typer(embed_cmd.app, name="embed")
app.add_typer(dataset_cmd.app, name="dataset")
app.add_typer(index_cmd.gallery_app, name="gallery")


def _click_exceptions() -> tuple[type[BaseException], ...]:
    """Usage errors' base classes: click's own, and the copy of click that newer typer bundles."""
    import click

    kinds: list[type[BaseException]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as TyperClickException  # typer >= 0.24 bundles click
    except ImportError:  # pragma: no cover - older typer uses click itself
        pass
    else:
        kinds.append(TyperClickException)
    return tuple(kinds)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one clear message (no traceback) and exit with status 1."""
    from rich.markup import escape

    from birdbridge.errors import BirdbridgeError

    argv = ray_address_given(sys.argv[1:] if argv is None else argv)
    set_command_line(argv)
    try:
        code = app(args=argv, standalone_mode=False)  # a typer.Exit comes back as its code here
    except BirdbridgeError as exc:
        console_err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console_err.print("[yellow]interrupted[/]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        if isinstance(exc, _click_exceptions()):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)
