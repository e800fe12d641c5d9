"""Image preprocessing equals open_clip's eval transform (torchvision semantics), without torchvision."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from birdbridge.errors import ImageError
from birdbridge.models.image_preprocess import (
    OPENAI_MEAN,
    OPENAI_STD,
    ImagePreprocessor,
    center_crop_or_pad,
    open_image,
    shortest_side_size,
)
from openclip_reference import reference_preprocess, sample_images

IMAGES = sample_images()


@pytest.mark.parametrize("kind", sorted(IMAGES))
@pytest.mark.parametrize("size", [224, 64])
def test_matches_torchvision_reference(kind: str, size: int) -> None:
    image = IMAGES[kind]
    ours = ImagePreprocessor(size=size)(image)
    ref = reference_preprocess(image, size=size)
    assert ours.dtype == torch.float32
    assert ours.shape == (3, size, size)
    assert (ours - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("kind", ["rgb", "rgba", "palette_p", "tall", "tiny_5x7", "large_1000x300", "la"])
@pytest.mark.parametrize(
    "settings",
    [
        {"resize_mode": "squash"},
        {"resize_mode": "longest", "fill_color": 0},
        {"resize_mode": "longest", "fill_color": 128},
        {"interpolation": "bilinear"},
        {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.5, 1.0)},
    ],
    ids=["squash", "longest", "longest-fill128", "bilinear", "mean-std"],
)
def test_other_modes_match_reference(kind: str, settings: dict) -> None:
    image = IMAGES[kind]
    ours = ImagePreprocessor(size=96, **settings)(image)
    ref = reference_preprocess(image, size=96, **settings)
    assert (ours - ref).abs().max().item() < 1e-5


def test_convert_to_rgb_happens_after_resize() -> None:
    """RGBA with transparent, coloured pixels: resampling premultiplies alpha, so the order shows."""
    image = IMAGES["rgba"]
    ours = ImagePreprocessor(size=64)(image)
    early = ImagePreprocessor(size=64)(image.convert("RGB"))
    assert (ours - early).abs().max().item() > 1e-2
    assert (ours - reference_preprocess(image, size=64)).abs().max().item() < 1e-5


def test_palette_image_is_resampled_in_its_own_mode() -> None:
    image = IMAGES["palette_p"]
    ours = ImagePreprocessor(size=64)(image)
    early = ImagePreprocessor(size=64)(image.convert("RGB"))
    assert (ours - early).abs().max().item() > 1e-2


def test_exif_orientation_is_not_applied() -> None:
    """open_clip ignores EXIF orientation; so do we (documented)."""
    image = IMAGES["rgb"]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    buf.seek(0)
    with Image.open(buf) as tagged:
        tagged.load()
        assert tagged.getexif().get(0x0112) == 6
        ours = ImagePreprocessor(size=64)(tagged)
        plain = ImagePreprocessor(size=64)(tagged.copy())
        assert torch.equal(ours, plain)
        assert (ours - reference_preprocess(tagged, size=64)).abs().max().item() < 1e-5


def test_shortest_side_sizes_follow_torchvision() -> None:
    # (w, h) -> (h, w) with the long side truncated, never rounded
    assert shortest_side_size(Image.new("RGB", (301, 199)), 224) == (224, int(224 * 301 / 199))
    assert shortest_side_size(Image.new("RGB", (5, 7)), 224) == (313, 224)
    assert shortest_side_size(Image.new("RGB", (1000, 300)), 224) == (224, 746)
    assert shortest_side_size(Image.new("RGB", (224, 224)), 224) == (224, 224)


def test_center_crop_rounding_and_padding() -> None:
    image = Image.fromarray(np.arange(7 * 10, dtype=np.uint8).reshape(7, 10), "L")
    crop = np.asarray(center_crop_or_pad(image, (4, 5)))
    top, left = round((7 - 4) / 2.0), round((10 - 5) / 2.0)  # 2 (round half to even) and 2
    assert np.array_equal(crop, np.asarray(image)[top : top + 4, left : left + 5])
    padded = np.asarray(center_crop_or_pad(image, (9, 13), fill=0))
    assert padded.shape == (9, 13)
    assert np.array_equal(padded[1:8, 1:11], np.asarray(image))
    assert padded[0].sum() == 0 and padded[:, 0].sum() == 0


def test_defaults_are_openai_stats() -> None:
    pre = ImagePreprocessor()
    assert pre.mean == OPENAI_MEAN and pre.std == OPENAI_STD and pre.size == 224
    white = ImagePreprocessor(size=16)(Image.new("RGB", (10, 10), (255, 255, 255)))
    expected = (1.0 - torch.tensor(OPENAI_MEAN)) / torch.tensor(OPENAI_STD)
    assert torch.allclose(white[:, 0, 0], expected, atol=1e-6)


def test_from_config_and_batch() -> None:
    pre = ImagePreprocessor.from_config({"mean": [0.5] * 3, "std": [0.5] * 3, "resize_mode": "squash"}, size=32)
    assert (pre.size, pre.resize_mode, pre.interpolation) == (32, "squash", "bicubic")
    images = [IMAGES["rgb"], IMAGES["gray_l"], IMAGES["tiny_5x7"]]
    batch = pre.batch(images)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.float32
    for i, image in enumerate(images):
        assert torch.equal(batch[i], pre(image))
    assert pre.batch([]).shape == (0, 3, 32, 32)


def test_bad_settings_and_inputs() -> None:
    with pytest.raises(ValueError):
        ImagePreprocessor(resize_mode="crop")
    with pytest.raises(ValueError):
        ImagePreprocessor(interpolation="nearest")
    with pytest.raises(TypeError):
        ImagePreprocessor()(np.zeros((4, 4, 3)))  # type: ignore[arg-type]


def test_open_image_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match=r"broken\.jpg"):
        open_image(bad)
    with pytest.raises(ImageError, match=r"missing\.png"):
        open_image(tmp_path / "missing.png")
    good = tmp_path / "ok.png"
    IMAGES["palette_p"].save(good)
    assert open_image(good).mode == "P"


def test_truncated_file_raises_image_error_on_preprocess(tmp_path) -> None:
    path = tmp_path / "cut.png"
    IMAGES["large_1000x300"].save(path)
    path.write_bytes(path.read_bytes()[:2000])
    image = Image.open(path)  # lazy: only the header is read here
    with pytest.raises(ImageError, match=r"cut\.png"):
        ImagePreprocessor(size=32)(image)
