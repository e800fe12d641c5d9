"""Search results: species and pictures per window of a recording (or for a text or picture query).

One result type for every reader: the CLI's table, the output files (:mod:`birdbridge.search.formats`) and
the web API all read these, and :meth:`FileResult.to_dict` / :func:`hits_to_dict` are their one JSON view
(``paths=False`` leaves out the server's own file paths).
"""

from __future__ import annotations

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
    score: float  # softmax probability over the species list, 0..1
    similarity: float  # cosine similarity in the teacher's space
    has_images: bool = True

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

    @property
    def top(self) -> SpeciesHit | None:
        return self.species[0] if self.species else None

    def to_dict(self, paths: bool = True) -> dict[str, Any]:
        return {"index": self.index, "start_s": self.start_s, "end_s": self.end_s,
                **hits_to_dict(self.species, self.images, paths=paths)}


@dataclass
class FileResult:
    file: str
    duration_s: float
    windows: list[WindowResult]

    def summary(self) -> list[SpeciesHit]:
        """Each species once, with its best score over the windows, best first."""
        best: dict[str, SpeciesHit] = {}
        for window in self.windows:
            for hit in window.species:
                if hit.key not in best or hit.score > best[hit.key].score:
                    best[hit.key] = hit
        return sorted(best.values(), key=lambda h: -h.score)

    def to_dict(self, paths: bool = True) -> dict[str, Any]:
        """The result as JSON (the ``json`` output format, the web API); ``paths=False``: without picture paths."""
        return {
            "file": self.file,
            "duration_s": self.duration_s,
            "windows": [w.to_dict(paths) for w in self.windows],
            "summary": {"species": [h.to_dict() for h in self.summary()]},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileResult:
        return cls(
            file=data["file"],
            duration_s=float(data["duration_s"]),
            windows=[
                WindowResult(int(w["index"]), float(w["start_s"]), float(w["end_s"]),
                             [SpeciesHit(**h) for h in w["species"]], [ImageHit(**i) for i in w["images"]])
                for w in data["windows"]
            ],
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
