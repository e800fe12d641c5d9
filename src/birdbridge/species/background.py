"""The background vocabulary: what a window holds when no bird calls in it.

Soundscapes are mostly wind, rain, water, insects, frogs, voices, engines and silence. Each
:class:`BackgroundClass` has a label, the texts that describe it to the teacher's text tower, and
aliases (other names for the label, e.g. in a folder of training recordings). Their teacher text
embeddings sit beside a gallery's species index; a window whose embedding is nearer to a background
class than to every species gets no bird detection. Training can target non-bird recordings at the
same embeddings (``data.background``).

A vocabulary file (``--background FILE``) has one class per line: ``label: prompt; prompt; ...``
(``#`` starts a comment; a line without ``:`` is a label that is its own prompt).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.utils.input_files import read_text_file
from birdbridge.utils.vectors import l2_normalize

__all__ = [
    "DEFAULT_BACKGROUND",
    "BackgroundClass",
    "BackgroundVocabulary",
    "background_text_embeddings",
    "load_background_vocabulary",
]


@dataclass(frozen=True)
class BackgroundClass:
    """One kind of non-bird sound: ``label``, its ``prompts`` for the text tower, other names (``aliases``)."""

    label: str
    prompts: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        return (self.label, *self.aliases)


DEFAULT_BACKGROUND: tuple[BackgroundClass, ...] = (
    BackgroundClass("wind", ("wind", "the sound of wind", "wind blowing through trees")),
    BackgroundClass("rain", ("rain", "the sound of rain", "rain falling on leaves")),
    BackgroundClass("running water", ("running water", "a stream", "a flowing river"), ("water", "stream")),
    BackgroundClass("insects", ("insects", "crickets and cicadas", "an insect chorus"), ("insect",)),
    BackgroundClass("frogs", ("frogs", "frogs croaking", "a frog chorus"), ("frog",)),
    BackgroundClass("human speech", ("human speech", "people talking", "voices"), ("voices", "speech")),
    BackgroundClass("engine", ("an engine", "traffic noise", "a passing car"), ("engines", "traffic")),
    BackgroundClass("silence", ("silence", "a quiet recording", "background noise"), ("quiet", "noise")),
)
"""Wind, rain, running water, insects, frogs, human speech, engines and silence."""


@dataclass(frozen=True)
class BackgroundVocabulary:
    """An ordered set of background classes; labels and aliases are looked up case-insensitively."""

    classes: tuple[BackgroundClass, ...] = DEFAULT_BACKGROUND
    source: str = "default"
    _lookup: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.classes:
            raise BirdbridgeError(f"{self.source}: the background vocabulary is empty")
        for i, cls in enumerate(self.classes):
            if not cls.prompts:
                raise BirdbridgeError(f"{self.source}: background class {cls.label!r} has no prompts")
            for name in cls.names():
                key = name.casefold().strip()
                if key in self._lookup and self._lookup[key] != i:
                    raise BirdbridgeError(f"{self.source}: background name {name!r} is used twice")
                self._lookup[key] = i

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self):
        return iter(self.classes)

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.classes]

    def index(self, name: str) -> int:
        """The position of the class named ``name`` (label or alias); KeyError naming the labels if none."""
        key = str(name).casefold().strip()
        if key not in self._lookup:
            raise KeyError(f"{name!r} is not a background class of {self.source} ({', '.join(self.labels)})")
        return self._lookup[key]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source,
                "classes": [{"label": c.label, "prompts": list(c.prompts), "aliases": list(c.aliases)}
                            for c in self.classes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackgroundVocabulary:
        return cls(tuple(BackgroundClass(c["label"], tuple(c["prompts"]), tuple(c.get("aliases") or ()))
                         for c in data["classes"]), str(data.get("source", "stored")))

    @classmethod
    def of(cls, labels: Iterable[str]) -> BackgroundVocabulary:
        """The default classes named by ``labels`` (labels or aliases), in that order."""
        default = cls()
        chosen = [default.classes[default.index(label)] for label in labels]
        return cls(tuple(dict.fromkeys(chosen)), "default")


def load_background_vocabulary(path: str | os.PathLike[str] | None = None) -> BackgroundVocabulary:
    """The vocabulary in ``path`` (see the module docstring), or the default one when ``path`` is None."""
    if path is None:
        return BackgroundVocabulary()
    source = str(path)
    classes: list[BackgroundClass] = []
    for number, raw in enumerate(read_text_file(Path(path)).splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        label, sep, rest = line.partition(":")
        label = label.strip()
        prompts = tuple(p.strip() for p in rest.split(";") if p.strip()) if sep else (label,)
        if not label or not prompts:
            raise InputError(source, f"line {number}: expected 'label: prompt; prompt', got {raw.strip()!r}")
        classes.append(BackgroundClass(label, prompts))
    if not classes:
        raise InputError(source, "holds no background classes", "one per line: 'label: prompt; prompt'")
    try:
        return BackgroundVocabulary(tuple(classes), source)
    except BirdbridgeError as exc:
        raise InputError(source, str(exc).removeprefix(f"{source}: ")) from None


def background_text_embeddings(encoder: Any, vocabulary: BackgroundVocabulary | Sequence[BackgroundClass],
                               batch_size: int = 64) -> np.ndarray:
    """float32 [B, D]: per class, the renormalised mean of its prompts' text embeddings (``encoder`` has
    ``encode_texts(texts, batch_size=...)``, as the teacher and CLAP text towers do)."""
    classes = list(vocabulary)
    texts = [p for c in classes for p in c.prompts]
    rows = encoder.encode_texts(texts, batch_size=batch_size)
    rows = l2_normalize(rows.numpy() if hasattr(rows, "numpy") else rows, what="background prompt embeddings")
    out, start = [], 0
    for c in classes:
        out.append(rows[start : start + len(c.prompts)].mean(axis=0))
        start += len(c.prompts)
    return l2_normalize(np.stack(out), names=[c.label for c in classes], what="background class embeddings")
