"""Soundscape evaluation (BirdSet's): students and baselines on the labelled windows of long recordings.

The recordings of ``split`` (every recording when the dataset has no splits) are cut into the dataset's windows
(5 s and a 5 s hop by default; ``window_s``/``hop_s`` override). Each method embeds them with the student's own
windowing (:func:`~birdbridge.embed.audio.embed_audio_windows`: each window a segment repeat-padded to the model's
input, so a window may not be longer than that input) and scores every window × species pair by cosine
similarity with the species' text embeddings of its space:

* a trained student (``distilled``), and the random projection, text-embedding mapping and zero-shot chain
  baselines: in the teacher's space, against the teacher's species text embeddings;
* the undistilled student: zero-shot in its own space, against its own CLAP text tower's species embeddings.

The similarities give cmAP, AUROC and T1 (:func:`~birdbridge.evaluate.multilabel.multilabel_metrics`, which
defines them). Detections follow :func:`birdbridge.models.detection.detections`, the rule search uses, in each
method's own space with its own background class embeddings: a calibrated confidence of at least ``min_conf``
(with ``sensitivity``) in a window that is not nearer to background. A trained student uses its own
``calibration.json``; every method without one gets a calibration fitted on the dataset's ``calibration_split``
(``valid``) when the dataset has that split, so that all rows are thresholded alike; without it, detections
are raw similarities of at least ``min_sim`` (with a warning). Each row records which
(:class:`~birdbridge.evaluate.results.DetectionSummary`).

Intervals are a bootstrap over recordings (the windows of one recording are drawn together). Windows that could
not be embedded are left out and their recordings' errors listed with the dataset's own failures (bad annotation
rows, unreadable recordings or tables); the rest is evaluated.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from birdbridge.datasets.soundscape import SoundscapeDataset, SoundscapeWindows
from birdbridge.embed.audio import embed_audio_windows
from birdbridge.errors import BirdbridgeError, Failure
from birdbridge.evaluate.methods import BaselineMaps, Methods
from birdbridge.evaluate.multilabel import DETECTION_METRICS, METRICS, EmbeddingScores, multilabel_metrics
from birdbridge.evaluate.results import (
    BASELINE_IDS,
    DISPLAY_NAMES,
    DatasetSummary,
    DetectionSummary,
    EvalResult,
    MethodResult,
    TeacherSummary,
    undistilled_name,
)
from birdbridge.evaluate.settings import EvalSettings
from birdbridge.models.calibration import Calibration, fit_calibration
from birdbridge.models.detection import UncalibratedWarning, detections
from birdbridge.models.loader import load_student, load_text_encoder
from birdbridge.species import PromptSpec, species_text_embeddings
from birdbridge.species.background import background_text_embeddings, load_background_vocabulary

__all__ = ["MIN_TAIL_S", "evaluate_soundscapes"]

log = logging.getLogger(__name__)

MIN_TAIL_S = 1.0  # embed_audio_windows' default: a recording's last, shorter window counts from 1 s
_ROWS_PER_BLOCK = 4096


@dataclasses.dataclass
class _Space:
    """One method's windows: embeddings, the species and background embeddings of its space, its calibration."""

    vectors: np.ndarray
    windows: SoundscapeWindows
    species: np.ndarray
    background: np.ndarray
    calibration: Calibration | None
    calibration_source: str | None


def evaluate_soundscapes(
    models: Mapping[str, str | os.PathLike[str]],
    dataset: SoundscapeDataset,
    methods: Methods,
    *,
    settings: EvalSettings,
    device: str | None = None,
    progress: bool | None = None,
) -> EvalResult:
    """The soundscape metrics of every method of ``methods`` (see the module docstring); called by
    :func:`birdbridge.evaluate.runner.evaluate` for a soundscape dataset."""
    s, t, taxonomy = settings, methods.teacher, dataset.taxonomy
    test, calibration_set = _splits(dataset, s)
    window_s = s.window_s if s.window_s is not None else dataset.window_s
    hop_s = s.hop_s if s.hop_s is not None else (window_s if s.window_s is not None else dataset.hop_s)
    test_windows = test.windows(window_s, hop_s, min_tail_s=MIN_TAIL_S)
    if not len(test_windows):
        raise BirdbridgeError(f"{dataset.name}: the recordings of split {s.split!r} hold no {window_s:g} s windows")
    calibration_windows = None if calibration_set is None else calibration_set.windows(
        test_windows.window_s, test_windows.hop_s, min_tail_s=MIN_TAIL_S)
    failures: list[Failure] = list(dataset.failures)

    def embed(student, name: str, windows: SoundscapeWindows) -> tuple[np.ndarray, SoundscapeWindows]:
        """The embeddings of the windows that could be embedded, and those windows in the same order."""
        if windows.window_s > student.window_s + 1e-9:
            raise BirdbridgeError(
                f"{name}: the evaluation windows ({windows.window_s:g} s) are longer than the model's "
                f"{student.window_s:g} s input; evaluate on shorter windows (--window {student.window_s:g})"
            )
        table = embed_audio_windows([r.path for r in windows.recordings], student, window_s=windows.window_s,
                                    hop_s=windows.hop_s, min_tail_s=MIN_TAIL_S, batch_size=s.batch_size,
                                    progress=progress)
        failures.extend(f for f in table.failures if f not in failures)
        index = windows.locate(table.names, table.start_s)
        keep = index >= 0
        return table.vectors[keep], windows.take(index[keep])

    def calibrate(name: str, vectors: np.ndarray, windows: SoundscapeWindows,
                  species: np.ndarray) -> Calibration | None:
        try:
            return fit_calibration(_similarities(vectors, species), windows.label_matrix(),
                                   source=f"{dataset.name}:{s.calibration_split}")
        except BirdbridgeError as exc:
            log.warning("%s: no calibration fitted on the %r split (%s)", name, s.calibration_split, exc)
            return None

    vocabulary = load_background_vocabulary(s.background)
    class_spec = PromptSpec(forms=s.class_forms, templates=s.class_templates)
    teacher_species = species_text_embeddings(t, taxonomy, class_spec, progress=progress)
    teacher_background = background_text_embeddings(t, vocabulary)
    results: dict[str, MethodResult] = {}

    def add(method_id: str, name: str, space: _Space) -> None:
        results[method_id] = _method_result(method_id, name, space, s)

    for given, ref in models.items():
        method_id = methods.ids[given]
        student = load_student(ref, device)
        vectors, windows = embed(student, given, test_windows)
        calibration, source = student.calibration, "model" if student.calibration is not None else None
        if calibration is None and calibration_windows is not None:
            calibration = calibrate(given, *embed(student, given, calibration_windows), teacher_species)
            source = None if calibration is None else f"split {s.calibration_split}"
        add(method_id, methods.labels[method_id],
            _Space(vectors, windows, teacher_species, teacher_background, calibration, source))

    if methods.baselines:
        base = load_student(methods.base_ref, device)
        base_name = undistilled_name(base.name)
        vectors, windows = embed(base, base_name, test_windows)
        held = None if calibration_windows is None else embed(base, base_name, calibration_windows)
        student_text = load_text_encoder(methods.base_ref, device)
        maps = BaselineMaps.fit(student_text, t, taxonomy, teacher_species, s, progress=progress,
                                mapping_species=list(taxonomy.keys) if "mapping" in methods.baselines else None)
        own_background = background_text_embeddings(student_text, vocabulary) if "undistilled" in methods.baselines \
            else None
        for baseline in methods.baselines:
            method_id = BASELINE_IDS[baseline]
            if baseline == "undistilled":
                into: Callable[[np.ndarray], np.ndarray] = _same
                species, background, name = maps.student_classes, own_background, base_name
            else:
                into = _to_teacher(maps, baseline)
                species, background, name = teacher_species, teacher_background, DISPLAY_NAMES[method_id]
            calibration = None if held is None else calibrate(name, into(held[0]), held[1], species)
            add(method_id, name, _Space(into(vectors), windows, species, background, calibration,
                                        None if calibration is None else f"split {s.calibration_split}"))

    return EvalResult(
        methods=results,
        dataset=DatasetSummary(
            name=dataset.name, root=_root(dataset), species=len(taxonomy), queries=len(test_windows),
            knn_references=0, gallery_images=0, text_gallery=0, kind="soundscapes",
            recordings=len(test.recordings), window_s=test_windows.window_s, hop_s=test_windows.hop_s,
            bird_free_windows=int((test_windows.label_counts() == 0).sum()),
            calibration_split=None if calibration_windows is None else s.calibration_split,
            calibration_windows=0 if calibration_windows is None else len(calibration_windows),
        ),
        teacher=TeacherSummary(ref=methods.teacher_ref, name=t.name, fingerprint=t.fingerprint),
        base_student=methods.base_ref,
        models={methods.ids[given]: str(ref) for given, ref in models.items()},
        settings=s,
        failures=failures,
    )


def _method_result(method_id: str, name: str, space: _Space, s: EvalSettings) -> MethodResult:
    """cmAP, AUROC and T1 of the similarities, and the detection figures of the detection rule, ×100, with
    intervals from the same resamples of recordings."""
    windows = space.windows
    if not len(windows):
        raise BirdbridgeError(f"{name}: none of the windows could be embedded (see the failures)")
    common = {"groups": windows.recording_index, "n_resamples": s.bootstrap, "seed": s.seed}
    pairs = windows.label_pairs()
    ranking = multilabel_metrics(EmbeddingScores(space.vectors, space.species), pairs, **common)
    found = _detected(space, s)
    detected = multilabel_metrics(found, pairs, threshold=1, **common)
    metrics = {k: 100.0 * getattr(ranking, k) for k in METRICS}
    metrics |= {k: 100.0 * getattr(detected, k) for k in DETECTION_METRICS}
    ci = {k: (100.0 * ranking.ci[k][0], 100.0 * ranking.ci[k][1]) for k in METRICS if k in ranking.ci}
    ci |= {k: (100.0 * detected.ci[k][0], 100.0 * detected.ci[k][1]) for k in DETECTION_METRICS if k in detected.ci}
    metrics |= {"n_windows": float(len(windows)), "n_labelled_windows": float(ranking.n_labelled),
                "n_classes": float(ranking.n_classes)}
    calibration = space.calibration
    if calibration is None:
        log.warning("%s has no calibration: its detections are cosine similarities of at least %g (min_sim)",
                    name, s.min_sim)
        rule = DetectionSummary("similarity", s.min_sim, s.min_sim, None, None, True, detected.counts)
    else:
        rule = DetectionSummary("confidence", s.min_conf, calibration.similarity_at(s.min_conf, s.sensitivity),
                                s.sensitivity, space.calibration_source, True, detected.counts,
                                calibration.slope, calibration.intercept)
    return MethodResult(method_id, name, metrics, ci, detection=rule)


def _detected(space: _Space, s: EvalSettings) -> np.ndarray:
    """uint8 [W, S]: 1 where the detection rule finds the species in the window (blocks of whole rows)."""
    species = EmbeddingScores(space.vectors, space.species)
    background = EmbeddingScores(space.vectors, space.background)
    n, n_species = species.shape
    out = np.zeros((n, n_species), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncalibratedWarning)  # said once per method, by _method_result
        for r0 in range(0, n, _ROWS_PER_BLOCK):
            rows = slice(r0, min(n, r0 + _ROWS_PER_BLOCK))
            out[rows] = detections(species(rows, slice(0, n_species)), background(rows, slice(0, background.shape[1])),
                                   space.calibration, min_conf=s.min_conf, sensitivity=s.sensitivity,
                                   min_sim=s.min_sim)
    return out


def _similarities(vectors: np.ndarray, species: np.ndarray) -> np.ndarray:
    scores = EmbeddingScores(vectors, species)
    return scores(slice(0, scores.shape[0]), slice(0, scores.shape[1]))


def _splits(dataset: SoundscapeDataset, s: EvalSettings) -> tuple[SoundscapeDataset, SoundscapeDataset | None]:
    """The recordings evaluated and those that fit calibrations (None when the dataset has no such split)."""
    splits = sorted({r.split for r in dataset.recordings if r.split})
    if not splits:
        if not dataset.recordings:
            raise BirdbridgeError(f"{dataset.name}: no recordings to evaluate (see its failures)")
        return dataset, None  # no splits: every recording is evaluated
    if s.split not in splits:
        raise BirdbridgeError(f"{dataset.name}: no recordings in split {s.split!r} (splits: {', '.join(splits)})")
    held = s.calibration_split if s.calibration_split in splits and s.calibration_split != s.split else None
    return _subset(dataset, s.split), None if held is None else _subset(dataset, held)


def _subset(dataset: SoundscapeDataset, split: str) -> SoundscapeDataset:
    recordings = [r for r in dataset.recordings if r.split == split]
    ids = {r.id for r in recordings}
    return dataclasses.replace(dataset, recordings=recordings, failures=[],
                               annotations=[a for a in dataset.annotations if a.recording in ids])


def _root(dataset: SoundscapeDataset) -> str:
    folders = [str(r.path.resolve().parent) for r in dataset.recordings]
    return os.path.commonpath(folders) if folders else str(Path.cwd())


def _same(audio: np.ndarray) -> np.ndarray:
    return audio


def _to_teacher(maps: BaselineMaps, baseline: str) -> Callable[[np.ndarray], np.ndarray]:
    return lambda audio: maps.to_teacher(baseline, audio)
