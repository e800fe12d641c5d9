"""Results in the paper's shape: a methods × metrics table on the terminal, and on soundscapes a line per method
on how its detections were made (``results.json``: :meth:`EvalResult.write
<birdbridge.evaluate.results.EvalResult.write>`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.table import Table

from birdbridge.evaluate.results import EvalResult

COLUMNS = [
    ("a2i_map", "A→I MAP"), ("a2i_r1", "A→I R@1"), ("a2i_r5", "R@5"), ("a2i_r10", "R@10"),
    ("i2a_map", "I→A MAP"), ("a2t_map", "A→T MAP"), ("a2t_r1", "A→T R@1"), ("a2t_r5", "A→T R@5"),
    ("zero_shot_top1", "ZS top-1"), ("zero_shot_top5", "ZS top-5"), ("knn_acc", "kNN acc"),
    # soundscapes
    ("cmap", "cmAP"), ("auroc", "AUROC"), ("t1", "T1"), ("precision", "Prec"), ("recall", "Rec"), ("f1", "F1"),
    ("false_alarm_rate", "False alarm"),
]

RANK_COLUMNS = [  # the same figures at genus and family rank (birdbridge.evaluate.ranks): a table of their own
    ("a2i_map_genus", "A→I MAP genus"), ("a2i_map_family", "A→I MAP family"),
    ("zero_shot_top1_genus", "ZS top-1 genus"), ("zero_shot_top1_family", "ZS top-1 family"),
]


def rank_table(result: EvalResult) -> Table | None:
    """The figures at genus and family rank (:data:`RANK_COLUMNS`); None when no method has any (soundscapes)."""
    if not any(key in m.metrics for m in result.methods.values() for key, _ in RANK_COLUMNS):
        return None
    return results_table(result, "the same at genus and family rank", RANK_COLUMNS)


def results_table(result: EvalResult, title: str = "birdbridge evaluation",
                  columns: Sequence[tuple[str, str]] = COLUMNS) -> Table:
    """One row per method (by display name), one column per metric of ``columns`` any method has, with 95%
    intervals."""
    methods = list(result.methods.values())
    used = [(key, label) for key, label in columns if any(key in m.metrics for m in methods)]
    table = Table(title=title)
    table.add_column("method")
    for _, label in used:
        table.add_column(label, justify="right")
    for method in methods:
        row = [method.name]
        for key, _ in used:
            value = method.metrics.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                row.append("—")
                continue
            ci = method.ci.get(key)
            row.append(f"{value:.2f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""))
        table.add_row(*row)
    return table


def detection_lines(result: EvalResult) -> list[str]:
    """``method: rule`` for each method whose detections were made by a rule (soundscapes), in table order."""
    return [f"{m.name}: {m.detection.describe()}" for m in result.methods.values() if m.detection is not None]
