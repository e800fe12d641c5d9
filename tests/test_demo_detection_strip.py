"""The demo's soundscape figure (demo.detection_strip): true species above the spectrogram, detections below, on one
time scale, for a soundscape of a small demo world and its Raven table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from birdbridge.datasets import load_soundscapes
from birdbridge.demo.detection_strip import LEFT, RIGHT, SPECTROGRAM_H, Span, detection_strip
from birdbridge.demo.world import WorldConfig, generate_world

CONFIG = WorldConfig(n_orders=1, families_per_order=1, genera_per_family=2, species_per_genus=2,
                     recordings_per_species=1, images_per_species=1, clip_s=(1.0, 1.5), seed=3,
                     soundscapes=1, soundscape_s=20.0, soundscape_bird_free=(0.0, 0.25), test_fraction=0.0)
WHITE = (255, 255, 255)


@pytest.fixture(scope="module")
def scape(tmp_path_factory):
    world = generate_world(tmp_path_factory.mktemp("strip") / "world", CONFIG)
    dataset = load_soundscapes(world.root / "soundscapes" / "dataset.yaml")
    truth = [Span(a.start_s, a.end_s, a.species) for a in dataset.annotations]
    assert len({s.label for s in truth}) >= 1 and not dataset.failures
    return world, world.soundscape_items()[0], truth


def _pixel(img: Image.Image, box: tuple[float, float, float, float]) -> tuple[int, int, int]:
    x0, y0, x1, y1 = box
    return img.getpixel((round((x0 + x1) / 2), round((y0 + y1) / 2)))


def test_truth_above_detections_below_on_one_time_scale(scape, tmp_path) -> None:
    world, item, truth = scape
    heard = sorted({s.label for s in truth})
    unheard = next(s.key for s in world.taxonomy if s.key not in heard)
    first = min(truth, key=lambda s: s.start_s)
    detected = {
        "student A": [Span(first.start_s // 2 * 2, first.start_s // 2 * 2 + 2, first.label)],  # right
        "student B": [Span(10.0, 12.0, unheard)],  # a species nobody annotated
    }
    path = tmp_path / "figures" / "strip.png"
    layout = detection_strip(path, world.path(item), truth, detected, backgrounds=[
        Span(b.start_s, b.end_s, b.label) for b in item.backgrounds], title="a test")
    img = Image.open(path).convert("RGB")
    assert img.size == (layout.width, layout.height)
    assert layout.width == LEFT + round(item.duration_s * 20) + RIGHT  # 20 px a second by default
    assert abs(layout.x(item.duration_s) - layout.x(0) - layout.px_per_second * item.duration_s) < 1e-6

    # lanes: annotated species first (in order of their first call), then species only detected
    assert list(layout.lanes) == [*dict.fromkeys(s.label for s in sorted(truth, key=lambda s: s.start_s)), unheard]
    assert list(layout.panels) == ["truth", "student A", "student B"]
    assert layout.panels["truth"] < layout.spectrogram_top < layout.panels["student A"] < layout.panels["student B"]

    colour_of = {key: _pixel(img, layout.box("truth", key, s.start_s, s.end_s))
                 for s in truth for key in [s.label]}
    assert len(set(colour_of.values())) == len(colour_of) and WHITE not in colour_of.values()
    for call in truth:  # every call has its box, in its species' lane and colour
        assert _pixel(img, layout.box("truth", call.label, call.start_s, call.end_s)) == colour_of[call.label]
    # a lane stays empty where its species does not call
    for key in heard:
        spans = [(s.start_s, s.end_s) for s in truth if s.label == key]
        quiet = next((t for t in np.arange(0.25, item.duration_s, 0.5)
                      if all(t < a - 0.2 or t > b + 0.2 for a, b in spans)), None)
        if quiet is not None:
            x0, y0, _, y1 = layout.box("truth", key, quiet, quiet)
            assert img.getpixel((round(x0), round((y0 + y1) / 2))) != colour_of[key]
    # detections in their panels: A's box in the first call's lane and colour, B's species in the extra lane
    a = detected["student A"][0]
    assert _pixel(img, layout.box("student A", a.label, a.start_s, a.end_s)) == colour_of[a.label]
    assert _pixel(img, layout.box("student B", a.label, a.start_s, a.end_s)) != colour_of[a.label]
    b_colour = _pixel(img, layout.box("student B", unheard, 10.0, 12.0))
    assert b_colour not in (WHITE, *colour_of.values())
    assert _pixel(img, layout.box("truth", unheard, 10.0, 12.0)) != b_colour  # nobody annotated it

    # the spectrogram is drawn between the panels: not blank
    top = layout.spectrogram_top
    spectrogram = np.asarray(img)[top: top + SPECTROGRAM_H, LEFT: layout.width - RIGHT]
    assert spectrogram.std() > 10


def test_a_figure_without_detections_still_has_the_truth(scape, tmp_path) -> None:
    world, item, truth = scape
    layout = detection_strip(tmp_path / "s.png", world.path(item), truth, {"quiet student": []},
                             names={s.key: s.common_name for s in world.taxonomy})
    img = Image.open(tmp_path / "s.png").convert("RGB")
    call = truth[0]
    assert _pixel(img, layout.box("truth", call.label, call.start_s, call.end_s)) != WHITE
    assert _pixel(img, layout.box("quiet student", call.label, call.start_s, call.end_s)) in (WHITE, (235, 235, 235))


def test_world_config_of_the_demo_has_soundscapes_and_background_clips() -> None:
    from birdbridge.demo.run import DemoSettings

    cfg = DemoSettings().world_config()
    assert cfg.soundscapes > 0 and cfg.background_per_class > 0
    off = dataclasses.replace(DemoSettings(), soundscapes=0).world_config()
    assert off.soundscapes == 0 and off.background_per_class == 0
