"""open_clip checkpoints (Hugging Face hub layout) <-> transformers' ``CLIPModel``.

A hub-layout open_clip model is a folder holding ``open_clip_config.json`` (``model_cfg`` +
``preprocess_cfg``) and ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``. open_clip
itself cannot be imported here (it needs torchvision), so birdbridge reads these folders itself:

* :func:`clip_config_from_openclip` turns ``model_cfg`` into a ``transformers.CLIPConfig``, refusing,
  with a :class:`~birdbridge.errors.ModelFormatError` that names the folder and the field, any
  setting ``CLIPModel`` cannot reproduce (timm or HF towers, ResNets, layer scale, attentional or
  average pooling, custom attention blocks, ...);
* :func:`openclip_to_hf_state_dict` renames and reshapes the weights (``in_proj`` split into q/k/v,
  projections transposed) and checks that none is missing or unexpected;
* :func:`build_clip_model` creates the ``CLIPModel`` on the meta device, checks every shape, and then
  assigns the converted tensors (``load_state_dict(assign=True)``), so no weight is ever
  initialised: a ViT-L/14 (1.7 GB) loads in about 3 s on a 2-core CPU, at about 2 GB peak memory.

``final_ln_after_pool`` is accepted: LayerNorm acts on each token separately, so normalising before
or after picking the class / end-of-text token computes the same thing.

There is no on-disk conversion cache: the conversion is done in memory on every load, which costs
about as much as reading the file once.

:func:`save_openclip_folder` is the reverse: it writes a ``CLIPModel`` in open_clip's exact key
layout, so open_clip's ``CLIP.load_state_dict(strict=True)`` accepts it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from birdbridge.errors import ModelFormatError
from birdbridge.models.hf_quiet import quiet_transformers
from birdbridge.utils.readable import raise_if_unreadable

OPENCLIP_CONFIG_NAME = "open_clip_config.json"
OPENCLIP_SAFETENSORS_NAME = "open_clip_model.safetensors"
OPENCLIP_BIN_NAME = "open_clip_pytorch_model.bin"
OPENCLIP_WEIGHT_NAMES = (OPENCLIP_SAFETENSORS_NAME, OPENCLIP_BIN_NAME)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_BOS_ID = 49406
CLIP_EOS_ID = 49407
LAYER_NORM_EPS = 1e-5

# Keys of some old or jit-exported checkpoints that carry no weights.
_IGNORED_KEYS = {"input_resolution", "context_length", "vocab_size", "attn_mask"}

# model_cfg / vision_cfg / text_cfg fields that are accepted at any value (eval-time no-ops).
_FREE_TOP = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "custom_text", "init_logit_scale",
             "nonscalar_logit_scale", "output_dict", "cast_dtype"}  # fmt: skip
_FREE_VISION = {"layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size", "patch_dropout",
                "output_tokens", "attn_pooler_queries", "attn_pooler_heads", "timm_model_pretrained",
                "timm_pool", "timm_proj", "timm_proj_bias", "timm_drop", "timm_drop_path"}  # fmt: skip
_FREE_TEXT = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "pad_id", "eos_id",
              "output_tokens", "hf_model_pretrained", "hf_proj_type", "hf_pooler_type"}  # fmt: skip
# Fields that must keep their default (given here) for CLIPModel to compute the same function.
_FIXED_VISION: dict[str, Any] = {
    "timm_model_name": None, "ls_init_value": None, "attentional_pool": False, "no_ln_pre": False,
    "pool_type": "tok", "act_kwargs": None, "norm_kwargs": None, "block_type": None, "qk_norm": False,
    "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False, "scale_attn": False,
    "scale_fc": False,
}  # fmt: skip
_FIXED_TEXT: dict[str, Any] = {
    "hf_model_name": None, "hf_tokenizer_name": None, "tokenizer_mode": None, "tokenizer_kwargs": None,
    "ls_init_value": None, "embed_cls": False, "no_causal_mask": False, "proj_bias": False,
    "proj_type": "linear", "act_kwargs": None, "norm_kwargs": None, "block_type": None, "qk_norm": False,
    "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False, "scale_attn": False,
    "scale_fc": False,
}  # fmt: skip
_WHY = {
    "timm_model_name": "timm image towers are not supported",
    "hf_model_name": "Hugging Face text towers are not supported",
    "hf_tokenizer_name": "only the CLIP BPE tokenizer is supported",
    "tokenizer_mode": "only the CLIP BPE tokenizer is supported",
    "tokenizer_kwargs": "only open_clip's default tokenizer settings are supported",
    "ls_init_value": "layer scale is not supported",
    "attentional_pool": "attentional pooling is not supported",
    "no_ln_pre": "a vision tower without ln_pre is not supported",
    "pool_type": "only class-token (vision) and end-of-text (text) pooling are supported",
    "embed_cls": "a text class token is not supported",
    "no_causal_mask": "text towers without a causal mask are not supported",
    "proj_bias": "a text projection bias is not supported",
    "proj_type": "only a linear text projection is supported",
    "block_type": "custom attention blocks are not supported",
}


# ----------------------------------------------------------------------------------------------- config


def is_openclip_folder(folder: str | os.PathLike[str]) -> bool:
    return (Path(folder) / OPENCLIP_CONFIG_NAME).is_file()


def read_openclip_config(folder: str | os.PathLike[str]) -> tuple[dict, str]:
    """The parsed ``open_clip_config.json`` of ``folder`` and its text."""
    path = Path(folder) / OPENCLIP_CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFormatError(f"{folder}: no {OPENCLIP_CONFIG_NAME}; not an open_clip model folder.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise_if_unreadable(exc, [path])
        raise ModelFormatError(f"{path}: cannot be read ({exc}).") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path}: not valid JSON ({exc}).") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("model_cfg"), dict):
        raise ModelFormatError(f"{path}: no 'model_cfg' object; not an open_clip hub config.")
    return raw, text


def clip_config_from_openclip(model_cfg: Mapping[str, Any], source: str | os.PathLike[str] = "model"):
    """A ``transformers.CLIPConfig`` equivalent to open_clip's ``model_cfg``.

    ``source`` (the folder) is named in the ``ModelFormatError`` raised for configs that ``CLIPModel``
    cannot represent.
    """
    from transformers import CLIPConfig

    where = f"{source}/{OPENCLIP_CONFIG_NAME}"

    def fail(field: str, problem: str) -> ModelFormatError:
        return ModelFormatError(f"{where}: model_cfg.{field}: {problem}; birdbridge cannot load this model.")

    if "multimodal_cfg" in model_cfg:
        raise fail("multimodal_cfg", "CoCa-style multimodal decoders are not supported")
    if model_cfg.get("init_logit_bias") is not None:
        raise fail("init_logit_bias", "SigLIP-style logit bias is not supported")
    unknown = sorted(set(model_cfg) - _FREE_TOP - {"init_logit_bias"})
    if unknown:
        raise fail(unknown[0], "unknown setting")
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in model_cfg:
            raise fail(key, "missing")
    vision, text = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    if not isinstance(vision, Mapping) or not isinstance(text, Mapping):
        raise fail("vision_cfg" if not isinstance(vision, Mapping) else "text_cfg", "not an object")
    _check_tower(vision, "vision_cfg", _FREE_VISION, _FIXED_VISION, fail)
    _check_tower(text, "text_cfg", _FREE_TEXT, _FIXED_TEXT, fail)
    if isinstance(vision.get("layers", 12), (list, tuple)):
        raise fail("vision_cfg.layers", "a list of stage depths means a ResNet image tower, which is not supported")
    for tower, name in ((vision, "vision_cfg"), (text, "text_cfg")):
        if tower.get("pos_embed_type", "learnable") not in ("learnable", "sin_cos_2d"):
            raise fail(f"{name}.pos_embed_type", f"unsupported value {tower.get('pos_embed_type')!r}")
    text_pool = text.get("pool_type", "argmax")
    if text_pool not in ("argmax", "eos") or (text_pool == "eos" and text.get("eos_id", 2) != CLIP_EOS_ID):
        raise fail("text_cfg.pool_type", _WHY["pool_type"])
    # final_ln_after_pool: LayerNorm acts per token, so normalising before or after picking the
    # class / end-of-text token is the same computation; accepted.

    act = "quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu"
    embed_dim = _positive_int(model_cfg["embed_dim"], "embed_dim", fail)

    v_width = _positive_int(vision.get("width", 768), "vision_cfg.width", fail)
    head_width = _positive_int(vision.get("head_width", 64), "vision_cfg.head_width", fail)
    v_heads = v_width // head_width
    if v_heads < 1 or v_width % v_heads:
        raise fail("vision_cfg.head_width", f"width {v_width} is not divisible into {head_width}-wide heads")
    image_size = _square(vision.get("image_size", 224), "vision_cfg.image_size", fail)
    patch_size = _square(vision.get("patch_size", 16), "vision_cfg.patch_size", fail)
    if image_size % patch_size:
        raise fail("vision_cfg.image_size", f"{image_size} is not a multiple of the patch size {patch_size}")
    t_width = _positive_int(text.get("width", 512), "text_cfg.width", fail)
    t_heads = _positive_int(text.get("heads", 8), "text_cfg.heads", fail)
    if t_width % t_heads:
        raise fail("text_cfg.heads", f"width {t_width} is not divisible by {t_heads} heads")

    text_config = {
        "vocab_size": _positive_int(text.get("vocab_size", 49408), "text_cfg.vocab_size", fail),
        "hidden_size": t_width,
        "intermediate_size": int(t_width * float(text.get("mlp_ratio", 4.0))),
        "num_hidden_layers": _positive_int(text.get("layers", 12), "text_cfg.layers", fail),
        "num_attention_heads": t_heads,
        "max_position_embeddings": _positive_int(text.get("context_length", 77), "text_cfg.context_length", fail),
        "hidden_act": act,
        "layer_norm_eps": LAYER_NORM_EPS,
        "projection_dim": embed_dim,
        "bos_token_id": CLIP_BOS_ID,
        "eos_token_id": CLIP_EOS_ID,
        "pad_token_id": 0,
    }
    vision_config = {
        "hidden_size": v_width,
        "intermediate_size": int(v_width * float(vision.get("mlp_ratio", 4.0))),
        "num_hidden_layers": _positive_int(vision.get("layers", 12), "vision_cfg.layers", fail),
        "num_attention_heads": v_heads,
        "num_channels": 3,
        "image_size": image_size,
        "patch_size": patch_size,
        "hidden_act": act,
        "layer_norm_eps": LAYER_NORM_EPS,
        "projection_dim": embed_dim,
    }
    config = CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=embed_dim)
    config.logit_scale_init_value = float(model_cfg.get("init_logit_scale", config.logit_scale_init_value))
    return config


def _check_tower(cfg: Mapping[str, Any], name: str, free: set[str], fixed: dict[str, Any], fail) -> None:
    for key, value in cfg.items():
        if key in free or key == "pos_embed_type" or key == "final_ln_after_pool":
            continue
        if key == "pool_type" and name == "text_cfg":
            continue  # checked by the caller
        if key not in fixed:
            raise fail(f"{name}.{key}", "unknown setting")
        default = fixed[key]
        if key == "block_type" and value in (None, "default"):
            continue
        if value == default or (default is None and value in ({}, [])):
            continue
        why = _WHY.get(key, f"{key} changes the model and is not supported")
        raise fail(f"{name}.{key}", f"{why} (value {value!r})")


def _positive_int(value: Any, field: str, fail) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value <= 0:
        raise fail(field, f"expected a positive integer, got {value!r}")
    return int(value)


def _square(value: Any, field: str, fail) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise fail(field, f"only square sizes are supported, got {list(value)}")
        value = value[0]
    return _positive_int(value, field, fail)


def openclip_model_cfg(config) -> dict[str, Any]:
    """open_clip's ``model_cfg`` for a ``CLIPConfig`` (the reverse of :func:`clip_config_from_openclip`)."""
    t, v = config.text_config, config.vision_config

    def fail(field: str, problem: str) -> ModelFormatError:
        return ModelFormatError(f"CLIPModel config: {field}: {problem}; cannot be saved in open_clip's layout.")

    acts = {t.hidden_act, v.hidden_act}
    if len(acts) != 1 or not acts <= {"gelu", "quick_gelu"}:
        raise fail("hidden_act", f"open_clip needs both towers on gelu or quick_gelu, got {sorted(acts)}")
    for tower, name in ((t, "text_config"), (v, "vision_config")):
        if abs(float(tower.layer_norm_eps) - LAYER_NORM_EPS) > 1e-12:
            raise fail(f"{name}.layer_norm_eps", f"open_clip uses {LAYER_NORM_EPS}, got {tower.layer_norm_eps}")
        if tower.hidden_size % tower.num_attention_heads:
            raise fail(f"{name}.num_attention_heads", "does not divide hidden_size")
    if getattr(v, "num_channels", 3) != 3:
        raise fail("vision_config.num_channels", "open_clip takes 3-channel images")

    def ratio(tower, name: str) -> dict[str, float]:
        r = tower.intermediate_size / tower.hidden_size
        if int(tower.hidden_size * r) != tower.intermediate_size:
            raise fail(f"{name}.intermediate_size", "not expressible as an mlp_ratio")
        return {} if r == 4.0 else {"mlp_ratio": r}

    vision_cfg = {
        "image_size": int(v.image_size),
        "layers": int(v.num_hidden_layers),
        "width": int(v.hidden_size),
        "patch_size": int(v.patch_size),
        **ratio(v, "vision_config"),
    }
    head_width = v.hidden_size // v.num_attention_heads
    if head_width != 64:
        vision_cfg["head_width"] = int(head_width)
    text_cfg = {
        "context_length": int(t.max_position_embeddings),
        "vocab_size": int(t.vocab_size),
        "width": int(t.hidden_size),
        "heads": int(t.num_attention_heads),
        "layers": int(t.num_hidden_layers),
        **ratio(t, "text_config"),
    }
    cfg: dict[str, Any] = {"embed_dim": int(config.projection_dim), "vision_cfg": vision_cfg, "text_cfg": text_cfg}
    if acts == {"quick_gelu"}:
        cfg["quick_gelu"] = True
    return cfg


def preprocess_cfg_from_openclip(raw_config: Mapping[str, Any], image_size: int, source: str = "model") -> dict:
    """open_clip's eval preprocessing settings: the file's ``preprocess_cfg`` over open_clip's defaults."""
    where = f"{source}/{OPENCLIP_CONFIG_NAME}"
    pp = raw_config.get("preprocess_cfg") or {}
    if not isinstance(pp, Mapping):
        raise ModelFormatError(f"{where}: preprocess_cfg: not an object.")
    out: dict[str, Any] = {
        "size": image_size,
        "mode": "RGB",
        "mean": OPENAI_MEAN,
        "std": OPENAI_STD,
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }
    for key in out:
        if key != "size" and pp.get(key) is not None:
            out[key] = pp[key]
    # open_clip overrides the file's size with the model's own image size; so do we.
    for key in ("mean", "std"):
        value = out[key]
        value = [value] * 3 if isinstance(value, (int, float)) else list(value)
        if len(value) != 3:
            raise ModelFormatError(f"{where}: preprocess_cfg.{key}: expected 3 numbers, got {value!r}.")
        out[key] = tuple(float(x) for x in value)
    if out["mode"] != "RGB":
        raise ModelFormatError(f"{where}: preprocess_cfg.mode: only RGB is supported, got {out['mode']!r}.")
    if out["interpolation"] not in ("bicubic", "bilinear", "random"):
        raise ModelFormatError(f"{where}: preprocess_cfg.interpolation: unsupported {out['interpolation']!r}.")
    if out["resize_mode"] not in ("shortest", "longest", "squash"):
        raise ModelFormatError(f"{where}: preprocess_cfg.resize_mode: unsupported {out['resize_mode']!r}.")
    return out


# ---------------------------------------------------------------------------------------------- weights


def find_openclip_weights(folder: str | os.PathLike[str]) -> Path:
    """``open_clip_model.safetensors`` if present, else ``open_clip_pytorch_model.bin``."""
    for name in OPENCLIP_WEIGHT_NAMES:
        path = Path(folder) / name
        if path.is_file():
            return path
    raise ModelFormatError(f"{folder}: no weights file ({' or '.join(OPENCLIP_WEIGHT_NAMES)}).")


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``torch.save``'d ``.bin`` (read with ``weights_only``).

    A ``{"state_dict": ...}`` wrapper and ``module.`` prefixes (DataParallel) are removed.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = _torch_load(path)
    except Exception as exc:  # safetensors, pickle and zip errors have no common base class
        raise_if_unreadable(exc, [path])  # safetensors reports an unreadable file as "not found"
        if isinstance(exc, FileNotFoundError):
            raise ModelFormatError(f"{path}: weights file not found.") from None
        raise ModelFormatError(f"{path}: cannot read the weights (truncated or corrupt file?): {exc}") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFormatError(f"{path}: does not hold a state dict of tensors.")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):  # old (non-zip) serialisation cannot be memory-mapped
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def _layer_map(oc: str, hf: str) -> list[tuple[str, str]]:
    pairs = [("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("attn.out_proj", "self_attn.out_proj"),
             ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")]  # fmt: skip
    return [(f"{oc}.{a}.{p}", f"{hf}.{b}.{p}") for a, b in pairs for p in ("weight", "bias")]


def _key_plan(config) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """(plain renames, in_proj splits, transposed projections) as (open_clip key, HF key) pairs."""
    plain = [
        ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
        ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
        ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
        ("visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"),
        ("visual.ln_pre.bias", "vision_model.pre_layrnorm.bias"),
        ("visual.ln_post.weight", "vision_model.post_layernorm.weight"),
        ("visual.ln_post.bias", "vision_model.post_layernorm.bias"),
        ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
        ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
        ("ln_final.weight", "text_model.final_layer_norm.weight"),
        ("ln_final.bias", "text_model.final_layer_norm.bias"),
        ("logit_scale", "logit_scale"),
    ]
    split: list[tuple[str, str]] = []
    towers = (
        ("visual.transformer.resblocks", "vision_model.encoder.layers", config.vision_config.num_hidden_layers),
        ("transformer.resblocks", "text_model.encoder.layers", config.text_config.num_hidden_layers),
    )
    for oc_prefix, hf_prefix, n in towers:
        for i in range(n):
            oc, hf = f"{oc_prefix}.{i}", f"{hf_prefix}.{i}"
            plain += _layer_map(oc, hf)
            split += [(f"{oc}.attn.in_proj_weight", f"{hf}.self_attn.{{}}_proj.weight"),
                      (f"{oc}.attn.in_proj_bias", f"{hf}.self_attn.{{}}_proj.bias")]  # fmt: skip
    transposed = [("visual.proj", "visual_projection.weight"), ("text_projection", "text_projection.weight")]
    return plain, split, transposed


def _normalise_openclip_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop weightless keys; map CustomTextCLIP's ``text.*`` keys to CLIP's top-level names."""
    out: dict[str, torch.Tensor] = {}
    custom_text = "positional_embedding" not in state_dict and "text.positional_embedding" in state_dict
    for key, value in state_dict.items():
        if custom_text and key.startswith("text."):
            key = key[len("text.") :]
        if key in _IGNORED_KEYS:
            continue
        out[key] = value
    return out


def openclip_to_hf_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    config,
    source: str | os.PathLike[str] = "weights",
    dtype: torch.dtype | None = torch.float32,
) -> dict[str, torch.Tensor]:
    """``CLIPModel`` weights from an open_clip ``CLIP`` (or ``CustomTextCLIP``) state dict.

    Raises ``ModelFormatError`` naming ``source`` if keys are missing or unexpected, or shapes differ
    from ``config``. Floating tensors are cast to ``dtype`` (``None`` keeps them).
    """
    sd = _normalise_openclip_keys(state_dict)
    plain, split, transposed = _key_plan(config)
    expected = [oc for oc, _ in plain + split + transposed]
    missing = [k for k in expected if k not in sd]
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:4])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4])})")
        raise ModelFormatError(
            f"{source}: the weights do not match open_clip's CLIP layout for this config: {'; '.join(parts)}."
        )

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if dtype is not None and t.is_floating_point() and t.dtype != dtype else t

    out: dict[str, torch.Tensor] = {}
    for oc, hf in plain:
        out[hf] = cast(sd[oc])
    for oc, hf in split:
        t = sd[oc]
        if t.shape[0] % 3:
            raise ModelFormatError(f"{source}: {oc} has shape {tuple(t.shape)}, not divisible into q, k, v.")
        for name, part in zip(("q", "k", "v"), t.chunk(3, dim=0), strict=True):
            out[hf.format(name)] = cast(part)
    for oc, hf in transposed:
        t = sd[oc]
        if t.ndim != 2:
            raise ModelFormatError(f"{source}: {oc} has shape {tuple(t.shape)}, expected a matrix.")
        out[hf] = cast(t.t().contiguous())
    out["logit_scale"] = out["logit_scale"].reshape(())
    return out


def openclip_key_names(config) -> dict[str, str]:
    """``{CLIPModel key: open_clip key}`` for ``config`` (to name tensors as the checkpoint does)."""
    plain, split, transposed = _key_plan(config)
    names = {hf: oc for oc, hf in plain + transposed}
    names.update({hf.format(n): oc for oc, hf in split for n in ("q", "k", "v")})
    return names


def hf_to_openclip_state_dict(state_dict: Mapping[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """open_clip ``CLIP`` weights (exact key layout) from ``CLIPModel`` weights."""
    plain, split, transposed = _key_plan(config)
    out: dict[str, torch.Tensor] = {}
    try:
        for oc, hf in plain:
            out[oc] = state_dict[hf]
        for oc, hf in split:
            out[oc] = torch.cat([state_dict[hf.format(n)] for n in ("q", "k", "v")], dim=0)
        for oc, hf in transposed:
            out[oc] = state_dict[hf].t()
    except KeyError as exc:
        raise ModelFormatError(f"CLIPModel state dict has no {exc.args[0]}; cannot save as open_clip.") from None
    out["logit_scale"] = out["logit_scale"].reshape(())
    return {k: v.detach().to("cpu").contiguous() for k, v in out.items()}


# ------------------------------------------------------------------------------------------------ model


def build_clip_model(
    config,
    state_dict: Mapping[str, torch.Tensor],
    source: str | os.PathLike[str] = "weights",
    key_names: Mapping[str, str] | None = None,
):
    """A ``CLIPModel`` (eval mode) holding ``state_dict``, built without initialising any weight.

    The module tree is created on the meta device; the tensors are then assigned, not copied.
    ``key_names`` maps CLIPModel keys to the names used in error messages (the checkpoint's own).
    """
    names = key_names or {}
    from transformers import CLIPModel

    with quiet_transformers(), torch.device("meta"):
        model = CLIPModel(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{names.get(k, k)} has shape {tuple(state_dict[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(items[:4])}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if items
        )
        raise ModelFormatError(f"{source}: the weights do not fit the model config ({detail}).")
    model.load_state_dict(dict(state_dict), strict=True, assign=True)
    _materialise_buffers(model)
    return model.eval()


def _materialise_buffers(model: torch.nn.Module) -> None:
    """Re-create the non-persistent buffers (``position_ids``) left on the meta device."""
    for module_name, module in model.named_modules():
        for name, buf in list(module.named_buffers(recurse=False)):
            if buf is None or not buf.is_meta:
                continue
            if name != "position_ids":
                raise RuntimeError(f"buffer {module_name}.{name} was not loaded")
            value = torch.arange(buf.shape[-1]).expand(tuple(buf.shape)).contiguous()
            module.register_buffer(name, value, persistent=False)
    leftover = [n for n, p in model.named_parameters() if p.is_meta]
    if leftover:
        raise RuntimeError(f"parameters left unloaded: {leftover[:4]}")


def load_openclip_folder(
    folder: str | os.PathLike[str], dtype: torch.dtype | None = torch.float32
) -> tuple[Any, dict, dict]:
    """``(CLIPModel on CPU in eval mode, preprocess settings, raw open_clip_config.json)`` of ``folder``."""
    folder = Path(folder)
    raw, _ = read_openclip_config(folder)
    config = clip_config_from_openclip(raw["model_cfg"], source=folder)
    weights = find_openclip_weights(folder)
    state_dict = openclip_to_hf_state_dict(load_state_dict_file(weights), config, source=weights, dtype=dtype)
    model = build_clip_model(config, state_dict, source=weights, key_names=openclip_key_names(config))
    preprocess = preprocess_cfg_from_openclip(raw, config.vision_config.image_size, source=folder)
    return model, preprocess, raw


def save_openclip_folder(
    model, folder: str | os.PathLike[str], preprocess_cfg: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model`` (a ``CLIPModel``) to ``folder`` in open_clip's hub layout; return the folder.

    Writes ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``, which defaults to OpenAI's
    mean and std) and ``open_clip_model.safetensors`` with open_clip's exact key names. Both files
    are written atomically.
    """
    from safetensors.torch import save_file

    from birdbridge.utils.atomic import atomic_path, write_json

    folder = Path(folder)
    model_cfg = openclip_model_cfg(model.config)
    tensors = hf_to_openclip_state_dict(model.state_dict(), model.config)
    pp: dict[str, Any] = {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD)}
    for key, value in (preprocess_cfg or {}).items():
        if key == "size":
            continue  # the model's image size is authoritative
        pp[key] = list(value) if isinstance(value, tuple) else value
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / OPENCLIP_SAFETENSORS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_json(folder / OPENCLIP_CONFIG_NAME, {"model_cfg": model_cfg, "preprocess_cfg": pp})
    return folder
