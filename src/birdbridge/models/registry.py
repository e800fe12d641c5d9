"""Named model presets, in the manner of open_clip's registry.

A preset gives a short name to a hub id together with what birdbridge needs to know about the model
before loading it. Anywhere a preset name is accepted, a hub id (``org/name`` or ``hf-hub:org/name``)
or a local folder is accepted too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Kind = Literal["audio-text", "image-text"]
Layout = Literal["clap", "open_clip", "hf_clip", "birdbridge"]


@dataclass(frozen=True)
class ModelSpec:
    """What birdbridge knows about a named model."""

    name: str
    hub_id: str
    kind: Kind
    layout: Layout
    architecture: str
    embed_dim: int
    sample_rate: int | None = None
    window_s: float | None = None
    image_size: int | None = None
    context_length: int | None = None
    licence: str = ""
    description: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="biolingual",
            hub_id="davidrrobinson/BioLingual",
            kind="audio-text",
            layout="clap",
            architecture="CLAP: HTSAT-tiny audio + RoBERTa text (transformers ClapModel)",
            embed_dim=512,
            sample_rate=48_000,
            window_s=10.0,
            licence="see the model card",
            description="Bioacoustic audio-text model; the student",
        ),
        ModelSpec(
            name="bioclip-2",
            hub_id="imageomics/bioclip-2",
            kind="image-text",
            layout="open_clip",
            architecture="open_clip ViT-L/14",
            embed_dim=768,
            image_size=224,
            context_length=77,
            licence="MIT",
            description="Tree-of-life image-text model; the teacher",
        ),
        ModelSpec(
            name="bioclip",
            hub_id="imageomics/bioclip",
            kind="image-text",
            layout="open_clip",
            architecture="open_clip ViT-B/16",
            embed_dim=512,
            image_size=224,
            context_length=77,
            licence="MIT",
            description="BioCLIP v1 image-text model",
        ),
    )
}

def list_presets() -> list[ModelSpec]:
    return list(PRESETS.values())


def get_preset(name: str) -> ModelSpec | None:
    """The preset called ``name`` (case-insensitive), or the preset whose hub id is ``name``."""
    key = name.strip().lower()
    if key.startswith("hf-hub:"):
        key = key[len("hf-hub:") :]
    for spec in PRESETS.values():
        if key in (spec.name, spec.hub_id.lower()):
            return spec
    return None
