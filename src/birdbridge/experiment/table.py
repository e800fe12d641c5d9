"""The comparison of an experiment's runs: one row per run (its seeds together), one column per headline metric.

A row of several seeds gives each metric's mean, standard deviation and a 95% Student-t interval over the seeds
(the spread of training, which is what an ablation asks about); a row of one seed gives the figure and the
evaluator's 95% bootstrap interval over queries. Baselines (evaluated once) are rows of one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from birdbridge.evaluate.report import COLUMNS
from birdbridge.evaluate.results import GROUPS, EvalResult, MethodResult

# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal's 1.96)
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
SEEDS_CI = "95% t interval over seeds"
# with held-out species, these figures again on the queries of seen and of unseen species (keys "a2i_map/unseen")
GROUP_COLUMNS = [(f"{key}/{group}", f"{label} {group}") for group in GROUPS
                 for key, label in (("a2i_map", "A→I MAP"), ("zero_shot_top1", "ZS top-1"), ("knn_acc", "kNN acc"))]
BOOTSTRAP_CI = "95% bootstrap interval over queries"


@dataclass
class Cell:
    """One metric of one row: the mean over ``values`` (one per seed), their standard deviation (None for one
    value) and a 95% interval (``ci_kind`` says which)."""

    values: list[float]
    mean: float
    sd: float | None
    ci: tuple[float, float] | None
    ci_kind: str | None

    def text(self) -> str:
        if math.isnan(self.mean):
            return "—"
        spread = f" ± {self.sd:.2f}" if self.sd is not None else ""
        interval = f" [{self.ci[0]:.1f}, {self.ci[1]:.1f}]" if self.ci else ""
        return f"{self.mean:.2f}{spread}{interval}"


@dataclass
class Row:
    name: str
    kind: str  # run | baseline
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    results: list[str] = field(default_factory=list)  # the results.json files behind the row
    cells: dict[str, Cell] = field(default_factory=dict)


def seed_cell(values: list[float], bootstrap: tuple[float, float] | None = None) -> Cell:
    """A metric over seeds: mean, sd (ddof 1) and the t interval for two or more; else the value and ``bootstrap``."""
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < 2:
        value = finite[0] if finite else math.nan
        return Cell(values, value, None, bootstrap, BOOTSTRAP_CI if bootstrap else None)
    mean, sd = float(np.mean(finite)), float(np.std(finite, ddof=1))
    half = (_T95[len(finite) - 2] if len(finite) - 1 <= len(_T95) else 1.96) * sd / math.sqrt(len(finite))
    return Cell(values, mean, sd, (mean - half, mean + half), SEEDS_CI)


def run_row(name: str, overrides: dict[str, Any], seeds: list[int], results: list[tuple[str, EvalResult]]) -> Row:
    """A run's row from the results of its seeds (the trained model's method in each)."""
    methods = [result.method("distilled") for _, result in results]
    return _row(Row(name, "run", overrides, seeds, [path for path, _ in results]), methods)


def baseline_rows(path: str, result: EvalResult) -> list[Row]:
    """One row per baseline of a baselines-only evaluation."""
    return [_row(Row(m.name, "baseline", results=[path]), [m]) for m in result.methods.values()]


def _row(row: Row, methods: list[MethodResult]) -> Row:
    for key, _ in COLUMNS:
        if any(key in m.metrics for m in methods):
            values = [m.metrics.get(key, math.nan) for m in methods]
            row.cells[key] = seed_cell(values, methods[0].ci.get(key) if len(methods) == 1 else None)
    for column, _ in GROUP_COLUMNS:
        key, group = column.split("/")
        if any(key in m.groups.get(group, {}) for m in methods):
            row.cells[column] = seed_cell([m.groups.get(group, {}).get(key, math.nan) for m in methods])
    return row


def columns(rows: list[Row]) -> list[tuple[str, str]]:
    """The headline metrics (:data:`birdbridge.evaluate.report.COLUMNS`, then :data:`GROUP_COLUMNS`) any row has."""
    return [(key, label) for key, label in [*COLUMNS, *GROUP_COLUMNS] if any(key in r.cells for r in rows)]


def markdown(rows: list[Row], title: str, notes: list[str] = ()) -> str:
    """The comparison as a Markdown table, with what its cells mean."""
    used = columns(rows)
    lines = [f"# {title}", "", "×100. Several seeds: mean ± sd [" + SEEDS_CI + "]; one seed or a baseline: value ["
             + BOOTSTRAP_CI + "].", ""]
    lines += ["| run | seeds | " + " | ".join(label for _, label in used) + " |", "|---|---|" + "---:|" * len(used)]
    for r in rows:
        seeds = ", ".join(map(str, r.seeds)) if r.kind == "run" else "baseline"
        lines.append(f"| {r.name} | {seeds} | " + " | ".join(r.cells[k].text() if k in r.cells else "—"
                                                            for k, _ in used) + " |")
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else [])) + "\n"


def as_json(rows: list[Row]) -> dict[str, Any]:
    """The rows as ``comparison.json``'s ``metrics`` and ``rows``."""
    return {
        "metrics": dict(columns(rows)),
        "rows": [{"name": r.name, "kind": r.kind, "overrides": r.overrides, "seeds": r.seeds, "results": r.results,
                  "metrics": {k: {"mean": c.mean, "sd": c.sd, "ci": list(c.ci) if c.ci else None,
                                  "ci_kind": c.ci_kind, "n": sum(not math.isnan(v) for v in c.values),
                                  "values": c.values} for k, c in r.cells.items()}} for r in rows],
    }
