"""Folder runs, behind :func:`birdbridge.search.search`: many recordings in, one result file per recording
(or one combined file) out.

Resumable as BirdNET-Analyzer's folder runs are: per-file outputs that already exist are skipped (a
combined run keeps per-file partial results in ``.birdbridge-partial/`` until the combined file is
written). Every recording has its own result name (:func:`result_names`), so none overwrites another or
is taken for done because another one is. A bad recording, or a folder entry that cannot be read, is
reported at the end; every other one completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from birdbridge.audio import AUDIO_EXTENSIONS
from birdbridge.embed.audio import window_spec_for
from birdbridge.embed.ray_jobs import BulkReport, audio_spec, require_ray, run_bulk
from birdbridge.embed.table import skipped
from birdbridge.errors import BirdbridgeError, Failure, InputError
from birdbridge.search.engine import SearchEngine
from birdbridge.search.formats import Extra, combined_name, result_name, write_results
from birdbridge.search.merge import merge_windows
from birdbridge.search.results import FileResult, RunReport
from birdbridge.search.scoring import Scoring
from birdbridge.species import SpeciesArg, Taxonomy, as_taxonomy
from birdbridge.species.where import RangeFilter
from birdbridge.utils.atomic import write_json
from birdbridge.utils.prefetch import batched
from birdbridge.utils.progress import progress_bar
from birdbridge.utils.walk import walk_files

PARTIAL = ".birdbridge-partial"
RAY_SHARDS = ".birdbridge-ray-shards"  # --ray: the recordings' embeddings, until their results are written


@dataclass(frozen=True)
class AudioJob:
    """A recording of a run and the name of its results: a path under the output folder, without the suffix."""

    file: Path
    name: Path


def audio_jobs(inputs: Sequence[str | os.PathLike[str]]) -> tuple[list[AudioJob], list[Failure]]:
    """The recordings (folders expanded recursively in sorted order; a file reached twice once) with unique
    result names (see :func:`result_names`), and the folder entries that could not be read."""
    found: list[tuple[Path, Path]] = []  # (file, path relative to its input folder)
    unreadable: list[Failure] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            listing = walk_files(path, AUDIO_EXTENSIONS)
            if not listing.files and not listing.problems:
                raise BirdbridgeError(f"{path}: folder holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
            unreadable += skipped(listing.problems)
            pairs = [(f, f.relative_to(path)) for f in listing.files]
        else:  # a missing file is kept, to fail (and be reported) on its own
            pairs = [(path, Path(path.name))]
        for file, rel in pairs:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                found.append((file, rel))
    names = result_names(found)
    return [AudioJob(file, name) for (file, _), name in zip(found, names, strict=True)], unreadable


def result_names(found: Sequence[tuple[Path, Path]]) -> list[Path]:
    """One result name per (recording, path relative to its input folder), never the same for two recordings.

    As BirdNET-Analyzer: ``sub/call`` for ``sub/call.wav``. Where several recordings of one folder on disk
    share a stem (``call.wav`` and ``call.ogg``), each keeps its extension (``sub/call.wav``, ``sub/call.ogg``),
    so names do not depend on which of them a run is given. Recordings from different input folders that
    would still share a name (compared case-insensitively, as some file systems do) get the names of the
    folders above them in front, as many as it takes (``a/x``, ``b/x``).
    """
    stems: dict[Path, Counter[str]] = {}
    names = []
    for file, rel in found:
        folder = file.parent
        if folder not in stems:
            try:
                listed = walk_files(folder, AUDIO_EXTENSIONS, recursive=False).files
            except BirdbridgeError:  # a folder we may read files from but not list
                listed = []
            stems[folder] = Counter(f.stem.casefold() for f in listed)
        shared = stems[folder][file.stem.casefold()] + (file.suffix.lower() not in AUDIO_EXTENSIONS) > 1
        names.append(rel.parent / (rel.name if shared else rel.stem))
    return _disambiguate([Path(os.path.abspath(f)) for f, _ in found], names)


def _disambiguate(files: list[Path], names: list[Path]) -> list[Path]:
    """``names`` made unique by prefixing the folders above each (a digest of the path where that cannot help)."""
    depth = [0] * len(names)
    while True:
        current = [Path(*f.parts[len(f.parts) - len(n.parts) - d : len(f.parts) - len(n.parts)], n) if d else n
                   for f, n, d in zip(files, names, depth, strict=True)]
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(current):
            groups.setdefault(name.as_posix().casefold(), []).append(i)
        clashing = [i for group in groups.values() if len(group) > 1 for i in group]
        if not clashing:
            return current
        deeper = [i for i in clashing if depth[i] < len(files[i].parts) - len(names[i].parts) - 1]
        if not deeper:  # paths that differ in letter case only
            for i in clashing:
                digest = hashlib.sha256(str(files[i]).encode()).hexdigest()[:8]
                current[i] = current[i].with_name(f"{current[i].name}.{digest}")
            return current
        for i in deeper:
            depth[i] += 1


def run_folder(engine: SearchEngine, inputs: Sequence[str | os.PathLike[str]], *, window_s: float | None = None,
               hop_s: float | None = None, top_k: int = 5, n_images: int = 5, scoring: Scoring | None = None,
               species: SpeciesArg | RangeFilter | None = None, merge: bool = False, output: Path | None = None,
               fmt: str = "table", combined: bool = False, overwrite: bool = False, files_per_batch: int = 8,
               progress: bool | None = None, birdnet_names: bool = False, extra: Extra | None = None,
               locale: str | None = None, batch_size: int = 16, channel: int | None = None,
               ray: str | None = None) -> RunReport:
    """Search every recording; write per-file (or combined) outputs when ``output`` is given (``birdnet_names``:
    named as BirdNET-Analyzer names its own; ``extra``: each recording's additional columns; ``locale``: the
    language of the common names; ``ray``: embed the recordings on Ray at that address first, ``local``, ``auto`` or
    ``ray://...``, see :mod:`birdbridge.embed.ray_jobs`)."""
    if ray is not None:
        require_ray()
    jobs, unreadable = audio_jobs(inputs)
    if species is not None and not isinstance(species, RangeFilter):  # read once, before any audio is embedded
        species = as_taxonomy(species, known=engine.taxonomy)
    report = RunReport(failures=unreadable)
    band = engine.band_hz
    partial_dir = None
    if output is not None and fmt != "table":
        base = output.parent if combined and output.suffix else output
        partial_dir = base / PARTIAL if combined else None
    todo = []
    for job in jobs:
        target = _target(output, job.name, fmt, combined, partial_dir, birdnet_names)
        if target is not None and target.exists() and not overwrite:
            report.skipped.append(job.file)
        else:
            todo.append((job.file, target))
    species_of = {file: species for file, _ in todo}
    if isinstance(species, RangeFilter):
        species_of = _range_species(engine, species, [file for file, _ in todo], report)
        todo = [(file, target) for file, target in todo if file in species_of]
    job = None
    if ray is not None and todo:
        job = _embed_on_ray(engine, [file for file, _ in todo], output, fmt, combined, ray, window_s=window_s,
                            hop_s=hop_s, batch_size=batch_size, channel=channel, progress=progress)
    with progress_bar("Searching", len(todo), progress) as bar:
        for chunk in batched(todo, files_per_batch):
            results, failures = [], []
            for group in _same_species([f for f, _ in chunk], species_of):
                if job is None:
                    found, failed = engine.search_audio(
                        group, window_s=window_s, hop_s=hop_s, top_k=top_k, n_images=n_images, scoring=scoring,
                        species=species_of[group[0]], progress=False, locale=locale, batch_size=batch_size,
                        channel=channel,
                    )
                else:
                    table = job.shards.table(group, job.failures, engine.student.embed_dim)
                    failed = table.failures
                    found = engine.search_embedded(table, top_k=top_k, n_images=n_images, scoring=scoring,
                                                   species=species_of[group[0]], locale=locale, channel=channel)
                results += found
                failures += failed
            report.failures += failures
            by_name = {r.file: r for r in results}
            for file, target in chunk:
                result = by_name.get(str(file))
                if result is None:
                    continue
                if merge:
                    result.windows = merge_windows(result.windows)
                if target is None:
                    report.results.append(result)
                elif combined:
                    write_json(target, result.to_dict())
                else:
                    report.written.append(write_results(target, fmt, [result], n_images=n_images, band_hz=band,
                                                        extra=extra))
            bar.advance(len(chunk))
    if job is not None:
        job.shards.remove()
    if combined and partial_dir is not None:
        done = []
        for job in jobs:
            part = _target(output, job.name, fmt, True, partial_dir)
            if part is not None and part.exists():
                done.append(FileResult.from_dict(json.loads(part.read_text())))
        target = output if output.suffix else output / combined_name(fmt, birdnet_names)
        report.written.append(write_results(target, fmt, done, n_images=n_images, band_hz=band, extra=extra))
        report.results = done
        for part in partial_dir.glob("*.json"):
            part.unlink()
        partial_dir.rmdir()
    return report


def _embed_on_ray(engine: SearchEngine, files: list[Path], output: Path | None, fmt: str, combined: bool, address: str,
                  *, window_s: float | None, hop_s: float | None, batch_size: int, channel: int | None,
                  progress: bool | None) -> BulkReport:
    """The windows of ``files`` embedded on Ray into shards beside the results (a rerun after a killed run resumes
    from them), or, for results that are not written, in a temporary folder."""
    student = engine.audio_student()
    if output is not None and fmt != "table":
        folder = (output.parent if combined and output.suffix else output) / RAY_SHARDS
    else:
        folder = Path(tempfile.mkdtemp(prefix="birdbridge-ray-"))
    spec = window_spec_for(student, window_s, hop_s)
    model = student if student.name == engine.model_ref else engine.model_ref
    return run_bulk(files, audio_spec(model, student, spec, channel, engine.device), folder, address=address,
                    batch_size=batch_size, progress=progress)


def _range_species(engine: SearchEngine, where: RangeFilter, files: Sequence[Path], report: RunReport
                   ) -> dict[Path, Taxonomy]:
    """The gallery's species expected for each recording (its week from its name with ``week="auto"``), with a note
    per week on how many of the range list the gallery holds. Recordings without a date in their name, or of a week
    for which the gallery holds none of the species, are failures; with a fixed week that is an error."""
    found: dict[Path, Taxonomy] = {}
    matches = {}
    for file in files:
        try:
            place = where.for_file(file)
        except InputError as exc:
            report.failures.append(Failure(str(file), str(exc)))
            continue
        if place not in matches:
            matches[place] = place.match(engine.taxonomy)
            report.notes.append(matches[place].note)
        if not where.auto:
            matches[place].check()
        if len(matches[place].taxonomy):
            found[file] = matches[place].taxonomy
        else:
            report.failures.append(Failure(str(file), f"{file}: {matches[place].note}; nothing to search for"))
    return found


def _same_species(files: list[Path], species_of: dict[Path, object]) -> list[list[Path]]:
    """``files`` in groups searched for the same species (in order of first appearance)."""
    groups: dict[int, list[Path]] = {}
    for file in files:
        groups.setdefault(id(species_of[file]), []).append(file)
    return list(groups.values())


def _target(output: Path | None, name: Path, fmt: str, combined: bool, partial_dir: Path | None,
            birdnet_names: bool = False) -> Path | None:
    if output is None or fmt == "table":
        return None
    if combined:
        digest = hashlib.sha256(name.as_posix().encode()).hexdigest()[:20]
        return partial_dir / f"{digest}.json"
    return output / name.parent / (name.name + result_name(fmt, birdnet_names))
