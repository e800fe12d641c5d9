"""Preparing a student for distillation: a fresh copy with a head, and which parameters train."""

from __future__ import annotations

import torch
from torch import nn

from birdbridge.errors import BirdbridgeError
from birdbridge.models.heads import ProjectionHead
from birdbridge.models.hub import resolve
from birdbridge.models.loader import detect_layout
from birdbridge.models.student import AudioStudent
from birdbridge.train.config import HeadConfig
from birdbridge.train.keep import KeepLoss
from birdbridge.train.loss import Temperature


def fresh_student(ref: str, head: HeadConfig, out_dim: int) -> AudioStudent:
    """A new (uncached) CLAP student from ``ref`` with a new projection head into ``out_dim``."""
    folder = resolve(ref).folder
    layout = detect_layout(folder)
    if layout != "clap":
        raise BirdbridgeError(f"{ref}: the student must be a CLAP model (such as biolingual), not {layout}")
    student = AudioStudent.from_folder(folder, device="cpu", name=ref)
    student.head = ProjectionHead(student.embed_dim, out_dim, head.type, head.hidden_dim, head.dropout)
    return student


def swin_blocks(student: AudioStudent) -> list[nn.Module]:
    """The HTSAT Swin blocks in forward order."""
    encoder = student.audio_model.audio_encoder
    return [block for stage in encoder.layers for block in stage.blocks]


def set_trainable(student: AudioStudent, trainable: str) -> tuple[int, int]:
    """``all``, ``head`` (encoder frozen) or ``last:N`` (the last N Swin blocks, the final norm, CLAP's
    projection and the head). Returns (trainable, total) parameter counts."""
    for p in student.parameters():
        p.requires_grad = trainable == "all"
    if trainable != "all":
        modules: list[nn.Module] = [student.head]
        if trainable.startswith("last:"):
            blocks = swin_blocks(student)
            n = int(trainable.split(":", 1)[1])
            if n > len(blocks):
                raise BirdbridgeError(f"model.trainable=last:{n}, but the encoder has only {len(blocks)} blocks")
            modules += [*blocks[-n:], student.audio_model.audio_encoder.norm, student.audio_projection]
        for module in modules:
            for p in module.parameters():
                p.requires_grad = True
    counts = [p.numel() for p in student.parameters()]
    return sum(c for c, p in zip(counts, student.parameters(), strict=True) if p.requires_grad), sum(counts)


def freeze_batchnorm(module: nn.Module) -> None:
    """Keep BatchNorm running statistics fixed (eval mode) while the rest trains."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class DistillModel(nn.Module):
    """What DDP wraps: the student, the temperature and the keep loss's adapter or classifier (if any), so all have
    their gradients synchronised. Only the student is saved as the trained model."""

    def __init__(self, student: AudioStudent, temperature: Temperature, keep: KeepLoss | None = None) -> None:
        super().__init__()
        self.student = student
        self.temperature = temperature
        self.keep = keep

    def forward(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.student(waves), self.temperature()
