"""Search results: species and pictures per window of a recording (or for a text or picture query).

One result type for every reader: the CLI's table, the output files (:mod:`birdbridge.search.formats`) and
the web API all read these, and :meth:`FileResult.to_dict` / :func:`hits_to_dict` are their one JSON view
(``paths=False`` leaves out the server's own file paths).

A window's species are its detections (:mod:`birdbridge.search.scoring`): each with the ``score`` that
ranked it (:attr:`FileResult.ranked_by` says which: ``confidence``, ``similarity`` or ``softmax``), its
cosine ``similarity`` and its ``confidence`` (None when the model is not calibrated). A window without a
detection has no species and no pictures, and names its nearest ``background`` class (wind, rain, ...).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from birdbridge.errors import Failure


@dataclass(frozen=True)
class SpeciesHit:
    key: str
    scientific_name: str
    common_name: str | None
    code: str | None
    score: float  # the score that ranked it: its confidence, its similarity or a softmax probability (ranked_by)
    similarity: float  # cosine similarity in the teacher's space
    has_images: bool = True
    confidence: float | None = None  # calibrated confidence in [0, 1] (None: the model has no calibration)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImageHit:
    id: str
    species: str
    common_name: str | None
    score: float  # cosine similarity
    path: str | None = None
    source: str | None = None
    licence: str | None = None
    photographer: str | None = None

    def to_dict(self, paths: bool = True) -> dict[str, Any]:
        """The hit as JSON; ``paths=False`` leaves out the picture's file path (a server's own business)."""
        data = asdict(self)
        if not paths:
            del data["path"]
        return data


@dataclass
class WindowResult:
    index: int
    start_s: float
    end_s: float
    species: list[SpeciesHit] = field(default_factory=list)
    images: list[ImageHit] = field(default_factory=list)
    background: str | None = None  # the nearest background class of a window without a detection

    @property
    def top(self) -> SpeciesHit | None:
        return self.species[0] if self.species else None

    def to_dict(self, paths: bool = True) -> dict[str, Any]:
        return {"index": self.index, "start_s": self.start_s, "end_s": self.end_s,
                **hits_to_dict(self.species, self.images, paths=paths), "background": self.background}


def best_first(hit: SpeciesHit) -> tuple[float, float]:
    """Sort key of hits across windows: confidence (the score that stands on its own) when there is one."""
    return (-(hit.confidence if hit.confidence is not None else hit.score), -hit.similarity)


@dataclass
class FileResult:
    file: str
    duration_s: float
    windows: list[WindowResult]
    ranked_by: str = "confidence"  # the score that ranked the species: confidence, similarity or softmax
    threshold: float | None = None  # the lowest score of a detection (min_conf, min_sim or min_score)

    def summary(self) -> list[SpeciesHit]:
        """Each species once, with its best window (by confidence, if the model is calibrated), best first."""
        best: dict[str, SpeciesHit] = {}
        for window in self.windows:
            for hit in window.species:
                if hit.key not in best or best_first(hit) < best_first(best[hit.key]):
                    best[hit.key] = hit
        return sorted(best.values(), key=best_first)

    @property
    def detected(self) -> list[WindowResult]:
        """The windows with a detection (at least one species)."""
        return [w for w in self.windows if w.species]

    def background_counts(self) -> dict[str, int]:
        """Windows without a detection per nearest background class (most first); unnamed ones under ``""``."""
        counts = Counter(w.background or "" for w in self.windows if not w.species)
        return dict(counts.most_common())

    def to_dict(self, paths: bool = True, *, all_windows: bool = True) -> dict[str, Any]:
        """The result as JSON (the web API; the ``json`` output format with ``all_windows=False``, which leaves
        out the windows without a detection); ``paths=False``: without picture paths."""
        return {
            "file": self.file,
            "duration_s": self.duration_s,
            "ranked_by": self.ranked_by,
            "threshold": self.threshold,
            "windows": [w.to_dict(paths) for w in (self.windows if all_windows else self.detected)],
            "summary": {"species": [h.to_dict() for h in self.summary()], "windows": len(self.windows),
                        "detected": len(self.detected), "background": self.background_counts()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileResult:
        return cls(
            file=data["file"],
            duration_s=float(data["duration_s"]),
            windows=[
                WindowResult(int(w["index"]), float(w["start_s"]), float(w["end_s"]),
                             [SpeciesHit(**h) for h in w["species"]], [ImageHit(**i) for i in w["images"]],
                             w.get("background"))
                for w in data["windows"]
            ],
            ranked_by=data.get("ranked_by", "softmax"),  # results of older versions were ranked by softmax
            threshold=data.get("threshold"),
        )


def hits_to_dict(species: Sequence[SpeciesHit], images: Sequence[ImageHit], *, paths: bool = True
                 ) -> dict[str, Any]:
    """``{"species": [...], "images": [...]}``: a window's hits, or those of a text or picture query."""
    return {"species": [h.to_dict() for h in species], "images": [i.to_dict(paths) for i in images]}


@dataclass
class RunReport:
    """What :func:`birdbridge.search.search` did: results in memory, files written, recordings skipped as
    already done (a resumed folder run), and the inputs that failed (each named, with why)."""

    results: list[FileResult] = field(default_factory=list)  # in input order (runs writing per-file outputs keep none)
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # already done (resumed)
    failures: list[Failure] = field(default_factory=list)

    @property
    def nothing_done(self) -> bool:
        """Whether inputs failed and none was searched, written or found done."""
        return bool(self.failures) and not (self.results or self.written or self.skipped)
