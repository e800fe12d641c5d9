"""What an archive is searched with, as one vector in its teacher's space: a name, a picture or an example.

* **Text** goes through the teacher's text tower. A species (a scientific name, a BirdNET label
  ``Pica hudsonia_Black-billed Magpie``, or a common name or code that ``taxonomy`` lists), read by
  :func:`birdbridge.species.as_taxonomy`, is embedded as the gallery's species index does it: the
  default forms and templates (``taxonomic_common`` × the 80 OpenAI templates), averaged. At a ``rank`` above
  species a text that is no species is a taxon (:func:`taxon_query`): its species' text embeddings are the
  queries. Anything else (or any text with ``free_text``) is embedded as written.
* **A picture** goes through the teacher's image tower.
* **An example recording** (``call.wav``, or a part of it ``call.wav:12.5-17.5``) goes through the
  archive's own student, windowed as the archive; its windows' embeddings are averaged into one query
  (give a part no longer than a window for a single call).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.archive.identity import check_student
from birdbridge.archive.store import Archive
from birdbridge.audio import read_audio
from birdbridge.embed.audio import embed_audio_windows
from birdbridge.embed.images import embed_images
from birdbridge.embed.text import DEFAULT_FORMS, DEFAULT_TEMPLATES, embed_species, embed_texts
from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.models.loader import load_student, load_teacher
from birdbridge.models.student import AudioStudent
from birdbridge.models.teacher import Teacher
from birdbridge.species import SpeciesArg, Taxonomy, as_taxonomy
from birdbridge.species.ranks import check_rank, find_taxon
from birdbridge.utils.vectors import l2_normalize

_RANGE = re.compile(r"(?P<path>.+):(?P<start>\d+(?:\.\d*)?)-(?P<end>\d+(?:\.\d*)?)")
Like = str | os.PathLike[str] | tuple[str | os.PathLike[str], float, float]


def parse_like(like: Like) -> tuple[Path, float | None, float | None]:
    """``(path, start, end)`` of an example: a path, ``PATH:START-END`` (seconds), or a ``(path, start, end)``
    tuple. A path that exists as written is never split."""
    if isinstance(like, tuple):
        path, start, end = Path(like[0]), float(like[1]), float(like[2])
    else:
        text = os.fspath(like)
        match = None if Path(text).exists() else _RANGE.fullmatch(text)
        if match is None:
            return Path(text), None, None
        path, start, end = Path(match["path"]), float(match["start"]), float(match["end"])
    if not end > start >= 0:
        raise BirdbridgeError(f"--like {path}:{start:g}-{end:g}: the part must end after it starts (seconds)")
    return path, start, end


def teacher_for(archive: Archive, teacher: str | os.PathLike[str] | Teacher | None, device: str | None) -> Teacher:
    """The archive's teacher (or the one given), checked against the archive's space."""
    if isinstance(teacher, Teacher):
        loaded, ref = teacher, teacher.name
    else:
        ref = str(teacher or archive.teacher.get("ref") or "")
        if not ref:
            raise BirdbridgeError("this archive records no teacher; pass --teacher for text and picture queries")
        loaded = load_teacher(ref, device)
    archive.check_teacher(loaded, f"teacher {ref}")
    return loaded


def student_for(archive: Archive, model: str | os.PathLike[str] | AudioStudent | None, device: str | None
                ) -> AudioStudent:
    """The archive's student (or the one given), checked to be the one that embedded the archive."""
    if isinstance(model, AudioStudent):
        loaded, ref = model, model.name
    else:
        ref = str(model or archive.student.get("ref") or "")
        if not ref:
            raise BirdbridgeError("this archive records no student; pass --model for example recordings")
        loaded = load_student(ref, device)
    check_student(archive, loaded, f"model {ref}")
    return loaded


def text_query(archive: Archive, text: str, *, teacher: Any = None, taxonomy: SpeciesArg | None = None,
               free_text: bool = False, device: str | None = None, rank: str = "species", gallery: Any = None
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """``([1, D] query, description)`` of a text (``[n, D]`` for a taxon at ``rank``); see the module docs."""
    text = " ".join(str(text).split())
    if not text:
        raise BirdbridgeError("--text is empty; give a species name or a description")
    species = None
    if not free_text:
        known = None if taxonomy is None else as_taxonomy(taxonomy)
        try:
            species = as_taxonomy([text], known=known)
        except InputError:
            species = None
        if species is None and check_rank(rank) != "species":
            return taxon_query(archive, text, rank, gallery=gallery, taxonomy=known, teacher=teacher, device=device)
    encoder = teacher_for(archive, teacher, device)
    if species is None:
        return embed_texts([text], encoder), {"kind": "text", "text": text, "read_as": "free text"}
    sp = species[0]
    vector = embed_species(species, encoder, forms=DEFAULT_FORMS, templates=DEFAULT_TEMPLATES)
    return vector, {"kind": "text", "text": text, "read_as": "species", "species": sp.scientific_name,
                    "common_name": sp.common_name, "forms": list(DEFAULT_FORMS), "templates": DEFAULT_TEMPLATES}


def taxon_query(archive: Archive, name: str, rank: str, *, gallery: Any = None, taxonomy: Taxonomy | None = None,
                teacher: Any = None, device: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """``([n, D] queries, description)`` of a genus, family or order (``rank``; ``auto``: the first that has one of
    that name): the text embeddings of its species, from the species index of ``gallery`` (a Gallery in the
    archive's space) or embedded by the teacher from ``taxonomy``, which says what species the taxon holds."""
    if gallery is not None:
        archive.check_teacher(gallery.teacher, f"gallery {gallery.folder}")
        records = gallery.species()
        species = [(r.scientific_name, r.taxonomy) for r in records]
        source = f"the species index of gallery {gallery.folder}"
    elif taxonomy is not None:
        listed = list(taxonomy)
        species = [(sp.scientific_name, sp.taxonomy_path) for sp in listed]
        source = "--taxonomy"
    else:
        raise InputError("--text", f"{name!r} is no species name, and a {rank} search needs the species of the taxon",
                         "give --gallery (its species index) or --taxonomy (a taxonomy CSV) to say which species it "
                         "holds, or --rank species to search the text as written")
    found = find_taxon(species, name, rank)
    if found is None:
        at = "genus, family or order" if rank == "auto" else rank
        raise InputError("--text", f"no species of {source} belongs to a {at} called {name!r}",
                         "check the spelling (family and order need a taxonomy with those columns), or search it as "
                         "written with --rank species or --free-text")
    taxon, level, members = found
    if gallery is not None:
        vectors = np.asarray(gallery.species_vectors, dtype=np.float32)[members]
    else:
        vectors = embed_species(Taxonomy([listed[i] for i in members]), teacher_for(archive, teacher, device),
                                forms=DEFAULT_FORMS, templates=DEFAULT_TEMPLATES)
    return vectors, {"kind": "text", "text": name, "read_as": "taxon", "taxon": taxon, "rank": level,
                     "members": [species[i][0] for i in members], "species_from": source,
                     "score": "the best cosine of its species' text embeddings (search's rule for similarities)"}


def image_query(archive: Archive, image: Any, *, teacher: Any = None, device: str | None = None
                ) -> tuple[np.ndarray, dict[str, Any]]:
    """``([1, D] query, description)`` of a picture (a path or a PIL image)."""
    vector = embed_images([image], teacher_for(archive, teacher, device))
    name = str(image) if isinstance(image, (str, os.PathLike)) else type(image).__name__
    return vector, {"kind": "image", "image": name}


def like_query(archive: Archive, like: Like, *, model: Any = None, device: str | None = None
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """``([1, D] query, description)`` of an example recording or a part of one (windows averaged)."""
    path, start, end = parse_like(like)
    student = student_for(archive, model, device)
    windowing = archive.windowing
    options = {"window_s": windowing.get("window_s"), "hop_s": windowing.get("hop_s"), "skip_errors": False,
               "progress": False}
    if start is None:
        table = embed_audio_windows([path], student, **options)
    else:
        samples = read_audio(path, student.sample_rate, offset_s=start, duration_s=end - start)
        table = embed_audio_windows(samples, student, sample_rate=student.sample_rate, **options)
    vector = l2_normalize(table.vectors.mean(axis=0, keepdims=True), what=f"the embedding of {path}")
    return vector, {"kind": "like", "like": str(path), "start_s": start, "end_s": end, "windows": len(table)}


__all__ = ["Like", "image_query", "like_query", "parse_like", "student_for", "taxon_query", "teacher_for",
           "text_query"]
