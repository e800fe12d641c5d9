"""The demo's soundscape figure: a strip of spectrogram with the true species above and the detected ones below.

Time runs left to right on one scale for every panel. The top panel has a lane per species with a box for each
annotated call (the Raven table); then the spectrogram (:func:`birdbridge.serve.spectrogram.render_spectrogram`)
with the background classes under it; then one panel per detector (e.g. a student) with the same lanes and a box
for each window in which it detected the species. A species detected but never annotated gets a lane of its own
at the bottom. Drawn with Pillow; text is ASCII (Pillow's default font).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from birdbridge.demo.report import colour
from birdbridge.serve.spectrogram import render_spectrogram
from birdbridge.utils.atomic import atomic_path

__all__ = ["Span", "StripLayout", "detection_strip"]

LEFT = 190  # px of lane labels left of the time axis
RIGHT = 30  # px right of it
LANE_H = 13
SPECTROGRAM_H = 150
_PAD, _TITLE_H, _HEADER_H, _AXIS_H, _BACKGROUND_H = 10, 22, 16, 16, 14


@dataclass(frozen=True)
class Span:
    """A labelled stretch of time (s): a call or a detection (``label``: the species key), or a background class."""

    start_s: float
    end_s: float
    label: str


@dataclass
class StripLayout:
    """Where things are drawn: lanes by species key, each panel's top (px), and the time scale."""

    width: int
    height: int
    seconds: float
    px_per_second: float
    lanes: dict[str, int]  # species key -> lane index (top to bottom)
    panels: dict[str, int] = field(default_factory=dict)  # panel name -> y of its first lane
    spectrogram_top: int = 0

    def x(self, t: float) -> float:
        return LEFT + max(0.0, min(t, self.seconds)) * self.px_per_second

    def box(self, panel: str, key: str, start_s: float, end_s: float) -> tuple[float, float, float, float]:
        """The rectangle of a span of species ``key`` in ``panel`` (``truth`` or a detector's name)."""
        y = self.panels[panel] + self.lanes[key] * LANE_H
        return self.x(start_s), y + 2, max(self.x(end_s), self.x(start_s) + 1), y + LANE_H - 2


def detection_strip(
    path: str | os.PathLike[str],
    audio: str | os.PathLike[str],
    truth: Sequence[Span],
    detected: Mapping[str, Sequence[Span]],
    *,
    names: Mapping[str, str] | None = None,
    backgrounds: Sequence[Span] = (),
    title: str = "",
    px_per_second: float = 20.0,
    max_width: int = 1600,
) -> StripLayout:
    """Draw the figure of ``audio`` into the PNG ``path`` (atomically) and return its layout.

    ``truth``: the annotated calls; ``detected``: detector name -> its detections (panels in this order);
    ``names``: species key -> the label of its lane (default: the key); ``backgrounds``: the background classes
    drawn under the spectrogram.
    """
    names = names or {}
    spec = render_spectrogram(audio, px_per_second=px_per_second, max_width=max_width, min_width=1,
                              height=SPECTROGRAM_H)
    seconds = max(spec.seconds, 1e-9)
    lanes: dict[str, int] = {}
    for span in sorted(truth, key=lambda s: s.start_s):
        lanes.setdefault(span.label, len(lanes))
    for spans in detected.values():
        for span in sorted(spans, key=lambda s: s.start_s):
            lanes.setdefault(span.label, len(lanes))
    n_lanes = max(1, len(lanes))
    panel_h = _HEADER_H + n_lanes * LANE_H + _PAD
    height = _TITLE_H + panel_h + SPECTROGRAM_H + _BACKGROUND_H + _AXIS_H + _PAD + len(detected) * panel_h + _PAD
    layout = StripLayout(LEFT + spec.width + RIGHT, height, seconds, spec.width / seconds, lanes)
    img = Image.new("RGB", (layout.width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((_PAD, 4), _ascii(title), fill="black")
    palette = {key: colour(i, n_lanes) for i, key in enumerate(lanes)}

    def panel(name: str, header: str, spans: Sequence[Span], top: int) -> int:
        draw.text((_PAD, top + 2), _ascii(header), fill="black")
        layout.panels[name] = top + _HEADER_H
        for key, lane in lanes.items():
            y = layout.panels[name] + lane * LANE_H
            draw.text((_PAD + 8, y), _ascii(names.get(key, key))[:30], fill=palette[key])
            draw.line([LEFT, y + LANE_H // 2, layout.x(seconds), y + LANE_H // 2], fill=(235, 235, 235))
        for span in spans:
            draw.rectangle(layout.box(name, span.label, span.start_s, span.end_s), fill=palette[span.label])
        return top + panel_h

    y = panel("truth", f"true species (Raven table): {len(truth)} calls", truth, _TITLE_H)
    layout.spectrogram_top = y
    img.paste(Image.open(io.BytesIO(spec.png)).convert("RGB"), (LEFT, y))
    draw.text((_PAD, y + 2), "spectrogram", fill="black")
    draw.text((_PAD, y + 16), f"0-{spec.max_hz / 1000:g} kHz", fill="black")
    y += SPECTROGRAM_H
    for span in backgrounds:
        x0, x1 = layout.x(span.start_s), layout.x(span.end_s)
        draw.rectangle([x0, y + 1, x1, y + _BACKGROUND_H - 2], outline=(150, 150, 150))
        draw.text((x0 + 3, y + 1), _ascii(span.label)[: max(0, int((x1 - x0 - 4) / 6))], fill=(90, 90, 90))
    draw.text((_PAD, y + 1), "background", fill="black")
    y += _BACKGROUND_H
    step = 10 if seconds > 30 else 5 if seconds > 10 else 1
    for t in range(0, int(seconds) + 1, step):
        draw.line([layout.x(t), y, layout.x(t), y + 4], fill="black")
        draw.text((layout.x(t) + 2, y + 2), f"{t} s", fill="black")
    y += _AXIS_H + _PAD
    for name, spans in detected.items():
        y = panel(name, f"detected by {name}: {len(spans)} detections", spans, y)
    with atomic_path(Path(path)) as tmp:
        img.save(tmp, format="PNG")
    return layout


def _ascii(text: str) -> str:
    """Pillow's default bitmap font draws ASCII only."""
    return text.replace("→", "->").replace("×", "x").encode("ascii", "replace").decode("ascii")
