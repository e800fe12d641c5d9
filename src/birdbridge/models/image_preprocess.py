"""open_clip's eval image preprocessing, with PIL and numpy instead of torchvision.

The steps and their rounding are those of open_clip's ``image_transform(..., is_train=False)``:

* first, modes open_clip gets wrong (16-bit and float grey, CMYK, LAB, premultiplied alpha, ...) are
  brought into one it handles (:mod:`birdbridge.models.image_modes`); RGB, RGBA, L, LA, P, 1, CMYK,
  YCbCr and RGBX images are left as they are, so their embeddings equal open_clip's;
* ``resize_mode="shortest"`` (the default): torchvision ``Resize(size)`` on a PIL image — the short
  side becomes ``size``, the long side ``int(size * long / short)``, nothing happens if the image
  already has that size — then ``CenterCrop(size)`` (offsets ``int(round((h - size) / 2.0))``,
  zero padding if the image is smaller);
* ``"squash"``: resize to ``size x size``, ignoring the aspect ratio;
* ``"longest"``: resize so the long side is ``size`` (each side ``round(side / ratio)``), then
  centre-crop-or-pad with ``fill_color``;
* then ``convert("RGB")`` — after resizing and cropping, as open_clip's ``MaybeConvertMode`` does, so
  RGBA, LA, P and L images are resampled in their own mode (PIL resamples alpha images with
  premultiplied alpha and palette images with nearest neighbour);
* then ``/ 255`` and ``(x - mean) / std`` in float32.

EXIF orientation is *not* applied, because open_clip does not apply it either: a photo whose
camera stored it sideways is embedded sideways. Callers who want it upright can call
``PIL.ImageOps.exif_transpose`` first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from birdbridge.errors import ImageError
from birdbridge.models.image_modes import standard_mode
from birdbridge.utils.readable import permission_denied

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class ImagePreprocessor:
    """Callable turning a PIL image into a normalised float32 ``[3, H, W]`` tensor."""

    size: int | tuple[int, int] = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"  # "bilinear"; "random" means bicubic at eval time, as in open_clip
    resize_mode: str = "shortest"  # or "squash", "longest"
    fill_color: int = 0

    def __post_init__(self) -> None:
        if self.resize_mode not in ("shortest", "squash", "longest"):
            raise ValueError(f"resize_mode must be shortest, squash or longest, not {self.resize_mode!r}")
        if self.interpolation not in ("bicubic", "bilinear", "random"):
            raise ValueError(f"interpolation must be bicubic or bilinear, not {self.interpolation!r}")

    @classmethod
    def from_config(cls, cfg: Mapping, size: int | tuple[int, int] | None = None) -> ImagePreprocessor:
        """From an open_clip ``preprocess_cfg`` mapping (missing keys take open_clip's defaults)."""
        size = size if size is not None else cfg.get("size", 224)
        return cls(
            size=tuple(size) if isinstance(size, (list, tuple)) else int(size),  # type: ignore[arg-type]
            mean=tuple(float(x) for x in cfg.get("mean") or OPENAI_MEAN),  # type: ignore[arg-type]
            std=tuple(float(x) for x in cfg.get("std") or OPENAI_STD),  # type: ignore[arg-type]
            interpolation=cfg.get("interpolation") or "bicubic",
            resize_mode=cfg.get("resize_mode") or "shortest",
            fill_color=int(cfg.get("fill_color") or 0),
        )

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else (int(self.size[0]), int(self.size[1]))

    def transform_pil(self, image: Image.Image) -> Image.Image:
        """The resized, cropped RGB PIL image (before scaling and normalisation)."""
        image = standard_mode(image)
        resample = _RESAMPLE.get(self.interpolation, Image.Resampling.BICUBIC)
        h, w = self.hw
        if self.resize_mode == "squash":
            image = _resize(image, (h, w), resample)
        elif self.resize_mode == "longest":
            image = _resize(image, _keep_ratio_size(image, (h, w), longest=True), resample)
            image = center_crop_or_pad(image, (h, w), fill=self.fill_color)
        else:
            if h == w:
                image = _resize(image, shortest_side_size(image, h), resample)
            else:  # open_clip uses ResizeKeepRatio (always bicubic) for non-square targets
                image = _resize(image, _keep_ratio_size(image, (h, w), longest=False), Image.Resampling.BICUBIC)
            image = center_crop_or_pad(image, (h, w), fill=0)
        return image.convert("RGB")

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Normalised float32 tensor ``[3, H, W]``."""
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image, got {type(image).__name__}")
        try:
            rgb = self.transform_pil(image)
            array = np.asarray(rgb, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as exc:  # decoding happens lazily, on first access
            raise ImageError(_image_source(image), f"cannot decode the image ({exc})") from exc
        x = array.astype(np.float32) / np.float32(255.0)
        x = (x - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    def batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Stacked ``[N, 3, H, W]`` tensor."""
        h, w = self.hw
        if not images:
            return torch.empty((0, 3, h, w), dtype=torch.float32)
        return torch.stack([self(image) for image in images])


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and decode an image file fully, in the mode it is stored in (no EXIF rotation, like open_clip).

    Raises ``ImageError`` naming the file if it is missing, may not be read, or is not a decodable image.
    """
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise ImageError(str(path), "no such file") from None
    except PermissionError as exc:
        raise permission_denied(path, ImageError) from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(str(path), f"cannot decode the image ({exc})", "re-export it as JPEG or PNG") from exc


def shortest_side_size(image: Image.Image, size: int) -> tuple[int, int]:
    """torchvision ``Resize(size)`` output ``(h, w)``: short side ``size``, long side truncated."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h, new_w


def _keep_ratio_size(image: Image.Image, target: tuple[int, int], longest: bool) -> tuple[int, int]:
    """open_clip ``ResizeKeepRatio`` output ``(h, w)`` (its eval path, without random scaling)."""
    w, h = image.size
    ratio_h, ratio_w = h / target[0], w / target[1]
    longest_f = 1.0 if longest else 0.0
    ratio = max(ratio_h, ratio_w) * longest_f + min(ratio_h, ratio_w) * (1.0 - longest_f)
    return round(h * 1.0 / ratio), round(w * 1.0 / ratio)


def _resize(image: Image.Image, hw: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    """PIL resize to ``(h, w)``; a no-op when the size already matches (as in torchvision)."""
    h, w = hw
    if image.size == (w, h):
        return image
    return image.resize((w, h), resample)


def center_crop_or_pad(image: Image.Image, hw: tuple[int, int], fill: int = 0) -> Image.Image:
    """torchvision ``CenterCrop`` / open_clip ``CenterCropOrPad`` on a PIL image.

    Pads (with ``fill`` in every channel, in the image's own mode) where the image is smaller than
    the crop, then crops at ``int(round((size - crop) / 2.0))``.
    """
    crop_h, crop_w = hw
    w, h = image.size
    if crop_w > w or crop_h > h:
        left = (crop_w - w) // 2 if crop_w > w else 0
        top = (crop_h - h) // 2 if crop_h > h else 0
        right = (crop_w - w + 1) // 2 if crop_w > w else 0
        bottom = (crop_h - h + 1) // 2 if crop_h > h else 0
        image = _pad(image, (left, top, right, bottom), fill)
        w, h = image.size
        if (w, h) == (crop_w, crop_h):
            return image
    top = round((h - crop_h) / 2.0)
    left = round((w - crop_w) / 2.0)
    return image.crop((left, top, left + crop_w, top + crop_h))


def _pad(image: Image.Image, ltrb: tuple[int, int, int, int], fill: int) -> Image.Image:
    """torchvision's constant padding of a PIL image (``F.pad`` with ``padding_mode="constant"``)."""
    channels = len(image.getbands())
    color: int | float | tuple[int, ...] = fill
    if channels > 1:
        color = tuple([int(fill)] * channels)
    elif image.mode != "F":
        color = int(fill)
    if image.mode == "P":
        palette = image.getpalette()
        out = ImageOps.expand(image, border=ltrb, fill=color)
        if palette is not None:
            out.putpalette(palette)
        return out
    return ImageOps.expand(image, border=ltrb, fill=color)


def _image_source(image: Image.Image) -> str:
    return str(getattr(image, "filename", "") or "<image>")
