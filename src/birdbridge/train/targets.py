"""Teacher text targets, computed once and cached: one embedding per (species, form, template).

The teacher never runs per training step: each step only samples a prompt variant per species and
looks its embedding up.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from birdbridge.errors import BirdbridgeError
from birdbridge.species import PromptSampler, Taxonomy, variant_text_embeddings

MAX_TARGET_BYTES = 4 << 30


class TextTargets:
    """Per-step targets for the species of a batch, drawn from cached variant embeddings [S, V, D]."""

    def __init__(self, variants: np.ndarray, sampler: PromptSampler, seed: int) -> None:
        self.variants = torch.from_numpy(np.ascontiguousarray(variants, dtype=np.float32))
        self.sampler = sampler
        self.seed = seed
        self.class_means = F.normalize(self.variants.mean(dim=1), dim=-1)  # [S, D], as pybioclip averages

    @property
    def dim(self) -> int:
        return int(self.variants.shape[-1])

    @property
    def n_species(self) -> int:
        return int(self.variants.shape[0])

    @classmethod
    def build(cls, encoder, taxonomy: Taxonomy, mix, templates, seed: int, progress: bool | None = None):
        sampler = PromptSampler(taxonomy, mix, templates)
        dim_guess = 1024
        if len(taxonomy) * sampler.n_variants * dim_guess * 4 > MAX_TARGET_BYTES:
            raise BirdbridgeError(
                f"{len(taxonomy)} species x {sampler.n_variants} prompt variants would need more than "
                f"{MAX_TARGET_BYTES >> 30} GB of cached targets; use fewer templates (prompts.templates=single)"
            )
        variants = variant_text_embeddings(encoder, taxonomy, sampler.forms, sampler.templates, progress=progress)
        return cls(variants, sampler, seed)

    def for_step(self, step: int, species: torch.Tensor, all_species: bool = False):
        """(targets [U, D], their species ids [U]) for the batch's species (or every species)."""
        ids = torch.arange(self.n_species) if all_species else torch.unique(species.cpu())
        rng = np.random.default_rng([self.seed, step, 0x7E47])
        variant = torch.from_numpy(self.sampler.sample_variant_indices(len(ids), rng))
        return self.variants[ids, variant], ids
