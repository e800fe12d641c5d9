"""A second loss that keeps the student's audio geometry while it learns the teacher's space (``loss.keep``).

Distillation raises audio->image retrieval but can lower kNN accuracy in the student's own space; these losses
pull the other way, added to the objective as ``loss.keep_weight`` times:

- ``relational``: the batch's pairwise similarities. Each row of cosine similarities (the diagonal left out) is a
  softmax at ``loss.keep_temperature``; the loss is KL(original || new) averaged over the rows, where ``original``
  is the frozen original student's CLAP embedding of the same crops.
- ``feature``: a linear adapter from the new unit embedding to the original's; the loss is the squared distance
  between the adapted embedding and the original unit embedding, averaged over the batch.
- ``classify``: a linear species classifier on the new unit embedding; the loss is its cross-entropy.

The adapter and the classifier train with the head and are left out of the saved model. The frozen original (for
``relational`` and ``feature``) is a copy of the student before training, without its head, run in eval mode with
no gradient: one more forward pass per step (about a third of a step's time) and one more copy of the encoder in
memory. It is held by the objective, not the trained model, so it is in neither checkpoints nor the saved model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from birdbridge.models.student import AudioStudent

NEEDS_ORIGINAL = ("relational", "feature")


def relational_loss(new: torch.Tensor, original: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over rows of KL(p_original || p_new), p = the softmax of a row of cosine similarities / temperature with
    each item's similarity to itself left out. ``new`` [B, D] and ``original`` [B, D'] may differ in width."""
    n = new.shape[0]
    if n < 2:
        return new.sum() * 0.0
    off = ~torch.eye(n, dtype=torch.bool, device=new.device)

    def log_rows(x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x.float(), dim=-1)
        sims = (x @ x.t() / temperature)[off].view(n, n - 1)
        return F.log_softmax(sims, dim=1)

    target = log_rows(original.detach())
    return F.kl_div(log_rows(new), target, log_target=True, reduction="batchmean")


def feature_loss(new: torch.Tensor, original: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
    """Mean over the batch of ||adapter(new/|new|) - original/|original|||^2."""
    adapted = adapter(F.normalize(new.float(), dim=-1))
    return (adapted - F.normalize(original.detach().float(), dim=-1)).pow(2).sum(dim=-1).mean()


def classify_loss(new: torch.Tensor, species: torch.Tensor, classifier: nn.Module) -> torch.Tensor:
    """Cross-entropy of a classifier on the unit embeddings against the clips' class ids."""
    return F.cross_entropy(classifier(F.normalize(new.float(), dim=-1)), species)


class KeepLoss(nn.Module):
    """``weight`` times one of the losses above; holds the trainable adapter or classifier (nothing else)."""

    def __init__(self, kind: str, weight: float, temperature: float, dim: int, original_dim: int,
                 n_classes: int) -> None:
        super().__init__()
        self.kind, self.weight, self.temperature = kind, weight, temperature
        if kind == "feature":
            self.adapter = nn.Linear(dim, original_dim)
        elif kind == "classify":
            self.classifier = nn.Linear(dim, n_classes)
        elif kind != "relational":
            raise ValueError(f"unknown keep loss {kind!r}")

    @property
    def needs_original(self) -> bool:
        return self.kind in NEEDS_ORIGINAL

    def forward(self, new: torch.Tensor, species: torch.Tensor, original: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "classify":
            loss = classify_loss(new, species, self.classifier)
        elif original is None:
            raise ValueError(f"the {self.kind} keep loss needs the original student's embeddings")
        elif self.kind == "relational":
            loss = relational_loss(new, original, self.temperature)
        else:
            loss = feature_loss(new, original, self.adapter)
        return self.weight * loss


def frozen_original(student: AudioStudent) -> AudioStudent:
    """A copy of ``student`` as it is now, without its head: eval mode, no gradients."""
    head, student.head = student.head, None
    try:
        original = copy.deepcopy(student)
    finally:
        student.head = head
    for p in original.parameters():
        p.requires_grad = False
    return original.eval()


def keep_parts(kind: str, weight: float, temperature: float, student: AudioStudent,
               n_classes: int) -> tuple[KeepLoss | None, AudioStudent | None]:
    """The loss and the frozen original it needs (None when it needs none); (None, None) when off (``none`` or
    weight 0). Call before training moves the student."""
    if kind == "none" or weight == 0:
        return None, None
    original = frozen_original(student) if kind in NEEDS_ORIGINAL else None
    original_dim = original.embed_dim if original is not None else 0
    return KeepLoss(kind, weight, temperature, student.embed_dim, original_dim, n_classes), original
