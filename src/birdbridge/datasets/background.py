"""Non-bird recordings labelled with background classes, and the quiet stretches between known calls.

Two layouts name the class of each recording by a label (or alias) of a
:class:`~birdbridge.species.background.BackgroundVocabulary`:

* a folder of class subfolders, ``wind/``, ``rain/``, ``water/``, ... (searched recursively; no splits);
* a manifest table (``.csv``, ``.tsv`` or ``.parquet``) with columns ``path`` (relative to the table's
  folder), ``label`` and optionally ``split`` and ``duration_s``, like the demo world's ``background.csv``.

A folder or label that names no class of the vocabulary is an error naming the folder, or the table
and line. :func:`quiet_stretches` cuts the parts of a recording between its calls (where call times are
known, e.g. a manifest's ``call_onsets``/``call_offsets`` columns), which are background too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from birdbridge.audio.io import AUDIO_EXTENSIONS, audio_info, scan_audio_files
from birdbridge.datasets.base import AudioItem, read_table, resolve_path
from birdbridge.datasets.detect import TABLE_SUFFIXES
from birdbridge.embed.table import skipped
from birdbridge.errors import BirdbridgeError, Failure, InputError
from birdbridge.species.background import BackgroundVocabulary

__all__ = ["BackgroundClip", "call_gap_clips", "for_split", "quiet_stretches", "read_background"]

CALL_COLUMNS = ("call_onsets", "call_offsets")
_NUMBERS = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class BackgroundClip:
    """A non-bird recording (or the stretch ``start_s``..``end_s`` of one) of the background class ``label``."""

    path: Path
    label: str  # the vocabulary's label (aliases resolved)
    split: str | None = None
    duration_s: float | None = None  # of the file
    start_s: float = 0.0
    end_s: float | None = None  # None: the end of the file
    source: str = ""  # where it was listed: "background.csv: line 4", a folder, or a recording's id


def read_background(
    source: str | os.PathLike[str], vocabulary: BackgroundVocabulary | None = None
) -> tuple[list[BackgroundClip], list[Failure]]:
    """The clips a background folder or manifest lists (see the module docstring), and unreadable folder entries.

    Raises InputError for a missing source, a class folder or label the vocabulary does not know (naming the
    folder, or the table and line), audio outside class folders, or a table without ``path``/``label``.
    """
    vocab = vocabulary or BackgroundVocabulary()
    path = Path(source).expanduser()
    if path.is_dir():
        return _read_folder(path, vocab)
    if path.is_file():
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise InputError(str(path), "is neither a folder of class folders nor a table (.csv, .tsv, .parquet)",
                             "give a folder with wind/, rain/, ... or a CSV with path, label[, split]")
        return _read_table(path, vocab), []
    raise InputError(str(path), "no such file or folder", "give a folder of class folders or a CSV (path, label)")


def _label(vocab: BackgroundVocabulary, name: str) -> str | None:
    try:
        return vocab.labels[vocab.index(name)]
    except KeyError:
        return None


def _known(vocab: BackgroundVocabulary) -> str:
    return f"background classes of {vocab.source}: {', '.join(vocab.labels)} (or their aliases)"


def _read_folder(folder: Path, vocab: BackgroundVocabulary) -> tuple[list[BackgroundClip], list[Failure]]:
    clips: list[BackgroundClip] = []
    failures: list[Failure] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            if entry.suffix.lower() in AUDIO_EXTENSIONS:
                raise InputError(str(entry), "is not in a class folder",
                                 f"put each recording in a folder named by its class ({_known(vocab)})")
            continue
        label = _label(vocab, entry.name)
        if label is None:
            raise InputError(str(entry), f"the folder name {entry.name!r} is not a background class",
                             f"name class folders by one of the {_known(vocab)}")
        found = scan_audio_files([entry])
        failures += skipped(found.problems)
        clips += [BackgroundClip(p, label, source=str(entry)) for p in found.files]
    if not clips:
        raise InputError(str(folder), "holds no recordings in class folders", f"e.g. wind/*.wav ({_known(vocab)})")
    return clips, failures


def _read_table(path: Path, vocab: BackgroundVocabulary) -> list[BackgroundClip]:
    table = read_table(path, required=("path", "label"), optional=("split", "duration_s", "id"))
    base = path.resolve().parent
    clips = []
    for row in table.rows:
        name = table.text(row, "label")
        label = _label(vocab, name)
        if label is None:
            raise table.error(row, f"label {name!r} is not a background class", f"use one of the {_known(vocab)}")
        clips.append(BackgroundClip(
            resolve_path(base, table.text(row, "path")), label, table.optional_text(row, "split"),
            table.number(row, "duration_s"), source=f"{table.source}: {row.where}",
        ))
    if not clips:
        raise InputError(str(path), "lists no recordings", "one row per recording: path, label[, split]")
    return clips


def for_split(clips: Iterable[BackgroundClip], split: str, *, unsplit: bool = True) -> list[BackgroundClip]:
    """The clips of ``split``; clips without a split (a folder's) too when ``unsplit``."""
    return [c for c in clips if c.split == split or (unsplit and c.split is None)]


def quiet_stretches(
    duration_s: float, calls: Sequence[tuple[float, float]], *, margin_s: float = 0.1, min_s: float = 0.5
) -> list[tuple[float, float]]:
    """The ``(start, end)`` stretches of a ``duration_s`` recording at least ``margin_s`` away from every call
    ``(onset, offset)``, of ``min_s`` or longer, in time order."""
    if margin_s < 0 or min_s <= 0:
        raise BirdbridgeError(f"quiet stretches need margin_s >= 0 and min_s > 0, got {margin_s} and {min_s}")
    busy = sorted((max(0.0, a - margin_s), min(duration_s, b + margin_s)) for a, b in calls)
    out, t = [], 0.0
    for a, b in busy:
        if a - t >= min_s:
            out.append((t, a))
        t = max(t, b)
    if duration_s - t >= min_s:
        out.append((t, duration_s))
    return out


def call_gap_clips(
    items: Iterable[AudioItem], label: str, *, margin_s: float = 0.1, min_s: float = 0.5
) -> tuple[list[BackgroundClip], int]:
    """Background clips of class ``label`` cut between the calls of the recordings whose call times are known
    (``call_onsets``/``call_offsets`` in their manifest: numbers separated by spaces, commas or semicolons).

    Returns the clips and how many recordings had call times. A recording with unreadable or unpaired call
    times is an InputError naming it.
    """
    clips: list[BackgroundClip] = []
    timed = 0
    for item in items:
        onsets, offsets = (item.meta.get(c) for c in CALL_COLUMNS)
        if onsets is None or offsets is None:
            continue
        starts, ends = _times(item, onsets, CALL_COLUMNS[0]), _times(item, offsets, CALL_COLUMNS[1])
        if len(starts) != len(ends) or any(b < a for a, b in zip(starts, ends, strict=False)):
            raise InputError(str(item.path), f"recording {item.id!r}: call_onsets and call_offsets do not pair up "
                             f"({len(starts)} onsets, {len(ends)} offsets)", "give one offset after each onset")
        timed += 1
        duration = item.duration_s or audio_info(item.path).duration_s
        calls = list(zip(starts, ends, strict=True))
        clips += [BackgroundClip(item.path, label, item.split, duration, a, b, source=f"between calls of {item.id}")
                  for a, b in quiet_stretches(duration, calls, margin_s=margin_s, min_s=min_s)]
    return clips, timed


def _times(item: AudioItem, value: object, column: str) -> list[float]:
    text = str(value).strip()
    try:
        return [float(v) for v in _NUMBERS.split(text) if v]
    except ValueError:
        raise InputError(str(item.path), f"recording {item.id!r}: {column} is not a list of seconds: {text!r}",
                         "write numbers separated by spaces") from None
