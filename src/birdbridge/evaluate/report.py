"""Results in the paper's shape: a methods × metrics table on the terminal, and ``results.json``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.table import Table

from birdbridge.utils.atomic import write_json

COLUMNS = [
    ("a2i_map", "A→I MAP"), ("a2i_r1", "A→I R@1"), ("a2i_r5", "R@5"), ("a2i_r10", "R@10"),
    ("i2a_map", "I→A MAP"), ("a2t_map", "A→T MAP"), ("a2t_r1", "A→T R@1"), ("a2t_r5", "A→T R@5"),
    ("zero_shot_top1", "ZS top-1"), ("zero_shot_top5", "ZS top-5"), ("knn_acc", "kNN acc"),
]


def results_table(results: dict[str, Any], title: str = "birdbridge evaluation") -> Table:
    methods: dict[str, dict[str, float]] = results["methods"]
    cis: dict[str, dict[str, list[float]]] = results.get("ci", {})
    used = [(key, label) for key, label in COLUMNS if any(key in m for m in methods.values())]
    table = Table(title=title)
    table.add_column("method")
    for _, label in used:
        table.add_column(label, justify="right")
    for name, metrics in methods.items():
        row = [name]
        for key, _ in used:
            value = metrics.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                row.append("—")
                continue
            ci = cis.get(name, {}).get(key)
            row.append(f"{value:.2f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""))
        table.add_row(*row)
    return table


def write_results(path: str | Path, results: dict[str, Any]) -> Path:
    path = Path(path)
    write_json(path, results)
    return path
