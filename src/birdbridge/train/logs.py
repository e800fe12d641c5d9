"""Training logs: CSV files (and TensorBoard when it is installed)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class CsvLog:
    """Append rows to a CSV; on resume, rows after the resumed step are dropped first."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if resume_step is not None and path.exists():
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
            if rows:
                self.fields = list(rows[0])
            with open(path, "w", newline="") as fh:
                if self.fields:
                    writer = csv.DictWriter(fh, fieldnames=self.fields)
                    writer.writeheader()
                    writer.writerows(rows)
        elif path.exists():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        new = not self.path.exists() or self.fields is None
        if self.fields is None:
            self.fields = list(row)
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(v) for k, v in row.items()})


class Loggers:
    """Per-step and per-eval CSVs, plus TensorBoard if ``tensorboard`` is importable."""

    def __init__(self, out: Path, resume_step: int | None = None) -> None:
        self.steps = CsvLog(out / "metrics.csv", resume_step)
        self.evals = CsvLog(out / "eval.csv", resume_step)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step)
        except Exception:  # tensorboard is optional
            self.tb = None

    def step(self, row: dict[str, Any]) -> None:
        self.steps.write(row)
        self._tb("train", row)

    def eval(self, row: dict[str, Any]) -> None:
        self.evals.write(row)
        self._tb("eval", row)

    def _tb(self, prefix: str, row: dict[str, Any]) -> None:
        if self.tb is None:
            return
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                self.tb.add_scalar(f"{prefix}/{key}", value, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value
