"""The demo's short report: Markdown with the results tables and figures drawn with Pillow."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from birdbridge.evaluate.report import detection_lines, direction_cells
from birdbridge.evaluate.results import GROUPS, EvalResult
from birdbridge.utils.atomic import atomic_path, write_text

METRICS = [("a2i_map", "A→I MAP"), ("a2i_r1", "A→I R@1"), ("i2a_map", "I→A MAP"), ("a2t_r1", "A→T R@1"),
           ("zero_shot_top1", "zero-shot top-1"), ("knn_acc", "kNN acc")]


SOUNDSCAPE_METRICS = [("cmap", "cmAP"), ("auroc", "AUROC"), ("t1", "T1"), ("precision", "Prec"), ("recall", "Rec"),
                      ("f1", "F1"), ("false_alarm_rate", "False alarm")]


def markdown_table(evaluation: EvalResult, metrics: list[tuple[str, str]] = METRICS, group: str | None = None) -> str:
    """One row per method, one column per metric (×100, one decimal; — where a method has no such figure); with
    ``group`` (``seen``, ``unseen``) the figures of that group's queries."""
    rows = []
    for method in evaluation.methods.values():
        figures = method.groups.get(group, {}) if group else method.metrics
        rows.append([method.name, *(f"{figures[key]:.1f}" if not math.isnan(figures.get(key, math.nan)) else "—"
                                    for key, _ in metrics)])
    return _markdown(["method", *(label for _, label in metrics)], rows)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1),
                      *("| " + " | ".join(row) + " |" for row in rows)])


def direction_lines(evaluation: EvalResult) -> list[str]:
    """Every retrieval direction at each rank (MAP), and with held-out species the seen and unseen figures."""
    cells = direction_cells(evaluation)
    if cells is None:
        return []
    lines = ["## Every direction, relevance at each rank", "",
             "MAP ×100 with a gallery item relevant when it is of the query's species / genus / family; T is one "
             "text embedding per species (the teacher's); image↔text is the teacher alone, the ceiling.", "",
             _markdown(*cells), ""]
    h = evaluation.holdout
    if h is None:
        return lines
    lines += ["## Seen and unseen species", "",
              f"{h.unseen_species} of {h.seen_species + h.unseen_species} species were held out of distillation: "
              f"{', '.join(h.species)}. Queries of each group against the whole gallery.", ""]
    for group in GROUPS:
        lines += [f"{group.capitalize()} species:", "", markdown_table(evaluation, group=group), ""]
        grid = direction_cells(evaluation, group)
        if grid is not None:
            lines += [_markdown(*grid), ""]
    return lines


def soundscape_lines(results: dict[str, Any]) -> list[str]:
    """The soundscape section of the report: both students and the baselines, at the default and a low threshold."""
    if "soundscapes" not in results:
        return []
    default, low = (EvalResult.from_dict(results["soundscapes"][key]) for key in ("default", "low"))
    d = default.dataset
    return [
        "## Soundscapes",
        "",
        f"{d.recordings} test soundscapes cut into {d.queries} windows of {d.window_s:g} s (the students' input), "
        f"{d.bird_free_windows} of them bird-free. ×100. cmAP, AUROC and T1 rank the cosine similarities; "
        "Prec/Rec/F1 and False alarm (the share of bird-free windows with a detection) count the detections: a "
        f"calibrated confidence ≥ min-conf, none where background is nearer. Calibrations: fitted on the "
        f"{d.calibration_windows} windows of the `{d.calibration_split}` soundscapes.",
        "",
        f"At the default threshold, min-conf {default.settings.min_conf:g}:",
        "",
        markdown_table(default, SOUNDSCAPE_METRICS),
        "",
        f"At min-conf {low.settings.min_conf:g}:",
        "",
        markdown_table(low, SOUNDSCAPE_METRICS[3:]),
        "",
        *[f"- {line}" for line in detection_lines(default)],
        "",
    ]


def bar_chart(path: Path, evaluation: EvalResult, metric: str = "a2i_map", title: str = "audio→image MAP") -> Path:
    """One bar per method for ``metric``, with its bootstrap 95% interval."""
    rows = [(m.name, m.metrics[metric], m.ci.get(metric)) for m in evaluation.methods.values() if metric in m.metrics]
    width, bar_h, left = 760, 34, 230
    img = Image.new("RGB", (width, 60 + bar_h * len(rows)), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), f"{title.replace('→', '->')} (x100), 95% bootstrap interval", fill="black")
    scale = (width - left - 30) / 100
    for i, (name, value, ci) in enumerate(rows):
        y = 40 + i * bar_h
        draw.text((10, y + 8), name[:34], fill="black")
        draw.rectangle([left, y + 4, left + value * scale, y + bar_h - 8], fill=(66, 133, 180))
        if ci:
            draw.line([left + ci[0] * scale, y + bar_h // 2, left + ci[1] * scale, y + bar_h // 2], fill="black",
                      width=2)
        draw.text((left + value * scale + 6, y + 8), f"{value:.1f}", fill="black")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def embedding_plot(path: Path, audio: np.ndarray, audio_labels: np.ndarray, images: np.ndarray,
                   image_labels: np.ndarray, title: str) -> Path:
    """Audio (dots) and pictures (squares) in the teacher's space, projected on their top 2 principal axes."""
    both = np.vstack([audio, images]).astype(np.float64)
    centred = both - both.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    size, pad = 640, 40
    pts = pad + (xy - lo) / np.maximum(hi - lo, 1e-9) * (size - 2 * pad)
    img = Image.new("RGB", (size, size + 30), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 8), title, fill="black")
    n_classes = int(max(audio_labels.max(initial=0), image_labels.max(initial=0))) + 1
    colours = [colour(c, n_classes) for c in range(n_classes)]
    for (x, y), label in zip(pts[len(audio):], image_labels, strict=True):
        draw.rectangle([x - 4, y + 26, x + 4, y + 34], outline=colours[label], width=2)
    for (x, y), label in zip(pts[: len(audio)], audio_labels, strict=True):
        draw.ellipse([x - 3, y + 27, x + 3, y + 33], fill=colours[label])
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def colour(i: int, n: int) -> tuple[int, int, int]:
    """The ``i``-th of ``n`` distinct colours round the hue circle (mid-bright, readable on white)."""
    h = i / max(n, 1)
    r, g, b = (0.5 + 0.5 * math.cos(2 * math.pi * (h + o)) for o in (0.0, 1 / 3, 2 / 3))
    return int(40 + 180 * r), int(40 + 180 * g), int(40 + 180 * b)


def _frame_share_lines(results: dict[str, Any]) -> list[str]:
    """The image-pivot section: how often each student's nearest frame shows the bird."""
    shares = results.get("bird_frame_share")
    if not shares:
        return []
    first = next(iter(shares.values()))
    return [
        "## Does the audio point at the bird?",
        "",
        f"Over {first['windows']} windows of the test videos' sound, the frame shown during the window whose "
        "teacher embedding is most like the student's audio embedding, against a random frame of the window.",
        "",
        "| student | nearest frame shows the bird | random frame shows the bird |",
        "|---|---:|---:|",
        *[f"| {name} | {100 * s['nearest']:.1f}% | {100 * s['random']:.1f}% |" for name, s in shares.items()],
        "",
    ]


def write_report(out: Path, results: dict[str, Any], timings: dict[str, float], figures: dict[str, str]) -> Path:
    """``report.md`` from the demo's ``results.json`` mapping (one written by an earlier version too)."""
    evaluation = EvalResult.from_dict(results)
    lines = [
        "# birdbridge demo",
        "",
        "A synthetic world of species with generated names, calls and pictures. A stand-in image-text teacher "
        "(CLIP, open_clip layout) learned pictures and names; a stand-in audio-text student (CLAP, its own "
        "tokenizer) learned calls and names. birdbridge then distilled the teacher's *text* space into the "
        "student's audio encoder (no picture was used) and evaluated audio→image retrieval against the paper's "
        "baselines.",
        "",
        f"Queries: {evaluation.dataset.queries} test recordings; gallery: "
        f"{evaluation.dataset.gallery_images} test pictures; {evaluation.dataset.species} species.",
        "",
        markdown_table(evaluation),
        "",
        *direction_lines(evaluation),
        *_frame_share_lines(results),
        *soundscape_lines(results),
        "## Checks",
        "",
        "What the world's design guarantees on any seed; a failure is a fault.",
        "",
        *[f"- {'pass' if ok else 'FAIL'}: {name}" for name, ok in results.get("checks", {}).items()],
        "",
        *(["## Reports", "", "What this seed shows; another seed may not (`birdbridge demo --seeds N` counts how "
           "often).", "", *[f"- {'yes' if ok else 'no'}: {name}" for name, ok in results["reports"].items()], ""]
          if results.get("reports") else []),
        "## Figures",
        "",
        *[f"![{name}]({rel})" for name, rel in figures.items()],
        "",
        "## Timings (s)",
        "",
        *[f"- {name}: {seconds:.1f}" for name, seconds in timings.items()],
        "",
    ]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path
