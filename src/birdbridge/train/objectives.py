"""What the student's audio embeddings are pulled towards: teacher text (the paper), video frames
(VIP-ANT and its frame-selection refinements), or a weighted sum of both.

Every objective uses the same InfoNCE with species-level positives, so repeated species (and repeated
videos) in a batch are never each other's negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from birdbridge.audio import repeat_pad
from birdbridge.models.student import AudioStudent
from birdbridge.train import distributed as D
from birdbridge.train.keep import KeepLoss
from birdbridge.train.loss import multi_positive_info_nce, species_info_nce
from birdbridge.train.targets import TextTargets


@dataclass
class StepInput:
    waves: torch.Tensor  # [B, window_samples]
    species: torch.Tensor  # [B]
    clip: torch.Tensor  # [B] clip index (into the objective's clips)
    offset_s: torch.Tensor  # [B] where each crop starts in its clip
    step: int
    epoch: int


class FrameTargets:
    """Cached teacher image embeddings of each clip's video frames, with their times."""

    def __init__(self, times: list[np.ndarray], vectors: list[np.ndarray], seed: int) -> None:
        self.times = [np.asarray(t, dtype=np.float64) for t in times]
        self.vectors = [torch.from_numpy(np.asarray(v, dtype=np.float32)) for v in vectors]
        self.seed = seed

    def candidates(self, clip: int, start: float, end: float) -> np.ndarray:
        """Frames shown between ``start`` and ``end`` (s); the nearest one to the middle if none is."""
        times = self.times[clip]
        inside = np.flatnonzero((times >= start) & (times < end))
        return inside if len(inside) else np.array([int(np.argmin(np.abs(times - (start + end) / 2)))])

    def random(self, clip: int, start: float, end: float, rng: np.random.Generator) -> torch.Tensor:
        choice = self.candidates(clip, start, end)
        return self.vectors[clip][int(rng.choice(choice))]

    def nearest(self, clip: int, start: float, end: float, audio: torch.Tensor) -> torch.Tensor:
        choice = torch.from_numpy(self.candidates(clip, start, end))
        frames = self.vectors[clip][choice]
        return frames[int(torch.argmax(frames @ audio.cpu()))]


def image_info_nce(audio: torch.Tensor, frames: torch.Tensor, species: torch.Tensor, scale,
                   symmetric: bool = True) -> torch.Tensor:
    """Each audio embedding against its own frame; frames of the same species are positives too."""
    audio, frames = F.normalize(audio, dim=-1), F.normalize(frames, dim=-1)
    same = species[:, None] == species[None, :]
    loss = multi_positive_info_nce(audio, frames, same, scale)
    if symmetric:
        loss = 0.5 * (loss + multi_positive_info_nce(frames, audio, same, scale))
    return loss


class Objective:
    """Computes one step's loss: runs the model on the crops (or their sub-windows) and picks targets."""

    def __init__(self, kind: str, *, text: TextTargets | None, frames: FrameTargets | None, selection: str,
                 nearest_warmup_epochs: int, subwindows: int, text_weight: float, image_weight: float,
                 negatives_all: bool, symmetric: bool, seed: int) -> None:
        self.kind, self.text, self.frames = kind, text, frames
        self.selection, self.warmup, self.subwindows = selection, nearest_warmup_epochs, subwindows
        self.text_weight, self.image_weight = text_weight, image_weight
        self.negatives_all, self.symmetric, self.seed = negatives_all, symmetric, seed
        self.keep: KeepLoss | None = None  # loss.keep (set with keep_geometry), added to the pivot's loss
        self.original: AudioStudent | None = None  # the frozen original student it compares with, if it needs one
        self.last_keep = float("nan")  # the last step's keep loss (weighted), for the logs

    def keep_geometry(self, keep: KeepLoss | None, original: AudioStudent | None) -> None:
        """Add ``keep`` (:mod:`birdbridge.train.keep`) to every step's loss, against ``original``'s embeddings."""
        self.keep, self.original = keep, original

    @property
    def uses_frames(self) -> bool:
        return self.kind in ("image", "both")

    def __call__(self, model, batch: StepInput, sample_rate: int, info: D.DistInfo, device, autocast) -> torch.Tensor:
        multiframe = self.uses_frames and self.selection == "multiframe"
        waves, species, clips, starts, spans = self._inputs(batch, sample_rate, multiframe)
        with autocast:
            emb, scale = model(waves.to(device))
        emb = emb.float()
        loss = torch.zeros((), device=emb.device)
        all_species = D.gather(species.to(device), info)
        all_emb = D.gather_with_grad(emb, info)
        if self.kind in ("text", "both"):
            target, target_species = self.text.for_step(batch.step, all_species, self.negatives_all)
            text_loss = species_info_nce(all_emb, all_species, target.to(device), target_species.to(device), scale,
                                         self.symmetric)
            loss = loss + (self.text_weight if self.kind == "both" else 1.0) * text_loss
        if self.uses_frames:
            frames = self._frames(batch, emb.detach(), clips, starts, spans).to(device)
            all_frames = D.gather(frames, info)
            image_loss = image_info_nce(all_emb, all_frames, all_species, scale, self.symmetric)
            loss = loss + (self.image_weight if self.kind == "both" else 1.0) * image_loss
        if self.keep is not None:
            original = None
            if self.keep.needs_original:
                with torch.no_grad(), autocast:
                    original = D.gather(self.original.clap_embedding(waves.to(device)).float(), info)
            keep = self.keep(all_emb, all_species, original)
            self.last_keep = float(keep.detach())
            loss = loss + keep
        return loss

    def _inputs(self, batch: StepInput, sample_rate: int, multiframe: bool):
        """Model inputs with their species, clip index, start and span in seconds."""
        window = batch.waves.shape[1]
        span = window / sample_rate
        if not multiframe:
            return batch.waves, batch.species, batch.clip, batch.offset_s.numpy(), np.full(len(batch.clip), span)
        k = self.subwindows
        piece = window // k
        waves = torch.from_numpy(np.stack([
            repeat_pad(batch.waves[b, i * piece : (i + 1) * piece].numpy(), window)
            for b in range(len(batch.waves)) for i in range(k)
        ]))
        starts = np.array([float(batch.offset_s[b]) + i * piece / sample_rate
                           for b in range(len(batch.waves)) for i in range(k)])
        return (waves, batch.species.repeat_interleave(k), batch.clip.repeat_interleave(k), starts,
                np.full(len(starts), piece / sample_rate))

    def _frames(self, batch: StepInput, emb: torch.Tensor, clips: torch.Tensor, starts: np.ndarray,
                spans: np.ndarray) -> torch.Tensor:
        """One target frame per input, among the frames shown during it: at random (VIP-ANT; also during
        the nearest warm-up), the most similar to the audio (Nearest Match), or per sub-window (Multiframe)."""
        nearest = self.selection == "nearest" and batch.epoch >= self.warmup
        out = []
        for j, clip in enumerate(clips.tolist()):  # (the draw depends on the clip and time, not the position)
            start, end = float(starts[j]), float(starts[j] + spans[j])
            if nearest:
                out.append(self.frames.nearest(clip, start, end, F.normalize(emb[j], dim=-1)))
            else:
                rng = np.random.default_rng([self.seed, batch.step, clip, round(start * 1000), 0xF4A3])
                out.append(self.frames.random(clip, start, end, rng))
        return torch.stack(out)
