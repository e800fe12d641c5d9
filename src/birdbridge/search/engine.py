"""The search engine: recordings, texts or pictures in; species and gallery pictures out.

Audio goes through a distilled student into its teacher's space; there it is ranked against the
gallery's species index (open-vocabulary: species without pictures too) and its pictures. Text and
picture queries go through the teacher's own towers. One code path ranks every kind of query.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from birdbridge.embed.table import EmbeddingTable
from birdbridge.errors import BirdbridgeError, Failure
from birdbridge.gallery import Gallery
from birdbridge.gallery.background import background_command
from birdbridge.gallery.species_index import index_taxonomy
from birdbridge.models.calibration import Calibration
from birdbridge.models.loader import load_student, load_teacher
from birdbridge.models.student import AudioStudent
from birdbridge.search.locale import gallery_names, localize_hits, localize_results
from birdbridge.search.results import FileResult, ImageHit, SpeciesHit, WindowResult
from birdbridge.search.scoring import DEFAULT_SCALE, Hit, Scoring, score_windows
from birdbridge.species import SpeciesArg, Taxonomy, as_taxonomy
from birdbridge.species.common_names import CommonNames
from birdbridge.species.ranks import RankGroups, rank_groups
from birdbridge.species.where import RangeFilter
from birdbridge.utils.vectors import l2_normalize

if TYPE_CHECKING:
    from birdbridge.audio.windows import WindowLimits

logger = logging.getLogger(__name__)

RETRIEVAL = Scoring("softmax", min_score=0.0)  # text and picture queries: a softmax over the species index


class SearchEngine:
    """Ranks query embeddings against a gallery (its species index and its pictures).

    A gallery that cannot answer (an unfinished build, no species index, damaged files) is refused here,
    with a message naming it, the problem and the fix, before any result is written.

    Safe to call from several threads (``birdbridge serve`` does, under its own concurrency limit); the
    teacher, loaded on the first text or picture query, is loaded once.

    Common names come in the searches' ``locale`` (default: the engine's ``locale``; None: the gallery's own names)
    from ``names`` (default: the label files in the gallery's ``labels/`` folder; see
    :mod:`birdbridge.species.common_names`).
    """

    def __init__(self, gallery: Gallery, student: AudioStudent | None = None, *, teacher_ref: str | None = None,
                 device: str | None = None, model_ref: str | None = None, names: CommonNames | None = None,
                 locale: str | None = None) -> None:
        gallery.check_searchable()
        self.names = names if names is not None else gallery_names(gallery.folder)
        self.locale = None if locale is None else self.names.check(locale)
        self._localized: dict[str, dict[str, str]] = {}
        self._names_lock = threading.Lock()
        self.gallery = gallery
        self.student = student
        self.model_ref = model_ref or (student.name if student is not None else None)  # as the user named it
        self.device = device
        self._teacher_ref = teacher_ref
        self._teacher = None
        self._teacher_lock = threading.Lock()
        self._taxonomy: Taxonomy | None = None
        self._species = gallery.species()
        self._species_vectors = np.asarray(gallery.species_vectors, dtype=np.float32)
        self._background = gallery.background()  # (vocabulary, vectors) or None; checked here, before any search
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()
        if student is not None:
            meta = student.metadata.get("teacher")
            if not meta:
                raise BirdbridgeError(
                    f"model {student.name} is not a birdbridge student (it has no teacher): its audio embeddings do "
                    f"not live in the space of this gallery's teacher {gallery.teacher.get('name')}. Distil one "
                    f"with `birdbridge train` (teacher: {gallery.teacher.get('ref')})."
                )
            gallery.check_teacher(meta, f"model {student.name}")

    @classmethod
    def open(cls, gallery: str | os.PathLike[str] | Gallery, model: str | os.PathLike[str] | None = None, *,
             teacher: str | None = None, device: str | None = None, labels: str | os.PathLike[str] | None = None,
             locale: str | None = None, backend: str = "torch", precision: str = "fp32") -> SearchEngine:
        """The engine for a gallery and a student; ``labels``: a folder of BirdNET-style label files (or one, or a
        taxonomy CSV with ``common_name_de``, ... columns) for common names in ``locale``; ``backend`` and
        ``precision``: what runs the student's tower (:mod:`birdbridge.models.backends`)."""
        g = gallery if isinstance(gallery, Gallery) else Gallery.open(gallery)
        g.check_searchable()  # before the model loads, as the names and the locale are
        names = CommonNames.load(labels) if labels is not None else gallery_names(g.folder)
        if locale is not None:
            names.check(locale)
        student = (load_student(model, device, backend=backend, precision=precision)
                   if model is not None else None)
        return cls(g, student, teacher_ref=teacher, device=device, model_ref=None if model is None else str(model),
                   names=names, locale=locale)

    # ------------------------------------------------------------------ teacher (text and picture queries)
    @property
    def teacher(self):
        with self._teacher_lock:  # two first queries at once load it once
            if self._teacher is None:
                ref = self._teacher_ref or self.gallery.teacher.get("ref")
                if not ref:
                    raise BirdbridgeError("this gallery records no teacher; pass --teacher for text and picture "
                                          "queries")
                teacher = load_teacher(ref, self.device)
                self.gallery.check_teacher({"name": teacher.name, "fingerprint": teacher.fingerprint},
                                           f"teacher {ref}")
                self._teacher = teacher
        return self._teacher

    # ------------------------------------------------------------------ what it holds
    def info(self) -> dict[str, Any]:
        """The student (and whether it is calibrated), the gallery's teacher, size and background vocabulary, and the
        student's default window and sample rate."""
        student = self.student
        return {
            "model": student.name if student else None,
            "backend": student.backend if student else None,
            "calibrated": self.calibration is not None,
            "teacher": dict(self.gallery.teacher),
            "gallery": {"images": len(self.gallery), "species": len(self._species),
                        "background": [] if self._background is None else self._background[0].labels},
            "window_s": student.window_s if student else None,
            "sample_rate": student.sample_rate if student else None,
            "locales": self.names.available,
            "locale": self.locale,
        }

    @property
    def band_hz(self) -> tuple[float, float]:
        """The student's frequency band (a Raven selection's low and high frequency); (0, 0) without one."""
        if self.student is None:
            return 0.0, 0.0
        cfg = self.student.frontend_config
        return cfg.fmin, cfg.fmax

    def image_file(self, image_id: str) -> Path | None:
        """The gallery's own file for ``image_id`` (None for unknown ids or pictures without a file)."""
        if not self.gallery.has_id(image_id):
            return None
        return self.gallery.image_file(image_id)

    # ------------------------------------------------------------------ species
    def common_names(self, locale: str | None = None) -> dict[str, str] | None:
        """``{species key: common name}`` in ``locale`` (default: the engine's) for every species of the index, never
        blank (see :meth:`CommonNames.names`); None without a locale. An unknown locale is an InputError listing
        the available ones."""
        code = self.names.check(locale) if locale else self.locale
        if code is None:
            return None
        with self._names_lock:
            if code not in self._localized:
                self._localized[code] = self.names.names(code, ((sp.key, sp.common_name) for sp in self._species))
            return self._localized[code]

    @property
    def taxonomy(self) -> Taxonomy:
        """The species index as a Taxonomy: what species labels (names, common names, codes) are looked up in."""
        if self._taxonomy is None:
            self._taxonomy = index_taxonomy(self._species)
        return self._taxonomy

    def species_subset(self, species: SpeciesArg | RangeFilter | None) -> np.ndarray | None:
        """Indices into the species index for ``species``: a Taxonomy, a taxonomy CSV, a BirdNET-style list
        file or labels (scientific or common names, codes, BirdNET labels), read by
        :func:`~birdbridge.species.as_taxonomy` through the index. Species the index lacks are left out
        with a warning (as BirdNET-Analyzer does); none at all is an error. A :class:`RangeFilter` (with a
        week, not ``"auto"``) gives the species BirdNET's range model expects there and then that the index
        holds (the others are left out silently: a range list names far more species than a gallery holds)."""
        if species is None or (isinstance(species, list | tuple) and not species):
            return None
        if isinstance(species, RangeFilter):
            species = species.match(self.taxonomy).check()
        position = {sp.key: sp.index for sp in self._species}
        chosen, unknown = [], []
        for sp in as_taxonomy(species, known=self.taxonomy):
            (chosen.append(position[sp.key]) if sp.key in position else unknown.append(sp.key))
        if unknown:
            listed = f"{', '.join(unknown[:8])}{' …' if len(unknown) > 8 else ''}"
            if not chosen:
                raise BirdbridgeError(f"none of the listed species is in this gallery's species index ({listed}). "
                                      "Add them with `birdbridge gallery species`.")
            # As BirdNET-Analyzer: a regional list often names species the gallery lacks; they are left out.
            logger.warning("%d listed species are not in this gallery's species index and are left out: %s "
                           "(add them with `birdbridge gallery species`)", len(unknown), listed)
        return np.array(sorted(set(chosen)), dtype=np.int64)

    def rank_species(self, vectors: np.ndarray, *, top_k: int, scoring: Scoring = RETRIEVAL,
                     subset: np.ndarray | None = None) -> tuple[list[list[SpeciesHit]], list[str | None], str]:
        """Score unit ``vectors`` against the species index (or its ``subset``) under ``scoring``: per vector the
        species that are detections, best first, and the nearest background class of a vector without one;
        and the score that ranked them (see :mod:`birdbridge.search.scoring`)."""
        index = np.arange(len(self._species)) if subset is None else subset
        sims = vectors @ self._species_vectors[index].T
        ranked_by = scoring.ranked_by(self.calibration)
        background = None
        if ranked_by != "softmax":
            for what, note in self._notes(scoring).items():
                self._warn_once(what, note)
            if self._background is not None:
                background = vectors @ self._background[1].T
        groups = self._taxa(index, scoring.levels)
        scored = score_windows(sims, scoring, self.calibration, top_k=top_k, background=background,
                               scale=self._scale(), groups=groups)
        labels = [] if self._background is None else self._background[0].labels
        hits = [[self._hit(index, groups, h) for h in row] for row in scored.hits]
        return hits, [None if b is None else labels[b] for b in scored.background], scored.ranked_by

    def _taxa(self, index: np.ndarray, levels: Sequence[str]) -> dict[str, RankGroups]:
        """The species at positions ``index`` of the species index grouped at each rank above species in ``levels``
        (genus from the scientific name where the index keeps no taxonomy)."""
        species = [(self._species[int(i)].scientific_name, self._species[int(i)].taxonomy) for i in index]
        return {level: rank_groups(species, level) for level in levels if level != "species"}

    def _hit(self, index: np.ndarray, groups: dict[str, RankGroups], hit: Hit) -> SpeciesHit:
        """The SpeciesHit of a scored species, or of a taxon (its name, rank and member species) at a higher rank."""
        if hit.level == "species":
            return self._species_hit(int(index[hit.column]), hit)
        group = groups[hit.level]
        positions = [int(index[c]) for c in group.members[hit.column]]
        if group.ranks[hit.column] == "species":  # a species whose taxon at this rank is unknown
            return self._species_hit(positions[0], hit)
        members = [self._species[p] for p in positions]
        return SpeciesHit(group.names[hit.column], group.names[hit.column], None, None, hit.score, hit.similarity,
                          any(sp.has_images for sp in members), hit.confidence, group.ranks[hit.column],
                          tuple(sp.key for sp in members))

    def _species_hit(self, position: int, hit: Hit) -> SpeciesHit:
        sp = self._species[position]
        return SpeciesHit(sp.key, sp.scientific_name, sp.common_name, sp.code, hit.score, hit.similarity,
                          sp.has_images, hit.confidence)

    @property
    def calibration(self) -> Calibration | None:
        """The student's calibration (None without a student, or for an uncalibrated one)."""
        return None if self.student is None else self.student.calibration

    def notes(self, scoring: Scoring | None = None) -> list[str]:
        """What makes audio searches under ``scoring`` (default: confidences) less than they could be: a student
        without calibration, a gallery without background vocabulary; each with the command that mends it."""
        return list(self._notes(scoring or Scoring()).values())

    def _notes(self, scoring: Scoring) -> dict[str, str]:
        notes = {}
        if scoring.ranked_by(self.calibration) == "softmax":
            return notes
        if self.student is not None and scoring.score == "confidence" and self.calibration is None:
            name = self.model_ref
            notes["uncalibrated"] = (
                f"model {name} has no calibration, so its scores are not confidences: species are ranked by cosine "
                f"similarity, detections need a similarity of {scoring.min_sim:g} (--min-sim) and results carry no "
                f"confidence. Calibrate it with `birdbridge calibrate --model {name} --dataset DATASET` (a labelled "
                "dataset with a validation split)")
        if self._background is None:
            notes["background"] = (
                f"gallery {self.gallery.folder} has no background vocabulary, so a window of wind, rain or other "
                "non-bird sound that reaches the threshold is named as a bird; add one with "
                f"{background_command(self.gallery.folder)}")
        return notes

    def _warn_once(self, what: str, message: str) -> None:
        with self._warn_lock:
            if what in self._warned:
                return
            self._warned.add(what)
        logger.warning("%s", message)

    # ------------------------------------------------------------------ pictures
    def rank_images(self, vectors: np.ndarray, n: int, species: np.ndarray | None = None,
                    exact: bool | None = None) -> list[list[ImageHit]]:
        if n <= 0 or not len(self.gallery):
            return [[] for _ in range(len(vectors))]
        rows = None
        if species is not None:
            keys = {self._species[int(i)].key for i in species}
            rows = self.gallery.rows_where(species=sorted(keys))
            if not len(rows):
                return [[] for _ in range(len(vectors))]
        scores, found = self.gallery.search(vectors.astype(np.float32), n, exact=exact, rows=rows)
        out = []
        for score_row, row_ids in zip(scores, found, strict=True):
            valid = [(float(s), int(r)) for s, r in zip(score_row, row_ids, strict=True) if r >= 0]
            records = self.gallery.records([r for _, r in valid])
            common = {sp.key: sp.common_name for sp in self._species}
            out.append([ImageHit(rec.id, rec.species, common.get(rec.species), s, rec.path, rec.source, rec.licence,
                                 rec.photographer) for (s, _), rec in zip(valid, records, strict=True)])
        return out

    # ------------------------------------------------------------------ queries
    def _scale(self) -> float:
        if self.student is not None:
            return float(self.student.metadata.get("logit_scale", DEFAULT_SCALE))
        return DEFAULT_SCALE

    def search_table(self, table: EmbeddingTable, *, top_k: int = 5, n_images: int = 5, scoring: Scoring | None = None,
                     species: SpeciesArg | RangeFilter | None = None, durations: dict[str, float] | None = None,
                     locale: str | None = None) -> list[FileResult]:
        """Per-window results for an embedded recording table (rows grouped by file, in order), scored under
        ``scoring`` (default: confidences at BirdNET-Analyzer's 0.25), with common names in ``locale``. A window
        without a detection has no species and no pictures, and records its nearest background class."""
        scoring = scoring or Scoring()
        names = self.common_names(locale)
        subset = self.species_subset(species)
        vectors = l2_normalize(table.vectors)
        ranked, background, ranked_by = self.rank_species(vectors, top_k=top_k, scoring=scoring, subset=subset)
        # Pictures of a species nobody heard mislead: windows without a detection get none (softmax names one always).
        # A window answered with a higher taxon gets the closest pictures of that taxon's species.
        position = {sp.key: sp.index for sp in self._species}
        among: dict[tuple[str, ...] | None, list[int]] = {}
        for i, hits in enumerate(ranked):
            if ranked_by == "softmax" or hits:
                among.setdefault((hits[0].members or None) if hits else None, []).append(i)
        pictures: list[list[ImageHit]] = [[] for _ in ranked]
        for members, rows in among.items():
            only = subset if members is None else np.array([position[k] for k in members], dtype=np.int64)
            for i, found in zip(rows, self.rank_images(vectors[rows], n_images, only), strict=True):
                pictures[i] = found
        threshold = scoring.threshold(ranked_by)
        files: dict[str, FileResult] = {}
        for i, name in enumerate(table.names):
            result = files.setdefault(name, FileResult(name, (durations or {}).get(name, 0.0), [], ranked_by,
                                                       threshold, scoring.rank))
            result.windows.append(WindowResult(len(result.windows), float(table.start_s[i]), float(table.end_s[i]),
                                               ranked[i], pictures[i], background[i]))
        for result in files.values():
            if not result.duration_s and result.windows:
                result.duration_s = max(w.end_s for w in result.windows)
        return localize_results(list(files.values()), names)

    def search_audio(self, inputs: Sequence[str | os.PathLike[str]], *, window_s: float | None = None,
                     hop_s: float | None = None, top_k: int = 5, n_images: int = 5, scoring: Scoring | None = None,
                     species: SpeciesArg | RangeFilter | None = None, batch_size: int = 16,
                     progress: bool | None = None, limits: WindowLimits | None = None,
                     cancel: threading.Event | None = None, locale: str | None = None, channel: int | None = None
                     ) -> tuple[list[FileResult], list[Failure]]:
        """Per-window results for recordings (see :meth:`search_table`); ``limits`` and ``cancel`` as in
        :func:`~birdbridge.embed.audio.embed_audio_windows`; ``channel``: that channel of each recording (counted
        from 0; see :func:`~birdbridge.audio.io.parse_channel`), else the channels' mean."""
        student = self.audio_student()
        self.common_names(locale)  # an unknown locale before any audio is read
        from birdbridge.embed.audio import embed_audio_windows

        table = embed_audio_windows(list(inputs), student, window_s=window_s, hop_s=hop_s,
                                    batch_size=batch_size, progress=progress, limits=limits, cancel=cancel,
                                    channel=channel)
        return self.search_embedded(table, top_k=top_k, n_images=n_images, scoring=scoring, species=species,
                                    locale=locale, channel=channel), table.failures

    def audio_student(self) -> AudioStudent:
        """The student, or an error saying that audio queries need one."""
        if self.student is None:
            raise BirdbridgeError("audio queries need a model: pass --model (a student distilled for this gallery)")
        return self.student

    def search_embedded(self, table: EmbeddingTable, *, top_k: int = 5, n_images: int = 5,
                        scoring: Scoring | None = None, species: SpeciesArg | RangeFilter | None = None,
                        locale: str | None = None, channel: int | None = None) -> list[FileResult]:
        """:meth:`search_audio` of recordings embedded already (``table``: the windows of
        :func:`~birdbridge.embed.audio.embed_audio_windows`, from the student)."""
        from birdbridge.audio import audio_info

        durations = {}
        for name in dict.fromkeys(table.names):
            with contextlib.suppress(Exception):  # arrays or vanished files: the last window's end is used
                durations[name] = audio_info(name).duration_s
        results = self.search_table(table, top_k=top_k, n_images=n_images, scoring=scoring, species=species,
                                    durations=durations, locale=locale)
        for result in results:
            result.channel = None if channel is None else channel + 1
        return results

    def search_texts(self, texts: Sequence[str], *, n_images: int = 12, top_k: int = 5, locale: str | None = None,
                     rank: str = "species") -> list[tuple[list[SpeciesHit], list[ImageHit]]]:
        """Species (a softmax over the species index: retrieval; at ``rank`` above species the taxa, their species'
        probabilities summed) and pictures for each text (names in ``locale``)."""
        scoring = replace(RETRIEVAL, rank=rank)  # an unknown rank before the teacher loads
        names = self.common_names(locale)
        vectors = self.teacher.encode_texts(list(texts)).numpy()
        return self._hits(vectors, n_images, top_k, names, scoring)

    def search_images(self, images: Sequence, *, n_images: int = 12, top_k: int = 5, locale: str | None = None,
                      rank: str = "species") -> list[tuple[list[SpeciesHit], list[ImageHit]]]:
        """Species (a softmax over the species index: retrieval; at ``rank`` as :meth:`search_texts`) and similar
        pictures for each picture (names in ``locale``)."""
        from birdbridge.embed.images import open_image

        scoring = replace(RETRIEVAL, rank=rank)
        names = self.common_names(locale)
        pictures = [open_image(p) if isinstance(p, (str, Path)) else p for p in images]
        vectors = self.teacher.encode_images(pictures).numpy()
        return self._hits(vectors, n_images, top_k, names, scoring)

    def _hits(self, vectors: np.ndarray, n_images: int, top_k: int, names: dict[str, str] | None,
              scoring: Scoring = RETRIEVAL) -> list[tuple[list[SpeciesHit], list[ImageHit]]]:
        found = zip(self.rank_species(vectors, top_k=top_k, scoring=scoring)[0], self.rank_images(vectors, n_images),
                    strict=True)
        return [localize_hits(species, images, names) for species, images in found]
