"""Experiments from one file: a grid of ``birdbridge train --set`` overrides, each run trained and evaluated, and
one comparison table (``comparison.md``, ``comparison.json``) with confidence intervals."""

from __future__ import annotations

from birdbridge.utils.lazy import lazy_exports

_EXPORTS = {
    "Grid": "birdbridge.experiment.grid",
    "Run": "birdbridge.experiment.grid",
    "load_grid": "birdbridge.experiment.grid",
    "ExperimentResult": "birdbridge.experiment.runner",
    "run_experiment": "birdbridge.experiment.runner",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
