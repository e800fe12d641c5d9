"""Every Pillow image mode, brought into one the teacher's preprocessing resizes and converts correctly.

open_clip resizes an image in its own mode, then calls ``convert("RGB")``. That is right for RGB, RGBA,
L, LA, P and 1, and for CMYK, YCbCr and RGBX (resized channel by channel, then converted with Pillow's
formulas), which :func:`standard_mode` therefore leaves alone (embeddings stay equal to open_clip's).
For every other mode it is wrong, so those are converted first:

* ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (16-bit grey: 16-bit PNG and TIFF files): scaled by their
  range, ``v / 65535 * 255``. Pillow's own conversion clips at 255, which turns a picture white.
* ``I`` (32-bit integers) and ``F`` (32-bit floats) have no fixed range. When no value is negative they
  are divided by the smallest of 1 (``F`` only), 255 and 65535 that holds every value, so a float image
  in [0, 1], 8-bit data and 16-bit data (Pillow opens 16-bit PGM files as ``I``) keep their brightness;
  otherwise they are stretched from the image's minimum (black) to its maximum (white). NaN becomes
  black; infinities are left out of the range and clipped. A constant image outside these ranges is black.
* ``HSV``: to RGB with Pillow's formula before resizing (hue wraps round: resizing it mixes colours
  wrongly).
* ``LAB`` (CIE L*a*b*, D50): to sRGB with littleCMS, without its lookup-table optimisation (Pillow's
  default conversion is off by up to about 20 levels in dark colours).
* ``RGBa`` and ``La`` (premultiplied alpha) and ``PA`` (palette + alpha, whose indices Pillow would
  interpolate when resizing): to RGBA or LA, then treated like those (the colour is kept, alpha dropped).
* Any other mode Pillow can convert to RGB is converted; one it cannot raises ``ImageError``.

The wide grey modes become 8-bit ``L``: the teacher sees 8-bit values whatever the input.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from birdbridge.errors import ImageError

OPEN_CLIP_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "YCbCr", "RGBX"})
"""Modes kept as they are: open_clip's resize-then-convert handles them correctly."""

_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_TO_ALPHA = {"RGBa": "RGBA", "La": "LA", "PA": "RGBA"}
_INT_RANGES = (255.0, 65535.0)
_FLOAT_RANGES = (1.0, 255.0, 65535.0)


def standard_mode(image: Image.Image) -> Image.Image:
    """``image`` itself if its mode is in :data:`OPEN_CLIP_MODES`, else converted as the module says."""
    mode = image.mode
    if mode in OPEN_CLIP_MODES:
        return image
    if mode in _SIXTEEN_BIT:
        return _gray(np.asarray(image, dtype=np.float64) * (255.0 / 65535.0))
    if mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        return _gray(_to_byte_range(values, _FLOAT_RANGES if mode == "F" else _INT_RANGES))
    if mode in _TO_ALPHA:
        return image.convert(_TO_ALPHA[mode])
    if mode == "LAB":
        from PIL import ImageCms

        return ImageCms.applyTransform(image, _lab_to_srgb())
    try:
        return image.convert("RGB")
    except ValueError as exc:  # Pillow: "conversion from X to RGB not supported"
        source = str(getattr(image, "filename", "") or "<image>")
        raise ImageError(source, f"unsupported image mode {mode!r} ({exc})", "re-export it as JPEG or PNG") from exc


def _to_byte_range(values: np.ndarray, ranges: tuple[float, ...]) -> np.ndarray:
    """``values`` mapped onto 0..255: by the first of ``ranges`` that holds them, else by their min..max."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    low, high = float(finite.min()), float(finite.max())
    if low >= 0:
        for top in ranges:
            if high <= top:
                return values * (255.0 / top)
    if high == low:
        return np.zeros_like(values)
    return (values - low) * (255.0 / (high - low))


def _gray(values: np.ndarray) -> Image.Image:
    """An 8-bit ``L`` image of values on the 0..255 scale (NaN -> 0, rounded, clipped)."""
    clean = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.rint(np.clip(clean, 0.0, 255.0)).astype(np.uint8), "L")


@functools.lru_cache(maxsize=1)
def _lab_to_srgb():
    """littleCMS transform CIE L*a*b* (D50) -> sRGB, exact (NOOPTIMIZE) and safe across threads (NOCACHE)."""
    from PIL import ImageCms

    flags = ImageCms.Flags.NOOPTIMIZE | ImageCms.Flags.NOCACHE
    return ImageCms.buildTransform(
        ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB", flags=flags
    )
