"""Folder runs: many recordings in, one result file per recording (or one combined file) out.

Resumable as BirdNET-Analyzer's folder runs are: per-file outputs that already exist are skipped (a
combined run keeps per-file partial results in ``.birdbridge-partial/`` until the combined file is
written). A bad recording is reported at the end; every other one completes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from birdbridge.audio import AUDIO_EXTENSIONS
from birdbridge.errors import BirdbridgeError, Failure
from birdbridge.search.engine import SearchEngine
from birdbridge.search.formats import SUFFIX, write_results
from birdbridge.search.merge import merge_windows
from birdbridge.search.results import FileResult
from birdbridge.species import SpeciesArg, as_taxonomy
from birdbridge.utils.atomic import write_text
from birdbridge.utils.prefetch import batched
from birdbridge.utils.progress import progress_bar

PARTIAL = ".birdbridge-partial"


@dataclass
class SearchOptions:
    window_s: float | None = None
    hop_s: float | None = None
    top_k: int = 5
    n_images: int = 5
    min_score: float = 0.05
    species: SpeciesArg | None = None  # see birdbridge.species.as_taxonomy
    merge: bool = False


@dataclass
class RunReport:
    results: list[FileResult] = field(default_factory=list)  # in input order (only in-memory runs keep all)
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # already done (resumed)
    failures: list[Failure] = field(default_factory=list)


def audio_jobs(inputs: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root), folders expanded recursively in sorted order."""
    jobs = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not files:
                raise BirdbridgeError(f"{path}: folder holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
            jobs += [(f, f.relative_to(path)) for f in files]
        else:
            jobs.append((path, Path(path.name)))
    return jobs


def run_search(engine: SearchEngine, inputs: Sequence[str | os.PathLike[str]], options: SearchOptions, *,
               output: Path | None = None, fmt: str = "table", combined: bool = False, overwrite: bool = False,
               files_per_batch: int = 8, progress: bool | None = None) -> RunReport:
    """Search every recording; write per-file (or combined) outputs when ``output`` is given."""
    jobs = audio_jobs(inputs)
    if options.species is not None:  # read the species list once, and before any audio is embedded
        options = replace(options, species=as_taxonomy(options.species, known=engine.taxonomy))
    report = RunReport()
    band = _band(engine)
    partial_dir = None
    if output is not None and fmt != "table":
        base = output.parent if combined and output.suffix else output
        partial_dir = base / PARTIAL if combined else None
    todo = []
    for file, rel in jobs:
        target = _target(output, rel, fmt, combined, partial_dir)
        if target is not None and target.exists() and not overwrite:
            report.skipped.append(file)
        else:
            todo.append((file, rel, target))
    with progress_bar("Searching", len(todo), progress) as bar:
        for chunk in batched(todo, files_per_batch):
            results, failures = engine.search_audio(
                [f for f, _, _ in chunk], window_s=options.window_s, hop_s=options.hop_s, top_k=options.top_k,
                n_images=options.n_images, min_score=options.min_score, species=options.species, progress=False,
            )
            report.failures += failures
            by_name = {r.file: r for r in results}
            for file, _, target in chunk:
                result = by_name.get(str(file))
                if result is None:
                    continue
                if options.merge:
                    result.windows = merge_windows(result.windows)
                if target is None:
                    report.results.append(result)
                elif combined:
                    write_text(target, json.dumps(result.to_dict()))
                else:
                    report.written.append(write_results(target, fmt, [result], n_images=options.n_images,
                                                        band_hz=band))
            bar.advance(len(chunk))
    if combined and partial_dir is not None:
        done = []
        for _file, rel in jobs:
            part = _target(output, rel, fmt, True, partial_dir)
            if part is not None and part.exists():
                done.append(FileResult.from_dict(json.loads(part.read_text())))
        target = output if output.suffix else output / SUFFIX[fmt].lstrip(".")
        report.written.append(write_results(target, fmt, done, n_images=options.n_images, band_hz=band))
        report.results = done
        for part in partial_dir.glob("*.json"):
            part.unlink()
        partial_dir.rmdir()
    return report


def _target(output: Path | None, rel: Path, fmt: str, combined: bool, partial_dir: Path | None) -> Path | None:
    if output is None or fmt == "table":
        return None
    if combined:
        digest = hashlib.sha256(str(rel).encode()).hexdigest()[:20]
        return partial_dir / f"{digest}.json"
    return output / rel.parent / (rel.stem + SUFFIX[fmt])


def _band(engine: SearchEngine) -> tuple[float, float]:
    if engine.student is None:
        return 0.0, 0.0
    cfg = engine.student.frontend_config
    return cfg.fmin, cfg.fmax
