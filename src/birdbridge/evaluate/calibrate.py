"""``birdbridge calibrate``: fit a trained student's similarity → confidence map on a labelled split.

The student embeds every window of the split's recordings; each window is compared (cosine similarity)
with every species' teacher text embedding, made with the forms and templates searches use (the
gallery's defaults: ``taxonomic_common`` with the ``openai`` templates). Every window × species pair is
one example of :func:`birdbridge.models.calibration.fit_calibration`, positive when the species calls in
the window:

* clips of one species (SSW60, iNatSounds, manifests): the clip's species in each of its windows;
* soundscapes (a ``type: soundscape`` dataset): each window's label set (bird-free windows: none);
* background recordings (``background``: non-bird audio, :mod:`birdbridge.datasets.background`): none.

The fit is stored as ``calibration.json`` in the model folder, outside the model's fingerprint.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.embed.audio import embed_audio_windows
from birdbridge.embed.text import DEFAULT_FORMS, DEFAULT_TEMPLATES
from birdbridge.errors import BirdbridgeError, Failure
from birdbridge.evaluate.metrics import average_precision
from birdbridge.models.calibration import Calibration, fit_calibration, write_calibration
from birdbridge.models.student import AudioStudent
from birdbridge.species import PromptSpec, Taxonomy, species_text_embeddings
from birdbridge.species.background import BackgroundVocabulary

__all__ = ["MAX_FIT_PAIRS", "CalibrationReport", "calibrate", "calibrate_student"]

MAX_FIT_PAIRS = 5_000_000
"""Above this many pairs, negatives are subsampled for the fit (and the intercept corrected for it)."""


@dataclass
class CalibrationReport:
    """A fitted calibration and the pairs it was fitted on (``similarities`` and ``positives``: [windows, species])."""

    calibration: Calibration
    similarities: np.ndarray
    positives: np.ndarray
    bird_free_windows: int  # windows without a species (soundscape gaps and background clips)
    background_windows: int  # of them, windows of background recordings
    failures: list[Failure] = field(default_factory=list)
    path: Path | None = None  # where it was written

    @property
    def figures(self) -> dict[str, Any]:
        return self.calibration.extra

    def lines(self) -> list[str]:
        """A short report for people."""
        cal, f = self.calibration, self.calibration.extra
        windows, species = self.similarities.shape
        sign = "-" if cal.intercept < 0 else "+"
        return [
            f"calibrated on {cal.source}: {windows:,} windows ({self.bird_free_windows:,} without birds, "
            f"{self.background_windows:,} of background recordings) x {species:,} species = "
            f"{cal.n_positive + cal.n_negative:,} pairs ({cal.n_positive:,} positive)",
            f"  logit = {cal.slope:.4g} x similarity {sign} {abs(cal.intercept):.4g}; log-loss {f['log_loss']:.4f}",
            f"  separation: AP {f['average_precision']:.3f} (chance {cal.n_positive / max(1, windows * species):.3f}); "
            f"confidence {f['confidence_median_positive']:.3f} at the median positive pair, "
            f"{f['confidence_p99_negative']:.3f} at the 99th-percentile negative",
        ]


def calibrate(
    model: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    *,
    split: str = "val",
    teacher: str | None = None,
    forms: Sequence[str] = DEFAULT_FORMS,
    templates: str | Sequence[str] = DEFAULT_TEMPLATES,
    background: str | os.PathLike[str] | None = None,
    background_vocabulary: BackgroundVocabulary | None = None,
    window_s: float | None = None,
    hop_s: float | None = None,
    batch_size: int = 16,
    device: str | None = None,
    progress: bool | None = None,
    write: bool = True,
) -> CalibrationReport:
    """Calibrate the trained student ``model`` (a ``birdbridge train`` output) on ``split`` of ``dataset``, as
    ``birdbridge calibrate``; with ``write``, store it as the model folder's ``calibration.json``.

    ``teacher`` defaults to the one the student records (it must be that one). ``background``: a folder of
    class folders or a manifest of non-bird recordings; its clips of ``split`` (and those without a split)
    are negative windows. See :func:`calibrate_student` for the rest.
    """
    from birdbridge.models.distilled import read_meta
    from birdbridge.models.loader import load_student, load_teacher, model_layout, resolve_cached

    layout = model_layout(model)
    if layout != "birdbridge":
        raise BirdbridgeError(
            f"{model}: is not a birdbridge student (a {layout} model); calibration maps a trained student's "
            "similarities to its teacher's species texts; give a `birdbridge train` output folder (its model/)"
        )
    folder = Path(resolve_cached(str(model)).folder)
    meta = read_meta(folder)
    student = load_student(str(model), device)
    recorded = meta["teacher"]
    report = calibrate_student(
        student, load_teacher(teacher or recorded["ref"], device), dataset, split=split, forms=forms,
        templates=templates, background=background, background_vocabulary=background_vocabulary, window_s=window_s,
        hop_s=hop_s, batch_size=batch_size, progress=progress, teacher_fingerprint=recorded["fingerprint"],
        teacher_name=f"{recorded.get('name') or recorded['ref']}",
    )
    if write:
        report.path = write_calibration(folder, report.calibration)
        student.calibration = report.calibration  # the loaded (cached) student carries it from now on
    return report


def calibrate_student(
    student: AudioStudent,
    teacher: Any,
    dataset: str | os.PathLike[str],
    *,
    split: str,
    forms: Sequence[str] | str = DEFAULT_FORMS,
    templates: str | Sequence[str] = DEFAULT_TEMPLATES,
    background: str | os.PathLike[str] | None = None,
    background_vocabulary: BackgroundVocabulary | None = None,
    unsplit_background: bool = True,
    window_s: float | None = None,
    hop_s: float | None = None,
    batch_size: int = 16,
    teacher_fingerprint: str | None = None,
    teacher_name: str = "",
    progress: bool | None = None,
) -> CalibrationReport:
    """Fit the calibration of ``student`` (with its projection head into ``teacher``'s space); nothing is written.

    Windows: ``window_s``/``hop_s`` (default: a soundscape dataset's own windows, at most the model's input;
    clips: the model's window). ``teacher_fingerprint``: the teacher the student was distilled for (a
    different ``teacher`` is refused). ``unsplit_background``: also use background clips without a split.

    Raises BirdbridgeError for a split without positives or with fewer than two species, a teacher that is
    not the student's, and a fit whose confidence does not rise with similarity (slope <= 0).
    """
    if teacher_fingerprint is not None and teacher.fingerprint != teacher_fingerprint:
        raise BirdbridgeError(
            f"the student was distilled for teacher {teacher_name or teacher_fingerprint} ({teacher_fingerprint}), "
            f"not for {getattr(teacher, 'name', 'this one')} ({teacher.fingerprint}); pass the student's teacher"
        )
    forms = (forms,) if isinstance(forms, str) else tuple(forms)
    spec = PromptSpec(forms=forms, templates=templates if isinstance(templates, str) else tuple(templates))
    student.eval()
    windows = _labelled_windows(student, dataset, split, window_s, hop_s, batch_size, progress)
    species = windows.taxonomy
    vectors, labels, failures = [windows.vectors], [windows.labels], list(windows.failures)
    n_background = 0
    source = f"{windows.name}:{split}"
    if background is not None:
        bg_vectors, bg_failures = _background_windows(student, background, background_vocabulary, split,
                                                      unsplit_background, windows.window_s, windows.hop_s,
                                                      batch_size, progress)
        failures += bg_failures
        if len(bg_vectors):
            n_background = len(bg_vectors)
            vectors.append(bg_vectors)
            labels.append(np.zeros((len(bg_vectors), len(species)), bool))
            source += f" + background {Path(background).name}"
    emb = np.concatenate(vectors)
    positives = np.concatenate(labels)
    _check_labels(positives, source)
    text = species_text_embeddings(teacher, species, spec, progress=progress)
    sims = (emb.astype(np.float32) @ text.T).astype(np.float32)
    figures = {"windows": len(emb), "species": len(species), "window_s": windows.window_s,
               "hop_s": windows.hop_s, "background_windows": n_background}
    calibration = _fit(sims, positives, source=source, prompts=spec.as_dict(),
                       teacher_fingerprint=teacher.fingerprint, extra=figures)
    if calibration.slope <= 0:
        raise BirdbridgeError(
            f"{source}: confidence would fall as similarity rises (slope {calibration.slope:.4g}, AP "
            f"{calibration.extra['average_precision']:.3f} against {positives.mean():.3f} by chance): the student's "
            "similarities do not tell these species apart, so no calibration is stored; train it on them"
        )
    return CalibrationReport(calibration, sims, positives, int((~positives.any(axis=1)).sum()), n_background,
                             failures)


# ------------------------------------------------------------------------------------------ windows


@dataclass
class _Windows:
    name: str
    taxonomy: Taxonomy
    vectors: np.ndarray  # [W, D]
    labels: np.ndarray  # bool [W, S]
    window_s: float
    hop_s: float
    failures: list[Failure]


def _is_soundscape(ref: str | os.PathLike[str]) -> bool:
    from birdbridge.datasets.detect import detect_layout, read_descriptor

    layout, path = detect_layout(ref)
    return layout == "descriptor" and read_descriptor(path)[0] == "soundscape"


def _labelled_windows(student: AudioStudent, dataset, split: str, window_s, hop_s, batch_size: int,
                      progress) -> _Windows:
    if _is_soundscape(dataset):
        return _soundscape_windows(student, dataset, split, window_s, hop_s, batch_size, progress)
    from birdbridge.datasets import load_dataset

    ds = load_dataset(dataset)
    items = ds.audio_split(split)
    if not items:
        raise BirdbridgeError(f"{ds.name}: no audio in split {split!r} (audio splits: {ds.splits()['audio']})")
    window = float(window_s or student.window_s)
    hop = float(hop_s or window)
    table = embed_audio_windows([it.path for it in items], student, window_s=window, hop_s=hop,
                                batch_size=batch_size, progress=progress)
    column = {str(it.path): ds.taxonomy.index(it.species) for it in items}
    labels = np.zeros((len(table), len(ds.taxonomy)), bool)
    labels[np.arange(len(table)), [column[name] for name in table.names]] = True
    return _Windows(ds.name, ds.taxonomy, table.vectors, labels, window, hop, list(table.failures))


def _soundscape_windows(student: AudioStudent, dataset, split: str, window_s, hop_s, batch_size: int,
                        progress) -> _Windows:
    from birdbridge.datasets import load_soundscapes

    ds = load_soundscapes(dataset)
    recordings = [r for r in ds.recordings if r.split == split]
    if not recordings:
        splits = sorted({r.split for r in ds.recordings if r.split}) or ["none: give splits in the recordings list"]
        raise BirdbridgeError(f"{ds.name}: no soundscape recording in split {split!r} (splits: {', '.join(splits)})")
    window = float(window_s or ds.window_s)
    hop = float(hop_s or ds.hop_s or window)
    if window > student.window_s + 1e-9:  # the model hears at most its own window: label windows that long
        window = float(student.window_s)
        hop = float(hop_s or window)
    table = embed_audio_windows([r.path for r in recordings], student, window_s=window, hop_s=hop,
                                batch_size=batch_size, progress=progress)
    labelled = dataclasses.replace(ds, recordings=recordings).windows(window, hop)
    rows = labelled.locate(table.names, table.start_s)
    keep = rows >= 0
    labels = labelled.take(rows[keep]).label_matrix()
    failures = [*ds.failures, *table.failures]
    return _Windows(ds.name, ds.taxonomy, table.vectors[keep], labels, window, hop, failures)


def _background_windows(student: AudioStudent, background, vocabulary, split: str, unsplit: bool, window_s: float,
                        hop_s: float, batch_size: int, progress) -> tuple[np.ndarray, list[Failure]]:
    from birdbridge.datasets.background import for_split, read_background

    listed, failures = read_background(background, vocabulary)
    clips = for_split(listed, split, unsplit=unsplit)
    if not clips:
        return np.zeros((0, student.embed_dim), np.float32), failures
    table = embed_audio_windows(sorted({c.path for c in clips}), student, window_s=window_s, hop_s=hop_s,
                                batch_size=batch_size, progress=progress)
    return table.vectors, [*failures, *table.failures]


def _check_labels(positives: np.ndarray, source: str) -> None:
    heard = int(positives.any(axis=0).sum())
    if not positives.any():
        raise BirdbridgeError(f"{source}: no window has a species, so there is nothing to calibrate on; "
                              "use a labelled split (clips of known species, or annotated soundscapes)")
    if heard < 2:
        raise BirdbridgeError(f"{source}: only {heard} species is heard in the split; calibration needs at least "
                              "two (use a larger labelled split)")


# ----------------------------------------------------------------------------------------------- fit


def _fit(sims: np.ndarray, positives: np.ndarray, *, extra: dict[str, Any], **info: Any) -> Calibration:
    """The logistic fit on every pair (negatives subsampled above :data:`MAX_FIT_PAIRS`), with the report's
    figures in ``extra``: AP over all pairs and the confidences at the median positive and 99th-percentile
    negative similarity."""
    s, y = sims.reshape(-1), positives.reshape(-1)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    keep_rate = 1.0
    if y.size > MAX_FIT_PAIRS and n_neg:
        keep_rate = max(MAX_FIT_PAIRS - n_pos, 1) / n_neg
        chosen = y | (np.random.default_rng(0).random(y.size) < keep_rate)
        cal = fit_calibration(s[chosen], y[chosen], **info)
        # case-control sampling: only the intercept moves, by the log of the negatives' sampling rate
        cal = dataclasses.replace(cal, intercept=cal.intercept + math.log(keep_rate), n_negative=n_neg)
    else:
        cal = fit_calibration(s, y, **info)
    figures = {
        "average_precision": round(float(average_precision(s[None, :], y[None, :])[0]), 6),
        "confidence_median_positive": round(float(cal.confidence(np.median(s[y]))), 6),
        "confidence_p99_negative": round(float(cal.confidence(np.percentile(s[~y], 99))), 6),
        "negatives_sampled": round(keep_rate, 6),
    }
    return dataclasses.replace(cal, extra={**cal.extra, **figures, **extra})
