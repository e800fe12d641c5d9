"""One factory for every model birdbridge uses: preset name, hub id or folder in, model object out."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from birdbridge.errors import BirdbridgeError, ModelFormatError
from birdbridge.models.backends import check_backend, with_backend
from birdbridge.models.hub import ModelRef, check_model_folder, resolve
from birdbridge.models.registry import Layout
from birdbridge.models.student import AudioStudent, clap_model_type
from birdbridge.utils.device import best_device

if TYPE_CHECKING:
    from birdbridge.models.clap_text import ClapTextEncoder
    from birdbridge.models.teacher import Teacher

AUDIO_LAYOUTS = ("clap", "birdbridge")
IMAGE_TEXT_LAYOUTS = ("open_clip", "hf_clip")


def detect_layout(folder: Path) -> Layout:
    """Which kind of checkpoint a folder holds, from its files (which must be readable)."""
    check_model_folder(folder)
    if (folder / "birdbridge.json").exists():
        return "birdbridge"
    if (folder / "open_clip_config.json").exists():
        return "open_clip"
    model_type = clap_model_type(folder)
    if model_type == "clap":
        return "clap"
    if model_type == "clip":
        return "hf_clip"
    found = sorted(p.name for p in folder.iterdir())[:12] if folder.is_dir() else []
    raise ModelFormatError(
        f"{folder}: not a model folder birdbridge can load. Expected a transformers ClapModel "
        "(config.json with model_type 'clap'), an open_clip checkpoint (open_clip_config.json + "
        f"open_clip_model.safetensors), a transformers CLIPModel, or a trained birdbridge student. Found: {found}"
    )


@functools.lru_cache(maxsize=32)
def resolve_cached(ref: str) -> ModelRef:
    return resolve(ref)


def _ref(model: str | os.PathLike[str]) -> tuple[ModelRef, Layout]:
    ref = resolve_cached(str(model))
    return ref, detect_layout(ref.folder)


def _device_key(device: str | torch.device | None) -> str:
    return str(best_device(None if device is None else str(device)))


def load_student(model: str | os.PathLike[str], device: str | torch.device | None = None, *,
                 backend: str = "torch", precision: str = "fp32") -> AudioStudent:
    """An audio encoder: a CLAP folder/hub id/preset, or a distilled birdbridge student. Its ``embed`` runs the
    tower on ``backend`` (auto, torch, onnx) at ``precision`` (fp32, int8): see :mod:`birdbridge.models.backends`."""
    backend, precision = check_backend(backend, precision)
    ref, layout = _ref(model)
    if layout not in AUDIO_LAYOUTS:
        raise BirdbridgeError(
            f"{ref.display_name}: is an image-text model ({layout}); audio needs a CLAP model such as "
            "biolingual or a student trained with `birdbridge train`."
        )
    student = _load_student(str(ref.folder), layout, _device_key(device), ref.display_name, _stamp(ref.folder))
    if layout == "birdbridge":  # recalibrating changes no weights: read the map fresh on every call
        from birdbridge.models.calibration import read_calibration

        student.calibration = read_calibration(ref.folder)
    if (backend, precision) == ("torch", "fp32"):
        return student
    view = _student_view(student, backend, precision)
    view.calibration = student.calibration
    return view


def load_teacher(model: str | os.PathLike[str], device: str | torch.device | None = None) -> Teacher:
    """An image-text model (BioCLIP-2 / BioCLIP in open_clip layout, or a transformers CLIPModel)."""
    ref, layout = _ref(model)
    if layout not in IMAGE_TEXT_LAYOUTS:
        raise BirdbridgeError(
            f"{ref.display_name}: is an audio model ({layout}); images need an image-text model such as "
            "bioclip-2."
        )
    return _load_teacher(str(ref.folder), _device_key(device), ref.display_name, _stamp(ref.folder))


def load_text_encoder(
    model: str | os.PathLike[str], device: str | torch.device | None = None
) -> Teacher | ClapTextEncoder:
    """The text side of an image-text teacher or of a CLAP model."""
    ref, layout = _ref(model)
    if layout in IMAGE_TEXT_LAYOUTS:
        return _load_teacher(str(ref.folder), _device_key(device), ref.display_name, _stamp(ref.folder))
    if layout == "clap":
        return _load_clap_text(str(ref.folder), _device_key(device), ref.display_name)
    raise BirdbridgeError(
        f"{ref.display_name}: a distilled student has no text tower of its own; its text side is its "
        "teacher's. Pass the teacher (e.g. --model bioclip-2)."
    )


def model_layout(model: str | os.PathLike[str]) -> Layout:
    return _ref(model)[1]


def _stamp(folder: str | os.PathLike[str]) -> tuple:
    """What a cached model depends on: the name, size and time of each file in its folder (weights rewritten
    in place, e.g. by a new training run into the same folder, load afresh). calibration.json is not part of it."""
    entries = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name != "calibration.json" and not entry.name.startswith("."):
                    with contextlib.suppress(OSError):
                        st = entry.stat()
                        entries.append((entry.name, st.st_size, st.st_mtime_ns))
    except OSError:
        pass
    return tuple(sorted(entries))


@functools.lru_cache(maxsize=2)
def _load_student(folder: str, layout: str, device: str, name: str, stamp: tuple = ()) -> AudioStudent:
    if layout == "birdbridge":
        from birdbridge.models.distilled import load_distilled_student

        return load_distilled_student(Path(folder), device=device, name=name)
    return AudioStudent.from_folder(Path(folder), device=device, name=name)


@functools.lru_cache(maxsize=2)
def _student_view(student: AudioStudent, backend: str, precision: str) -> AudioStudent:
    return with_backend(student, backend, precision)


@functools.lru_cache(maxsize=2)
def _load_teacher(folder: str, device: str, name: str, stamp: tuple = ()) -> Teacher:
    from birdbridge.models.teacher import Teacher

    return Teacher.from_folder(Path(folder), device=device, name=name)


@functools.lru_cache(maxsize=2)
def _load_clap_text(folder: str, device: str, name: str, stamp: tuple = ()) -> ClapTextEncoder:
    from birdbridge.models.clap_text import ClapTextEncoder

    return ClapTextEncoder.from_folder(Path(folder), device=device, name=name)


def clear_model_cache() -> None:
    """Forget loaded models (frees memory; the next call loads again)."""
    for fn in (resolve_cached, _load_student, _student_view, _load_teacher, _load_clap_text):
        fn.cache_clear()
