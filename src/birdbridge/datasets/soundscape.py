"""Soundscape datasets: long recordings with time-stamped species annotations, cut into labelled windows.

Real recordings are hours of background with birds calling now and then, sometimes several at once. A
soundscape dataset is a set of recordings plus annotations (recording, start, end, species), read from:

* ``raven``: Raven selection tables (tab-separated, ``Begin Time (s)``, ``End Time (s)``, a species column:
  by default the first present of :data:`RAVEN_SPECIES_COLUMNS` that names a taxonomy species, row by row;
  ``Low Freq (Hz)``/``High Freq (Hz)`` kept). Raven writes one row per view; rows of later views of a
  ``Selection`` are dropped. BirdNET-Analyzer's own Raven tables (``Common Name``, ``Species Code``) are
  read the same way, and their ``nocall`` rows (no bird) are skipped.
* ``birdnet``: BirdNET-Analyzer result CSVs (``Start (s),End (s),Scientific name,Common name,Confidence[,File]``).
* ``csv``: a plain ``file,start,end,species`` CSV (other columns are ignored).

A table finds its recording through its path column (``Begin Path``, ``File``, ``file``: a path relative to
the recordings folder, or a file name), else by its own name: ``<stem>.Table.1.selections.txt``, or any
``<stem><non-alphanumeric character>…`` name, belongs to ``<stem>.wav`` (the one in the table's folder when
several recordings share the stem; the longest matching stem wins). With ``annotations`` a folder, a
recording needs a table (an empty one for no birds); with one annotation file, recordings it does not name
are bird-free. A row with a ``Confidence`` below ``min_confidence`` is skipped.

Bad input is reported, not fatal: each bad row (end before start, a time past the recording's end by more
than :data:`TIME_TOLERANCE_S`, an unknown species, unreadable numbers) becomes a
:class:`~birdbridge.errors.Failure` naming the file and line, and the rest is used. A recording that
cannot be read, or whose table cannot be read or found, is left out (and listed), since its windows'
labels are unknown.

Windows follow birdbridge's windowing rule (:func:`~birdbridge.audio.windows.window_starts`, the rule
``embed_audio_windows`` uses; 5 s windows and hops by default, as BirdSet). A window is labelled with a
species when one of its annotations overlaps the window by more than 0 s and by at least
``min(min_overlap_s, min_overlap_fraction × the annotation's length)``. The default, 0.5 s or half the
call, keeps a window that holds a real part of a call and drops one that only catches the loose edge of a
box (boxes drawn on spectrograms overrun calls by a few tenths of a second), while a short call that lies
mostly inside a window still labels it. ``min_overlap_s: 0`` labels every window an annotation touches
(BirdSet's rule). Windows without labels are bird-free.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from birdbridge.audio.io import audio_info, scan_audio_files
from birdbridge.audio.windows import WindowSpec, count_windows
from birdbridge.datasets.base import Row, Table, read_table, resolve_path
from birdbridge.datasets.detect import DESCRIPTOR_NAMES, read_descriptor
from birdbridge.embed.table import skipped
from birdbridge.errors import BirdbridgeError, Failure, InputError
from birdbridge.species import SpeciesArg, Taxonomy, as_taxonomy
from birdbridge.utils.walk import collect_files

__all__ = [
    "ANNOTATION_FORMATS",
    "RAVEN_SPECIES_COLUMNS",
    "TIME_TOLERANCE_S",
    "Annotation",
    "LabelledWindow",
    "Recording",
    "SoundscapeDataset",
    "SoundscapeWindows",
    "load_soundscapes",
    "read_soundscapes",
]

_PathLike = str | os.PathLike[str]

ANNOTATION_FORMATS = ("raven", "birdnet", "csv")
RAVEN_SPECIES_COLUMNS = ("Species", "Species Code", "Common Name", "Annotation", "Label")
TIME_TOLERANCE_S = 0.25
"""Annotations may overrun the recording (or start before it) by this much; they are clipped to it."""

_NO_BIRD = "nocall"


@dataclass(frozen=True)
class _Format:
    suffixes: tuple[str, ...]  # table files looked for in an annotations folder
    start: str
    end: str
    species: tuple[str, ...]
    path: str  # the column naming the recording; without it a table is matched by its name
    optional: tuple[str, ...] = ()
    path_required: bool = False


_FORMATS = {
    "raven": _Format(
        (".txt", ".tsv"), "Begin Time (s)", "End Time (s)", RAVEN_SPECIES_COLUMNS, "Begin Path",
        ("Low Freq (Hz)", "High Freq (Hz)", "Selection", "View", "File Offset (s)", "Confidence"),
    ),
    "birdnet": _Format((".csv",), "Start (s)", "End (s)", ("Scientific name", "Common name"), "File", ("Confidence",)),
    "csv": _Format((".csv",), "start", "end", ("species",), "file", ("Confidence",), path_required=True),
}


@dataclass(frozen=True)
class Recording:
    """One soundscape recording; ``id`` is its path relative to the recordings folder (or list)."""

    id: str
    path: Path
    duration_s: float
    split: str | None = None
    site: str | None = None


@dataclass(frozen=True)
class Annotation:
    """One annotated call or song: a species in a time span (and frequency band) of a recording."""

    recording: str  # Recording.id
    start_s: float
    end_s: float
    species: str  # taxonomy key (scientific name)
    low_hz: float | None = None
    high_hz: float | None = None
    source: str = ""  # "<table>: line 7"


class LabelledWindow(NamedTuple):
    """One evaluation window and the species heard in it (empty: bird-free)."""

    recording: Recording
    start_s: float
    end_s: float
    labels: frozenset[str]


@dataclass(frozen=True, eq=False)
class SoundscapeWindows:
    """The evaluation windows of a soundscape dataset and their labels (sparse, by taxonomy column).

    Window ``i`` covers ``start_s[i]..end_s[i]`` of ``recordings[recording_index[i]]`` (windows in recording
    order, then time); its labels are ``species[label_species[label_ptr[i]:label_ptr[i + 1]]]``.
    """

    recordings: tuple[Recording, ...]
    species: tuple[str, ...]
    window_s: float
    hop_s: float
    recording_index: np.ndarray  # int64 [W]
    start_s: np.ndarray  # float64 [W]
    end_s: np.ndarray  # float64 [W]
    label_ptr: np.ndarray  # int64 [W + 1]
    label_species: np.ndarray  # int64 [P], ascending within each window

    def __len__(self) -> int:
        return int(self.start_s.size)

    @property
    def shape(self) -> tuple[int, int]:
        """(windows, species): the shape of :meth:`label_matrix`."""
        return len(self), len(self.species)

    def __getitem__(self, i: int) -> LabelledWindow:
        labels = self.label_species[self.label_ptr[i]:self.label_ptr[i + 1]]
        return LabelledWindow(
            self.recordings[int(self.recording_index[i])], float(self.start_s[i]), float(self.end_s[i]),
            frozenset(self.species[j] for j in labels),
        )

    def __iter__(self) -> Iterator[LabelledWindow]:
        return (self[i] for i in range(len(self)))

    def label_counts(self) -> np.ndarray:
        """Number of labels of each window [W]."""
        return np.diff(self.label_ptr)

    def label_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(window rows, species columns) of every positive label, sorted by row then column."""
        rows = np.repeat(np.arange(len(self), dtype=np.int64), self.label_counts())
        return rows, self.label_species.copy()

    def label_matrix(self) -> np.ndarray:
        """Boolean [windows, species] labels (dense: windows × species bytes; use :meth:`label_pairs` at scale)."""
        out = np.zeros(self.shape, dtype=bool)
        out[self.label_pairs()] = True
        return out

    def take(self, index: Sequence[int] | np.ndarray) -> SoundscapeWindows:
        """The windows at ``index``, in that order (e.g. :meth:`locate`'s result, to follow embedding rows)."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        bad = np.flatnonzero((idx < 0) | (idx >= len(self)))
        if bad.size:
            raise BirdbridgeError(
                f"{bad.size} of {idx.size} positions name no window (the first: position {bad[0]}, value {idx[bad[0]]})"
            )
        counts = self.label_counts()[idx]
        ptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        first = np.repeat(self.label_ptr[idx] - ptr[:-1], counts)  # where each window's labels sit, minus its new start
        return SoundscapeWindows(
            self.recordings, self.species, self.window_s, self.hop_s, self.recording_index[idx], self.start_s[idx],
            self.end_s[idx], ptr, self.label_species[first + np.arange(ptr[-1])],
        )

    def locate(
        self, names: Sequence[str], start_s: Sequence[float] | np.ndarray, tolerance_s: float | None = None
    ) -> np.ndarray:
        """The window index of each embedding row (``EmbeddingTable.names`` / ``start_s``), -1 if none.

        A name matches a recording by its path (as given or resolved); the start by the nearest window start
        within ``tolerance_s`` (default a quarter of the hop, which absorbs sample rounding).
        """
        tolerance = 0.25 * self.hop_s if tolerance_s is None else float(tolerance_s)
        starts = np.asarray(start_s, dtype=np.float64)
        if starts.shape != (len(names),):
            raise BirdbridgeError(f"locate needs one start time per name: {len(names)} names, {starts.size} starts")
        by_name: dict[str, int] = {}
        for i, rec in enumerate(self.recordings):
            by_name.setdefault(str(rec.path), i)
            by_name.setdefault(str(rec.path.resolve()), i)
        offsets = np.concatenate(([0], np.cumsum(np.bincount(self.recording_index, minlength=len(self.recordings)))))
        out = np.full(len(names), -1, dtype=np.int64)
        for row, (name, t) in enumerate(zip(names, starts, strict=True)):
            rec = by_name.get(str(name))
            if rec is None:
                rec = by_name.get(str(Path(name).resolve()), -1)
            if rec < 0:
                continue
            lo, hi = int(offsets[rec]), int(offsets[rec + 1])
            if lo == hi:
                continue
            k = lo + int(np.clip(np.searchsorted(self.start_s[lo:hi], t), 0, hi - lo - 1))
            best = min((j for j in (k - 1, k) if lo <= j < hi), key=lambda j: abs(self.start_s[j] - t))
            if abs(self.start_s[best] - t) <= tolerance:
                out[row] = best
        return out


@dataclass(eq=False)
class SoundscapeDataset:
    """Annotated soundscape recordings; ``failures`` lists what was skipped (rows, tables, recordings)."""

    name: str
    taxonomy: Taxonomy
    recordings: list[Recording]
    annotations: list[Annotation]
    failures: list[Failure] = field(default_factory=list)
    window_s: float = 5.0
    hop_s: float | None = 5.0
    min_overlap_s: float = 0.5
    min_overlap_fraction: float | None = 0.5

    def __repr__(self) -> str:
        return (
            f"SoundscapeDataset({self.name!r}, {len(self.recordings)} recordings, {len(self.annotations)} annotations, "
            f"{len(self.failures)} failures)"
        )

    def windows(
        self,
        window_s: float | None = None,
        hop_s: float | None = None,
        *,
        min_overlap_s: float | None = None,
        min_overlap_fraction: float | None = None,
        min_tail_s: float = 1.0,
    ) -> SoundscapeWindows:
        """Every recording's windows with their label sets (arguments default to the dataset's settings).

        ``min_tail_s`` is ``embed_audio_windows``' (capped at the window length): pass the value used for
        the embeddings so that the windows are the same.
        """
        window = float(self.window_s if window_s is None else window_s)
        hop = self.hop_s if hop_s is None else hop_s
        spec = WindowSpec(window, None if hop is None else float(hop), min(min_tail_s, window))
        min_s = float(self.min_overlap_s if min_overlap_s is None else min_overlap_s)
        fraction = self.min_overlap_fraction if min_overlap_fraction is None else min_overlap_fraction
        _check_overlap(min_s, fraction)
        column = {key: j for j, key in enumerate(self.taxonomy.keys)}
        by_recording: dict[str, list[Annotation]] = {}
        for ann in self.annotations:
            by_recording.setdefault(ann.recording, []).append(ann)

        rec_index, starts, ends = [], [], []
        pairs: set[tuple[int, int]] = set()
        offset = 0
        for r, rec in enumerate(self.recordings):
            s = np.arange(count_windows(rec.duration_s, spec)) * spec.step_s  # window_starts, as an array
            e = np.minimum(s + window, rec.duration_s)
            for ann in by_recording.get(rec.id, ()):
                lo, hi = np.searchsorted(e, ann.start_s, "right"), np.searchsorted(s, ann.end_s, "left")
                overlap = np.minimum(e[lo:hi], ann.end_s) - np.maximum(s[lo:hi], ann.start_s)
                need = min_s if fraction is None else min(min_s, fraction * (ann.end_s - ann.start_s))
                hits = np.flatnonzero((overlap > 0) & (overlap >= need - 1e-9))
                pairs.update((offset + int(lo) + int(k), column[ann.species]) for k in hits)
            rec_index.append(np.full(s.size, r, dtype=np.int64))
            starts.append(s)
            ends.append(e)
            offset += s.size
        ordered = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
        return SoundscapeWindows(
            recordings=tuple(self.recordings),
            species=self.taxonomy.keys,
            window_s=window,
            hop_s=spec.step_s,
            recording_index=np.concatenate(rec_index) if rec_index else np.zeros(0, np.int64),
            start_s=np.concatenate(starts) if starts else np.zeros(0),
            end_s=np.concatenate(ends) if ends else np.zeros(0),
            label_ptr=np.concatenate(([0], np.cumsum(np.bincount(ordered[:, 0], minlength=offset)))).astype(np.int64),
            label_species=ordered[:, 1].copy(),
        )

    def label_matrix(self, window_s: float | None = None, hop_s: float | None = None) -> np.ndarray:
        """Boolean [windows, species] labels of :meth:`windows` (species in taxonomy order)."""
        return self.windows(window_s, hop_s).label_matrix()

    def summary(self) -> str:
        """A few lines for people: recordings, hours, annotations, windows and the bird-free share."""
        windows = self.windows()
        hours = sum(r.duration_s for r in self.recordings) / 3600
        labelled = int((windows.label_counts() > 0).sum())
        annotated = len({a.species for a in self.annotations})
        free = 100.0 * (len(windows) - labelled) / len(windows) if len(windows) else 0.0
        return "\n".join([
            f"dataset      {self.name} (soundscapes)",
            f"recordings   {len(self.recordings):,} ({hours:,.2f} h)",
            f"annotations  {len(self.annotations):,} of {annotated:,} species (taxonomy: {len(self.taxonomy):,})",
            f"windows      {len(windows):,} of {windows.window_s:g} s, hop {windows.hop_s:g} s; {free:.1f}% bird-free",
            f"failures     {len(self.failures):,}",
        ])


def _check_overlap(min_overlap_s: float, fraction: float | None) -> None:
    if not min_overlap_s >= 0:
        raise BirdbridgeError(f"min_overlap_s must be a number of seconds >= 0, not {min_overlap_s!r}")
    if fraction is not None and not 0 < fraction <= 1:
        raise BirdbridgeError(f"min_overlap_fraction must lie in (0, 1] (or be None), not {fraction!r}")


# -------------------------------------------------------------------------------------------- loading


def load_soundscapes(ref: _PathLike) -> SoundscapeDataset:
    """Open a ``type: soundscape`` ``dataset.yaml`` (or the folder holding it).

    Keys (paths relative to the YAML): ``recordings`` (a folder, searched recursively, or a CSV with
    ``path[,split][,site]``; default: the YAML's folder), ``annotations`` (a folder of tables or one file;
    default: the recordings folder, or the YAML's folder beside a recordings list), ``annotation_format``
    (raven | birdnet | csv; default raven), ``species_column``, ``taxonomy`` (required), ``min_confidence``,
    ``window_s`` (5), ``hop_s`` (5), ``min_overlap_s`` (0.5), ``min_overlap_fraction`` (0.5), ``name``.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        found = [path / n for n in DESCRIPTOR_NAMES if (path / n).is_file()]
        if not found:
            raise InputError(str(path), "folder holds no dataset.yaml", "write one with 'type: soundscape'")
        path = found[0]
    kind, values, base, source = read_descriptor(path)
    if kind != "soundscape":
        raise InputError(source, f"is a {kind!r} dataset, not soundscapes", "open it with load_dataset")
    if "taxonomy" not in values:
        raise InputError(source, "type 'soundscape' needs a 'taxonomy' key", "e.g. 'taxonomy: taxonomy.csv'")
    fmt = values.get("annotation_format", "raven")
    if fmt not in _FORMATS:
        raise InputError(source, f"'annotation_format' is {fmt!r}", f"use one of {', '.join(_FORMATS)}")
    recordings = values.get("recordings", base)
    options = ("species_column", "min_confidence", "window_s", "hop_s", "min_overlap_s", "min_overlap_fraction")
    try:
        return read_soundscapes(
            recordings,
            values.get("annotations", recordings if Path(recordings).is_dir() else base),
            values["taxonomy"],
            annotation_format=fmt,
            name=values.get("name") or base.resolve().name,
            **{k: values[k] for k in options if k in values},
        )
    except BirdbridgeError as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(source, str(exc)) from None


def read_soundscapes(
    recordings: _PathLike,
    annotations: _PathLike,
    taxonomy: SpeciesArg,
    *,
    annotation_format: str = "raven",
    species_column: str | None = None,
    min_confidence: float | None = None,
    window_s: float = 5.0,
    hop_s: float | None = 5.0,
    min_overlap_s: float = 0.5,
    min_overlap_fraction: float | None = 0.5,
    name: str | None = None,
) -> SoundscapeDataset:
    """Read recordings (a folder or a ``path[,split][,site]`` CSV) and their annotations (see the module doc).

    Raises InputError only for what makes the whole dataset unusable (a missing folder, a bad recordings
    list, an unknown format, a taxonomy that cannot be read); everything else is listed in ``failures``.
    """
    if annotation_format not in _FORMATS:
        raise InputError("annotation_format", f"unknown format {annotation_format!r}", f"use {', '.join(_FORMATS)}")
    _check_overlap(min_overlap_s, min_overlap_fraction)
    WindowSpec(window_s, hop_s)  # fail early on bad window settings
    tax = as_taxonomy(taxonomy)
    failures: list[Failure] = []
    recs = _RecordingIndex(_read_recordings(Path(recordings).expanduser(), failures))
    reader = _AnnotationReader(tax, _FORMATS[annotation_format], species_column, min_confidence, recs, failures)
    ann_path = Path(annotations).expanduser()
    found = collect_files([ann_path], _FORMATS[annotation_format].suffixes, what=f"{annotation_format} tables")
    failures += skipped(found.problems)
    for table in found.files:
        reader.read(table)

    kept = []
    for rec in recs.recordings:
        if rec.id in reader.broken:
            continue
        if ann_path.is_dir() and rec.id not in reader.covered:
            failures.append(Failure(str(rec.path), "no annotation table found; the recording is left out "
                                    "(write a table, an empty one for no birds, named <stem>.Table.1.selections.txt)"))
            continue
        kept.append(rec)
    ids = {r.id for r in kept}
    return SoundscapeDataset(
        name=name or _folder(Path(recordings)).name,
        taxonomy=tax,
        recordings=kept,
        annotations=[a for a in reader.annotations if a.recording in ids],
        failures=failures,
        window_s=float(window_s),
        hop_s=None if hop_s is None else float(hop_s),
        min_overlap_s=float(min_overlap_s),
        min_overlap_fraction=min_overlap_fraction,
    )


def _folder(path: Path) -> Path:
    path = path.expanduser().resolve()
    return path if path.is_dir() else path.parent


def _read_recordings(ref: Path, failures: list[Failure]) -> list[Recording]:
    """Recordings with their durations; unreadable ones go to ``failures``."""
    listed: list[tuple[Path, str, str | None, str | None]] = []
    if ref.is_dir():
        found = scan_audio_files([ref])
        failures += skipped(found.problems)
        for path in found.files:  # paths below ref, as found
            listed.append((path, path.relative_to(ref).as_posix(), None, None))
    elif ref.is_file():
        table = read_table(ref, required=("path",), optional=("split", "site"))
        base = ref.parent.resolve()
        seen: dict[str, str] = {}
        for row in table.rows:
            try:
                path = resolve_path(base, table.text(row, "path"))
                full = path.resolve()
                rid = full.relative_to(base).as_posix() if full.is_relative_to(base) else str(full)
                table.claim(seen, rid, row, "recording")
            except InputError as exc:
                failures.append(Failure(table.source, _problem(exc)))
                continue
            listed.append((path, rid, table.optional_text(row, "split"), table.optional_text(row, "site")))
    else:
        raise InputError(str(ref), "no such file or folder", "check the 'recordings' path")
    out = []
    for path, rid, split, site in listed:
        try:
            duration = audio_info(path).duration_s
        except BirdbridgeError as exc:
            problem = _problem(exc) if isinstance(exc, InputError) else str(exc)
            failures.append(Failure(str(path), f"{problem}; the recording is left out"))
            continue
        out.append(Recording(rid, path, duration, split, site))
    return out


class _RecordingIndex:
    """Finds the recording a table (by its name) or a path cell (by path or file name) refers to."""

    def __init__(self, recordings: list[Recording]) -> None:
        self.recordings = recordings
        self.by_id = {r.id: r for r in recordings}
        self.by_path = {r.path.resolve(): r for r in recordings}
        self.by_name: dict[str, list[Recording]] = {}
        self.by_stem: dict[str, list[Recording]] = {}
        for r in recordings:
            self.by_name.setdefault(r.path.name, []).append(r)
            self.by_stem.setdefault(r.path.stem, []).append(r)

    @staticmethod
    def _pick(found: list[Recording], near: Path, what: str) -> Recording:
        if len(found) > 1:
            here = [r for r in found if r.path.parent.resolve() == near.resolve()]
            if len(here) != 1:
                shown = ", ".join(r.id for r in found[:3])
                raise LookupError(f"{what} matches several recordings ({shown}); name the file by its path")
            return here[0]
        return found[0]

    def by_cell(self, value: str, near: Path) -> Recording:
        """The recording a path cell names (relative to the recordings, to the table, or a file name)."""
        text = value.strip().replace("\\", "/")
        if text in self.by_id:
            return self.by_id[text]
        direct = self.by_path.get(resolve_path(near, text).resolve())
        if direct is not None:
            return direct
        file_name = text.rsplit("/", 1)[-1]
        found = self.by_name.get(file_name) or self.by_stem.get(file_name)
        if not found:
            raise LookupError(f"recording {value!r} is not among the recordings")
        return self._pick(found, near, f"recording {value!r}")

    def by_table_name(self, table: Path) -> Recording:
        """The recording ``<stem>.wav`` of a table named ``<stem>`` + a non-alphanumeric character + anything."""
        name = table.name
        for i in range(len(name) - 1, 0, -1):  # longest stem first
            if not name[i].isalnum() and name[:i] in self.by_stem:
                return self._pick(self.by_stem[name[:i]], table.parent, f"table name {name!r}")
        raise LookupError(
            "no recording found for this table: its name does not start with a recording's name "
            "and it has no path column"
        )


class _AnnotationReader:
    """Reads annotation tables into ``annotations``; bad rows and tables go to ``failures``."""

    def __init__(
        self,
        taxonomy: Taxonomy,
        fmt: _Format,
        species_column: str | None,
        min_confidence: float | None,
        recordings: _RecordingIndex,
        failures: list[Failure],
    ) -> None:
        self.taxonomy = taxonomy
        self.fmt = fmt
        self.species_columns = (species_column,) if species_column else fmt.species
        self.min_confidence = min_confidence
        self.recordings = recordings
        self.failures = failures
        self.annotations: list[Annotation] = []
        self.covered: set[str] = set()  # recordings with a table
        self.broken: set[str] = set()  # recordings whose table could not be read

    def fail(self, source: str, message: str) -> None:
        self.failures.append(Failure(source, message))

    def skip(self, path: Path, problem: str) -> None:
        """Report a table that cannot be used; the recording its name points to is left out."""
        self.fail(str(path), f"{problem}; the table is skipped")
        with contextlib.suppress(LookupError):  # its labels are unknown
            self.broken.add(self.recordings.by_table_name(path).id)

    def read(self, path: Path) -> None:
        source = str(path)
        fmt = self.fmt
        optional = (*self.species_columns, *fmt.optional) + (() if fmt.path_required else (fmt.path,))
        required = (fmt.start, fmt.end) + ((fmt.path,) if fmt.path_required else ())
        try:
            table = read_table(path, required=required, optional=optional)
        except InputError as exc:
            self.skip(path, _problem(exc))
            return
        species = [c for c in self.species_columns if c in table]
        if not species:
            wanted = ", ".join(map(repr, self.species_columns))
            self.skip(path, f"no species column (looked for {wanted}; found {', '.join(table.columns)})")
            return
        by_name: Recording | None = None
        if fmt.path not in table or not table.rows:
            try:
                by_name = self.recordings.by_table_name(path)
            except LookupError as exc:
                if table.rows:
                    self.fail(source, f"{exc}; the table is skipped")
                return
            self.covered.add(by_name.id)
        unknown: dict[str, list[str]] = {}  # path cell -> rows naming it, when no recording matches
        for row in _one_row_per_selection(table):
            try:
                rec = by_name or self._recording(table, row, path.parent)
                ann = self._annotation(table, row, species, rec)
            except InputError as exc:
                self.fail(source, _problem(exc))
                continue
            except LookupError as exc:
                unknown.setdefault(str(exc), []).append(row.where)
                continue
            if ann is not None:
                self.annotations.append(ann)
        for problem, rows in unknown.items():
            shown = ", ".join(rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
            self.fail(source, f"{problem}: {shown} skipped")

    def _recording(self, table: Table, row: Row, near: Path) -> Recording:
        rec = self.recordings.by_cell(table.text(row, self.fmt.path), near)
        self.covered.add(rec.id)
        return rec

    def _annotation(self, table: Table, row: Row, columns: list[str], rec: Recording) -> Annotation | None:
        values = [v for v in (table.optional_text(row, c) for c in columns) if v]
        if not values:
            raise table.error(row, f"no species name in {' or '.join(map(repr, columns))}")
        if any(v.casefold() == _NO_BIRD for v in values):
            return None
        confidence = table.number(row, "Confidence") if "Confidence" in table else None
        if self.min_confidence is not None and confidence is not None and confidence < self.min_confidence:
            return None
        start, end = table.number(row, self.fmt.start), table.number(row, self.fmt.end)
        if start is None or end is None:
            raise table.error(row, f"{self.fmt.start!r} and {self.fmt.end!r} need values")
        if self.fmt.path in table and "File Offset (s)" in table:  # Raven tables over several files
            offset = table.number(row, "File Offset (s)")
            if offset is not None:
                start, end = offset, offset + (end - start)
        _check_times(table, row, start, end, rec)
        found = None
        for value in values:
            found = self.taxonomy.get(value)
            if found is not None:
                break
        if found is None:
            shown = " / ".join(map(repr, values))
            raise table.error(row, f"species {shown} is not in the taxonomy ({len(self.taxonomy)} species)",
                              "add it to the taxonomy or correct the name")
        low = table.number(row, "Low Freq (Hz)") if "Low Freq (Hz)" in table else None
        high = table.number(row, "High Freq (Hz)") if "High Freq (Hz)" in table else None
        return Annotation(rec.id, max(0.0, start), min(end, rec.duration_s), found.key, low, high,
                          f"{table.source}: {row.where}")


def _problem(exc: InputError) -> str:
    """An InputError's message without its source (the Failure names it)."""
    return exc.problem + (f" ({exc.hint})" if exc.hint else "")


def _check_times(table: Table, row: Row, start: float, end: float, rec: Recording) -> None:
    if end < start:
        raise table.error(row, f"ends ({end:g} s) before it starts ({start:g} s)", "swap or correct the times")
    if end == start:
        raise table.error(row, f"has no length (starts and ends at {start:g} s)", "draw a box around the call")
    if start < -TIME_TOLERANCE_S:
        raise table.error(row, f"starts before the recording ({start:g} s)")
    if end > rec.duration_s + TIME_TOLERANCE_S or start >= rec.duration_s:
        raise table.error(
            row, f"{start:g}–{end:g} s lies past the end of {rec.id} ({rec.duration_s:g} s)",
            "check that the table belongs to this recording",
        )


def _one_row_per_selection(table: Table) -> list[Row]:
    """Raven writes a row per view (``Spectrogram 1``, ``Waveform 1``) for each selection: keep one."""
    if "Selection" not in table or "View" not in table:
        return table.rows
    views = [table.optional_text(r, "View") or "" for r in table.rows]
    first = next((v for v in views if v.lower().startswith("spectrogram")), views[0] if views else "")
    chosen: dict[Any, Row] = {}
    for row, view in zip(table.rows, views, strict=True):
        key = table.optional_text(row, "Selection") or row.where
        if key not in chosen or (view == first and (table.optional_text(chosen[key], "View") or "") != first):
            chosen[key] = row
    return list(chosen.values())
