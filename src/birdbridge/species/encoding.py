"""Species text embeddings from any text encoder: per prompt, or averaged per species as pybioclip does."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from birdbridge.errors import BirdbridgeError
from birdbridge.species.prompts import PromptSpec, species_prompts
from birdbridge.species.taxonomy import Taxonomy
from birdbridge.utils.progress import progress_bar
from birdbridge.utils.vectors import l2_normalize

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


def class_embeddings(taxonomy: Taxonomy, spec: PromptSpec, encode: Encode, batch_size: int = 256, *,
                     progress: bool | None = None) -> np.ndarray:
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


def prompt_embeddings(taxonomy: Taxonomy, spec: PromptSpec, encode: Encode, batch_size: int = 256, *,
                      progress: bool | None = None) -> np.ndarray:
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
