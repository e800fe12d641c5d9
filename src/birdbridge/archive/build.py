"""``build_archive``: recordings in, every window embedded by a distilled student, a resumable archive out.

**Windows.** Every recording is cut into windows (``window_s``, ``hop_s``; default the student's input
length, no overlap; the last, shorter window is kept when it holds at least 1 s) and each window is
embedded by the student into its teacher's space. Channels are mixed to mono (every window's channel is 0;
archives with one row per channel may come later).

**Commits and resume.** Recordings are embedded in chunks of about ``commit_windows`` windows (a longer
recording is a chunk of its own); each chunk's recordings are committed together, each with all of its
windows and its row in ``files``, so a killed build loses at most the chunk in flight and never
leaves a recording half in. Without ``add``, ``archive`` must be new, or an archive of the same
recordings (same resolved inputs), which is then resumed: recordings already in it are skipped (new ones
in its folders are added). With ``add`` the recordings are added to an existing archive (its student
and windows), and its inputs grow by them. A recording already in the archive whose size or modification
time has changed is reported, not embedded again (its windows would mix two versions of the file);
build a new archive for it.

**On Ray** (``ray``) the recordings are embedded first, one shard per recording (a rerun after a killed build embeds
only those without one; :mod:`birdbridge.embed.ray_jobs`), and then committed in chunks as above.

**Dates, times and sites** come from the file names (:mod:`birdbridge.archive.metadata`) or from a
metadata CSV, which wins; with a CSV, recordings already in the archive get its values too.
Unreadable recordings and folder entries are skipped and reported, and the rest is built.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from birdbridge.archive.identity import check_student, student_meta, student_teacher
from birdbridge.archive.metadata import RecordingMeta, from_name, merge, read_metadata_csv
from birdbridge.archive.store import Archive, NewRecording, RecordingFile, is_archive
from birdbridge.audio import AudioInfo, audio_info, scan_audio_files
from birdbridge.audio.windows import WindowSpec, count_windows
from birdbridge.embed.audio import embed_audio_windows, window_spec_for
from birdbridge.embed.ray_jobs import SHARDS_IN_STORE, BulkReport, audio_spec, require_ray, run_bulk
from birdbridge.embed.table import skipped
from birdbridge.errors import AudioError, BirdbridgeError, Failure
from birdbridge.models.hub import stable_ref
from birdbridge.models.loader import load_student
from birdbridge.models.student import AudioStudent
from birdbridge.store.ann import ANN_THRESHOLD, build_ann, require_engine
from birdbridge.utils.clock import now_iso
from birdbridge.utils.progress import progress_bar

COMMIT_WINDOWS = 256


@dataclass
class BuildReport:
    """What a build did; ``failures`` are the recordings skipped (unreadable, or changed since embedded)."""

    archive: Path
    files_added: int = 0
    windows_added: int = 0
    already: int = 0  # recordings already in the archive, unchanged
    changed: int = 0  # recordings in the archive whose file has changed since (reported in failures)
    failures: list[Failure] = field(default_factory=list)
    metadata_unmatched: int = 0  # metadata CSV rows that name none of the recordings
    metadata_updated: int = 0  # recordings already in the archive that got the CSV's values
    files: int = 0  # recordings in the archive now
    count: int = 0  # windows in the archive now
    created: bool = False
    resumed: bool = False
    embed_seconds: float = 0.0
    ann: dict[str, Any] | None = None
    backend: dict[str, str] = field(default_factory=dict)  # what ran the student's tower

    @property
    def windows_per_s(self) -> float:
        """Windows embedded and committed per second of this build."""
        return self.windows_added / self.embed_seconds if self.embed_seconds > 0 else 0.0


@dataclass(frozen=True)
class _Todo:
    path: Path
    info: AudioInfo
    size: int
    mtime_ns: int
    meta: RecordingMeta
    windows: int


def build_archive(
    recordings: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    archive: str | os.PathLike[str],
    model: str | os.PathLike[str] | AudioStudent | None = None,
    *,
    window_s: float | None = None,
    hop_s: float | None = None,
    metadata: str | os.PathLike[str] | None = None,
    add: bool = False,
    batch_size: int = 16,
    device: str | None = None,
    progress: bool | None = None,
    ann: bool | None = None,
    ann_engine: str | None = None,
    commit_windows: int = COMMIT_WINDOWS,
    backend: str = "torch",
    precision: str = "fp32",
    ray: str | None = None,
) -> BuildReport:
    """Embed every window of ``recordings`` (files or folders) into the archive at ``archive``; see the module
    docs. ``model`` is the distilled student (default: the one an existing archive records). ``ann``: True
    builds (or updates) the ANN index, False leaves it, None builds it from :data:`ANN_THRESHOLD` windows and
    keeps an existing one up to date; ``ann_engine`` builds a new index with that engine (:mod:`birdbridge.store.ann`;
    default: the current index's). ``backend`` and ``precision``: what runs a student given by name
    (:mod:`birdbridge.models.backends`; the archive's build record names what ran). ``ray``: embed on Ray at that
    address (``local``, ``auto``, ``ray://...``; see :mod:`birdbridge.embed.ray_jobs`), then commit as the local path
    does."""
    if ray is not None:
        require_ray()
    if isinstance(recordings, (str, os.PathLike)):
        recordings = [recordings]
    if not recordings:
        raise BirdbridgeError("no recordings given")
    if commit_windows < 1 or batch_size < 1:
        raise BirdbridgeError("commit_windows and batch_size must be at least 1")
    if ann_engine is not None and ann is not False:
        require_engine(ann_engine)  # before any work
    folder = Path(archive).expanduser()
    existing = Archive.open(folder) if is_archive(folder) else None
    if model is None:
        model = (existing.student.get("ref") if existing is not None else None)
        if model is None:
            raise BirdbridgeError("give the student that embeds the recordings (--model): a `birdbridge train` output")
    student = (model if isinstance(model, AudioStudent)
               else load_student(model, device, backend=backend, precision=precision))
    teacher = student_teacher(student)
    ref = student.name if isinstance(model, AudioStudent) else stable_ref(model)
    spec = _window_spec(student, existing, window_s, hop_s)

    found = scan_audio_files(recordings)
    paths = list(dict.fromkeys(p.expanduser().resolve() for p in found.files))
    named = {}
    unmatched = 0
    if metadata is not None:
        named, unmatched = read_metadata_csv(metadata, paths)
    sources = sorted({str(Path(r).expanduser().resolve()) for r in recordings})

    arc, created, resumed = _open(folder, existing, student, teacher, ref, spec, sources, add)
    report = BuildReport(arc.folder, created=created, resumed=resumed, metadata_unmatched=unmatched,
                         backend=student.backend)
    report.failures += skipped(found.problems)
    try:
        todo = _plan(arc, paths, named, spec, report)
        started = time.perf_counter()
        job = None
        if ray is not None:
            job = run_bulk([item.path for item in todo], audio_spec(model, student, spec, device=device),
                           arc.folder / SHARDS_IN_STORE, address=ray, batch_size=batch_size, progress=progress)
        _embed(arc, student, todo, spec, report, batch_size=batch_size, commit_windows=commit_windows,
               progress=progress, job=job)
        if job is not None:
            job.shards.remove()
        report.embed_seconds = time.perf_counter() - started
        if len(arc) and (ann is True or (ann is None and (len(arc) >= ANN_THRESHOLD or arc.ann_status()["exists"]))):
            build_ann(arc, engine=ann_engine, progress=progress)
        report.ann = arc.ann_status()
        report.count, report.files = len(arc), len(arc.files())
        arc.update_meta(build={**(arc.meta.get("build") or {}), "complete": True, "finished": now_iso()})
    finally:
        arc.close()
    return report


def _window_spec(student: AudioStudent, existing: Archive | None, window_s: float | None, hop_s: float | None
                 ) -> WindowSpec:
    recorded = existing.windowing if existing is not None else {}
    if recorded.get("window_s") is None:
        return window_spec_for(student, window_s, hop_s)
    for name, given in (("window", window_s), ("hop", hop_s)):
        have = float(recorded[f"{name}_s"])
        if given is not None and abs(float(given) - have) > 1e-9:
            raise BirdbridgeError(f"archive {existing.folder} holds windows of {recorded['window_s']:g} s every "
                                  f"{recorded['hop_s']:g} s; --{name} {given:g} differs (leave it out, or build a "
                                  "separate archive)")
    return window_spec_for(student, float(recorded["window_s"]), float(recorded["hop_s"]))


def _open(folder: Path, existing: Archive | None, student: AudioStudent, teacher: dict[str, Any], ref: str,
          spec: WindowSpec, sources: list[str], add: bool) -> tuple[Archive, bool, bool]:
    """(archive, created, resumed) under the resume rule of the module docs; marks the build unfinished."""
    windowing = {"window_s": spec.window_s, "hop_s": spec.step_s, "min_tail_s": spec.min_tail_s,
                 "sample_rate": student.sample_rate, "channels": "mixed to mono"}
    created = resumed = False
    if existing is None:
        arc = Archive.create(folder, teacher, student.embed_dim)
        created = True
    else:
        arc = existing
        check_student(arc, student, f"model {student.name}")
        recorded = list((arc.meta.get("build") or {}).get("sources") or [])
        if add:
            sources = sorted({*recorded, *sources})
        elif recorded and set(recorded) != set(sources):
            raise BirdbridgeError(
                f"archive {folder} was built from {', '.join(recorded)}; pass --add to add {', '.join(sources)} to "
                "it, or choose another archive folder"
            )
        else:
            resumed = True
    meta = arc.meta
    fields: dict[str, Any] = {"build": {**(meta.get("build") or {}), "complete": False, "sources": sources,
                                        "add": add, "started": now_iso(), "backend": student.backend}}
    if not meta.get("student"):  # a new archive (or one whose create was interrupted before this)
        fields.update(student=student_meta(student, ref), windowing=windowing)
    arc.update_meta(**fields)
    return arc, created, resumed


def _plan(arc: Archive, paths: list[Path], named: dict[Path, RecordingMeta], spec: WindowSpec,
          report: BuildReport) -> list[_Todo]:
    """The recordings to embed, with their headers; those in the archive are counted (or reported if changed)."""
    stored: dict[str, RecordingFile] = {f.path: f for f in arc.files(str(p) for p in paths)}
    todo: list[_Todo] = []
    update: dict[str, RecordingMeta] = {}
    for path in paths:
        try:
            st = path.stat()
        except OSError as exc:
            report.failures.append(Failure(str(path), f"{path}: cannot be read ({exc.strerror or exc})"))
            continue
        meta = merge(from_name(path), named.get(path))
        have = stored.get(str(path))
        if have is not None:
            if (have.size, have.mtime_ns) != (st.st_size, st.st_mtime_ns):
                report.changed += 1
                report.failures.append(Failure(str(path), (
                    f"{path}: changed since it was embedded on {have.added} (size {have.size:,} -> {st.st_size:,} "
                    "bytes, or its modification time); its windows in the archive are of the old file, so it is "
                    "not embedded again: build a new archive to embed the new version")))
            else:
                report.already += 1
                if path in named:
                    update[str(path)] = meta
            continue
        try:
            info = audio_info(path)
        except AudioError as exc:
            report.failures.append(Failure(str(path), str(exc)))
            continue
        todo.append(_Todo(path, info, st.st_size, st.st_mtime_ns, meta, count_windows(info.duration_s, spec)))
    if update:
        report.metadata_updated = arc.set_recording_meta(update)
    return todo


def _chunks(todo: list[_Todo], commit_windows: int) -> list[list[_Todo]]:
    chunks: list[list[_Todo]] = [[]]
    size = 0
    for item in todo:
        if chunks[-1] and size + item.windows > commit_windows:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += item.windows
    return [c for c in chunks if c]


def _embed(arc: Archive, student: AudioStudent, todo: list[_Todo], spec: WindowSpec, report: BuildReport, *,
           batch_size: int, commit_windows: int, progress: bool | None, job: BulkReport | None = None) -> None:
    """Embed (or, after a Ray ``job``, read the shards of) ``todo`` and commit it chunk by chunk."""
    total = sum(item.windows for item in todo)
    with progress_bar("Embedding recordings" if job is None else "Committing recordings", total or None,
                      progress) as bar:
        for chunk in _chunks(todo, commit_windows):
            paths = [item.path for item in chunk]
            table = (job.shards.table(paths, job.failures, student.embed_dim) if job is not None else
                     embed_audio_windows(paths, student, window_s=spec.window_s, hop_s=spec.hop_s,
                                         min_tail_s=spec.min_tail_s, batch_size=batch_size, progress=False))
            report.failures += table.failures
            rows: dict[str, list[int]] = {}
            for i, name in enumerate(table.names):
                rows.setdefault(name, []).append(i)
            new = []
            for item in chunk:
                mine = rows.get(str(item.path))
                if not mine:
                    if not any(f.source == str(item.path) for f in table.failures):
                        report.failures.append(Failure(str(item.path), f"{item.path}: no windows"))
                    continue
                new.append(NewRecording(
                    str(item.path), item.info.duration_s, item.info.sample_rate, item.info.channels, item.size,
                    item.mtime_ns, item.meta, table.vectors[mine], table.start_s[mine], table.end_s[mine]))
            report.windows_added += arc.add_recordings(new)
            report.files_added += len(new)
            bar.advance(sum(item.windows for item in chunk))


__all__ = ["COMMIT_WINDOWS", "BuildReport", "build_archive"]
