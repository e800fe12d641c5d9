"""What every evaluation shares: the methods (ids and display names), the teacher, and the baselines' maps.

:func:`prepare_methods` checks the models and baselines asked for and loads the teacher; :class:`BaselineMaps`
takes the undistilled student's audio embeddings into each baseline's space (random projection, text-embedding
mapping, zero-shot chain; the undistilled student keeps its own space and scores species with its CLAP text
tower). The clip runner and the soundscape evaluation use both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.evaluate import baselines as B
from birdbridge.evaluate.results import BASELINE_IDS, DISPLAY_NAMES, DISTILLED
from birdbridge.evaluate.settings import EvalSettings
from birdbridge.models.loader import load_teacher, model_layout
from birdbridge.species import PromptSpec, Taxonomy, species_prompts, species_text_embeddings

__all__ = ["BaselineMaps", "Methods", "prepare_methods"]


@dataclass
class Methods:
    """The methods of one evaluation and the models they need."""

    ids: dict[str, str]  # given model name -> method id
    labels: dict[str, str]  # method id -> display name (baselines: added when evaluated)
    baselines: tuple[str, ...]
    teacher_ref: str
    teacher: Any  # a loaded models.teacher.Teacher
    base_ref: str | None  # the undistilled student, when baselines are evaluated
    held_out: dict[str, list[str]] = field(default_factory=dict)  # method id -> species its training left out


def prepare_methods(
    models: Mapping[str, str | os.PathLike[str]],
    *,
    names: Mapping[str, str] | None,
    teacher: str | None,
    base_student: str | None,
    baselines: Sequence[str],
    device: str | None,
) -> Methods:
    """Check the models and baselines, give each method its id and display name, and load the teacher."""
    unknown = set(baselines) - set(B.BASELINES)
    if unknown:
        raise BirdbridgeError(f"unknown baseline(s) {sorted(unknown)}; choose from {', '.join(B.BASELINES)}")
    ids = {name: DISTILLED if len(models) == 1 else name for name in models}
    labels = {ids[name]: (names or {}).get(name, name) for name in models}
    taken = {BASELINE_IDS[b] for b in baselines} | {DISPLAY_NAMES.get(BASELINE_IDS[b]) for b in baselines}
    clash = sorted((set(ids.values()) | set(labels.values())) & taken)
    if clash:
        raise BirdbridgeError(f"the model name(s) {', '.join(clash)} are taken by baselines; give the models others")
    metas = {name: _student_meta(str(ref)) for name, ref in models.items()}
    teacher_ref = teacher or next((m["teacher"]["ref"] for m in metas.values() if m), None)
    if teacher_ref is None:
        raise BirdbridgeError("no teacher: pass --teacher (e.g. bioclip-2) or a trained student that records one")
    t = load_teacher(teacher_ref, device)
    for name, meta in metas.items():
        if meta and meta["teacher"]["fingerprint"] != t.fingerprint:
            raise BirdbridgeError(
                f"{name} was distilled for teacher {meta['teacher']['name']} ({meta['teacher']['fingerprint']}), "
                f"not for {teacher_ref} ({t.fingerprint}); pass --teacher {meta['teacher']['ref']}"
            )
    base_ref = base_student or next((m["base_student"]["ref"] for m in metas.values() if m and "base_student" in m),
                                    None)
    if baselines and base_ref is None:
        raise BirdbridgeError("the baselines need the undistilled student: pass --base-student (e.g. biolingual)")
    held_out = {ids[name]: list(meta["holdout"]["species"]) for name, meta in metas.items()
                if meta and meta.get("holdout")}
    return Methods(ids, labels, tuple(b for b in B.BASELINES if b in baselines), teacher_ref, t, base_ref, held_out)


@dataclass
class BaselineMaps:
    """From the undistilled student's audio embeddings into the teacher's space, one way per baseline."""

    teacher_classes: np.ndarray  # [S, D] the teacher's species text embeddings
    student_classes: np.ndarray  # [S, d] the student's own (CLAP text tower) species text embeddings
    mapping: np.ndarray | None  # the text-embedding mapping, when fitted
    teacher_dim: int
    seed: int
    chain_scale: float

    @classmethod
    def fit(
        cls,
        student_text: Any,
        teacher: Any,
        taxonomy: Taxonomy,
        teacher_classes: np.ndarray,
        settings: EvalSettings,
        *,
        mapping_species: Sequence[str] | None,
        progress: bool | None = None,
    ) -> BaselineMaps:
        """The species embeddings of the student's text tower and, with ``mapping_species``, the text mapping
        learned on those species' prompts."""
        class_spec = PromptSpec(forms=settings.class_forms, templates=settings.class_templates)
        student_classes = species_text_embeddings(student_text, taxonomy, class_spec, progress=progress)
        mapping = None
        if mapping_species is not None:
            spec = PromptSpec(forms=settings.text_forms, templates="none")
            texts = [p for key in mapping_species for p in species_prompts(taxonomy[taxonomy.index(key)], spec)]
            mapping = B.fit_text_mapping(student_text.encode_texts(texts).numpy(),
                                         teacher.encode_texts(texts).numpy(), settings.mapping_ridge)
        return cls(teacher_classes, student_classes, mapping, int(teacher.embed_dim), settings.seed,
                   settings.chain_scale)

    def to_teacher(self, baseline: str, audio: np.ndarray) -> np.ndarray:
        """``audio`` [N, d] of the undistilled student in the teacher's space by ``random``, ``mapping`` or
        ``chain`` (row by row: splits may be mapped separately)."""
        if baseline == "random":
            return B.random_projection(audio, self.teacher_dim, self.seed)
        if baseline == "mapping":
            if self.mapping is None:
                raise BirdbridgeError("the text-embedding mapping was not fitted (give mapping_species)")
            return B.apply_text_mapping(audio, self.mapping)
        if baseline == "chain":
            return B.zero_shot_chain(audio, self.student_classes, self.teacher_classes, self.chain_scale)
        raise BirdbridgeError(f"{baseline!r} does not map into the teacher's space; these do: random, mapping, chain")


def _student_meta(ref: str) -> dict[str, Any] | None:
    """The birdbridge.json of a trained student, or None for a plain model."""
    from birdbridge.models.distilled import read_meta
    from birdbridge.models.loader import resolve_cached

    if model_layout(ref) != "birdbridge":
        return None
    return read_meta(Path(resolve_cached(str(ref)).folder))
