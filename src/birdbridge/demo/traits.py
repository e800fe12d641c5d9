"""Species traits inherited down the taxonomy: every node adds noise to its parent's genes.

A trait starts as an unbounded *gene* ``z``. The class (Aves) draws a root value; each order, family,
genus and species adds a Gaussian offset, with smaller offsets further down the tree
(:data:`LEVEL_SCALES`), so siblings are more alike than cousins. Genes are then *expressed* into
physical values in sensible ranges (a sigmoid onto ``[lo, hi]``, in log space for frequencies and
durations; hues wrap around the colour circle).

Acoustic and visual traits come from separate random streams (their own seeds and stream tags), and
each node's offsets from a generator keyed by the node's name, so the two trait sets are independent
except through the shared tree, and adding species leaves the traits of the others unchanged.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from typing import ClassVar, Literal, TypeVar

import numpy as np

from birdbridge.species.taxonomy import Taxonomy

__all__ = [
    "ACOUSTIC_GENES",
    "BODY_MIN_CHROMA",
    "COLOUR_PARTS",
    "LEVEL_SCALES",
    "VISUAL_GENES",
    "AcousticTraits",
    "Gene",
    "VisualTraits",
    "colour_ranges",
    "sample_acoustic",
    "sample_genes",
    "sample_visual",
]

#: Standard deviation of the offset each level adds to a gene (times the gene's ``spread``).
LEVEL_SCALES: dict[str, float] = {"order": 1.0, "family": 0.7, "genus": 0.5, "species": 0.35}
_ROOT_SD = 0.5
_DECIMALS = 6  # traits are rounded so that world.json holds them exactly


@dataclass(frozen=True)
class Gene:
    """One inherited quantity and how it is expressed: ``linear``/``log`` onto [lo, hi], or ``hue``."""

    name: str
    lo: float = 0.0
    hi: float = 1.0
    kind: Literal["linear", "log", "hue"] = "linear"
    spread: float = 1.0

    def express(self, z: np.ndarray) -> np.ndarray:
        if self.kind == "hue":
            return np.mod(z, 1.0)
        s = 1.0 / (1.0 + np.exp(-z))
        if self.kind == "log":
            return np.exp(math.log(self.lo) + (math.log(self.hi) - math.log(self.lo)) * s)
        return self.lo + (self.hi - self.lo) * s


_TraitsT = TypeVar("_TraitsT", bound="_TraitVector")


class _TraitVector:
    """Dataclass mix-in: the fields, in order, are the columns of a trait array."""

    NAMES: ClassVar[tuple[str, ...]]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    @classmethod
    def from_vector(cls: type[_TraitsT], vector: Sequence[float] | np.ndarray) -> _TraitsT:
        values = [float(v) for v in np.asarray(vector, dtype=np.float64).reshape(-1)]
        if len(values) != len(cls.names()):
            raise ValueError(f"{cls.__name__} needs {len(cls.names())} values, got {len(values)}")
        return cls(*values)  # type: ignore[call-arg]

    def to_vector(self) -> np.ndarray:
        return np.asarray(astuple(self), dtype=np.float64)  # type: ignore[call-overload]


@dataclass(frozen=True)
class AcousticTraits(_TraitVector):
    """How a species calls: a call is ``notes`` chirps, each sweeping around a pitch, with gaps."""

    pitch_hz: float  # centre frequency of a call's fundamental
    sweep_oct: float  # frequency change across one note, octaves (negative: down-slur)
    note_s: float  # duration of one note
    notes: float  # notes per call (rounded)
    gap_s: float  # silence after the first note
    gap_ratio: float  # each gap is the previous one times this (<1: accelerating trill)
    step_oct: float  # pitch change from one note to the next, octaves
    harmonic2: float  # amplitude of the 2nd harmonic relative to the fundamental
    harmonic3: float  # amplitude of the 3rd harmonic
    am_rate_hz: float  # amplitude-modulation (flutter) rate
    am_depth: float  # amplitude-modulation depth, 0..1
    noisiness: float  # share of narrow-band noise in a note, 0..1 (buzzy/raspy calls)
    bandwidth_hz: float  # width of that noise band
    call_gap_s: float  # silence between calls

    @property
    def n_notes(self) -> int:
        return max(1, round(self.notes))


@dataclass(frozen=True)
class VisualTraits(_TraitVector):
    """What a species looks like: part colours (RGB 0-255) and a shape, in units of the picture."""

    body_r: float
    body_g: float
    body_b: float
    wing_r: float
    wing_g: float
    wing_b: float
    head_r: float
    head_g: float
    head_b: float
    belly_r: float
    belly_g: float
    belly_b: float
    pattern_r: float
    pattern_g: float
    pattern_b: float
    beak_r: float
    beak_g: float
    beak_b: float
    body_len: float  # body length as a fraction of the picture width
    body_aspect: float  # body height / length
    head_size: float  # head radius / body half-height
    beak_len: float  # beak length / head radius
    beak_width: float  # beak base / head radius
    tail_len: float  # tail length / body half-length
    tail_angle: float  # tail tilt, degrees up from the body axis
    tail_spread: float  # tail fan half-angle, degrees
    leg_len: float  # leg length / body half-height
    crest: float  # crest height / head radius (0: none)
    eye_ring: float  # eye-ring width / eye radius (0: none)
    stripes: float  # number of bars across the body (rounded; 0: none)
    spots: float  # number of spots on the wing (rounded; 0: none)

    def colour(self, part: str) -> tuple[int, int, int]:
        """``body``, ``wing``, ``head``, ``belly``, ``pattern`` or ``beak`` as 0-255 integers."""
        return tuple(round(getattr(self, f"{part}_{c}")) for c in "rgb")  # type: ignore[return-value]

    def individual(self, rng: np.random.Generator, amount: float = 1.0) -> VisualTraits:
        """One bird of the species: colours and proportions jittered a little (``amount`` scales it).

        Colours stay in their parts' ranges, so a body stays as saturated as :data:`BODY_MIN_CHROMA`.
        """
        if amount <= 0:
            return self
        values = dict(zip(self.NAMES, self.to_vector().tolist(), strict=True))
        for part in COLOUR_PARTS:
            (s_lo, s_hi), (v_lo, v_hi) = colour_ranges(part)
            h, sat, val = colorsys.rgb_to_hsv(*(values[f"{part}_{c}"] / 255.0 for c in "rgb"))
            h = (h + rng.normal(0.0, 0.02 * amount)) % 1.0
            sat = min(max(sat + rng.normal(0.0, 0.06 * amount), s_lo), s_hi)
            val = min(max(val + rng.normal(0.0, 0.06 * amount), v_lo), v_hi)
            for c, v in zip("rgb", colorsys.hsv_to_rgb(h, sat, val), strict=True):
                values[f"{part}_{c}"] = 255.0 * v
        for name in ("body_len", "body_aspect", "head_size", "beak_len", "beak_width", "tail_len", "leg_len"):
            values[name] *= 1.0 + rng.normal(0.0, 0.04 * amount)
        values["tail_angle"] += rng.normal(0.0, 3.0 * amount)
        return VisualTraits(**values)


ACOUSTIC_GENES: tuple[Gene, ...] = (
    Gene("pitch_hz", 1000.0, 6000.0, "log", spread=1.3),
    Gene("sweep_oct", -1.0, 1.0),
    Gene("note_s", 0.03, 0.25, "log"),
    Gene("notes", 0.51, 7.49),
    Gene("gap_s", 0.02, 0.18, "log"),
    Gene("gap_ratio", 0.75, 1.3, "log"),
    Gene("step_oct", -0.2, 0.2),
    Gene("harmonic2", 0.0, 0.7),
    Gene("harmonic3", 0.0, 0.5),
    Gene("am_rate_hz", 5.0, 90.0, "log"),
    Gene("am_depth", 0.0, 0.9),
    Gene("noisiness", 0.0, 0.8),
    Gene("bandwidth_hz", 40.0, 800.0, "log"),
    Gene("call_gap_s", 0.15, 0.9, "log"),
)

COLOUR_PARTS = ("body", "wing", "head", "belly", "pattern", "beak")
# Body colours are saturated and not dark (chroma >= 0.6 * 0.55 of full scale); every background is
# muted (see pictures.py), so a picture's background never has its bird's body colour.
_COLOUR_RANGES = {"body": ((0.6, 1.0), (0.55, 1.0)), "beak": ((0.0, 1.0), (0.1, 0.9))}
_OTHER_COLOUR = ((0.0, 1.0), (0.1, 0.95))
BODY_MIN_CHROMA = 255 * 0.6 * 0.55
"""Smallest chroma (max - min of R, G, B on 0-255) of any body colour, before a photo's lighting."""


def colour_ranges(part: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """(saturation range, value range) of a part's colour in HSV."""
    return _COLOUR_RANGES.get(part, _OTHER_COLOUR)

VISUAL_GENES: tuple[Gene, ...] = (
    *(
        gene
        for part in COLOUR_PARTS
        for (s_lo, s_hi), (v_lo, v_hi) in [colour_ranges(part)]
        for gene in (
            Gene(f"{part}_hue", kind="hue", spread=0.25),
            Gene(f"{part}_sat", s_lo, s_hi),
            Gene(f"{part}_val", v_lo, v_hi),
        )
    ),
    Gene("body_len", 0.34, 0.5),
    Gene("body_aspect", 0.45, 0.8),
    Gene("head_size", 0.45, 0.75),
    Gene("beak_len", 0.3, 1.6, "log"),
    Gene("beak_width", 0.25, 0.7),
    Gene("tail_len", 0.3, 1.0),
    Gene("tail_angle", -30.0, 35.0),
    Gene("tail_spread", 5.0, 30.0),
    Gene("leg_len", 0.15, 0.5),
    Gene("crest", -0.8, 1.0),
    Gene("eye_ring", -0.8, 1.0),
    Gene("stripes", -4.0, 8.0),
    Gene("spots", -6.0, 14.0),
)

AcousticTraits.NAMES = AcousticTraits.names()
VisualTraits.NAMES = VisualTraits.names()


def _node_rng(seed: int, stream: str, path: tuple[str, ...]) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join((stream, *path)).encode("utf-8")).digest()
    return np.random.default_rng([seed, *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])


def sample_genes(
    taxonomy: Taxonomy,
    genes: Sequence[Gene],
    seed: int,
    stream: str,
    scales: dict[str, float] | None = None,
) -> np.ndarray:
    """Expressed genes ``[S, G]``: a root draw plus one offset per order, family, genus and species.

    Each node's offset comes from a generator keyed by ``(seed, stream, node path)``.
    """
    scales = LEVEL_SCALES if scales is None else scales
    spread = np.array([g.spread for g in genes])
    root = _node_rng(seed, stream, ("class", "Aves")).normal(0.0, _ROOT_SD, len(genes)) * spread
    for i, g in enumerate(genes):
        if g.kind == "hue":  # any starting hue
            root[i] = _node_rng(seed, stream, ("hue", g.name)).random()
    cache: dict[tuple[str, ...], np.ndarray] = {}
    out = np.empty((len(taxonomy), len(genes)))
    for s, sp in enumerate(taxonomy):
        z, path = root, ()
        for level, name in zip(("order", "family", "genus", "species"),
                               (sp.order, sp.family, sp.genus, sp.specific_epithet), strict=True):
            path = (*path, f"{level}:{name}")
            if path not in cache:
                offset = _node_rng(seed, stream, path).normal(0.0, scales[level], len(genes)) * spread
                cache[path] = z + offset
            z = cache[path]
        out[s] = [g.express(z[i]) for i, g in enumerate(genes)]
    return out


def sample_acoustic(taxonomy: Taxonomy, seed: int, scales: dict[str, float] | None = None) -> np.ndarray:
    """Acoustic traits ``[S, len(AcousticTraits.NAMES)]`` (columns as :class:`AcousticTraits`)."""
    names = [g.name for g in ACOUSTIC_GENES]
    if tuple(names) != AcousticTraits.NAMES:
        raise AssertionError("ACOUSTIC_GENES and AcousticTraits disagree")
    return np.round(sample_genes(taxonomy, ACOUSTIC_GENES, seed, "acoustic", scales), _DECIMALS)


def sample_visual(taxonomy: Taxonomy, seed: int, scales: dict[str, float] | None = None) -> np.ndarray:
    """Visual traits ``[S, len(VisualTraits.NAMES)]``: hue/saturation/value genes become RGB colours."""
    expressed = sample_genes(taxonomy, VISUAL_GENES, seed, "visual", scales)
    names = [g.name for g in VISUAL_GENES]
    out = np.empty((len(taxonomy), len(VisualTraits.NAMES)))
    for s in range(len(taxonomy)):
        values = dict(zip(names, expressed[s], strict=True))
        row: list[float] = []
        for part in COLOUR_PARTS:
            rgb = colorsys.hsv_to_rgb(values[f"{part}_hue"], values[f"{part}_sat"], values[f"{part}_val"])
            row += [255.0 * c for c in rgb]
        row += [values[n] for n in VisualTraits.NAMES[len(row):]]
        out[s] = row
    return np.round(out, _DECIMALS)
