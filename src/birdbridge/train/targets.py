"""Teacher text targets, computed once and cached: one embedding per (species, form, template), and one
per background class.

The teacher never runs per training step: each step only samples a prompt variant per species and
looks its embedding up. Background classes (non-bird sound, :mod:`birdbridge.species.background`) are
extra target classes after the species: class ``n_species + b`` is background class ``b``, whose target is
the mean of its prompts' embeddings, the very vector searches compare windows with.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from birdbridge.errors import BirdbridgeError
from birdbridge.species import PromptSampler, Taxonomy, cache_dir, variant_text_embeddings
from birdbridge.species.background import BackgroundVocabulary, background_text_embeddings
from birdbridge.utils.array_cache import cached_array

MAX_TARGET_BYTES = 4 << 30
BACKGROUND_CACHE_VERSION = 1


class TextTargets:
    """Per-step targets for the classes of a batch: species drawn from cached variant embeddings [S, V, D],
    background classes from their cached embeddings [B, D] (none without a vocabulary)."""

    def __init__(self, variants: np.ndarray, sampler: PromptSampler, seed: int,
                 background: np.ndarray | None = None, vocabulary: BackgroundVocabulary | None = None) -> None:
        self.variants = torch.from_numpy(np.ascontiguousarray(variants, dtype=np.float32))
        self.sampler = sampler
        self.seed = seed
        self.class_means = F.normalize(self.variants.mean(dim=1), dim=-1)  # [S, D], as pybioclip averages
        rows = np.zeros((0, self.dim), np.float32) if background is None else background
        self.background = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        self.vocabulary = vocabulary

    @property
    def dim(self) -> int:
        return int(self.variants.shape[-1])

    @property
    def n_species(self) -> int:
        return int(self.variants.shape[0])

    @property
    def n_classes(self) -> int:
        """Species, then background classes."""
        return self.n_species + int(self.background.shape[0])

    @classmethod
    def build(cls, encoder, taxonomy: Taxonomy, mix, templates, seed: int, progress: bool | None = None,
              background: BackgroundVocabulary | None = None) -> TextTargets:
        sampler = PromptSampler(taxonomy, mix, templates)
        dim_guess = 1024
        if len(taxonomy) * sampler.n_variants * dim_guess * 4 > MAX_TARGET_BYTES:
            raise BirdbridgeError(
                f"{len(taxonomy)} species x {sampler.n_variants} prompt variants would need more than "
                f"{MAX_TARGET_BYTES >> 30} GB of cached targets; use fewer templates (prompts.templates=single)"
            )
        variants = variant_text_embeddings(encoder, taxonomy, sampler.forms, sampler.templates, progress=progress)
        rows = None if background is None else cached_background_embeddings(encoder, background)
        return cls(variants, sampler, seed, rows, background)

    def for_step(self, step: int, species: torch.Tensor, all_species: bool = False):
        """(targets [U, D], their class ids [U]) for the batch's classes (or every class)."""
        ids = torch.arange(self.n_classes) if all_species else torch.unique(species.cpu())
        birds, other = ids[ids < self.n_species], ids[ids >= self.n_species]
        rng = np.random.default_rng([self.seed, step, 0x7E47])
        variant = torch.from_numpy(self.sampler.sample_variant_indices(len(birds), rng))
        targets = self.variants[birds, variant]
        if len(other):
            targets = torch.cat([targets, self.background[other - self.n_species]])
        return targets, torch.cat([birds, other])


def cached_background_embeddings(encoder, vocabulary: BackgroundVocabulary) -> np.ndarray:
    """float32 [B, D] background class embeddings (:func:`background_text_embeddings`), cached on disk by the
    encoder's fingerprint and every class's label and prompts."""
    fingerprint = getattr(encoder, "fingerprint", None)
    if not isinstance(fingerprint, str) or not fingerprint.strip():
        return background_text_embeddings(encoder, vocabulary)
    identity = {"format_version": BACKGROUND_CACHE_VERSION, "kind": "background", "model_fingerprint": fingerprint,
                "classes": [[c.label, list(c.prompts)] for c in vocabulary]}
    return cached_array(cache_dir(), identity, lambda: background_text_embeddings(encoder, vocabulary),
                        lead=(len(vocabulary),), what="background text embedding")
