"""Finding the recording of a detection: under ``--audio``, else where its result file says it is.

Recordings move after they are analysed (from the recorder's card to a server, from Windows to Linux), so a path
in a result file is matched by its file name among the ``--audio`` recordings; when several share the name, the
one whose folders match more of the named path's folders wins. A result that names no recording (Audacity labels)
is matched by the stem its file is named after. Without a match under ``--audio``, the named path itself (or the
path relative to the result file's folder) is used if it exists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from birdbridge.audio.io import scan_audio_files
from birdbridge.embed.table import skipped
from birdbridge.errors import Failure
from birdbridge.segments.detections import Detection, stem_of

_SEPARATORS = re.compile(r"[\\/]+")


def _parts(path: str) -> list[str]:
    """A path's parts, whichever system wrote it (``C:\\a\\b.wav`` and ``/a/b.wav`` alike), case-folded."""
    return [p.casefold() for p in _SEPARATORS.split(path) if p]


class Recordings:
    """The recordings under ``--audio`` (none: only the paths the results name are tried)."""

    def __init__(self, inputs: Sequence[str | os.PathLike[str]] | None = None) -> None:
        self.failures: list[Failure] = []
        self.by_name: dict[str, list[Path]] = {}
        self.by_stem: dict[str, list[Path]] = {}
        self.where = ", ".join(map(os.fspath, inputs or ()))
        if inputs:
            listing = scan_audio_files(list(inputs))
            self.failures = skipped(listing.problems)
            for path in listing.files:
                self.by_name.setdefault(path.name.casefold(), []).append(path)
                self.by_stem.setdefault(path.stem.casefold(), []).append(path)

    def find(self, detection: Detection) -> Path | str:
        """The recording of ``detection``, or why there is none (a message)."""
        under = f" under {self.where}" if self.where else " (give --audio: the folder the recordings are in now)"
        if detection.recording is None:
            stem = stem_of(Path(detection.results))
            found = self._best(self.by_stem.get(stem.casefold(), []), [stem.casefold()])
            return f"no recording named {stem}.*{under}" if found is None else found
        named = detection.recording
        parts = _parts(named)
        found = self._best(self.by_name.get(parts[-1], []) if parts else [], parts)
        if isinstance(found, Path):
            return found
        for candidate in (Path(named), Path(detection.results).parent / named):
            if candidate.is_file():
                return candidate
        if isinstance(found, str):
            return found
        return f"recording {named} not found{under}"

    @staticmethod
    def _best(candidates: list[Path], parts: list[str]) -> Path | str | None:
        """The candidate whose path ends with most of ``parts``; a message when two tie; None without any."""
        if len(candidates) <= 1:
            return candidates[0] if candidates else None

        def matching(path: Path) -> int:
            own = _parts(str(path.resolve()))
            n = 0
            while n < min(len(own), len(parts)) and own[-1 - n] == parts[-1 - n]:
                n += 1
            return n

        scored = sorted(((matching(c), c) for c in candidates), key=lambda x: -x[0])
        if scored[0][0] > scored[1][0]:
            return scored[0][1]
        tied = [str(c) for n, c in scored if n == scored[0][0]]
        return f"{len(tied)} recordings could be {'/'.join(parts[-2:])}: {', '.join(tied[:3])}"
