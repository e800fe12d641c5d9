"""``birdbridge calibrate``: fit and store a trained student's similarity → confidence map."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import (
    BatchSize,
    Device,
    Forms,
    Hop,
    Model,
    RecordedTeacher,
    Templates,
    Window,
    comma_list,
    console,
    console_err,
    report_failures,
)


def calibrate_cmd(
    model: Model,
    dataset: Annotated[str, typer.Option(
        "--dataset", "-d", help="Labelled audio: SSW60, iNatSounds, dataset.yaml (also type soundscape) or manifest.")],
    split: Annotated[str, typer.Option(help="The split to fit on (one the model did not train on).")] = "val",
    teacher: RecordedTeacher = None,
    forms: Forms = "taxonomic_common",
    templates: Templates = "openai",
    background: Annotated[Path | None, typer.Option(
        help="Non-bird recordings (a folder of class folders, or a CSV: path, label[, split]); their clips of the "
        "split, and those without one, are windows without birds.")] = None,
    background_vocabulary: Annotated[Path | None, typer.Option(
        help="Background classes file (label: prompt; prompt) for --background's labels (default: built-in).")] = None,
    window: Window = None,
    hop: Hop = None,
    batch_size: BatchSize = 16,
    device: Device = None,
) -> None:
    """Fit the model's similarity → confidence map on a labelled split and store it (calibration.json)."""
    from birdbridge.evaluate.calibrate import calibrate
    from birdbridge.species.background import load_background_vocabulary

    vocabulary = load_background_vocabulary(background_vocabulary) if background_vocabulary else None
    report = calibrate(model, dataset, split=split, teacher=teacher, forms=comma_list(forms), templates=templates,
                       background=background, background_vocabulary=vocabulary, window_s=window, hop_s=hop,
                       batch_size=batch_size, device=device)
    report_failures(report.failures, "unreadable inputs", shown=10)
    for line in report.lines():
        console.print(line, highlight=False, markup=False)
    console_err.print(f"wrote {report.path}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_cmd)
