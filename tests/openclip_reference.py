"""open_clip's own code as the independent reference for birdbridge's teacher conversion.

open_clip_torch is installed in the test environment without its dependencies. Its package
``__init__`` imports torchvision transforms, which cannot be imported beside the CPU torch here, so
this module:

* puts stub ``torchvision``, ``torchvision.ops`` and ``torchvision.ops.misc`` modules (the last with a
  dummy ``FrozenBatchNorm2d``) into ``sys.modules``, only if torchvision itself is not importable;
* registers a bare ``open_clip`` package object whose ``__path__`` is the installed folder, so that
  its ``__init__`` never runs;
* imports ``open_clip.model`` and ``open_clip.tokenizer`` from it.

``make_openclip_checkpoint`` builds a small open_clip ``CLIP`` with random weights and saves it in
the Hugging Face hub layout (``open_clip_config.json`` + ``open_clip_model.safetensors`` or
``open_clip_pytorch_model.bin``), written from the model's own ``state_dict``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

_STUBS = ("torchvision", "torchvision.ops", "torchvision.ops.misc")


def _install_torchvision_stub() -> bool:
    """Stub torchvision if it cannot be imported; True if stubs were installed."""
    try:
        importlib.import_module("torchvision.ops.misc")
        return False
    except Exception:
        pass
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]

    class FrozenBatchNorm2d(torch.nn.Module):  # only referenced by open_clip's ResNet/timm code
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("torchvision stub: FrozenBatchNorm2d is not available")

    tv, ops, misc = (types.ModuleType(name) for name in _STUBS)
    for module in (tv, ops, misc):
        # A spec (but no __file__) keeps importlib.util.find_spec, which transformers calls, working.
        module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None, is_package=True)
    misc.FrozenBatchNorm2d = FrozenBatchNorm2d  # type: ignore[attr-defined]
    tv.ops = ops  # type: ignore[attr-defined]
    ops.misc = misc  # type: ignore[attr-defined]
    tv.__path__ = []  # type: ignore[attr-defined]
    ops.__path__ = []  # type: ignore[attr-defined]
    sys.modules.update(dict(zip(_STUBS, (tv, ops, misc), strict=True)))
    return True


def _import_open_clip() -> tuple[types.ModuleType, types.ModuleType, Path]:
    if "open_clip.model" in sys.modules and "open_clip.tokenizer" in sys.modules:
        model_mod = sys.modules["open_clip.model"]
        return model_mod, sys.modules["open_clip.tokenizer"], Path(model_mod.__file__).parent
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            "open_clip_torch is not installed (pip install --no-deps open_clip_torch==3.3.0)",
            allow_module_level=True,
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    # open_clip.hf_model imports transformers; import it first, so that transformers settles on
    # "no torchvision" before any stub exists.
    import transformers.utils.import_utils as hf_import_utils

    hf_import_utils.is_torchvision_available()
    stubbed = _install_torchvision_stub()
    package = types.ModuleType("open_clip")
    package.__path__ = [str(folder)]  # type: ignore[attr-defined]
    package.__file__ = str(folder / "__init__.py")
    package.__package__ = "open_clip"
    sys.modules["open_clip"] = package
    try:
        model_mod = importlib.import_module("open_clip.model")
        tokenizer_mod = importlib.import_module("open_clip.tokenizer")
    finally:
        if stubbed:  # open_clip.utils has bound FrozenBatchNorm2d; nothing else needs the stubs
            for name in _STUBS:
                sys.modules.pop(name, None)
    return model_mod, tokenizer_mod, folder


oc_model, oc_tokenizer, OPEN_CLIP_DIR = _import_open_clip()

TINY_VISION = {"layers": 2, "width": 64, "patch_size": 16, "head_width": 32}
TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}


def model_config(name: str) -> dict:
    """One of open_clip's bundled architecture configs, e.g. ``ViT-L-14``."""
    return json.loads((OPEN_CLIP_DIR / "model_configs" / f"{name}.json").read_text())


def simple_tokenizer() -> Any:
    """open_clip's ``SimpleTokenizer`` with its bundled BPE file."""
    return oc_tokenizer.SimpleTokenizer()


def build_openclip_model(model_cfg: dict, *, seed: int = 0) -> torch.nn.Module:
    """open_clip's ``CLIP`` (or ``CustomTextCLIP``) built from a hub-style ``model_cfg``, in eval mode.

    The init is random; biases, layer norms and the logit scale, which open_clip initialises to
    constants, are randomised too so that a wrong mapping of any tensor would show.
    """
    cfg = dict(model_cfg)
    custom_text = cfg.pop("custom_text", False)
    torch.manual_seed(seed)
    cls = oc_model.CustomTextCLIP if custom_text else oc_model.CLIP
    model = cls(**cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln" in name or name.startswith("ln") or "ln_" in name:
                p.add_(0.05 * torch.randn_like(p))
            if name == "logit_scale":
                p.fill_(2.5)
    return model.eval()


def make_openclip_checkpoint(
    folder: str | Path,
    *,
    quick_gelu: bool = False,
    image_size: int = 64,
    vision: dict | None = None,
    text: dict | None = None,
    embed_dim: int = 48,
    fmt: str = "safetensors",
    preprocess_cfg: dict | None = None,
    extra_model_cfg: dict | None = None,
    seed: int = 0,
) -> torch.nn.Module:
    """Save a random open_clip CLIP in the hub layout into ``folder``; return the model (eval mode).

    ``fmt`` is ``"safetensors"`` (``open_clip_model.safetensors``) or ``"bin"``
    (``open_clip_pytorch_model.bin``, a plain ``torch.save`` of the state dict).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vision_cfg = {**TINY_VISION, "image_size": image_size, **(vision or {})}
    text_cfg = {**TINY_TEXT, **(text or {})}
    model_cfg: dict[str, Any] = {"embed_dim": embed_dim, "vision_cfg": vision_cfg, "text_cfg": text_cfg}
    if quick_gelu:
        model_cfg["quick_gelu"] = True
    model_cfg.update(extra_model_cfg or {})
    model = build_openclip_model(model_cfg, seed=seed)
    save_hub_layout(model, model_cfg, folder, fmt=fmt, preprocess_cfg=preprocess_cfg)
    return model


def save_hub_layout(
    model: torch.nn.Module,
    model_cfg: dict,
    folder: str | Path,
    *,
    fmt: str = "safetensors",
    preprocess_cfg: dict | None = None,
) -> None:
    """Write ``model.state_dict()`` and its config as open_clip's ``push_to_hf_hub`` does."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(folder / "open_clip_model.safetensors"))
    elif fmt == "bin":
        torch.save(state, folder / "open_clip_pytorch_model.bin")
    else:
        raise ValueError(fmt)
    pp = preprocess_cfg or {
        "mean": list(oc_constants().OPENAI_DATASET_MEAN),
        "std": list(oc_constants().OPENAI_DATASET_STD),
    }
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": pp}, indent=2)
    )


def oc_constants() -> types.ModuleType:
    return importlib.import_module("open_clip.constants")


@torch.no_grad()
def reference_text_features(model: torch.nn.Module, texts: list[str]) -> torch.Tensor:
    """open_clip's L2-normalised text embeddings, tokenised by its ``SimpleTokenizer``."""
    tokens = simple_tokenizer()(texts, context_length=model.context_length)
    return torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1)


@torch.no_grad()
def reference_image_features(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """open_clip's L2-normalised image embeddings of already preprocessed pixels ``[N, 3, H, W]``."""
    return torch.nn.functional.normalize(model.encode_image(pixels).float(), dim=-1)


# ------------------------------------------------------------------------------------------------------
# open_clip's eval image transform, re-implemented from torchvision's documented semantics (torchvision
# itself is not importable here). Written independently of birdbridge.models.image_preprocess.

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _tv_resize(img: Any, size: int | list[int], resample: int) -> Any:
    """torchvision ``F.resize`` for PIL: int -> shortest edge (long edge truncated); [h, w] -> exact."""
    w, h = img.size
    if isinstance(size, int):
        if w <= h:
            new_w, new_h = size, int(size * h / w)
        else:
            new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = size
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), resample)


def _tv_pad(img: Any, left: int, top: int, right: int, bottom: int, fill: int) -> Any:
    """torchvision ``F.pad(padding_mode="constant")`` for PIL (palette kept for mode P)."""
    from PIL import ImageOps

    n = len(img.getbands())
    color = tuple([int(fill)] * n) if n > 1 else int(fill)
    palette = img.getpalette() if img.mode == "P" else None
    out = ImageOps.expand(img, border=(left, top, right, bottom), fill=color)
    if palette is not None:
        out.putpalette(palette)
    return out


def _tv_center_crop(img: Any, th: int, tw: int, fill: int = 0) -> Any:
    """torchvision ``F.center_crop`` (which pads with 0) / open_clip ``center_crop_or_pad``."""
    w, h = img.size
    if tw > w or th > h:
        pad = [
            (tw - w) // 2 if tw > w else 0,
            (th - h) // 2 if th > h else 0,
            (tw - w + 1) // 2 if tw > w else 0,
            (th - h + 1) // 2 if th > h else 0,
        ]
        img = _tv_pad(img, *pad, fill=fill)
        w, h = img.size
        if (w, h) == (tw, th):
            return img
    top = int(round((h - th) / 2.0))  # noqa: RUF046 - written as torchvision writes it
    left = int(round((w - tw) / 2.0))  # noqa: RUF046
    return img.crop((left, top, left + tw, top + th))


def reference_preprocess(
    img: Any,
    size: int = 224,
    mean: tuple[float, ...] = OPENAI_MEAN,
    std: tuple[float, ...] = OPENAI_STD,
    interpolation: str = "bicubic",
    resize_mode: str = "shortest",
    fill_color: int = 0,
) -> torch.Tensor:
    """open_clip ``image_transform(size, is_train=False, ...)`` with torchvision's semantics, ``[3, H, W]``."""
    import numpy as np
    from PIL import Image

    resample = Image.BILINEAR if interpolation == "bilinear" else Image.BICUBIC
    if resize_mode == "squash":
        img = _tv_resize(img, [size, size], resample)
    elif resize_mode == "longest":
        w, h = img.size
        ratio = max(h / size, w / size)
        img = _tv_resize(img, [round(h / ratio), round(w / ratio)], resample)
        img = _tv_center_crop(img, size, size, fill=fill_color)
    else:
        img = _tv_resize(img, size, resample)
        img = _tv_center_crop(img, size, size)
    img = img.convert("RGB")  # MaybeConvertMode
    # ToTensor: uint8 HWC -> float CHW / 255
    t = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(img.size[1], img.size[0], 3)
    t = t.permute((2, 0, 1)).contiguous().to(torch.float32).div(255)
    # Normalize
    m = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return t.sub_(m).div_(s)


def sample_images() -> dict[str, Any]:
    """PIL images of every kind the teacher must handle, keyed by a short name."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)

    def noise(h: int, w: int, c: int) -> np.ndarray:
        # smooth-ish content plus noise, so resampling differences would show
        y, x = np.mgrid[0:h, 0:w]
        base = (127 + 100 * np.sin(x / 7.0)[..., None] * np.cos(y / 5.0)[..., None]).repeat(c, axis=2)
        return np.clip(base + rng.normal(0, 30, (h, w, c)), 0, 255).astype(np.uint8)

    rgba = noise(120, 90, 4)
    rgba[..., 3] = 0
    rgba[30:90, 20:70, 3] = 255  # opaque centre, transparent (but coloured) border
    rgba[40:50, :, 3] = 128
    pal = Image.fromarray(noise(80, 100, 3)).quantize(colors=32)
    la = noise(70, 110, 2)
    la[..., 1] = np.where(np.arange(110)[None, :] % 3 == 0, 0, 255)
    images = {
        "rgb": Image.fromarray(noise(150, 200, 3)),
        "rgba": Image.fromarray(rgba, "RGBA"),
        "gray_l": Image.fromarray(noise(100, 100, 1)[..., 0], "L"),
        "palette_p": pal,
        "la": Image.fromarray(la, "LA"),
        "tall": Image.fromarray(noise(400, 60, 3)),
        "wide": Image.fromarray(noise(60, 400, 3)),
        "tiny_5x7": Image.fromarray(noise(7, 5, 3)),
        "large_1000x300": Image.fromarray(noise(300, 1000, 3)),
        "odd_301x199": Image.fromarray(noise(199, 301, 3)),
        "exact_224": Image.fromarray(noise(224, 224, 3)),
        "bilevel_1": Image.fromarray(noise(50, 60, 1)[..., 0]).convert("1"),
        "cmyk": Image.fromarray(noise(64, 80, 3)).convert("CMYK"),
    }
    return images
