"""Log-mel front end of CLAP models, in torch, batched.

It computes what transformers' ``ClapFeatureExtractor`` computes for an unfused model
(``truncation="rand_trunc"``: Slaney-scale mel filters, Hann window, centred reflect-padded STFT,
power 2, ``10*log10(max(mel, 1e-10))``), but on a batch of equal-length windows at once and on the
model's device, instead of one clip at a time in float64 numpy. Cropping and padding are not done here:
windows arrive at exactly ``window_samples`` samples (see ``birdbridge.audio.windows``).

The checkpoint's ``preprocessor_config.json`` says which front end it was trained with (``truncation``): a fused
model's (``"fusion"``: four stacked mel views with HTK-scale filters) is refused rather than fed other features.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from birdbridge.errors import ModelFormatError


@dataclass(frozen=True)
class FrontendConfig:
    """Audio parameters of a CLAP checkpoint (defaults: BioLingual / laion CLAP HTSAT)."""

    sample_rate: int = 48_000
    n_mels: int = 64
    n_fft: int = 1024
    hop_length: int = 480
    fmin: float = 50.0
    fmax: float = 14_000.0
    window_s: float = 10.0
    truncation: str = "rand_trunc"  # the only front end computed here (see the module docs)

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.sample_rate)

    @property
    def n_frames(self) -> int:
        return self.window_samples // self.hop_length + 1

    @classmethod
    def from_folder(cls, folder: Path) -> FrontendConfig:
        """Read ``preprocessor_config.json`` if the folder has one, else use the defaults."""
        path = Path(folder) / "preprocessor_config.json"
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{path}: not valid JSON ({exc})") from exc
        raw = raw.get("feature_extractor", raw)
        default = cls()
        truncation = raw.get("truncation", default.truncation)
        if truncation == "fusion":
            raise ModelFormatError(
                f"{path}: truncation 'fusion' is the front end of a fused CLAP model; fused CLAP models are not "
                "supported yet: use an unfused one (BioLingual, laion/clap-htsat-unfused)")
        if truncation != default.truncation:
            raise ModelFormatError(f"{path}: unknown truncation {truncation!r}; CLAP feature extractors know "
                                   f"'{default.truncation}' (unfused models) and 'fusion' (not supported yet)")
        return cls(
            sample_rate=int(raw.get("sampling_rate", default.sample_rate)),
            n_mels=int(raw.get("feature_size", default.n_mels)),
            n_fft=int(raw.get("fft_window_size", default.n_fft)),
            hop_length=int(raw.get("hop_length", default.hop_length)),
            fmin=float(raw.get("frequency_min", default.fmin)),
            fmax=float(raw.get("frequency_max", default.fmax)),
            window_s=float(raw.get("max_length_s", default.window_s)),
            truncation=truncation,
        )

    def preprocessor_dict(self) -> dict:
        """The same parameters as a transformers ``preprocessor_config.json``."""
        return {
            "feature_extractor_type": "ClapFeatureExtractor",
            "processor_class": "ClapProcessor",
            "feature_size": self.n_mels,
            "sampling_rate": self.sample_rate,
            "hop_length": self.hop_length,
            "fft_window_size": self.n_fft,
            "frequency_min": self.fmin,
            "frequency_max": self.fmax,
            "max_length_s": self.window_s,
            "padding": "repeatpad",
            "truncation": self.truncation,
            "padding_value": 0.0,
            "return_attention_mask": False,
        }

    def as_dict(self) -> dict:
        return asdict(self)


def slaney_mel_filters(cfg: FrontendConfig) -> np.ndarray:
    """Mel filter bank [n_fft//2+1, n_mels], as ClapFeatureExtractor's ``mel_filters_slaney``."""
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(
        num_frequency_bins=cfg.n_fft // 2 + 1,
        num_mel_filters=cfg.n_mels,
        min_frequency=cfg.fmin,
        max_frequency=cfg.fmax,
        sampling_rate=cfg.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )


class LogMelFrontend(nn.Module):
    """waves [B, N] -> log-mel features [B, 1, frames, n_mels], the input of ``ClapAudioModel``."""

    def __init__(self, cfg: FrontendConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        filters = torch.from_numpy(slaney_mel_filters(cfg).astype(np.float32))
        self.register_buffer("mel_filters", filters, persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        if waves.dim() == 1:
            waves = waves.unsqueeze(0)
        spec = torch.stft(
            waves.float(),
            n_fft=self.cfg.n_fft,
            hop_length=self.cfg.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # [B, freq, frames]
        mel = torch.matmul(power.transpose(1, 2), self.mel_filters)  # [B, frames, n_mels]
        log_mel = 10.0 * torch.log10(mel.clamp_min(1e-10))
        return log_mel.unsqueeze(1)
