"""Cutting detections out of their recordings: short files to check by ear, and a CSV index of them.

Clips are laid out as BirdNET-Analyzer's segments command lays them out, so its review tool reads them: one folder
per species, files named ``<confidence>_<n>_<recording stem>_<start>s_<end>s.wav`` (the confidence first, to
sort by; ``n`` counts the clips of a run). Each clip starts ``context`` seconds before its detection and ends as
long after (the call in context), and is widened evenly to ``seg_length`` seconds at least (BirdNET-Analyzer's
``--seg_length``), within the recording; no clip is longer than :data:`MAX_CLIP_S`. Clips are mono, at the
recording's own sample rate. The index, :data:`INDEX_FILE`, gives each clip's species, confidence, source file,
where the detection and the clip lie in it, and the detection's offset in the clip.

Work is bounded by ``max_per_species`` and ``max_total`` (:mod:`birdbridge.segments.select`) and the clip
length. A result file whose recordings cannot be found, a recording that cannot be read, and bad rows are reported
(per file), and everything else is cut.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from birdbridge.audio.io import audio_info, read_audio
from birdbridge.embed.table import skipped
from birdbridge.errors import BirdbridgeError, Failure, InputError
from birdbridge.segments.detections import Detection, find_result_files, read_detections
from birdbridge.segments.recordings import Recordings
from birdbridge.segments.select import check_selection, per_species, take_turns
from birdbridge.utils.atomic import atomic_path, write_text
from birdbridge.utils.progress import progress_bar

INDEX_FILE = "birdbridge.segments.csv"
INDEX_COLUMNS = ["File", "Species", "Scientific name", "Common name", "Confidence", "Source file", "Start (s)",
                 "End (s)", "Clip start (s)", "Clip end (s)", "Offset in clip (s)", "Results"]
MAX_CLIP_S = 60.0
SEG_LENGTH_S = 3.0  # BirdNET-Analyzer's default --seg_length
CONTEXT_S = 1.0
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')


@dataclass(frozen=True)
class Clip:
    """A clip written: its file, its detection and recording, and the part of the recording it holds."""

    path: Path
    detection: Detection
    recording: Path
    start_s: float
    end_s: float


@dataclass
class SegmentsReport:
    """What :func:`cut_segments` did: the clips, the index, the detections read and left out, the failures."""

    clips: list[Clip] = field(default_factory=list)
    index: Path | None = None
    read: int = 0  # detections read from the result files
    over_total: int = 0  # chosen per species but left out by max_total
    failures: list[Failure] = field(default_factory=list)


def clip_span(start_s: float, end_s: float, duration_s: float, *, seg_length: float = SEG_LENGTH_S,
              context: float = CONTEXT_S) -> tuple[float, float]:
    """The part of a recording lasting ``duration_s`` that a clip of the detection ``start_s``-``end_s`` holds."""
    begin, end = start_s - context, end_s + context
    short = seg_length - (end - begin)
    if short > 0:
        begin, end = begin - short / 2, end + short / 2
    begin = max(0.0, begin)
    return begin, min(duration_s, end, begin + MAX_CLIP_S)


def safe_name(text: str) -> str:
    """``text`` usable as a file or folder name (separators and reserved characters replaced by ``-``)."""
    name = _UNSAFE.sub("-", text).strip(" .")
    return name or "unknown"


def clip_name(n: int, detection: Detection, recording: Path) -> str:
    """BirdNET-Analyzer's clip name: ``<confidence>_<n>_<stem>_<start>s_<end>s.wav``."""
    return (f"{detection.confidence:.3f}_{n}_{safe_name(recording.stem)}_{detection.start_s:.2f}s_"
            f"{detection.end_s:.2f}s.wav")


def cut_segments(results: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 output: str | os.PathLike[str], *, audio: Sequence[str | os.PathLike[str]] | None = None,
                 collection_mode: str = "random", max_per_species: int = 100, min_conf: float = 0.0,
                 max_conf: float = 1.0, n_bins: int = 10, seg_length: float = SEG_LENGTH_S,
                 context: float = CONTEXT_S, max_total: int = 1000, seed: int = 42, progress: bool | None = None
                 ) -> SegmentsReport:
    """Cut the detections of result files (files or folders) into clips under ``output``, as ``birdbridge
    segments``: see :mod:`birdbridge.segments`. Raises BirdbridgeError when nothing could be cut and inputs
    failed, or for bad options."""
    check_selection(collection_mode, max_per_species, min_conf, max_conf, n_bins, max_total)
    for option, value, low in (("--seg-length", seg_length, 0.0), ("--context", context, 0.0)):
        if not low <= value <= MAX_CLIP_S:
            raise InputError(option, f"{value:g} s is out of range", f"give {low:g} to {MAX_CLIP_S:g} s")
    inputs = [results] if isinstance(results, (str, os.PathLike)) else list(results)
    found = find_result_files(inputs)
    report = SegmentsReport(failures=skipped(found.problems))
    recordings = Recordings(audio)
    report.failures += recordings.failures
    recording_of = _locate(found.files, recordings, report)
    chosen = per_species(list(recording_of), mode=collection_mode, max_per_species=max_per_species,
                         min_conf=min_conf, max_conf=max_conf, n_bins=n_bins, seed=seed)
    selected, report.over_total = take_turns(chosen, max_total)
    by_recording: dict[Path, list[Detection]] = {}
    for d in selected:
        by_recording.setdefault(recording_of[d], []).append(d)
    output = Path(output)
    with progress_bar("Cutting", len(selected), progress) as bar:
        for recording, detections in by_recording.items():
            _cut_recording(recording, sorted(detections, key=lambda d: d.start_s), output, report,
                           seg_length=seg_length, context=context)
            bar.advance(len(detections))
    if not report.clips and report.failures:
        raise BirdbridgeError("nothing to cut: " + "; ".join(f.message for f in report.failures[:5]))
    report.index = output / INDEX_FILE
    write_text(report.index, _index_csv(report.clips, output))
    return report


def _locate(files: list[Path], recordings: Recordings, report: SegmentsReport) -> dict[Detection, Path]:
    """Each detection's recording (detections found twice, e.g. in a CSV and a Raven table, once); a failure per
    result file and recording that cannot be found, counting its detections."""
    located: dict[Detection, Path] = {}
    seen: set[tuple[str, float, float, str]] = set()
    for file in files:
        try:
            detections, bad = read_detections(file)
        except InputError as exc:
            report.failures.append(Failure(str(file), str(exc)))
            continue
        report.failures += bad
        report.read += len(detections)
        where: dict[str | None, Path | str] = {}
        missing: dict[str, int] = {}
        for d in detections:
            if d.recording not in where:
                where[d.recording] = recordings.find(d)
            path = where[d.recording]
            if isinstance(path, str):
                missing[path] = missing.get(path, 0) + 1
                continue
            key = (str(path.resolve()), round(d.start_s, 3), round(d.end_s, 3), d.key)
            if key not in seen:
                seen.add(key)
                located[d] = path
        for message, count in missing.items():
            report.failures.append(Failure(str(file), f"{file}: {message}; {count} detection{'s' if count > 1 else ''} "
                                                      "of it not cut"))
    return located


def _cut_recording(recording: Path, detections: list[Detection], output: Path, report: SegmentsReport, *,
                   seg_length: float, context: float) -> None:
    try:
        info = audio_info(recording)
    except InputError as exc:
        report.failures.append(Failure(str(recording), f"{exc}; {len(detections)} clip(s) not cut"))
        return
    for d in detections:
        begin, end = clip_span(d.start_s, d.end_s, info.duration_s, seg_length=seg_length, context=context)
        if end <= begin:
            report.failures.append(Failure(d.results, f"{d.results}: {d.where}: the detection at {d.start_s:g} s lies "
                                                      f"past the end of {recording} ({info.duration_s:g} s): is it "
                                                      "the right recording?"))
            continue
        try:
            samples = read_audio(recording, offset_s=begin, duration_s=end - begin)
        except InputError as exc:
            report.failures.append(Failure(str(recording), f"{exc}; the clip at {d.start_s:g} s not cut"))
            continue
        target = output / safe_name(d.species) / clip_name(len(report.clips) + 1, d, recording)
        with atomic_path(target) as tmp:
            sf.write(tmp, samples, info.sample_rate, format="WAV", subtype="PCM_16")
        report.clips.append(Clip(target, d, recording, begin, end))


def _index_csv(clips: Sequence[Clip], output: Path) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    for clip in clips:
        d = clip.detection
        writer.writerow([clip.path.relative_to(output).as_posix(), d.species, d.scientific_name or "",
                         d.common_name or "", f"{d.confidence:.4f}", str(clip.recording), f"{d.start_s:.2f}",
                         f"{d.end_s:.2f}", f"{clip.start_s:.3f}", f"{clip.end_s:.3f}",
                         f"{d.start_s - clip.start_s:.3f}", d.results])
    return buffer.getvalue()
