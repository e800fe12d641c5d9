"""Search results: species and pictures per window of a recording (or for a text or picture query)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class SpeciesHit:
    key: str
    scientific_name: str
    common_name: str | None
    code: str | None
    score: float  # softmax probability over the species list, 0..1
    similarity: float  # cosine similarity in the teacher's space
    has_images: bool = True


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "duration_s": self.duration_s,
            "windows": [
                {"index": w.index, "start_s": w.start_s, "end_s": w.end_s,
                 "species": [asdict(h) for h in w.species], "images": [asdict(i) for i in w.images]}
                for w in self.windows
            ],
            "summary": {"species": [asdict(h) for h in self.summary()]},
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
