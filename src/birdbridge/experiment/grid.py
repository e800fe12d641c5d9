"""A grid file: a base training config, runs as ``--set`` overrides (a product of axes or a named list), seeds, and
how every run is evaluated; expanded into runs whose configs are all checked before any of them starts.

.. code-block:: yaml

    config: distill.yaml         # the base training config (relative to this file)
    output: runs/ablation        # one folder per run: OUTPUT/NAME/seedN
    set: {run.epochs: 5}         # overrides every run shares (optional)
    seeds: [0, 1, 2]             # an axis of its own (default: the config's run.seed)
    grid: {optim.lr: [1.0e-4, 3.0e-5], head.type: [linear, mlp]}   # every combination, or ...
    runs: [{name: common, set: {prompts.mix: {common: 1}}}]        # ... runs by name
    evaluate: {dataset: /data/ssw60, split: test, baselines: [random, mapping]}  # and any EvalSettings field
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from birdbridge.errors import InputError
from birdbridge.evaluate.baselines import BASELINES
from birdbridge.evaluate.settings import EvalSettings
from birdbridge.train.config import TrainConfig, config_from, read_yaml_mapping

KEYS = ("config", "output", "set", "seeds", "grid", "runs", "evaluate")
RESERVED = {"output": "the grid's output names every run's folder", "run.seed": "give seeds as `seeds: [0, 1, 2]`"}
_NAME = re.compile(r"[A-Za-z0-9._+=-]+")
_MAX_NAME = 100


@dataclass(frozen=True)
class Run:
    """One training and its evaluation: ``name`` (shared by its seeds), the grid's ``overrides`` (key -> value,
    without ``output`` and ``run.seed``), the seed, and the checked config (its ``output`` is ``folder``)."""

    name: str
    overrides: dict[str, Any]
    seed: int
    folder: Path
    config: TrainConfig

    @property
    def id(self) -> str:
        return f"{self.name}/seed{self.seed}"

    def set_args(self) -> list[str]:
        """The run as ``birdbridge train`` overrides (``--set`` values), its folder and seed included."""
        return [*(f"{k}={_yaml_value(v)}" for k, v in self.overrides.items()), f"output={self.folder}",
                f"run.seed={self.seed}"]


@dataclass
class Evaluation:
    """How every run is evaluated: the dataset (default: the base config's ``data.dataset``), the baselines
    (evaluated once, beside the runs) and the evaluator's settings."""

    dataset: str
    baselines: tuple[str, ...] = ()
    settings: EvalSettings = field(default_factory=EvalSettings)
    device: str | None = None


@dataclass
class Grid:
    path: Path
    config: Path
    output: Path
    runs: list[Run]
    evaluation: Evaluation
    base: TrainConfig  # the base config with the shared overrides (teacher and student of the baselines)


def load_grid(path: str | os.PathLike[str]) -> Grid:
    """Read and expand a grid file, and check every run's config (an unknown key is an error naming it and the
    run) and the evaluation settings, so that a bad grid fails before any run starts."""
    path = Path(path)
    raw = read_yaml_mapping(path, "grid file", "(config, output, grid or runs, ...)")
    src = str(path)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise InputError(src, f"unknown key(s) {', '.join(map(str, unknown))}", f"valid keys: {', '.join(KEYS)}")
    for key in ("config", "output"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise InputError(src, f"{key}: is required (a path)")
    config = Path(raw["config"]) if Path(raw["config"]).is_absolute() else path.parent / raw["config"]
    output = Path(raw["output"])
    shared = _overrides(raw.get("set") or {}, src, "set")
    try:
        base_raw = read_yaml_mapping(config, "config file", "of sections")  # read once: checked for every run
    except InputError as exc:
        raise InputError(src, f"config: {exc}") from None
    base = _checked(config, base_raw, shared, src, "set")
    seeds = _seeds(raw.get("seeds"), src, base.run.seed)
    points = _points(raw, src)
    runs = []
    folders: dict[Path, str] = {}
    for name, point in points:
        overrides = {**shared, **point}
        for seed in seeds:
            folder = output / name / f"seed{seed}"
            run_id = f"{name}/seed{seed}"
            if folder in folders:
                raise InputError(src, f"runs {folders[folder]} and {run_id} would share the folder {folder}",
                                 "give them names (runs: [{name: ..., set: {...}}])")
            folders[folder] = run_id
            cfg = _checked(config, base_raw, {**overrides, "output": str(folder), "run.seed": seed}, src,
                           f"run {run_id}")
            runs.append(Run(name, overrides, seed, folder, cfg))
    return Grid(path, config, output, runs, _evaluation(raw.get("evaluate") or {}, src, base), base)


def run_name(point: dict[str, Any]) -> str:
    """A folder name from a run's overrides: ``key=value`` joined by ``__``, in the grid's key order. A name that
    needs other characters, or is too long, is shortened and ends in a hash of the overrides (still stable)."""
    if not point:
        return "base"
    text = "__".join(f"{k}={_short(v)}" for k, v in point.items())
    if _NAME.fullmatch(text) and len(text) <= _MAX_NAME:
        return text
    digest = hashlib.sha1(json.dumps(point, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", text)[: _MAX_NAME - 9] + "-" + digest


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "+".join(f"{k}-{_short(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "+".join(_short(v) for v in value)
    return _yaml_value(value)


def _yaml_value(value: Any) -> str:
    """A value as ``--set`` parses it back (YAML flow style; strings plain where YAML reads them as strings)."""
    if isinstance(value, str):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _overrides(raw: Any, src: str, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InputError(src, f"{where}: expected a mapping of setting -> value, got {raw!r}")
    for key in raw:
        if key in RESERVED:
            raise InputError(src, f"{where}: {key} may not be set in a grid", RESERVED[key])
    return {str(k): v for k, v in raw.items()}


def _points(raw: dict[str, Any], src: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, overrides) of every point of the grid (before seeds)."""
    if "grid" in raw and "runs" in raw:
        raise InputError(src, "give either grid (a product of axes) or runs (a list), not both")
    if "runs" in raw:
        runs = raw["runs"]
        if not isinstance(runs, list) or not runs:
            raise InputError(src, "runs: expected a list of {name: ..., set: {...}}")
        points = []
        for i, item in enumerate(runs):
            if not isinstance(item, dict) or set(item) - {"name", "set"} or not isinstance(item.get("name"), str):
                raise InputError(src, f"runs[{i}]: expected {{name: ..., set: {{...}}}}, got {item!r}")
            if not _NAME.fullmatch(item["name"]):
                raise InputError(src, f"runs[{i}]: name {item['name']!r} must be letters, digits and ._+=-")
            points.append((item["name"], _overrides(item.get("set") or {}, src, f"runs[{i}].set")))
        names = [n for n, _ in points]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InputError(src, f"runs: the name {repeated[0]!r} is given twice")
        return points
    axes = _overrides(raw.get("grid") or {}, src, "grid")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise InputError(src, f"grid: {key}: expected a list of values, got {values!r}")
    combos = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    return [(run_name(point), point) for point in combos]


def _seeds(raw: Any, src: str, default: int) -> list[int]:
    if raw is None:
        return [default]
    if (not isinstance(raw, list) or not raw or any(isinstance(s, bool) or not isinstance(s, int) for s in raw)
            or len(set(raw)) != len(raw)):
        raise InputError(src, f"seeds: expected a list of different integers, got {raw!r}")
    return raw


def _checked(config: Path, raw: dict[str, Any], overrides: dict[str, Any], src: str, where: str) -> TrainConfig:
    """The base config (file ``config``, read as ``raw``) with ``overrides``, validated as ``birdbridge train --set``
    validates it."""
    try:
        return config_from(raw, [f"{k}={_yaml_value(v)}" for k, v in overrides.items()], str(config))
    except InputError as exc:
        raise InputError(src, f"{where}: {exc}") from None


def _evaluation(raw: Any, src: str, base: TrainConfig) -> Evaluation:
    if not isinstance(raw, dict):
        raise InputError(src, f"evaluate: expected a mapping, got {raw!r}")
    known = {f.name for f in fields(EvalSettings)}
    unknown = sorted(set(raw) - known - {"dataset", "baselines", "device"})
    if unknown:
        raise InputError(src, f"evaluate: unknown key(s) {', '.join(map(str, unknown))}",
                         f"valid keys: dataset, baselines, device, {', '.join(sorted(known))}")
    baselines = raw.get("baselines") or ()
    baselines = tuple(BASELINES) if baselines == "all" else tuple([baselines] if isinstance(baselines, str)
                                                                    else baselines)
    bad = sorted(set(baselines) - set(BASELINES))
    if bad:
        raise InputError(src, f"evaluate: baselines: unknown {', '.join(map(str, bad))}",
                         f"choose from {', '.join(BASELINES)}, or all")
    settings = EvalSettings.from_dict({k: v for k, v in raw.items() if k in known})
    for f in fields(EvalSettings):
        value, default = getattr(settings, f.name), getattr(EvalSettings(), f.name)
        if value is not None and default is not None and not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)):
            raise InputError(src, f"evaluate: {f.name}: {value!r} is not a {type(default).__name__}")
    return Evaluation(str(raw.get("dataset") or base.data.dataset), baselines, settings, raw.get("device"))
