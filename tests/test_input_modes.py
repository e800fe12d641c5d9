"""Inputs read as what they are: every Pillow image mode, and recordings with absurd sample rates.

Each image mode is written to PNG, JPEG, TIFF and WebP files where Pillow can write it, read back through
birdbridge and compared with a conversion to RGB written here in numpy from the formulas (not Pillow's
converters); a gradient must survive (neither all white nor all black).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from audio_fixtures import write_wav
from birdbridge.audio import MIN_SAMPLE_RATE, AudioError, audio_info, read_audio, stream_audio
from birdbridge.embed.images import open_image
from birdbridge.models.image_modes import standard_mode
from birdbridge.models.image_preprocess import OPENAI_MEAN, OPENAI_STD, ImagePreprocessor

SIZE = 48
FORMATS = ("PNG", "JPEG", "TIFF", "WEBP")
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp"}
LOSSY = {"JPEG", "WEBP"}

# ----------------------------------------------------------------------------------- test pictures

_x = np.linspace(0.0, 1.0, SIZE)[None, :].repeat(SIZE, 0)  # 0 at the left, 1 at the right
_y = _x.T


def _u8(a: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(a, 0, 255)).astype(np.uint8)


def _palette_image(alpha: bool) -> Image.Image:
    rgb = np.stack([_u8(255 * _x), _u8(255 * _y), _u8(128 + 100 * (_x - _y))], -1)
    p = Image.fromarray(rgb).quantize(colors=64, dither=Image.Dither.NONE)
    if alpha:
        p = p.convert("PA")
        p.putalpha(Image.fromarray(_u8(64 + 191 * _y)))
    return p


def make_image(mode: str) -> Image.Image:
    """A SIZE x SIZE picture in ``mode`` whose brightness rises from left to right."""
    gray = _u8(255 * _x)
    alpha = _u8(64 + 191 * _y)  # never 0, so premultiplied colours can be undone
    rgb = np.stack([gray, _u8(255 * _y), _u8(128 + 100 * (_x - _y))], -1)
    if mode == "1":
        return Image.fromarray(gray).convert("1")  # dithered: the density of white rises
    if mode == "L":
        return Image.fromarray(gray)
    if mode in ("LA", "La"):
        return Image.merge("LA", [Image.fromarray(gray), Image.fromarray(alpha)]).convert(mode)
    if mode in ("P", "PA"):
        return _palette_image(alpha=mode == "PA")
    if mode in ("RGB", "RGBX", "YCbCr"):
        return Image.fromarray(rgb).convert(mode)
    if mode in ("RGBA", "RGBa"):
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA").convert(mode)
    if mode == "CMYK":
        cmyk = np.stack([_u8(255 * (1 - _x)), _u8(200 * _y), _u8(100 * (1 - _y)), _u8(120 * (1 - _x))], -1)
        return Image.fromarray(cmyk, "CMYK")
    if mode == "HSV":
        return Image.merge("HSV", [Image.fromarray(_u8(255 * _y)), Image.fromarray(_u8(200 + 0 * _x)),
                                   Image.fromarray(gray)])
    if mode == "LAB":  # Pillow stores a and b offset by 128 internally; merge() takes that form
        return Image.merge("LAB", [Image.fromarray(gray), Image.fromarray(_u8(128 + 60 * (_y - 0.5))),
                                   Image.fromarray(_u8(128 - 60 * (_y - 0.5)))])
    if mode.startswith("I;16"):
        dtype = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2"}[mode]
        data = np.rint(65535 * _x).astype(dtype)
        return Image.frombytes(mode, (SIZE, SIZE), data.tobytes())
    if mode == "I":
        return Image.fromarray(np.rint(65535 * _x).astype(np.int32), "I")
    if mode == "F":
        return Image.fromarray(_x.astype(np.float32), "F")
    raise AssertionError(f"no test picture for mode {mode}")


# ------------------------------------------------------------------------- reference conversions


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(int) % 6
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], -1)


def _lab_to_srgb(light: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D50 white) -> XYZ -> sRGB (Bradford-adapted D50 matrix) -> sRGB transfer curve, 0..1."""
    eps, kappa = 216 / 24389, 24389 / 27
    fy = (light + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200

    def inverse(t):
        return np.where(t**3 > eps, t**3, (116 * t - 16) / kappa)

    y = np.where(light > kappa * eps, fy**3, light / kappa)
    xyz = np.stack([0.9642 * inverse(fx), y, 0.8249 * inverse(fz)], -1)
    m = np.array([[3.1338561, -1.6168667, -0.4906146], [-0.9787684, 1.9161415, 0.0334540],
                  [0.0719453, -0.2289914, 1.4052427]])
    lin = np.clip(xyz @ m.T, 0, 1)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def _wide_to_byte(v: np.ndarray, ranges: tuple[float, ...]) -> np.ndarray:
    """The documented rule for I and F: the smallest nominal range holding every value, else min..max."""
    finite = v[np.isfinite(v)]
    if finite.min() >= 0:
        for top in ranges:
            if finite.max() <= top:
                return v / top * 255
    return (v - finite.min()) / (finite.max() - finite.min()) * 255


def reference_rgb(image: Image.Image) -> np.ndarray:
    """float64 ``[H, W, 3]`` on 0..255: what the picture looks like, from its raw values (numpy only)."""
    mode, a = image.mode, np.asarray(image)
    f = a.astype(np.float64)
    if mode == "1":
        return np.repeat(a[..., None].astype(np.float64) * 255, 3, -1)
    if mode in ("L", "LA"):
        return np.repeat((f if mode == "L" else f[..., 0])[..., None], 3, -1)
    if mode == "La":
        return np.repeat((f[..., 0] * 255 / f[..., 1])[..., None], 3, -1)
    if mode in ("P", "PA"):
        palette = np.asarray(image.getpalette("RGB"), dtype=np.float64).reshape(-1, 3)
        return palette[a if mode == "P" else a[..., 0]]
    if mode in ("RGB", "RGBA", "RGBX"):
        return f[..., :3]
    if mode == "RGBa":
        return np.clip(f[..., :3] * 255 / f[..., 3:], 0, 255)
    if mode == "CMYK":
        c, m, y, k = np.moveaxis(f, -1, 0)
        return np.stack([(255 - c) * (255 - k), (255 - m) * (255 - k), (255 - y) * (255 - k)], -1) / 255
    if mode == "YCbCr":
        y, cb, cr = np.moveaxis(f, -1, 0)
        rgb = [y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)]
        return np.clip(np.stack(rgb, -1), 0, 255)
    if mode == "HSV":
        return _hsv_to_rgb(*np.moveaxis(f / 255, -1, 0)) * 255
    if mode == "LAB":  # numpy shows a and b as signed bytes
        signed = a.view(np.int8).astype(np.float64)
        return _lab_to_srgb(f[..., 0] / 255 * 100, signed[..., 1], signed[..., 2]) * 255
    if mode.startswith("I;16"):
        return np.repeat((f / 65535 * 255)[..., None], 3, -1)
    if mode in ("I", "F"):
        return np.repeat(_wide_to_byte(f, (1.0, 255.0, 65535.0) if mode == "F" else (255.0, 65535.0))[..., None], 3, -1)
    raise AssertionError(f"no reference for mode {mode}")


TOLERANCE = {"LAB": 2.0, "YCbCr": 1.5, "CMYK": 1.0, "HSV": 1.0, "RGBa": 1.5, "La": 1.5}


def encode(image: Image.Image, fmt: str) -> bytes | None:
    """``image`` as a ``fmt`` file; None if Pillow cannot write that mode in that format."""
    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt, **({"quality": 95} if fmt in LOSSY else {}))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return buf.getvalue()


def _writable() -> list[tuple[str, str]]:
    """(format, mode) pairs Pillow writes. Not WebP of wide grey modes: Pillow's WebP writer converts them
    to RGB itself, clipping at 255, so those files are really white."""
    wide = {"I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
    return [(fmt, mode) for fmt in FORMATS for mode in Image.MODES
            if not (fmt == "WEBP" and mode in wide) and encode(make_image(mode), fmt) is not None]


WRITABLE = _writable()


def _pixels(tensor: torch.Tensor) -> np.ndarray:
    """Undo the teacher's normalisation: ``[H, W, 3]`` on 0..255."""
    mean, std = np.asarray(OPENAI_MEAN), np.asarray(OPENAI_STD)
    return (tensor.numpy().transpose(1, 2, 0) * std + mean) * 255


def assert_gradient(rgb: np.ndarray, what: str) -> None:
    """Brightness must rise from left to right: not all white, not all black, not flat."""
    luma = rgb.mean(-1)
    left, right = luma[:, : SIZE // 4].mean(), luma[:, -SIZE // 4 :].mean()
    assert luma.max() - luma.min() > 100, f"{what}: no gradient (range {luma.min():.0f}..{luma.max():.0f})"
    assert right - left > 60, f"{what}: left {left:.0f}, right {right:.0f}"


# ------------------------------------------------------------------------------------------ tests


def test_the_files_give_every_mode_pillow_reads_from_them(tmp_path) -> None:
    """Every mode a PNG, JPEG, TIFF or WebP file can come back in is among the modes tested."""
    read = set()
    for fmt, mode in WRITABLE:
        path = tmp_path / f"{mode.replace(';', '_')}{SUFFIX[fmt]}"
        path.write_bytes(encode(make_image(mode), fmt))
        read.add(open_image(path).mode)
    expected = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "I", "I;16", "I;16B", "F"}
    assert expected <= read, sorted(expected - read)


@pytest.mark.parametrize(("fmt", "mode"), WRITABLE, ids=[f"{f}-{m}" for f, m in WRITABLE])
def test_file_is_read_as_what_it_is(fmt: str, mode: str, tmp_path) -> None:
    path = tmp_path / f"picture{SUFFIX[fmt]}"
    path.write_bytes(encode(make_image(mode), fmt))
    image = open_image(path)
    if mode == "P" and fmt == "PNG":
        assert image.mode == "P"  # palette kept: open_clip resizes it with nearest neighbour
    expected = reference_rgb(image)
    tol = TOLERANCE.get(image.mode, 0.51)
    got = np.asarray(standard_mode(image).convert("RGB"), dtype=np.float64)
    assert np.abs(got - expected).max() <= tol, f"{fmt} {mode} read as {image.mode}"
    # through the teacher's preprocessing (same size: no resampling), as the index sees it
    seen = _pixels(ImagePreprocessor(size=SIZE)(image))
    assert np.abs(seen - expected).max() <= tol + 1e-3, f"{fmt} {mode} read as {image.mode}"
    assert_gradient(seen, f"{fmt} {mode} -> {image.mode}")


@pytest.mark.parametrize("mode", Image.MODES)
def test_every_mode_in_memory(mode: str) -> None:
    """Python users pass PIL images of any mode straight to the teacher."""
    image = make_image(mode)
    assert image.mode == mode
    expected = reference_rgb(image)
    seen = _pixels(ImagePreprocessor(size=SIZE)(image))
    assert np.abs(seen - expected).max() <= TOLERANCE.get(mode, 0.51) + 1e-3, mode
    assert_gradient(seen, mode)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "YCbCr", "RGBX"])
def test_open_clip_modes_are_left_alone(mode: str) -> None:
    """These go through open_clip's resize-then-convert unchanged (tests/test_image_preprocess.py checks it)."""
    image = make_image(mode)
    assert standard_mode(image) is image


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "F", "HSV", "LAB", "PA", "RGBa", "La"])
def test_converted_modes_resize_like_their_rgb_picture(mode: str) -> None:
    """Resized, a picture in these modes embeds like the RGB picture it shows (PA's palette indices and
    HSV's hue must not be interpolated; 16-bit values must not be clipped)."""
    image = make_image(mode)
    pre = ImagePreprocessor(size=20)
    shown = Image.fromarray(_u8(reference_rgb(image)))
    if mode in ("PA", "RGBa", "La"):  # alpha images are resized premultiplied, as open_clip does for RGBA
        alpha = np.asarray(image.convert("RGBA" if mode != "La" else "LA"))[..., -1]
        shown = Image.fromarray(np.dstack([np.asarray(shown), alpha]), "RGBA")
    diff = (pre(image) - pre(shown)).abs().max().item()
    assert diff < 0.05, f"{mode}: differs from its RGB picture by {diff:.3f} (normalised units)"


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I", [0, 128, 255], [0, 128, 255]),  # 8-bit data
        ("I", [0, 32768, 65535], [0, 128, 255]),  # 16-bit data (Pillow opens 16-bit PGM as I)
        ("I", [0, 500_000, 1_000_000], [0, 128, 255]),  # beyond 16 bits: min..max
        ("I", [-1000, 0, 1000], [0, 128, 255]),  # negative: min..max
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),  # the usual float range
        ("F", [0.0, 100.0, 200.0], [0, 100, 200]),  # 8-bit values stored as float
        ("F", [-1.0, 0.0, 1.0], [0, 128, 255]),  # negative: min..max
        ("F", [np.nan, 0.25, np.inf], [0, 64, 255]),  # NaN black; inf left out of the range, then clipped
        ("I;16", [0, 257, 65535], [0, 1, 255]),
    ],
)
def test_wide_range_values_follow_the_documented_rule(mode, values, expected) -> None:
    if mode == "I;16":
        image = Image.frombytes("I;16", (3, 1), np.asarray(values, "<u2").tobytes())
    else:
        image = Image.fromarray(np.asarray([values], dtype=np.int32 if mode == "I" else np.float32), mode)
    assert np.asarray(standard_mode(image)).ravel().tolist() == expected


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_palette_with_transparency(tmp_path, fmt: str) -> None:
    """A palette picture with a transparent index keeps the colours of its palette (alpha dropped, as RGBA)."""
    image = make_image("P")
    image.info["transparency"] = int(np.asarray(image)[0, 0])
    path = tmp_path / f"transparent{SUFFIX[fmt]}"
    image.save(path, transparency=image.info["transparency"])
    read = open_image(path)
    assert read.mode in ("P", "PA", "RGBA")
    if fmt == "PNG":
        assert read.mode == "P" and "transparency" in read.info
    seen = _pixels(ImagePreprocessor(size=SIZE)(read))
    assert np.abs(seen - reference_rgb(make_image("P"))).max() <= 0.51
    assert_gradient(seen, f"{fmt} P with transparency")


def test_sixteen_bit_png_is_not_white(tmp_path) -> None:
    """The reported case: a 16-bit grey PNG (Pillow: I;16) of a mid-grey picture."""
    path = tmp_path / "gray16.png"
    Image.frombytes("I;16", (SIZE, SIZE), np.full((SIZE, SIZE), 20000, "<u2").tobytes()).save(path)
    image = open_image(path)
    assert image.mode == "I;16"
    level = _pixels(ImagePreprocessor(size=SIZE)(image)).mean()
    assert abs(level - 20000 / 257) < 0.6, level


# ----------------------------------------------------------------------------------- audio rates


@pytest.mark.parametrize("rate", [1, 100, 4000, MIN_SAMPLE_RATE - 1])
def test_sample_rate_below_the_floor_is_refused(tmp_path, rate: int) -> None:
    path = tmp_path / f"rate_{rate}.wav"
    write_wav(path, np.zeros(max(rate, 8), np.float32), rate)
    for read in (audio_info, lambda p: read_audio(p, 16_000), lambda p: list(stream_audio(p, 16_000))):
        with pytest.raises(AudioError) as info:
            read(path)
        message = str(info.value)
        assert str(path) in message and f"{rate} Hz" in message and f"{MIN_SAMPLE_RATE} Hz" in message


def test_the_floor_itself_is_accepted(tmp_path) -> None:
    assert MIN_SAMPLE_RATE == 8000
    path = tmp_path / "phone.wav"
    write_wav(path, 1.0, MIN_SAMPLE_RATE, freq=1000)
    assert audio_info(path).sample_rate == MIN_SAMPLE_RATE
    assert read_audio(path, 16_000).shape == (16_000,)


def test_batch_jobs_skip_and_list_absurd_rates(tiny_clap, tmp_path) -> None:
    from birdbridge.embed.audio import embed_audio_windows

    folder = tmp_path / "recordings"
    folder.mkdir()
    write_wav(folder / "good.wav", 1.0, freq=800)
    write_wav(folder / "one_hertz.wav", np.zeros(64, np.float32), 1)
    write_wav(folder / "hundred.wav", np.zeros(400, np.float32), 100)
    table = embed_audio_windows([folder], tiny_clap)
    assert set(table.names) == {str(folder / "good.wav")}
    failed = {Path(f.source).name: f.message for f in table.failures}
    assert set(failed) == {"one_hertz.wav", "hundred.wav"}
    assert "1 Hz" in failed["one_hertz.wav"] and "100 Hz" in failed["hundred.wav"]
