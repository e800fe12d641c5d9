"""Synthetic bird photos: a bird drawn from its visual traits on a random, muted scene.

The bird is drawn with PIL ImageDraw at ``render_scale`` times the output size and downsampled by
averaging (supersampling anti-aliasing). Each photo shows another individual (colours and proportions
jittered) and varies the pose (position, scale, mirror, rotation, tail/head/wing jitter), the scene
(sky, foliage or meadow, with clouds, leaves, a branch, leaves in front of the bird), the lighting
(brightness, contrast) and the sensor noise.

Scenes are *muted*: every colour a scene uses has chroma (max - min of R, G, B) at most
:data:`BACKGROUND_MAX_CHROMA`, noise is added equally to the three channels, and lighting scales
chroma by the same factor in the whole photo; body colours are saturated (chroma at least
:data:`~birdbridge.demo.traits.BODY_MIN_CHROMA`). With lighting factors in [0.64, 1.44], a photo's
background pixels have chroma below ``1.44 * BACKGROUND_MAX_CHROMA`` (44) and its bird's body colour at
least ``0.64 * BODY_MIN_CHROMA`` (54): no background pixel has a bird's body colour.
A :class:`Scene` can be reused across frames, with the bird in some and not in others.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from birdbridge.demo.traits import VisualTraits

__all__ = [
    "BACKGROUND_MAX_CHROMA",
    "LIGHTING_RANGE",
    "SCENE_KINDS",
    "Pose",
    "Scene",
    "draw_background",
    "draw_bird",
    "random_pose",
    "random_scene",
]

BACKGROUND_MAX_CHROMA = 0.12 * 255
"""Largest chroma (max - min of R, G, B on 0-255) of any colour a scene is painted with."""

SCENE_KINDS = ("sky", "foliage", "meadow")
_BRIGHTNESS = (0.8, 1.2)
_CONTRAST = (0.8, 1.2)
LIGHTING_RANGE = (_BRIGHTNESS[0] * _CONTRAST[0], _BRIGHTNESS[1] * _CONTRAST[1])
"""Smallest and largest factor by which a photo's lighting scales chroma."""
_NOISE_SD = (1.5, 6.0)
_EYE_RING = (235, 235, 225)
RGB = tuple[int, int, int]
Box = tuple[float, float, float, float]
_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 24, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 24, endpoint=False))], axis=1)


@dataclass(frozen=True)
class Pose:
    """Where and how the bird stands: body centre (fractions of the picture), size, angle, mirror."""

    x: float = 0.5
    y: float = 0.5
    scale: float = 1.0
    angle_deg: float = 0.0  # counter-clockwise tilt of the whole bird
    flip: bool = False  # True: the bird faces left
    tail_deg: float = 0.0  # added to the species' tail angle
    head_shift: float = 0.0  # head moves forward (+) or back (-), in head radii
    wing_deg: float = 0.0  # wing raised (+) or lowered (-)


@dataclass(frozen=True, eq=False)
class Scene:
    """A photo setting without the bird: base image at render scale, lighting and noise level."""

    base: np.ndarray  # uint8 [render_scale * size, render_scale * size, 3]
    size: int
    kind: str
    brightness: float
    contrast: float
    noise_sd: float
    perch: tuple[float, RGB] | None  # tilt (degrees) and colour of the bird's branch, if it has one
    front: tuple[tuple[Box, RGB], ...] = ()  # leaves in front of the bird (also painted in ``base``)


def random_pose(rng: np.random.Generator) -> Pose:
    """A pose that keeps the bird (mostly) in the picture."""
    return Pose(
        x=rng.uniform(0.34, 0.66),
        y=rng.uniform(0.4, 0.58),
        scale=rng.uniform(0.6, 1.15),
        angle_deg=rng.uniform(-15.0, 15.0),
        flip=bool(rng.random() < 0.5),
        tail_deg=rng.normal(0.0, 6.0),
        head_shift=rng.normal(0.0, 0.12),
        wing_deg=rng.normal(0.0, 5.0),
    )


def _muted(rng: np.random.Generator, hue: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    """An RGB colour (0-255 floats) with the given hue and value ranges and chroma <= the maximum."""
    v = rng.uniform(*value)
    s = min(rng.uniform(0.0, 1.0), BACKGROUND_MAX_CHROMA / 255 / v * 0.98)
    return 255.0 * np.array(colorsys.hsv_to_rgb(rng.uniform(*hue) % 1.0, s, v))


def _fill(c: np.ndarray) -> RGB:
    return int(c[0]), int(c[1]), int(c[2])


def random_scene(rng: np.random.Generator, size: int = 64, *, render_scale: int = 2) -> Scene:
    """A random muted sky, foliage or meadow scene."""
    w = size * render_scale
    kind = SCENE_KINDS[int(rng.integers(len(SCENE_KINDS)))]
    rows = np.linspace(0.0, 1.0, w)[:, None]
    if kind == "foliage":
        top, bottom = _muted(rng, (0.18, 0.4), (0.2, 0.45)), _muted(rng, (0.15, 0.35), (0.15, 0.4))
    else:
        top, bottom = _muted(rng, (0.52, 0.64), (0.6, 0.85)), _muted(rng, (0.5, 0.62), (0.75, 0.95))
    column = top * (1 - rows) + bottom * rows  # [w, 3]
    if kind == "meadow":
        horizon = int(w * rng.uniform(0.55, 0.85))
        near, far = _muted(rng, (0.08, 0.3), (0.3, 0.6)), _muted(rng, (0.1, 0.3), (0.2, 0.5))
        ground = np.linspace(0.0, 1.0, w - horizon)[:, None]
        column[horizon:] = far * (1 - ground) + near * ground
    base = np.ascontiguousarray(np.broadcast_to(column[:, None, :], (w, w, 3)).astype(np.uint8))
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    blobs = int(rng.integers(12, 30)) if kind == "foliage" else int(rng.integers(0, 5))
    for _ in range(blobs):
        if kind == "foliage":
            colour = _muted(rng, (0.15, 0.42), (0.15, 0.6))
            rx, ry = rng.uniform(0.04, 0.16) * w, rng.uniform(0.03, 0.1) * w
        else:  # clouds
            colour = _muted(rng, (0.0, 1.0), (0.8, 0.97))
            rx, ry = rng.uniform(0.08, 0.25) * w, rng.uniform(0.03, 0.08) * w
        cx, cy = rng.uniform(0, w), rng.uniform(0, w * (1.0 if kind == "foliage" else 0.5))
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=_fill(colour))
    perch = None
    if kind == "foliage" or rng.random() < 0.7:
        perch = (rng.uniform(-12.0, 12.0), _fill(_muted(rng, (0.05, 0.12), (0.25, 0.45))))
    front: list[tuple[Box, RGB]] = []
    for _ in range(int(rng.integers(0, 4)) if kind == "foliage" else 0):  # leaves that may hide the bird
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * w
        rx, ry = rng.uniform(0.05, 0.12) * w, rng.uniform(0.03, 0.07) * w
        leaf = ((cx - rx, cy - ry, cx + rx, cy + ry), _fill(_muted(rng, (0.15, 0.42), (0.15, 0.6))))
        draw.ellipse(leaf[0], fill=leaf[1])
        front.append(leaf)
    return Scene(
        base=np.asarray(image),
        size=size,
        kind=kind,
        brightness=rng.uniform(*_BRIGHTNESS),
        contrast=rng.uniform(*_CONTRAST),
        noise_sd=rng.uniform(*_NOISE_SD),
        perch=perch,
        front=tuple(front),
    )


def _finish(image: Image.Image, scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Downsample, then apply the scene's contrast, brightness and grey sensor noise."""
    if image.size != (scene.size, scene.size):
        # Area averaging of the render_scale x render_scale supersamples: anti-aliased, and unlike
        # LANCZOS free of ringing, so a mix of muted colours stays muted.
        image = image.reduce(image.size[0] // scene.size)
    x = np.asarray(image, dtype=np.float32)
    mean = float(x.mean())
    x = (mean + scene.contrast * (x - mean)) * scene.brightness
    x += rng.normal(0.0, scene.noise_sd, x.shape[:2]).astype(np.float32)[:, :, None]
    return Image.fromarray(np.clip(x + 0.5, 0, 255).astype(np.uint8))


def draw_background(rng: np.random.Generator, size: int = 64, *, scene: Scene | None = None) -> Image.Image:
    """A photo with no bird: a new random scene, or ``scene`` (whose size wins) with fresh sensor noise."""
    scene = random_scene(rng, size) if scene is None else scene
    return _finish(Image.fromarray(scene.base), scene, rng)


class _Pen:
    """Maps bird coordinates (body centre at 0, facing +x, y down, units of picture width) to pixels."""

    def __init__(self, draw: ImageDraw.ImageDraw, w: int, pose: Pose) -> None:
        self.draw, self.w = draw, w
        a = math.radians(pose.angle_deg)
        mirror = -1.0 if pose.flip else 1.0
        # counter-clockwise on screen (y down) is a negative rotation
        rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        self.m = pose.scale * w * rot @ np.diag([mirror, 1.0])
        self.t = np.array([pose.x * w, pose.y * w])
        self.unit = pose.scale * w

    def map(self, pts: np.ndarray) -> np.ndarray:
        return pts @ self.m.T + self.t

    def polygon(self, pts: np.ndarray, fill: RGB) -> None:
        self.draw.polygon(self.map(pts).ravel().tolist(), fill=fill)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: RGB,
                tilt_deg: float = 0.0) -> None:
        t = math.radians(tilt_deg)
        pts = _CIRCLE * [rx, ry]
        pts = pts @ np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]).T + [cx, cy]
        self.polygon(pts, fill)

    def circle(self, cx: float, cy: float, r: float, fill: RGB) -> None:
        (x, y), rr = self.map(np.array([[cx, cy]]))[0], r * self.unit
        self.draw.ellipse([x - rr, y - rr, x + rr, y + rr], fill=fill)

    def line(self, pts: np.ndarray, fill: RGB, width: float) -> None:
        self.draw.line(self.map(pts).ravel().tolist(), fill=fill, width=max(1, round(width * self.unit)))


def _bird(pen: _Pen, t: VisualTraits, pose: Pose, rng: np.random.Generator) -> None:
    a = t.body_len / 2
    b = a * t.body_aspect
    r = t.head_size * b
    body, wing, head, belly = t.colour("body"), t.colour("wing"), t.colour("head"), t.colour("belly")
    pattern, beak = t.colour("pattern"), t.colour("beak")
    legs = tuple(int(0.6 * c) for c in beak)
    # tail: a fan behind the body
    ta = math.radians(t.tail_angle + pose.tail_deg)
    spread = math.radians(t.tail_spread)
    base = np.array([-0.8 * a, 0.0])
    length = t.tail_len * a + 0.3 * a
    tips = [base + length * np.array([-math.cos(ta + s), -math.sin(ta + s)]) for s in (spread, -spread)]
    root = np.array([0.0, 0.3 * b])
    pen.polygon(np.array([base - root, tips[0], tips[1], base + root]), wing)
    # legs
    leg = t.leg_len * a
    for lx in (0.05 * a, -0.18 * a):
        pen.line(np.array([[lx, 0.85 * b], [lx, 0.85 * b + leg]]), legs, 0.012)
    pen.ellipse(0.0, 0.0, a, b, body)
    pen.ellipse(0.3 * a, 0.45 * b, 0.45 * a, 0.42 * b, belly)
    stripes = round(t.stripes)
    for i in range(1, stripes + 1 if stripes > 0 else 0):
        x = a * (-0.7 + 1.4 * i / (stripes + 1))
        h = 0.85 * b * math.sqrt(max(0.0, 1 - (x / a) ** 2))
        pen.line(np.array([[x, -h], [x, h]]), pattern, 0.02)
    wing_tilt = -8.0 - pose.wing_deg
    pen.ellipse(-0.2 * a, -0.2 * b, 0.58 * a, 0.4 * b, wing, tilt_deg=wing_tilt)
    spots = round(t.spots)
    if spots > 0:
        u = rng.uniform(0, 2 * np.pi, spots)
        d = np.sqrt(rng.uniform(0, 0.7, spots))
        for x, y in zip(-0.2 * a + 0.5 * a * d * np.cos(u), -0.2 * b + 0.32 * b * d * np.sin(u), strict=True):
            pen.circle(float(x), float(y), 0.07 * b, pattern)
    # head, crest, beak, eye
    hx, hy = 0.78 * a + pose.head_shift * r, -0.72 * b
    if t.crest > 0.05:
        top = np.array([hx - 0.3 * r, hy - 0.85 * r])
        tip = top + t.crest * 1.6 * r * np.array([-0.8, -0.6])
        pen.polygon(np.array([top + np.array([0.3, 0.2]) * r, tip, top + np.array([-0.5, 0.5]) * r]), head)
    bw = t.beak_width * r
    tip = [hx + r * (1 + t.beak_len), hy + 0.2 * r]
    pen.polygon(np.array([[hx + 0.7 * r, hy - bw / 2], tip, [hx + 0.7 * r, hy + bw / 2]]), beak)
    pen.circle(hx, hy, r, head)
    ex, ey, er = hx + 0.35 * r, hy - 0.15 * r, 0.2 * r
    if t.eye_ring > 0.05:
        pen.circle(ex, ey, er * (1 + t.eye_ring), _EYE_RING)
    pen.circle(ex, ey, er, (15, 15, 15))


def draw_bird(
    traits: VisualTraits,
    rng: np.random.Generator,
    size: int = 64,
    *,
    scene: Scene | None = None,
    pose: Pose | None = None,
    variation: float = 1.0,
) -> Image.Image:
    """A ``size`` x ``size`` RGB photo of one bird of a species, in a random (or the given) scene and pose.

    Each photo shows a different individual (:meth:`VisualTraits.individual` with ``variation``; 0
    draws the species' traits exactly). A given ``scene`` fixes the size and setting, e.g. for the
    frames of a video; a given ``pose`` fixes where the bird is.
    """
    scene = random_scene(rng, size) if scene is None else scene
    pose = random_pose(rng) if pose is None else pose
    traits = traits.individual(rng, variation)
    image = Image.fromarray(scene.base)
    w = image.size[0]
    pen = _Pen(ImageDraw.Draw(image), w, pose)
    if scene.perch is not None:  # a branch through the bird's feet
        tilt, colour = scene.perch
        a = traits.body_len / 2
        feet = 0.85 * a * traits.body_aspect + traits.leg_len * a
        along = 3.0 * np.array([math.cos(math.radians(tilt)), math.sin(math.radians(tilt))])
        pen.line(np.array([0.0, feet]) + np.outer([-1.0, 1.0], along), colour, 0.03)
    _bird(pen, traits, pose, rng)
    for box, colour in scene.front:
        pen.draw.ellipse(box, fill=colour)
    return _finish(image, scene, rng)
