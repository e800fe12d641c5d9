"""Species text embeddings, computed once per (model, species list, prompts) and cached on disk.

Each entry is ``<key>.npy`` (float32) and ``<key>.json`` (metadata) in :func:`cache_dir`, where
``key`` = sha256 over the format version, the kind (class means or per-prompt variants), the
encoder's fingerprint, the taxonomy's fingerprint (species, order, names) and the prompt spec's
fingerprint (forms and template texts). Files are written atomically, the ``.json`` last. An entry
that cannot be read or does not match what was asked for is recomputed and overwritten.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

from birdbridge import __version__
from birdbridge.errors import BirdbridgeError
from birdbridge.species.encoding import class_embeddings, prompt_embeddings
from birdbridge.species.prompts import PromptSpec
from birdbridge.species.taxonomy import Taxonomy
from birdbridge.species.text_forms import TextForm
from birdbridge.utils.array_cache import cache_root, cached_array

FORMAT_VERSION = 1

Kind = Literal["species", "variants"]

log = logging.getLogger(__name__)
_ENTRY = re.compile(r"^\.?[0-9a-f]{64}\.(npy|json)(\..+\.tmp)?$")


@runtime_checkable
class TextEncoder(Protocol):
    """A text tower: ``fingerprint`` identifies its weights; ``encode_texts`` gives L2-normalised
    float32 CPU embeddings, one row per text."""

    fingerprint: str

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor: ...


def cache_dir() -> Path:
    """``$BIRDBRIDGE_CACHE/text_embeddings``, default ``~/.cache/birdbridge/text_embeddings``."""
    return cache_root() / "text_embeddings"


def _identity(kind: Kind, encoder_fingerprint: str, taxonomy: Taxonomy, spec: PromptSpec) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "model_fingerprint": encoder_fingerprint,
        "taxonomy_fingerprint": taxonomy.fingerprint,
        "prompt_fingerprint": spec.fingerprint,
        "species": list(taxonomy.keys),
        "forms": [f.value for f in spec.forms],
        "templates": list(spec.resolved_templates()),
    }


def species_text_embeddings(
    encoder: TextEncoder,
    taxonomy: Taxonomy,
    spec: PromptSpec,
    *,
    cache: bool | str | os.PathLike[str] = True,
    batch_size: int = 256,
    progress: bool | None = None,
) -> np.ndarray:
    """float32 [n_species, D] class embeddings (prompt mean, see :func:`class_embeddings`), cached.

    ``cache``: True for :func:`cache_dir`, a folder to use instead, or False to skip the cache.
    """

    def compute() -> np.ndarray:
        return class_embeddings(taxonomy, spec, _encode_fn(encoder), batch_size, progress=progress)

    return _cached("species", encoder, taxonomy, spec, cache, compute)


def variant_text_embeddings(
    encoder: TextEncoder,
    taxonomy: Taxonomy,
    forms: Sequence[TextForm | str] | TextForm | str,
    templates: str | Sequence[str],
    *,
    cache: bool | str | os.PathLike[str] = True,
    batch_size: int = 256,
    progress: bool | None = None,
) -> np.ndarray:
    """float32 [n_species, n_forms * n_templates, D]: one embedding per prompt, not averaged, cached.

    Variant ``v`` is form ``v // n_templates`` with template ``v % n_templates`` (the order of
    :class:`~birdbridge.species.sampler.PromptSampler` when given its ``forms`` and ``templates``).
    """
    spec = PromptSpec(forms=forms, templates=templates if isinstance(templates, str) else tuple(templates))

    def compute() -> np.ndarray:
        return prompt_embeddings(taxonomy, spec, _encode_fn(encoder), batch_size, progress=progress)

    return _cached("variants", encoder, taxonomy, spec, cache, compute)


def clear_cache(directory: str | os.PathLike[str] | None = None) -> int:
    """Delete cached text embeddings (and stale temporary files); returns how many files went."""
    folder = Path(directory) if directory is not None else cache_dir()
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and _ENTRY.match(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# ---------------------------------------------------------------------------------------- internals


def _encode_fn(encoder: TextEncoder) -> Callable[[list[str]], torch.Tensor]:
    if not callable(getattr(encoder, "encode_texts", None)):
        raise TypeError(f"{type(encoder).__name__} has no encode_texts(texts) method")
    return encoder.encode_texts


def _cache_folder(cache: bool | str | os.PathLike[str]) -> Path | None:
    if cache is False:
        return None
    return cache_dir() if cache is True else Path(cache)


def _cached(
    kind: Kind,
    encoder: TextEncoder,
    taxonomy: Taxonomy,
    spec: PromptSpec,
    cache: bool | str | os.PathLike[str],
    compute: Callable[[], np.ndarray],
) -> np.ndarray:
    folder = _cache_folder(cache)
    if folder is None:
        return compute()
    fingerprint = getattr(encoder, "fingerprint", None)
    if not isinstance(fingerprint, str) or not fingerprint.strip():
        raise BirdbridgeError(
            f"text encoder {type(encoder).__name__} has no fingerprint, so its embeddings cannot be cached "
            "(pass cache=False)"
        )
    identity = _identity(kind, fingerprint, taxonomy, spec)
    lead = (len(taxonomy),) if kind == "species" else (len(taxonomy), spec.n_variants)
    return cached_array(folder, identity, compute, lead=lead, what="text embedding",
                        extra_meta={"birdbridge_version": __version__})
