"""Running a grid: train and evaluate every run that has not finished, then write the comparison.

A run's folder (``OUTPUT/NAME/seedN``) is its training output; ``results.json`` is its evaluation and
``done.json``, written last and atomically, marks it finished (with how it was evaluated). A rerun skips finished
runs, re-evaluates (without training) those evaluated with other settings, and resumes an unfinished training from
its last checkpoint. A failed run is reported; the others go on.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from birdbridge.errors import BirdbridgeError, Failure, InputError
from birdbridge.evaluate.results import EvalResult
from birdbridge.evaluate.runner import evaluate
from birdbridge.experiment.grid import Grid, Run, load_grid
from birdbridge.experiment.table import Row, as_json, baseline_rows, markdown, run_row
from birdbridge.train.loop import train
from birdbridge.utils.atomic import json_text, write_json, write_text
from birdbridge.utils.clock import now_iso

DONE = "done.json"
RESULTS = "results.json"
BASELINES = "baselines"


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` did: runs trained or evaluated now, runs skipped as finished, failures, the
    table's rows and the files written."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    markdown: Path | None = None
    json: Path | None = None


def run_experiment(grid: Grid | str | os.PathLike[str], *, on_run: Callable[[str, str], None] | None = None
                   ) -> ExperimentResult:
    """Train and evaluate every unfinished run of ``grid`` (a grid file or a loaded :class:`Grid`), then write
    ``OUTPUT/comparison.md`` and ``OUTPUT/comparison.json``. ``on_run(run, status)`` hears each run's progress
    (``skipped``, ``training``, ``evaluating``, ``done``, ``failed``)."""
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    _check_finished_match(grid)
    say = on_run or (lambda run, status: None)
    out = ExperimentResult()
    evaluation = _evaluation_record(grid)
    jobs: list[tuple[str, Path, Callable[[dict[str, Any] | None], dict[str, Any]]]] = [
        (run.id, run.folder, lambda done, run=run: _train_and_evaluate(run, grid, done)) for run in grid.runs]
    if grid.evaluation.baselines:
        jobs.append((BASELINES, grid.output / BASELINES, lambda done: _evaluate_baselines(grid)))
    for job_id, folder, job in jobs:
        done = done_marker(folder)
        if done is not None and done.get("evaluation") == evaluation:
            out.skipped.append(job_id)
            say(job_id, "skipped")
            continue
        say(job_id, "evaluating" if done is not None or job_id == BASELINES else "training")
        try:
            record = job(done)
        except Exception as exc:  # a failed run is reported, the others go on
            message = str(exc) if isinstance(exc, BirdbridgeError) else (
                f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}")
            out.failures.append(Failure(job_id, message))
            say(job_id, "failed")
            continue
        write_json(folder / DONE, {**record, "evaluation": evaluation, "finished": now_iso()})
        out.ran.append(job_id)
        say(job_id, "done")
    out.rows = comparison_rows(grid)
    out.json, out.markdown = grid.output / "comparison.json", grid.output / "comparison.md"
    missing = [run.id for run in grid.runs if not finished(run.folder, grid)]
    write_json(out.json, {"grid": str(grid.path), "config": str(grid.config), "dataset": grid.evaluation.dataset,
                          "split": grid.evaluation.settings.split, **as_json(out.rows), "missing": missing,
                          "failures": [f.as_json() for f in out.failures]})
    notes = [f"dataset {grid.evaluation.dataset}, split {grid.evaluation.settings.split}; grid {grid.path}"]
    notes += [f"not finished: {', '.join(missing)}"] if missing else []
    write_text(out.markdown, markdown(out.rows, f"Experiment {grid.path.stem}", notes))
    return out


def done_marker(folder: Path) -> dict[str, Any] | None:
    """A run's done marker, when its folder also holds a readable ``results.json``; else None."""
    try:
        marker = json.loads((folder / DONE).read_text(encoding="utf-8"))
        _results(folder)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return marker if isinstance(marker, dict) else None


def finished(folder: Path, grid: Grid | None = None) -> bool:
    """Whether a run's folder holds its done marker and a readable ``results.json`` (evaluated as ``grid`` says)."""
    marker = done_marker(folder)
    return marker is not None and (grid is None or marker.get("evaluation") == _evaluation_record(grid))


def comparison_rows(grid: Grid) -> list[Row]:
    """The table's rows from the finished runs' ``results.json`` (a run's seeds together), then the baselines."""
    rows = []
    for name in dict.fromkeys(run.name for run in grid.runs):
        runs = [run for run in grid.runs if run.name == name and finished(run.folder, grid)]
        if runs:
            rows.append(run_row(name, runs[0].overrides, [run.seed for run in runs],
                                [(str(run.folder / RESULTS), _results(run.folder)) for run in runs]))
    folder = grid.output / BASELINES
    if grid.evaluation.baselines and finished(folder, grid):
        rows += baseline_rows(str(folder / RESULTS), _results(folder))
    return rows


def _results(folder: Path) -> EvalResult:
    return EvalResult.from_dict(json.loads((folder / RESULTS).read_text(encoding="utf-8")))


def _marker(run: Run) -> dict[str, Any]:
    """What a run's done marker records of its definition (compared on a rerun)."""
    return json.loads(json_text({"run": run.id, "overrides": run.overrides, "seed": run.seed}))


def _evaluation_record(grid: Grid) -> dict[str, Any]:
    """How runs are evaluated, as their done markers record it: a change re-evaluates them (without training)."""
    e = grid.evaluation
    return json.loads(json_text({"dataset": e.dataset, "baselines": e.baselines, "settings": asdict(e.settings)}))


def _check_finished_match(grid: Grid) -> None:
    """Refuse (before any run starts) a finished run folder whose marker records other settings than the grid's."""
    for run in grid.runs:
        saved = done_marker(run.folder)
        expected = _marker(run)
        if saved is not None and {k: saved.get(k) for k in expected} != expected:
            raise InputError(str(grid.path), f"run {run.id}: {run.folder} holds a finished run with other settings "
                             f"({saved.get('overrides')})", "move that folder away, or give the run another name")


def _train_and_evaluate(run: Run, grid: Grid, done: dict[str, Any] | None) -> dict[str, Any]:
    """Train the run (unless ``done`` says it was trained) and evaluate it; the done marker's record."""
    trained = None if done is not None else train(run.config)
    model = Path(done["model"]) if trained is None else trained.model
    e = grid.evaluation
    result = evaluate({run.id: model}, e.dataset, baselines=(), settings=e.settings, device=e.device,
                      progress=run.config.run.progress)
    result.write(run.folder / RESULTS)
    if trained is None:
        return {k: v for k, v in done.items() if k not in ("evaluation", "finished")}
    return {**_marker(run), "set": run.set_args(), "model": str(trained.model), "steps": trained.steps,
            "loss": trained.loss, "seconds": trained.seconds}


def _evaluate_baselines(grid: Grid) -> dict[str, Any]:
    e = grid.evaluation
    result = evaluate({}, e.dataset, teacher=grid.base.teacher, base_student=grid.base.student,
                      baselines=e.baselines, settings=e.settings, device=e.device, progress=grid.base.run.progress)
    result.write(grid.output / BASELINES / RESULTS)
    return {"run": BASELINES}
