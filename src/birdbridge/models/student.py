"""The student: the audio side of a CLAP model (audio -> embedding), batched and deterministic.

A plain CLAP folder (such as BioLingual) gives CLAP's own projected audio embedding. A distilled
birdbridge folder adds a projection head into a teacher's text space (see ``birdbridge.train``).
Inference never crops at random: windows are cut with a fixed hop by ``birdbridge.audio.windows``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from birdbridge.errors import ModelFormatError
from birdbridge.models.calibration import Calibration
from birdbridge.models.clap_frontend import FrontendConfig, LogMelFrontend
from birdbridge.models.fingerprint import folder_fingerprint
from birdbridge.models.hf_quiet import quiet_transformers
from birdbridge.models.hub import check_model_folder
from birdbridge.utils.device import best_device
from birdbridge.utils.readable import raise_if_unreadable

CLAP_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


class AudioStudent(nn.Module):
    """CLAP audio encoder + CLAP audio projection (+ an optional head) behind a log-mel front end."""

    def __init__(
        self,
        audio_model: nn.Module,
        audio_projection: nn.Module,
        frontend: FrontendConfig,
        *,
        head: nn.Module | None = None,
        name: str = "",
        fingerprint: str = "",
        metadata: dict | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        super().__init__()
        self.frontend = LogMelFrontend(frontend)
        self.audio_model = audio_model
        self.audio_projection = audio_projection
        self.head = head
        self.name = name
        self.fingerprint = fingerprint
        self.metadata = dict(metadata or {})
        self.calibration = calibration  # similarity -> confidence map (models.calibration), None if uncalibrated
        self.runner = None  # what runs the tower in embed(): None is this module (models.backends.with_backend)

    @property
    def frontend_config(self) -> FrontendConfig:
        return self.frontend.cfg

    @property
    def sample_rate(self) -> int:
        return self.frontend.cfg.sample_rate

    @property
    def window_s(self) -> float:
        return self.frontend.cfg.window_s

    @property
    def window_samples(self) -> int:
        return self.frontend.cfg.window_samples

    @property
    def embed_dim(self) -> int:
        if self.head is not None:
            return int(getattr(self.head, "out_dim", None) or _last_linear(self.head).out_features)
        return int(_last_linear(self.audio_projection).out_features)

    @property
    def device(self) -> torch.device:
        return next(self.audio_model.parameters()).device

    @property
    def backend(self) -> dict[str, str]:
        """What runs the tower in :meth:`embed`: ``{"backend", "precision", "runtime"}``."""
        if self.runner is not None:
            return self.runner.describe()
        return {"backend": "torch", "precision": "fp32", "runtime": f"torch {torch.__version__}"}

    def clap_embedding(self, waves: torch.Tensor) -> torch.Tensor:
        """CLAP's projected audio embedding (unnormalised) of windows [B, window_samples]."""
        return self._clap_features(self.frontend(waves.to(self.device)))

    def _clap_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.audio_projection(self.audio_model(input_features=features).pooler_output)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """The tower: log-mel features [B, 1, T, F] -> unnormalised output embedding (CLAP's, then the head)."""
        out = self._clap_features(features)
        return self.head(out) if self.head is not None else out

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Unnormalised output embedding of windows [B, window_samples]."""
        return self.embed_features(self.frontend(waves.to(self.device)))

    @torch.inference_mode()
    def embed(self, waves: torch.Tensor | np.ndarray | Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """L2-normalised float32 embeddings [B, D] of windows, in order."""
        if not isinstance(waves, torch.Tensor):
            waves = torch.from_numpy(np.asarray(waves, dtype=np.float32))
        if waves.dim() == 1:
            waves = waves.unsqueeze(0)
        if waves.shape[-1] != self.window_samples:
            raise ValueError(f"expected windows of {self.window_samples} samples, got {waves.shape[-1]}")
        was_training = self.training
        self.eval()
        try:
            outs = [
                F.normalize(self._infer(waves[i : i + batch_size]).float(), dim=-1).cpu()
                for i in range(0, waves.shape[0], batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(outs).numpy().astype(np.float32, copy=False)

    def _infer(self, waves: torch.Tensor) -> torch.Tensor:
        if self.runner is None:
            return self(waves)
        return self.runner.embed_waves(self.frontend, waves.to(self.device))

    @classmethod
    def from_folder(
        cls, folder: str | Path, device: str | torch.device | None = None, name: str | None = None
    ) -> AudioStudent:
        """Load the audio side of a transformers ``ClapModel`` folder."""
        folder = Path(folder)
        audio_model, projection = load_clap_audio(folder)
        student = cls(
            audio_model,
            projection,
            FrontendConfig.from_folder(folder),
            name=name or folder.name,
            fingerprint=clap_fingerprint(folder),
        )
        return student.to(best_device(device)).eval()


def load_clap_audio(folder: Path) -> tuple[nn.Module, nn.Module]:
    """(audio_model, audio_projection) of a ClapModel folder; the text tower is not loaded."""
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection

    config_path = folder / "config.json"
    if not config_path.exists():
        raise ModelFormatError(f"{folder}: no config.json; this is not a transformers CLAP model folder.")
    if not any((folder / name).exists() for name in CLAP_WEIGHTS):
        raise ModelFormatError(
            f"{folder}: no weights file ({' or '.join(CLAP_WEIGHTS[:2])}); the download may be incomplete."
        )
    check_model_folder(folder)
    files = [config_path, *(folder / name for name in CLAP_WEIGHTS), *sorted(folder.glob("model-*.safetensors"))]
    try:
        audio_config = ClapAudioConfig.from_pretrained(folder)
    except (OSError, ValueError, KeyError) as exc:
        raise_if_unreadable(exc, files)
        raise ModelFormatError(f"{config_path}: not a CLAP config ({exc})") from exc
    if audio_config.enable_fusion:
        raise ModelFormatError(
            f"{folder}: fused CLAP models (enable_fusion=true) are not supported yet; BioLingual and "
            "laion/clap-htsat-unfused are unfused."
        )
    try:
        with quiet_transformers():
            model = ClapAudioModelWithProjection.from_pretrained(folder, config=audio_config)
    except Exception as exc:  # transformers raises many types for damaged files
        raise_if_unreadable(exc, files)
        raise ModelFormatError(
            f"{folder}: could not load the CLAP audio weights; the files may be corrupt or incomplete, "
            f"download them again ({type(exc).__name__}: {exc})"
        ) from exc
    return model.audio_model, model.audio_projection


def clap_fingerprint(folder: Path) -> str:
    weights = [folder / n for n in CLAP_WEIGHTS if (folder / n).exists() and not n.endswith(".json")]
    shards = sorted(folder.glob("model-*.safetensors"))
    return folder_fingerprint(
        [folder / "config.json", folder / "preprocessor_config.json"], weights[:1] + shards
    )


def clap_model_type(folder: Path) -> str | None:
    """``model_type`` of a transformers folder, or None."""
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, json.JSONDecodeError):
        return None


def _last_linear(module: nn.Module) -> nn.Linear:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"{type(module).__name__} has no Linear layer")
    return linears[-1]
