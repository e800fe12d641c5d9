"""What :func:`birdbridge.evaluate.runner.evaluate` returns: one typed result, and its ``results.json`` view.

Methods are keyed by stable ids: ``distilled`` (or, when several trained models are evaluated, each one's
given name), ``random_projection``, ``text_mapping``, ``zero_shot_chain`` and ``undistilled``. Their display
names ("random projection", "undistilled (biolingual)", ...) are for printing, and key ``results.json``'s
``methods``, ``ci`` and ``per_species`` as they always have; ``method_ids`` maps each id to its display
name. :meth:`EvalResult.from_dict` reads files written before ids were recorded too.

On soundscapes the methods' metrics are BirdSet's window metrics (``cmap``, ``auroc``, ``t1``) and the detection
figures (``precision``, ``recall``, ``f1``, ``false_alarm_rate``), all ×100, and each method records how its
detections were made (:class:`DetectionSummary`; ``results.json``'s ``detection``, by display name).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from birdbridge.errors import Failure
from birdbridge.evaluate.settings import EvalSettings
from birdbridge.utils.atomic import write_json

DISTILLED = "distilled"
UNDISTILLED = "undistilled"
BASELINE_IDS = {  # baseline (as --baselines names it) -> method id
    "random": "random_projection",
    "mapping": "text_mapping",
    "chain": "zero_shot_chain",
    "undistilled": UNDISTILLED,
}
GROUPS = ("seen", "unseen")  # the species of an evaluation with a holdout: trained on, held out of training
DISPLAY_NAMES = {  # method id -> display name (undistilled: "undistilled (NAME)"; trained models: their name)
    "random_projection": "random projection",
    "text_mapping": "text-embedding mapping",
    "zero_shot_chain": "zero-shot chain",
}


def undistilled_name(student: str) -> str:
    return f"undistilled ({student})"


@dataclass(frozen=True)
class DetectionSummary:
    """How a method's detections on soundscapes were made: the ``score`` thresholded (``confidence`` or
    ``similarity``) at ``threshold``, the cosine ``similarity`` that amounts to, the calibration (``slope``,
    ``intercept``) and where it came from (``calibration``: ``model`` for its own ``calibration.json``,
    ``split <name>`` when fitted on that split of the dataset, None without one), whether windows nearer to
    background had no detections, and the counts behind the figures (``tp``, ``fp``, ``fn``, ``bird_free``,
    ``false_alarm_windows``)."""

    score: str
    threshold: float
    similarity: float
    sensitivity: float | None
    calibration: str | None
    background: bool
    counts: dict[str, int] = field(default_factory=dict)
    slope: float | None = None
    intercept: float | None = None

    def describe(self) -> str:
        """One line for people."""
        if self.score == "confidence":
            side = "≤" if self.slope is not None and self.slope < 0 else "≥"  # a calibration that ranks backwards
            rule = (f"calibrated confidence ≥ {self.threshold:g} (sensitivity {self.sensitivity:g}: cosine {side} "
                    f"{self.similarity:.3f}; calibration: {_calibration_text(self.calibration)})")
        else:
            rule = f"cosine similarity ≥ {self.threshold:g} (no calibration)"
        return rule + ("; none where background is nearer" if self.background else "")


def _calibration_text(source: str | None) -> str:
    if source == "model":
        return "the model's calibration.json"
    return f"fitted on the {source.removeprefix('split ')!r} split" if source else "none"


@dataclass
class MethodResult:
    """One method's figures: metrics, their 95% bootstrap intervals, a per-species breakdown and, on
    soundscapes, how detections were made."""

    id: str
    name: str  # for printing
    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    per_species: dict[str, dict[str, float]] = field(default_factory=dict)
    detection: DetectionSummary | None = None
    directions: dict[str, float] = field(default_factory=dict)  # "a2i/genus/map" -> value (evaluate.ranks)
    groups: dict[str, dict[str, float]] = field(default_factory=dict)  # "seen"/"unseen" -> metrics and directions


@dataclass(frozen=True)
class DatasetSummary:
    """What was evaluated. On soundscapes ``queries`` counts the windows evaluated (of ``recordings``), and
    ``calibration_windows`` those of the ``calibration_split`` that fitted the methods without a calibration."""

    name: str
    root: str
    species: int
    queries: int
    knn_references: int
    gallery_images: int
    text_gallery: int
    kind: str = "clips"  # or "soundscapes"
    recordings: int = 0
    window_s: float | None = None
    hop_s: float | None = None
    bird_free_windows: int = 0
    calibration_split: str | None = None
    calibration_windows: int = 0


@dataclass(frozen=True)
class HoldoutSummary:
    """The species held out of training (taxonomy keys), where the list came from (``model``: recorded by the
    trained student(s); ``settings``: given to the evaluation), how many species each group has, and any recorded
    species that this dataset does not have."""

    species: list[str]
    source: str
    seen_species: int
    unseen_species: int
    not_in_dataset: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TeacherSummary:
    ref: str
    name: str
    fingerprint: str


@dataclass
class EvalResult:
    methods: dict[str, MethodResult]  # by id, in the order evaluated
    dataset: DatasetSummary
    teacher: TeacherSummary
    base_student: str | None
    models: dict[str, str]  # method id -> trained model reference
    settings: EvalSettings
    failures: list[Failure] = field(default_factory=list)
    teacher_directions: dict[str, float] = field(default_factory=dict)  # image↔text by the teacher alone
    teacher_groups: dict[str, dict[str, float]] = field(default_factory=dict)  # the same, by seen/unseen species
    holdout: HoldoutSummary | None = None

    def method(self, method_id: str) -> MethodResult:
        """The method with this id (a KeyError naming the ids there are, if none has it)."""
        try:
            return self.methods[method_id]
        except KeyError:
            raise KeyError(f"no method {method_id!r}; these were evaluated: {', '.join(self.methods)}") from None

    def to_dict(self) -> dict[str, Any]:
        """The ``results.json`` mapping (methods by display name, as it has always been, and ``method_ids``)."""
        methods = self.methods.values()
        return {
            "methods": {m.name: dict(m.metrics) for m in methods},
            "ci": {m.name: {k: [float(lo), float(hi)] for k, (lo, hi) in m.ci.items()} for m in methods if m.ci},
            "per_species": {m.name: m.per_species for m in methods},
            **({"detection": {m.name: asdict(m.detection) for m in methods if m.detection}}
               if any(m.detection for m in methods) else {}),
            **({"directions": {"methods": {m.name: m.directions for m in methods if m.directions},
                               "teacher": self.teacher_directions}}
               if self.teacher_directions or any(m.directions for m in methods) else {}),
            **({"holdout": asdict(self.holdout),
                "groups": {g: {"methods": {m.name: m.groups[g] for m in methods if g in m.groups},
                               "teacher": self.teacher_groups.get(g, {})} for g in GROUPS}}
               if self.holdout else {}),
            "method_ids": {m.id: m.name for m in methods},
            "dataset": asdict(self.dataset),
            "teacher": asdict(self.teacher),
            "base_student": self.base_student,
            "models": {self.methods[i].name if i in self.methods else i: ref for i, ref in self.models.items()},
            "settings": asdict(self.settings),
            "failures": [f.as_json() for f in self.failures],
        }

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write ``results.json`` (atomically; strict JSON, a figure without a value (NaN) as null)."""
        path = Path(path)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """Read a ``results.json`` mapping (one written before ``method_ids`` existed too); other keys are ignored."""
        ids = data.get("method_ids") or infer_ids(list(data["methods"]))
        cis, per_species, detection = data.get("ci", {}), data.get("per_species", {}), data.get("detection", {})
        directions, groups = data.get("directions", {}), data.get("groups", {})
        by_name = {name: method_id for method_id, name in ids.items()}
        methods = {
            method_id: MethodResult(method_id, name, _figures(data["methods"][name]),
                                    {k: (_nan(lo), _nan(hi)) for k, (lo, hi) in cis.get(name, {}).items()},
                                    {k: _figures(v) for k, v in per_species.get(name, {}).items()},
                                    _known(DetectionSummary, detection[name]) if name in detection else None,
                                    _figures(directions.get("methods", {}).get(name, {})),
                                    {g: _figures(groups[g]["methods"][name]) for g in groups
                                     if name in groups[g].get("methods", {})})
            for method_id, name in ids.items()
        }
        return cls(
            methods=methods,
            dataset=_known(DatasetSummary, data["dataset"]),
            teacher=_known(TeacherSummary, data["teacher"]),
            base_student=data.get("base_student"),
            models={by_name.get(name, name): ref for name, ref in data.get("models", {}).items()},
            settings=EvalSettings.from_dict(data.get("settings", {})),
            failures=[Failure(f["input"], f["error"]) for f in data.get("failures", [])],
            teacher_directions=_figures(directions.get("teacher", {})),
            teacher_groups={g: _figures(groups[g].get("teacher", {})) for g in groups},
            holdout=_known(HoldoutSummary, data["holdout"]) if data.get("holdout") else None,
        )


def infer_ids(names: list[str]) -> dict[str, str]:
    """Method ids for the display names of a results.json written before ids were recorded."""
    baselines = {name: method_id for method_id, name in DISPLAY_NAMES.items()}
    trained = [n for n in names if n not in baselines and not n.startswith("undistilled (")]
    ids = {}
    for name in names:
        if name in baselines:
            ids[baselines[name]] = name
        elif name.startswith("undistilled ("):
            ids[UNDISTILLED] = name
        else:
            ids[DISTILLED if len(trained) == 1 else name] = name
    return ids


def _nan(value: float | None) -> float:
    """A figure read back: results.json writes NaN (no value) as null, strict JSON having no NaN."""
    return math.nan if value is None else value


def _figures(values: dict[str, float | None]) -> dict[str, float]:
    return {k: _nan(v) for k, v in values.items()}


def _known(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
