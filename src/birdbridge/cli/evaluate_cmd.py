"""``birdbridge evaluate``: students and baselines on the paper's metrics (or, on soundscapes, BirdSet's window
metrics and detections), as a table and results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import (
    Device,
    Hop,
    MinConf,
    MinSim,
    RecordedTeacher,
    ResultsJson,
    Sensitivity,
    TrainedModels,
    Window,
    comma_list,
    console,
    console_err,
    report_failures,
)
from birdbridge.models.calibration import DEFAULT_SENSITIVITY
from birdbridge.models.detection import DEFAULT_MIN_CONF, DEFAULT_MIN_SIM


def evaluate_cmd(
    dataset: Annotated[str, typer.Option(
        "--dataset", "-d", help="SSW60, iNatSounds, dataset.yaml (also type: soundscape) or manifest.")],
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
    window: Window = None,
    hop: Hop = None,
    min_conf: MinConf = DEFAULT_MIN_CONF,
    sensitivity: Sensitivity = DEFAULT_SENSITIVITY,
    min_sim: MinSim = DEFAULT_MIN_SIM,
    calibration_split: Annotated[str, typer.Option(
        help="Soundscapes: fit the methods without a calibration on this split, if the dataset has it ('' for "
        "none).")] = "valid",
    background: Annotated[Path | None, typer.Option(
        help="Soundscapes: background vocabulary file, 'label: prompt; prompt' per line (default: built in).")] = None,
    holdout: Annotated[str | None, typer.Option(
        help="Species held out of training, comma-separated: figures for seen and unseen species (default: as the "
        "trained students record them).")] = None,
    output: ResultsJson = Path("results.json"),
    device: Device = None,
) -> None:
    """Evaluate trained students against the paper's baselines on the paper's metrics.

    On a soundscape dataset: cmAP, AUROC, T1 and detection precision, recall, F1 and false alarms per method, on
    the dataset's windows (5 s; --window/--hop override).
    """
    from birdbridge.evaluate.baselines import BASELINES
    from birdbridge.evaluate.report import detection_lines, direction_table, group_table, rank_table, results_table
    from birdbridge.evaluate.results import GROUPS
    from birdbridge.evaluate.runner import EvalSettings, evaluate

    models = dict(_named(m) for m in model or [])
    chosen = BASELINES if baselines == "all" else () if baselines == "none" else tuple(comma_list(baselines))
    settings = EvalSettings(split=split, knn_split=knn_split or None, image_split=image_split, k=k, tau=tau,
                            bootstrap=bootstrap, window_s=window, hop_s=hop, min_conf=min_conf,
                            sensitivity=sensitivity, min_sim=min_sim, calibration_split=calibration_split or None,
                            background=None if background is None else str(background),
                            holdout=tuple(comma_list(holdout)) if holdout else ())
    result = evaluate(models, dataset, teacher=teacher, base_student=base_student, baselines=chosen,
                      settings=settings, device=device)
    console.print(results_table(result, f"{result.dataset.name}: {split} split"))
    tables = [rank_table(result), direction_table(result), group_table(result),
              *(direction_table(result, g) for g in GROUPS if result.holdout)]
    for table in tables:
        if table is not None:
            console.print(table)
    if result.holdout:
        console.print(f"held out of training ({result.holdout.source}): {', '.join(result.holdout.species)}",
                      highlight=False, markup=False, soft_wrap=True)
    for i, line in enumerate(detection_lines(result)):
        console.print(("detections:\n" if i == 0 else "") + f"  {line}", highlight=False, markup=False, soft_wrap=True)
    report_failures(result.failures, "inputs", shown=20)
    if result.failures:
        console_err.print(f"(all listed in {output})", highlight=False)
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
