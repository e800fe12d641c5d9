"""BioCLIP text forms, prompt templates, and species-level text embeddings.

The text forms follow the BioCLIP papers; a species without a common name falls back: ``common`` ->
the scientific name, ``taxonomic_common`` -> ``taxonomic``, ``scientific_common`` -> ``scientific``.
The taxonomic form joins the ranks that are known (empty ranks are skipped). Common names are used as
given (no change of case).

Prompt order everywhere is form-major: for each form in ``spec.forms``, every template in order.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.species.taxonomy import Species, Taxonomy
from birdbridge.utils.progress import progress_bar
from birdbridge.utils.vectors import l2_normalize


class TextForm(str, Enum):
    """How a species is named in a prompt."""

    TAXONOMIC = "taxonomic"
    TAXONOMIC_COMMON = "taxonomic_common"
    SCIENTIFIC = "scientific"
    COMMON = "common"
    SCIENTIFIC_COMMON = "scientific_common"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str | TextForm, source: str = "text form") -> TextForm:
        return parse_text_form(value, source)


_VALID_FORMS = "taxonomic, taxonomic_common (or 'taxonomic+common'), scientific, common, scientific_common"
_TOKEN_ALIASES = {
    **dict.fromkeys(("taxonomic", "taxonomy", "taxon", "taxa", "tax"), "taxonomic"),
    **dict.fromkeys(("scientific", "sci", "latin", "binomial"), "scientific"),
    **dict.fromkeys(("common", "com", "vernacular", "english"), "common"),
}
_FILLER = {"and", "with", "plus", "name", "names"}
_FORM_BY_TOKENS = {
    frozenset({"taxonomic"}): TextForm.TAXONOMIC,
    frozenset({"taxonomic", "common"}): TextForm.TAXONOMIC_COMMON,
    frozenset({"scientific"}): TextForm.SCIENTIFIC,
    frozenset({"common"}): TextForm.COMMON,
    frozenset({"scientific", "common"}): TextForm.SCIENTIFIC_COMMON,
}


def parse_text_form(value: str | TextForm, source: str = "text form") -> TextForm:
    """``"taxonomic+common"``, ``"Scientific_Common"``, ``"sci+common"``, ``"common name"`` -> TextForm."""
    if isinstance(value, TextForm):
        return value
    error = InputError(source, f"unknown text form {value!r}", f"valid forms: {_VALID_FORMS}")
    if not isinstance(value, str) or "," in value:
        raise error
    tokens = [t for t in re.split(r"[\s+_&/-]+", value.strip().lower()) if t and t not in _FILLER]
    if not tokens or any(t not in _TOKEN_ALIASES for t in tokens):
        raise error
    mapped = [_TOKEN_ALIASES[t] for t in tokens]
    form = _FORM_BY_TOKENS.get(frozenset(mapped))
    if form is None or len(mapped) != len(set(mapped)):
        raise error
    return form


def parse_forms(
    value: str | TextForm | Iterable[str | TextForm], source: str = "text forms"
) -> tuple[TextForm, ...]:
    """One form, a comma-separated string of forms, or a sequence of forms; no repeats, at least one."""
    items = (
        value.split(",")
        if isinstance(value, str)
        else [value]
        if isinstance(value, TextForm)
        else list(value)
    )
    forms = tuple(parse_text_form(item.strip() if isinstance(item, str) else item, source) for item in items)
    if not forms:
        raise InputError(source, "no text form given", f"valid forms: {_VALID_FORMS}")
    repeated = sorted({f.value for f in forms if forms.count(f) > 1})
    if repeated:
        raise InputError(source, f"text form {repeated[0]!r} is listed twice", "list each form once")
    return forms


def text_for(species: Species, form: TextForm | str) -> str:
    """The species' name in one text form (see the module docstring for fallbacks)."""
    form = parse_text_form(form)
    if form in (TextForm.TAXONOMIC, TextForm.TAXONOMIC_COMMON):
        base = " ".join(rank for rank in species.taxonomy_path if rank)
    elif form in (TextForm.SCIENTIFIC, TextForm.SCIENTIFIC_COMMON):
        base = species.scientific_name
    else:
        return species.common_name or species.scientific_name
    if form in (TextForm.TAXONOMIC_COMMON, TextForm.SCIENTIFIC_COMMON) and species.common_name:
        return f"{base} with common name {species.common_name}"
    return base


# ----------------------------------------------------------------------------------------- templates

OPENAI_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "single": ("a photo of {}.",),
    "openai": OPENAI_TEMPLATES,
    "none": ("{}",),
}


def resolve_templates(templates: str | Sequence[str], source: str = "templates") -> tuple[str, ...]:
    """A set name from :data:`TEMPLATE_SETS`, one template containing ``{}``, or a list of templates.

    Each template must contain ``{}`` exactly once (it is replaced literally; other braces are kept).
    """
    if isinstance(templates, str):
        named = TEMPLATE_SETS.get(templates.strip().lower())
        if named is not None:
            return named
        if "{}" not in templates:
            raise InputError(
                source,
                f"unknown template set {templates!r}",
                f"use one of {', '.join(TEMPLATE_SETS)} or templates containing '{{}}'",
            )
        templates = [templates]
    resolved = tuple(templates)
    if not resolved:
        raise InputError(source, "no templates given", f"use one of {', '.join(TEMPLATE_SETS)}")
    for i, template in enumerate(resolved, start=1):
        if not isinstance(template, str) or template.count("{}") != 1:
            raise InputError(
                source,
                f"template {i} ({template!r}) must contain '{{}}' exactly once",
                "e.g. 'a photo of {}.'",
            )
    for i, template in enumerate(resolved):
        if template in resolved[:i]:
            raise InputError(source, f"template {template!r} is listed twice", "list each template once")
    return resolved


def fill_template(template: str, text: str) -> str:
    return template.replace("{}", text, 1)


# ------------------------------------------------------------------------------------------ PromptSpec


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

    def variants(self) -> list[tuple[TextForm, int]]:
        """``(form, template_index)`` for each prompt, in prompt order."""
        return [(form, t) for form in self.forms for t in range(len(self._resolved))]

    def as_dict(self) -> dict[str, Any]:
        templates = self.templates if isinstance(self.templates, str) else list(self.templates)
        return {"forms": [f.value for f in self.forms], "templates": templates}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "prompt spec") -> PromptSpec:
        if not isinstance(data, Mapping):
            raise InputError(source, f"expected 'forms' and 'templates', got a {type(data).__name__}")
        unknown = set(data) - {"forms", "templates"}
        if unknown:
            raise InputError(source, f"unknown keys {sorted(unknown)}", "expected 'forms' and 'templates'")
        templates = data.get("templates", "openai")
        if not isinstance(templates, str):
            if not isinstance(templates, (list, tuple)):
                raise InputError(source, "'templates' must be a set name or a list of templates")
            templates = tuple(templates)
        return cls(
            forms=parse_forms(data.get("forms", (TextForm.TAXONOMIC_COMMON,)), source), templates=templates
        )

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


# ------------------------------------------------------------------------------------------ embeddings

Encode = Callable[[list[str]], "torch.Tensor | np.ndarray"]


def _encode_normalised(encode: Encode, texts: list[str], dim: int | None) -> np.ndarray:
    """Encode unique texts once; return one L2-normalised float64 row per input text."""
    unique = list(dict.fromkeys(texts))
    out = encode(unique)
    if hasattr(out, "detach"):  # a torch tensor (torch is imported only by the encoders)
        out = out.detach().float().cpu().numpy()
    arr = np.asarray(out, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != len(unique) or (dim is not None and arr.shape[1] != dim):
        expected = f"[{len(unique)}, {dim if dim is not None else 'D'}]"
        raise BirdbridgeError(
            f"the text encoder returned shape {list(arr.shape)} for {len(unique)} texts; expected {expected}"
        )
    arr = l2_normalize(arr, names=unique, what="the text encoder's embeddings", dtype=np.float64)
    if len(unique) == len(texts):
        return arr
    row = {text: i for i, text in enumerate(unique)}
    return arr[[row[t] for t in texts]]


def _encode_taxonomy(
    taxonomy: Taxonomy,
    spec: PromptSpec,
    encode: Encode,
    batch_size: int,
    progress: bool | None,
    consume: Callable[[int, np.ndarray], None],
) -> int:
    """Stream all prompts (species-major, then form, then template) through ``encode`` in batches.

    ``consume(flat_start, rows)`` receives normalised rows; returns the embedding width.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(taxonomy) == 0:
        raise BirdbridgeError("the taxonomy has no species")
    total = len(taxonomy) * spec.n_variants
    dim: int | None = None
    pending: list[str] = []
    start = 0
    with progress_bar("Encoding species texts", total, progress) as bar:

        def flush() -> None:
            nonlocal dim, start
            rows = _encode_normalised(encode, pending, dim)
            dim = rows.shape[1]
            consume(start, rows)
            start += len(pending)
            bar.advance(len(pending))
            pending.clear()

        for species in taxonomy:
            for text in species_prompts(species, spec):
                pending.append(text)
                if len(pending) >= batch_size:
                    flush()
        if pending:
            flush()
    assert dim is not None
    return dim


def class_embeddings(
    taxonomy: Taxonomy,
    spec: PromptSpec,
    encode: Encode,
    batch_size: int = 256,
    *,
    progress: bool | None = None,
) -> np.ndarray:
    """float32 [n_species, D]: per species, mean of its L2-normalised prompt embeddings, renormalised.

    This is pybioclip's zero-shot averaging, applied over all forms x templates. Texts are encoded in
    batches of ``batch_size`` across species (repeated texts within a batch are encoded once).
    """
    k = spec.n_variants
    sums: list[np.ndarray] = []

    def consume(start: int, rows: np.ndarray) -> None:
        if not sums:
            sums.append(np.zeros((len(taxonomy), rows.shape[1]), dtype=np.float64))
        owner = np.arange(start, start + len(rows)) // k  # rows of one species are contiguous
        first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        sums[0][owner[first]] += np.add.reduceat(rows, first, axis=0)

    _encode_taxonomy(taxonomy, spec, encode, batch_size, progress, consume)
    mean = sums[0] / k
    return l2_normalize(mean, names=taxonomy.keys, what="class embeddings (mean prompt embeddings)", dtype=np.float64
                        ).astype(np.float32)


def prompt_embeddings(
    taxonomy: Taxonomy,
    spec: PromptSpec,
    encode: Encode,
    batch_size: int = 256,
    *,
    progress: bool | None = None,
) -> np.ndarray:
    """float32 [n_species, n_variants, D]: one L2-normalised embedding per prompt, not averaged.

    Variant ``v`` of a species is ``species_prompts(species, spec)[v]``.
    """
    k = spec.n_variants
    out: list[np.ndarray] = []

    def consume(start: int, rows: np.ndarray) -> None:
        if not out:
            out.append(np.empty((len(taxonomy) * k, rows.shape[1]), dtype=np.float32))
        out[0][start : start + len(rows)] = rows

    dim = _encode_taxonomy(taxonomy, spec, encode, batch_size, progress, consume)
    return out[0].reshape(len(taxonomy), k, dim)


# -------------------------------------------------------------------------------------- PromptSampler


def parse_mix(text: str, source: str = "prompt mix") -> dict[TextForm, float]:
    """``"common=0.3, scientific=0.3, taxonomic+common=0.4"`` (``:`` works too) -> {form: weight}."""
    mix: dict[TextForm, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.replace(":", "=").partition("=")
        if not sep:
            raise InputError(source, f"{part!r} has no weight", "write form=weight, e.g. common=0.3")
        try:
            value = float(weight)
        except ValueError:
            raise InputError(
                source, f"weight {weight.strip()!r} of {name.strip()!r} is not a number"
            ) from None
        form = parse_text_form(name.strip(), source)
        if form in mix:
            raise InputError(source, f"text form {form.value!r} is listed twice")
        mix[form] = value
    return _validate_mix(mix, source)


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
        mix: Mapping[str | TextForm, float] | str,
        templates: str | Sequence[str] = "openai",
    ) -> None:
        weights = parse_mix(mix) if isinstance(mix, str) else _validate_mix(mix, "prompt mix")
        self.taxonomy = taxonomy
        self.forms: tuple[TextForm, ...] = tuple(f for f in TextForm if weights.get(f, 0.0) > 0)
        self.weights = np.array([weights[f] for f in self.forms], dtype=np.float64)
        self.templates: tuple[str, ...] = resolve_templates(templates)
        self.spec = PromptSpec(self.forms, self.templates)

    @property
    def mix(self) -> dict[TextForm, float]:
        """Normalised weights of the sampled forms."""
        return dict(zip(self.forms, self.weights.tolist(), strict=True))

    @property
    def n_variants(self) -> int:
        return len(self.forms) * len(self.templates)

    def variant_index(self, form: TextForm | str, template_index: int) -> int:
        form = parse_text_form(form)
        if form not in self.forms:
            raise KeyError(
                f"text form {form.value!r} is not sampled (forms: {[f.value for f in self.forms]})"
            )
        if not 0 <= template_index < len(self.templates):
            raise IndexError(f"template index {template_index} out of range 0..{len(self.templates) - 1}")
        return self.forms.index(form) * len(self.templates) + template_index

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

    def sample(self, species_index: int, rng: np.random.Generator) -> tuple[TextForm, int, str]:
        """One random ``(form, template_index, text)`` for a species."""
        variant_index = int(self.sample_variant_indices(1, rng)[0])
        form, template_index = self.variant(variant_index)
        return form, template_index, self.text(species_index, variant_index)
