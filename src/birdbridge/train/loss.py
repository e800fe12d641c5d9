"""InfoNCE between student embeddings and frozen teacher targets, correct when species repeat in a batch.

Targets are species-level: the text side holds each species once (``negatives="batch"``: the species
present in the batch; ``"all"``: every species), so two clips of the same species are never each
other's negatives. Audio->text is a cross-entropy over those species; text->audio has several
positives per species (every clip of it) and takes the log of their summed probability, so clips of
one species share their target without competing with each other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Temperature(nn.Module):
    """A fixed or learnable InfoNCE temperature, stored as CLIP's log logit scale (clamped at 100)."""

    def __init__(self, temperature: float = 0.07, learnable: bool = True) -> None:
        super().__init__()
        value = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=math.log(100.0)).exp()

    @property
    def temperature(self) -> float:
        return float(1.0 / self().detach())


def multi_positive_info_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    positives: torch.Tensor,
    scale: torch.Tensor | float,
) -> torch.Tensor:
    """Mean over queries of -log(sum of softmax(scale * q·k) over the query's positive keys).

    ``queries`` [Q, D] and ``keys`` [K, D] are L2-normalised; ``positives`` is a bool [Q, K] mask with
    at least one True per row. With exactly one positive per row this is the usual cross-entropy.
    """
    logits = (scale * queries @ keys.t()).float()
    positive_logits = logits.masked_fill(~positives, float("-inf"))
    per_query = torch.logsumexp(logits, dim=1) - torch.logsumexp(positive_logits, dim=1)
    return per_query.mean()


def species_info_nce(
    audio: torch.Tensor,
    species: torch.Tensor,
    targets: torch.Tensor,
    target_species: torch.Tensor,
    scale: torch.Tensor | float,
    symmetric: bool = True,
) -> torch.Tensor:
    """InfoNCE of clips ``audio`` [B, D] (species ids ``species`` [B]) against one target embedding per
    species, ``targets`` [U, D] for species ids ``target_species`` [U] (unique, covering ``species``)."""
    audio = F.normalize(audio, dim=-1)
    targets = F.normalize(targets, dim=-1)
    match = species[:, None] == target_species[None, :]  # [B, U]
    if not bool(match.any(dim=1).all()):
        raise ValueError("every clip's species must be among the targets")
    loss = multi_positive_info_nce(audio, targets, match, scale)
    if symmetric:
        present = match.any(dim=0)  # text->audio only for species with a clip in the batch
        loss = 0.5 * (loss + multi_positive_info_nce(targets[present], audio, match.t()[present], scale))
    return loss
