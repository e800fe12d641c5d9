"""The demo's soundscape part: both students (with and without background audio) and the baselines on the world's
``test`` soundscapes, and the figure of one soundscape's true and detected species.

Windows are as long as the students' input (2 s; a window may not be longer), not BirdSet's 5 s. Detections are
evaluated at the default threshold (calibrated confidence ≥ 0.25) and at a low one (:data:`LOW_MIN_CONF`), because
on this world the calibrated confidences stay far below 0.25 (see the README).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from birdbridge.demo.detection_strip import Span, detection_strip
from birdbridge.demo.world import World
from birdbridge.evaluate.settings import EvalSettings
from birdbridge.models.detection import DEFAULT_MIN_CONF

__all__ = ["LOW_MIN_CONF", "SOUNDSCAPE_BASELINES", "evaluate_on_soundscapes", "soundscape_figure"]

SOUNDSCAPE_BASELINES = ("random", "chain", "undistilled")  # the soundscape rows beside the students
LOW_MIN_CONF = 0.02  # a second, low threshold: the default one names nothing on this world


def dataset_path(out: Path) -> Path:
    return out / "world" / "soundscapes" / "dataset.yaml"


def evaluate_on_soundscapes(out: Path, students: dict[str, Path], names: dict[str, str], window_s: float,
                            progress: bool | None = None) -> dict[str, Any]:
    """``{"default": results, "low": results}`` (``results.json`` mappings) of ``students`` (method id -> model)
    and the baselines on the test soundscapes, at the default and the low threshold."""
    from birdbridge.evaluate.runner import evaluate

    return {key: evaluate({m: str(p) for m, p in students.items()}, dataset_path(out), names=names,
                          baselines=SOUNDSCAPE_BASELINES, progress=progress,
                          settings=EvalSettings(window_s=window_s, hop_s=window_s, min_conf=min_conf)).to_dict()
            for key, min_conf in (("default", DEFAULT_MIN_CONF), ("low", LOW_MIN_CONF))}


def soundscape_figure(out: Path, world: World, students: dict[str, Path], window_s: float,
                      rel: str = "figures/soundscape.png") -> str:
    """Draw the first test soundscape with its Raven table's species above and, below, each student's detections
    at the default and the low threshold, as ``birdbridge search`` makes them with the demo's gallery; return
    ``rel``."""
    from birdbridge.datasets import load_soundscapes
    from birdbridge.search import Scoring, SearchEngine

    item = world.soundscape_items("test")[0]
    audio = world.path(item)
    dataset = load_soundscapes(dataset_path(out))
    recording = next(r for r in dataset.recordings if r.path.resolve() == audio.resolve())
    truth = [Span(a.start_s, a.end_s, a.species) for a in dataset.annotations if a.recording == recording.id]
    detected = {}
    for min_conf in (DEFAULT_MIN_CONF, LOW_MIN_CONF):
        for name, model in students.items():
            results, _ = SearchEngine.open(out / "gallery", model).search_audio(
                [audio], window_s=window_s, hop_s=window_s, n_images=0, scoring=Scoring(min_conf=min_conf),
                progress=False)
            detected[f"{name}, min-conf {min_conf:g}"] = [
                Span(w.start_s, w.end_s, hit.key) for w in results[0].windows for hit in w.species]
    labels = {s.key: s.common_name or s.key for s in world.taxonomy}
    detection_strip(out / rel, audio, truth, detected, names=labels,
                    backgrounds=[Span(b.start_s, b.end_s, b.label) for b in item.backgrounds],
                    title=f"{item.id} ({item.duration_s:g} s): detections in {window_s:g} s windows (calibrated "
                          f"confidence >= min-conf, none where background is nearer; {DEFAULT_MIN_CONF:g} is the "
                          "default)")
    return rel

