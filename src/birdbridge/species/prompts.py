"""Prompt specs: which text forms and templates name a species, and the prompts they give.

Prompt order everywhere is form-major: for each form in ``spec.forms``, every template in order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from birdbridge.species.taxonomy import Species
from birdbridge.species.templates import TEMPLATE_SETS, fill_template, resolve_templates
from birdbridge.species.text_forms import TextForm, parse_forms, text_for


@dataclass(frozen=True)
class PromptSpec:
    """Which text forms and templates name a species; ``templates`` is a set name or explicit list."""

    forms: tuple[TextForm, ...] = (TextForm.TAXONOMIC_COMMON,)
    templates: str | tuple[str, ...] = "openai"
    _resolved: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "forms", parse_forms(self.forms, "prompt forms"))
        templates = self.templates
        if isinstance(templates, str) and templates.strip().lower() in TEMPLATE_SETS:
            templates = templates.strip().lower()
        resolved = resolve_templates(templates, "prompt templates")
        stored = templates if isinstance(templates, str) and templates in TEMPLATE_SETS else resolved
        object.__setattr__(self, "templates", stored)
        object.__setattr__(self, "_resolved", resolved)

    def resolved_templates(self) -> tuple[str, ...]:
        return self._resolved

    @property
    def n_variants(self) -> int:
        """Prompts per species: forms x templates."""
        return len(self.forms) * len(self._resolved)

    @property
    def fingerprint(self) -> str:
        """sha256 over the forms and the resolved template texts (a set name and its list agree)."""
        payload = json.dumps(
            {"forms": [f.value for f in self.forms], "templates": list(self._resolved)}, ensure_ascii=False
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def species_prompts(species: Species, spec: PromptSpec) -> list[str]:
    """Every prompt text for one species, form-major (form 1 x all templates, form 2 x ...)."""
    templates = spec.resolved_templates()
    return [fill_template(t, text_for(species, form)) for form in spec.forms for t in templates]
