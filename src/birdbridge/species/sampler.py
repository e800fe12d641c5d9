"""Prompt sampling for training: a weighted mix of text forms, each with every template, drawn per step."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from birdbridge.errors import InputError
from birdbridge.species.prompts import PromptSpec, species_prompts
from birdbridge.species.taxonomy import Taxonomy
from birdbridge.species.templates import fill_template, resolve_templates
from birdbridge.species.text_forms import TextForm, parse_text_form, text_for


def _validate_mix(mix: Mapping[str | TextForm, float], source: str) -> dict[TextForm, float]:
    weights: dict[TextForm, float] = {}
    for name, weight in mix.items():
        form = parse_text_form(name, source)
        if form in weights:
            raise InputError(source, f"text form {form.value!r} is given twice (as {name!r})")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise InputError(source, f"weight of {form.value!r} must be a finite number, got {weight!r}")
        if weight < 0:
            raise InputError(
                source, f"weight of {form.value!r} is negative ({weight})", "weights must be >= 0"
            )
        weights[form] = float(weight)
    total = sum(weights.values())
    if total <= 0:
        raise InputError(source, "the weights sum to zero", "give at least one form a positive weight")
    return {form: w / total for form, w in weights.items()}


class PromptSampler:
    """Draws a (form, template) prompt per species for training, by index into a fixed variant list.

    Variants are the forms with positive weight, in :class:`TextForm` order, each with every
    template: variant ``v`` is form ``v // n_templates`` and template ``v % n_templates``. Precompute
    one embedding per variant with ``variant_text_embeddings(encoder, taxonomy, sampler.forms,
    sampler.templates)`` (same order), then sample indices. Forms are drawn by weight, templates
    uniformly.
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        mix: Mapping[str | TextForm, float],
        templates: str | Sequence[str] = "openai",
    ) -> None:
        weights = _validate_mix(mix, "prompt mix")
        self.taxonomy = taxonomy
        self.forms: tuple[TextForm, ...] = tuple(f for f in TextForm if weights.get(f, 0.0) > 0)
        self.weights = np.array([weights[f] for f in self.forms], dtype=np.float64)
        self.templates: tuple[str, ...] = resolve_templates(templates)
        self.spec = PromptSpec(self.forms, self.templates)

    @property
    def n_variants(self) -> int:
        return len(self.forms) * len(self.templates)

    def variant(self, variant_index: int) -> tuple[TextForm, int]:
        """``(form, template_index)`` of a variant index."""
        if not 0 <= variant_index < self.n_variants:
            raise IndexError(f"variant index {variant_index} out of range 0..{self.n_variants - 1}")
        form_i, template_index = divmod(variant_index, len(self.templates))
        return self.forms[form_i], template_index

    def text(self, species_index: int, variant_index: int) -> str:
        form, template_index = self.variant(variant_index)
        return fill_template(self.templates[template_index], text_for(self.taxonomy[species_index], form))

    def all_variants(self, species_index: int) -> list[str]:
        """Every prompt of a species, in variant-index order."""
        return species_prompts(self.taxonomy[species_index], self.spec)

    def sample_variant_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` variant indices (int64), e.g. one per species of a batch."""
        forms = rng.choice(len(self.forms), size=n, p=self.weights)
        templates = rng.integers(0, len(self.templates), size=n)
        return forms * len(self.templates) + templates
