"""``birdbridge evaluate``: students and baselines on the paper's metrics, as a table and results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import (
    Device,
    RecordedTeacher,
    ResultsJson,
    TrainedModels,
    comma_list,
    console,
    console_err,
)


def evaluate_cmd(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="SSW60, iNatSounds, dataset.yaml or manifest.")],
    model: TrainedModels = None,
    baselines: Annotated[str, typer.Option(
        help="Comma-separated: random, mapping, chain, undistilled; all; none.")] = "all",
    teacher: RecordedTeacher = None,
    base_student: Annotated[str | None, typer.Option(
        help="Undistilled student for baselines (default: recorded).")] = None,
    split: Annotated[str, typer.Option(help="Audio split used as queries.")] = "test",
    knn_split: Annotated[str, typer.Option(help="Audio split used as kNN references ('' for none).")] = "train",
    image_split: Annotated[str | None, typer.Option(help="Only pictures of this split (default: all).")] = None,
    k: Annotated[int, typer.Option(help="kNN neighbours.")] = 20,
    tau: Annotated[float, typer.Option(help="kNN temperature: neighbours vote with exp(sim/tau).")] = 0.07,
    bootstrap: Annotated[int, typer.Option(
        help="Bootstrap resamples for 95% confidence intervals (0: none).")] = 1000,
    output: ResultsJson = Path("results.json"),
    device: Device = None,
) -> None:
    """Evaluate trained students against the paper's baselines on the paper's metrics."""
    from birdbridge.evaluate.baselines import BASELINES
    from birdbridge.evaluate.report import results_table
    from birdbridge.evaluate.runner import EvalSettings, evaluate

    models = dict(_named(m) for m in model or [])
    chosen = BASELINES if baselines == "all" else () if baselines == "none" else tuple(comma_list(baselines))
    settings = EvalSettings(split=split, knn_split=knn_split or None, image_split=image_split, k=k, tau=tau,
                            bootstrap=bootstrap)
    result = evaluate(models, dataset, teacher=teacher, base_student=base_student, baselines=chosen,
                      settings=settings, device=device)
    console.print(results_table(result, f"{result.dataset.name}: {split} split"))
    if result.failures:
        console_err.print(f"[yellow]skipped {len(result.failures)} unreadable inputs (listed in {output})[/]")
    result.write(output)
    console_err.print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)


def _named(spec: str) -> tuple[str, str]:
    """``NAME=PATH`` -> (NAME, PATH); a bare PATH is named after its folder."""
    name, sep, path = spec.partition("=")
    if sep and name and not Path(spec).exists():
        return name, path
    return Path(spec).name if Path(spec).exists() else spec, spec
