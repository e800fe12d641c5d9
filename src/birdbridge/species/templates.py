"""Prompt templates: named sets (``single``, ``openai``, ``none``) or the caller's own, each with ``{}`` once."""

from __future__ import annotations

from collections.abc import Sequence

from birdbridge.errors import InputError

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
    """``template`` with its ``{}`` replaced by ``text`` (other braces are kept)."""
    return template.replace("{}", text, 1)
