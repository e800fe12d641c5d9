"""Texts and species -> text embeddings, in a teacher's (or a CLAP model's) text space."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.models.loader import load_text_encoder
from birdbridge.species import PromptSpec, SpeciesArg, as_taxonomy, species_text_embeddings

DEFAULT_FORMS = ("taxonomic_common",)
DEFAULT_TEMPLATES = "openai"


def embed_texts(
    texts: str | Sequence[str],
    model: str | os.PathLike[str] = "bioclip-2",
    *,
    batch_size: int = 128,
    device: str | None = None,
) -> np.ndarray:
    """float32 L2-normalised text embeddings [N, D] in input order."""
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise BirdbridgeError("no texts given")
    encoder = load_text_encoder(model, device) if isinstance(model, (str, os.PathLike)) else model
    return encoder.encode_texts(list(texts), batch_size=batch_size).numpy().astype(np.float32, copy=False)


def embed_species(
    species: SpeciesArg,
    model: str | os.PathLike[str] = "bioclip-2",
    *,
    forms: Sequence[str] = DEFAULT_FORMS,
    templates: str | Sequence[str] = DEFAULT_TEMPLATES,
    cache: bool | Path = True,
    device: str | None = None,
) -> np.ndarray:
    """One float32 L2-normalised embedding per species [S, D], averaged over forms × templates as
    pybioclip does, cached on disk by model, species list, forms and templates. ``species``: a Taxonomy,
    a taxonomy CSV, a BirdNET-style list file, or labels (:func:`birdbridge.species.as_taxonomy`)."""
    taxonomy = as_taxonomy(species)
    spec = PromptSpec(forms=tuple(forms), templates=templates if isinstance(templates, str) else tuple(templates))
    encoder = load_text_encoder(model, device) if isinstance(model, (str, os.PathLike)) else model
    return species_text_embeddings(encoder, taxonomy, spec, cache=cache)
