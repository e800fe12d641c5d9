"""Results in the paper's shape: a methods × metrics table on the terminal, and on soundscapes a line per method
on how its detections were made (``results.json``: :meth:`EvalResult.write
<birdbridge.evaluate.results.EvalResult.write>`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich.table import Table

from birdbridge.evaluate.ranks import DIRECTIONS, RANKS, direction_key
from birdbridge.evaluate.results import GROUPS, EvalResult

COLUMNS = [
    ("a2i_map", "A→I MAP"), ("a2i_r1", "A→I R@1"), ("a2i_r5", "R@5"), ("a2i_r10", "R@10"),
    ("i2a_map", "I→A MAP"), ("a2t_map", "A→T MAP"), ("a2t_r1", "A→T R@1"), ("a2t_r5", "A→T R@5"),
    ("zero_shot_top1", "ZS top-1"), ("zero_shot_top5", "ZS top-5"), ("knn_acc", "kNN acc"),
    # soundscapes
    ("cmap", "cmAP"), ("auroc", "AUROC"), ("t1", "T1"), ("precision", "Prec"), ("recall", "Rec"), ("f1", "F1"),
    ("false_alarm_rate", "False alarm"),
]

_ARROWS = {d: f"{d[0].upper()}→{d[-1].upper()}" for d in DIRECTIONS}
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
    return _table(title, [(m.name, m.metrics, m.ci) for m in result.methods.values()], columns)


def group_table(result: EvalResult) -> Table | None:
    """With held-out species: each method's figures on the queries of seen and of unseen species, a row each."""
    rows = [(f"{m.name}: {g}", m.groups[g], {}) for m in result.methods.values() for g in GROUPS if g in m.groups]
    if not rows or result.holdout is None:
        return None
    h = result.holdout
    return _table(f"seen ({h.seen_species} species) and unseen ({h.unseen_species} species held out of training)",
                  rows, [*COLUMNS, *RANK_COLUMNS])


def _table(title: str, rows: Sequence[tuple[str, Mapping[str, float], Mapping[str, tuple[float, float]]]],
           columns: Sequence[tuple[str, str]]) -> Table:
    used = [(key, label) for key, label in columns if any(key in metrics for _, metrics, _ in rows)]
    table = Table(title=title)
    table.add_column("method")
    for _, label in used:
        table.add_column(label, justify="right")
    for name, metrics, cis in rows:
        row = [name]
        for key, _ in used:
            value = metrics.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                row.append("—")
                continue
            ci = cis.get(key)
            row.append(f"{value:.2f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""))
        table.add_row(*row)
    return table


def direction_cells(result: EvalResult, group: str | None = None, figure: str = "map"
                    ) -> tuple[list[str], list[list[str]]] | None:
    """The directions as a compact grid: a column per direction, a row per method (and one for the teacher's
    image↔text ceiling), each cell ``species / genus / family`` (the ranks the taxonomy gives) of ``figure``;
    ``group``: ``seen`` or ``unseen``. None when there are no directions (soundscapes)."""
    named = [(m.name, m.groups.get(group, {}) if group else m.directions) for m in result.methods.values()]
    named.append(("teacher alone (ceiling)", result.teacher_groups.get(group, {}) if group
                  else result.teacher_directions))
    ranks = [r for r in RANKS if any(direction_key(d, r, figure) in f for _, f in named for d in DIRECTIONS)]
    named = [(name, f) for name, f in named if any(direction_key(d, r, figure) in f for d in DIRECTIONS for r in ranks)]
    directions = [d for d in DIRECTIONS if any(direction_key(d, r, figure) in f for _, f in named for r in ranks)]
    if not directions:
        return None

    def cell(figures: Mapping[str, float], direction: str) -> str:
        values = [figures.get(direction_key(direction, r, figure), math.nan) for r in ranks]
        return "—" if all(math.isnan(v) for v in values) else " / ".join(
            "—" if math.isnan(v) else f"{v:.1f}" for v in values)

    header = ["method", *(f"{_ARROWS[d]} {figure.upper() if figure == 'map' else 'R@1'}" for d in directions)]
    rows = [[name, *(cell(figures, d) for d in directions)] for name, figures in named]
    return [header[0] + f" ({' / '.join(ranks)})", *header[1:]], rows


def direction_table(result: EvalResult, group: str | None = None) -> Table | None:
    """:func:`direction_cells` (MAP) as a terminal table."""
    cells = direction_cells(result, group)
    if cells is None:
        return None
    header, rows = cells
    table = Table(title="every direction, relevance at each rank" + (f": {group} species" if group else ""))
    for i, label in enumerate(header):
        table.add_column(label, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def detection_lines(result: EvalResult) -> list[str]:
    """``method: rule`` for each method whose detections were made by a rule (soundscapes), in table order."""
    return [f"{m.name}: {m.detection.describe()}" for m in result.methods.values() if m.detection is not None]
