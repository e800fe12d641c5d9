"""A trained birdbridge student on disk: a plain transformers CLAP audio tower plus a projection head.

Folder layout (``birdbridge train`` writes it; ``--model FOLDER`` loads it everywhere)::

    config.json, model.safetensors       ClapAudioModelWithProjection: loadable by plain transformers
    preprocessor_config.json             the audio front end (ClapFeatureExtractor parameters)
    head.safetensors                     the projection head into the teacher's space
    birdbridge.json                      format, head, teacher identity, prompts, training config
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from birdbridge.errors import ModelFormatError
from birdbridge.models.calibration import read_calibration
from birdbridge.models.fingerprint import folder_fingerprint
from birdbridge.models.hf_quiet import quiet_transformers
from birdbridge.models.student import AudioStudent, load_clap_audio
from birdbridge.utils.atomic import atomic_files, atomic_path, write_json
from birdbridge.utils.device import best_device
from birdbridge.utils.readable import raise_if_unreadable

FORMAT = "birdbridge-student"
VERSION = 1
META_FILE = "birdbridge.json"
HEAD_FILE = "head.safetensors"


def save_distilled_student(
    student: AudioStudent, folder: str | Path, *, teacher: dict[str, Any], extra: dict[str, Any] | None = None
) -> Path:
    """Write ``student`` (which must have a head) as a birdbridge student folder, atomically per file,
    every file with the usual permissions (``0o666`` minus the umask)."""
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection

    if student.head is None or not hasattr(student.head, "describe"):
        raise ValueError("only a student with a projection head can be saved as a distilled student")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = ClapAudioConfig.from_dict(student.audio_model.config.to_dict())
    with quiet_transformers(), torch.device("meta"):
        tower = ClapAudioModelWithProjection(config)
    tower.audio_model = student.audio_model
    tower.audio_projection = student.audio_projection
    with atomic_files(folder) as staging, quiet_transformers():
        tower.save_pretrained(staging, safe_serialization=True)
    write_json(folder / "preprocessor_config.json", student.frontend_config.preprocessor_dict())
    head_state = {k: v.detach().cpu().contiguous() for k, v in student.head.state_dict().items()}
    with atomic_path(folder / HEAD_FILE) as path:
        save_file(head_state, str(path))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "embed_dim": student.head.out_dim,
        "head": student.head.describe(),
        "teacher": teacher,
        **(extra or {}),
    }
    write_json(folder / META_FILE, meta)
    return folder


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise_if_unreadable(exc, [path])
        raise ModelFormatError(f"{path}: cannot read the student description ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise ModelFormatError(f"{path}: not a birdbridge student (format {meta.get('format')!r})")
    if int(meta.get("version", 0)) > VERSION:
        raise ModelFormatError(f"{path}: written by a newer birdbridge (version {meta['version']}); upgrade")
    return meta


def load_distilled_student(
    folder: str | Path, device: str | torch.device | None = None, name: str | None = None
) -> AudioStudent:
    """Load a student folder written by ``save_distilled_student``."""
    from birdbridge.models.clap_frontend import FrontendConfig
    from birdbridge.models.heads import ProjectionHead

    folder = Path(folder)
    meta = read_meta(folder)
    audio_model, projection = load_clap_audio(folder)
    head = ProjectionHead.from_description(meta["head"])
    try:
        head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    except Exception as exc:
        raise_if_unreadable(exc, [folder / HEAD_FILE])
        raise ModelFormatError(f"{folder / HEAD_FILE}: cannot load the head ({exc})") from exc
    student = AudioStudent(
        audio_model,
        projection,
        FrontendConfig.from_folder(folder),
        head=head,
        name=name or folder.name,
        fingerprint=folder_fingerprint(
            [folder / "config.json", folder / META_FILE], [folder / "model.safetensors", folder / HEAD_FILE]
        ),
        metadata=meta,
        calibration=read_calibration(folder),
    )
    return student.to(best_device(device)).eval()
