"""The image-text teacher (BioCLIP-2 / BioCLIP): a frozen ``CLIPModel`` with its tokenizer and preprocessing.

``Teacher.from_folder`` reads open_clip's hub layout (``open_clip_config.json`` + weights, converted in
memory by :mod:`birdbridge.models.openclip_convert`) or a plain Hugging Face ``CLIPModel`` folder
(``config.json`` with ``model_type: clip``). Texts are tokenised exactly like open_clip
(:mod:`birdbridge.models.clip_tokenizer`) and images preprocessed like open_clip's eval transform
(:mod:`birdbridge.models.image_preprocess`), so embeddings match open_clip's to float precision.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from birdbridge.errors import InputError, ModelFormatError, ModelNotFoundError
from birdbridge.models.clip_tokenizer import ClipTokenizer, load_clip_tokenizer
from birdbridge.models.fingerprint import folder_fingerprint
from birdbridge.models.hf_quiet import quiet_transformers
from birdbridge.models.hub import check_model_folder
from birdbridge.models.image_preprocess import ImagePreprocessor
from birdbridge.models.openclip_convert import (
    OPENCLIP_CONFIG_NAME,
    find_openclip_weights,
    is_openclip_folder,
    load_openclip_folder,
)
from birdbridge.utils.device import best_device
from birdbridge.utils.readable import raise_if_unreadable

_HF_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
_HF_INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
_HF_CACHE_DIR = re.compile(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\][^/\\]+/?$")


class Teacher:
    """Frozen image-text teacher (CLIPModel) with its tokenizer and preprocessing."""

    def __init__(
        self,
        model: Any,
        tokenizer: ClipTokenizer,
        preprocessor: ImagePreprocessor,
        *,
        name: str,
        fingerprint: str,
        device: torch.device,
        folder: Path | None = None,
        layout: str = "open_clip",
    ) -> None:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.tokenizer = tokenizer
        self.preprocessor = preprocessor
        self.name = name
        self.fingerprint = fingerprint
        self.device = device
        self.folder = folder
        self.layout = layout
        self.embed_dim = int(model.config.projection_dim)
        self.context_length = int(model.config.text_config.max_position_embeddings)
        self.image_size = int(model.config.vision_config.image_size)

    def __repr__(self) -> str:
        return (
            f"Teacher(name={self.name!r}, embed_dim={self.embed_dim}, image_size={self.image_size}, "
            f"device={self.device}, layout={self.layout!r})"
        )

    @classmethod
    def from_folder(
        cls,
        folder: str | os.PathLike[str],
        device: str | torch.device | None = None,
        name: str | None = None,
    ) -> Teacher:
        """Load a teacher from an open_clip hub-layout folder or a Hugging Face ``CLIPModel`` folder."""
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise ModelNotFoundError(f"{folder}: no such model folder.")
        check_model_folder(folder)
        dev = best_device(str(device) if device is not None else None)
        if is_openclip_folder(folder):
            model, pp_cfg, _ = load_openclip_folder(folder)
            weights = [find_openclip_weights(folder)]
            config_file = folder / OPENCLIP_CONFIG_NAME
            tokenizer = load_clip_tokenizer(context_length=model.config.text_config.max_position_embeddings)
            preprocessor = ImagePreprocessor.from_config(pp_cfg, size=model.config.vision_config.image_size)
            layout = "open_clip"
        else:
            model, config_file, weights = _load_hf_clip(folder)
            context_length = model.config.text_config.max_position_embeddings
            has_tokenizer = any((folder / f).is_file() for f in _TOKENIZER_FILES)
            try:
                tokenizer = load_clip_tokenizer(folder if has_tokenizer else None, context_length=context_length)
            except Exception as exc:
                raise ModelFormatError(f"{folder}: cannot load its CLIP tokenizer ({exc}).") from exc
            preprocessor = ImagePreprocessor.from_config(
                _hf_preprocess_cfg(folder), size=model.config.vision_config.image_size
            )
            layout = "hf_clip"
        if tokenizer.vocab_size > model.config.text_config.vocab_size:
            raise ModelFormatError(
                f"{folder}: text vocabulary of {model.config.text_config.vocab_size} tokens is smaller than "
                f"the CLIP tokenizer's {tokenizer.vocab_size}."
            )
        model = model.to(dev)
        return cls(
            model,
            tokenizer,
            preprocessor,
            name=name or _default_name(folder),
            fingerprint=folder_fingerprint([config_file], weights),
            device=dev,
            folder=folder,
            layout=layout,
        )

    # ------------------------------------------------------------------------------------------ inputs

    def tokenize(self, texts: Sequence[str]) -> torch.LongTensor:
        """``[N, context_length]`` token ids, as open_clip's tokenizer gives them."""
        return self.tokenizer(_as_list(texts), context_length=self.context_length)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Normalised float32 ``[3, image_size, image_size]`` tensor."""
        return self.preprocessor(image)

    # ------------------------------------------------------------------------------------------ encoders

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
        """L2-normalised text embeddings, float32 on the CPU, ``[N, embed_dim]``, in input order."""
        texts = _as_list(texts)
        out = [torch.empty((0, self.embed_dim), dtype=torch.float32)]
        for start in range(0, len(texts), max(1, int(batch_size))):
            ids = self.tokenize(texts[start : start + batch_size])
            # Attention is causal, so the columns after the last end-of-text token cannot change the
            # pooled (end-of-text) features: drop them to save work.
            ids = ids[:, : _last_eot_column(ids, self.tokenizer.eot_id) + 1].to(self.device)
            pooled = self.model.text_model(input_ids=ids).pooler_output
            out.append(F.normalize(self.model.text_projection(pooled).float(), dim=-1).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def encode_images(
        self, images: Sequence[Image.Image] | torch.Tensor, batch_size: int = 32
    ) -> torch.Tensor:
        """L2-normalised image embeddings, float32 on the CPU, ``[N, embed_dim]``, in input order.

        A tensor ``[N, 3, H, W]`` (or ``[3, H, W]``) is taken as already preprocessed.
        """
        batch_size = max(1, int(batch_size))
        if isinstance(images, torch.Tensor):
            pixels = images.unsqueeze(0) if images.ndim == 3 else images
            if pixels.ndim != 4 or pixels.shape[1] != 3:
                raise InputError("images", f"expected a [N, 3, H, W] tensor, got shape {tuple(images.shape)}")
            batches = (pixels[i : i + batch_size] for i in range(0, pixels.shape[0], batch_size))
        else:
            if isinstance(images, Image.Image):
                images = [images]
            images = list(images)
            for i, image in enumerate(images):
                if not isinstance(image, Image.Image):
                    raise InputError(f"images[{i}]", f"expected a PIL image, got {type(image).__name__}")
            batches = (self.preprocessor.batch(images[i : i + batch_size]) for i in range(0, len(images), batch_size))
        out = [torch.empty((0, self.embed_dim), dtype=torch.float32)]
        dtype = self.model.visual_projection.weight.dtype
        for pixels in batches:
            pooled = self.model.vision_model(pixel_values=pixels.to(self.device, dtype)).pooler_output
            out.append(F.normalize(self.model.visual_projection(pooled).float(), dim=-1).cpu())
        return torch.cat(out)


# -------------------------------------------------------------------------------------------- helpers


def _as_list(texts: Sequence[str] | str) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"texts[{i}]", f"expected a string, got {type(text).__name__}")
    return texts


def _last_eot_column(ids: torch.Tensor, eot_id: int) -> int:
    if ids.numel() == 0:
        return ids.shape[1] - 1
    is_eot = ids == eot_id
    first = torch.where(is_eot.any(dim=1), is_eot.int().argmax(dim=1), ids.shape[1] - 1)
    return int(first.max())


def _default_name(folder: Path) -> str:
    from birdbridge.models.registry import get_preset

    match = _HF_CACHE_DIR.search(str(folder.resolve()))
    if match:
        hub_id = f"{match.group(1)}/{match.group(2)}"
        preset = get_preset(hub_id)
        return preset.name if preset else hub_id
    return folder.resolve().name


def _load_hf_clip(folder: Path) -> tuple[Any, Path, list[Path]]:
    """A plain transformers ``CLIPModel`` folder: ``(model, config.json path, weights files)``."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelFormatError(
            f"{folder}: neither {OPENCLIP_CONFIG_NAME} (open_clip) nor config.json (transformers) found; "
            "not an image-text model folder."
        )
    config_text = config_path.read_text(encoding="utf-8")
    try:
        model_type = json.loads(config_text).get("model_type")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ModelFormatError(f"{config_path}: not a valid JSON object ({exc}).") from exc
    if model_type != "clip":
        raise ModelFormatError(
            f"{config_path}: model_type is {model_type!r}; the teacher must be a CLIP model ('clip') "
            f"or an open_clip folder with {OPENCLIP_CONFIG_NAME}."
        )
    weights = _hf_weight_files(folder)
    from transformers import CLIPModel

    try:
        with quiet_transformers():
            model = CLIPModel.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
    except Exception as exc:
        raise_if_unreadable(exc, [config_path, *weights])
        raise ModelFormatError(f"{folder}: cannot load the CLIPModel ({exc}).") from exc
    return model.eval(), config_path, weights


def _hf_weight_files(folder: Path) -> list[Path]:
    for name in _HF_WEIGHT_NAMES:
        if (folder / name).is_file():
            return [folder / name]
    for name in _HF_INDEX_NAMES:
        index = folder / name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError) as exc:
                raise_if_unreadable(exc, [index])
                raise ModelFormatError(f"{index}: unreadable shard index ({exc}).") from exc
            return [index, *(folder / s for s in shards)]
    raise ModelFormatError(f"{folder}: no weights file ({', '.join(_HF_WEIGHT_NAMES)}).")


def _hf_preprocess_cfg(folder: Path) -> Mapping[str, Any]:
    """Mean, std and interpolation from a transformers ``preprocessor_config.json``, if any."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return {}
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise_if_unreadable(exc, [path])
        raise ModelFormatError(f"{path}: not valid JSON ({exc}).") from exc
    out: dict[str, Any] = {}
    if cfg.get("image_mean"):
        out["mean"] = cfg["image_mean"]
    if cfg.get("image_std"):
        out["std"] = cfg["image_std"]
    if cfg.get("resample") == 2:  # PIL.Image.BILINEAR
        out["interpolation"] = "bilinear"
    return out
