"""``birdbridge evaluate``: trained students and the paper's baselines, on the paper's metrics.

A soundscape dataset (``type: soundscape``) is evaluated on its windows instead
(:mod:`birdbridge.evaluate.soundscape`). Otherwise audio clips of ``split`` are the queries. In the teacher's
space they are scored on audio→image retrieval against the dataset's pictures (MAP over the full ranked
gallery, R@1/5/10), image→audio MAP, audio→text retrieval against each species' names, and zero-shot species
classification through the teacher's species text embeddings (both also at genus and family rank), and every
retrieval direction between audio, pictures and species texts at species, genus and family rank
(:mod:`birdbridge.evaluate.ranks`; image↔text by the teacher alone). In each method's own space, a weighted kNN
classifier over the ``knn_split`` clips measures what the audio embedding still knows about species. With species
held out of training (recorded by the students, or ``EvalSettings.holdout``) every figure is also given for the
queries of seen and of unseen species, against the whole galleries.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from birdbridge.datasets import Dataset, SoundscapeDataset, detect_layout, load_dataset, load_soundscapes
from birdbridge.datasets.detect import read_descriptor
from birdbridge.datasets.holdout import Holdout
from birdbridge.embed.audio import embed_audio_windows
from birdbridge.embed.images import cached_image_table
from birdbridge.errors import BirdbridgeError, Failure
from birdbridge.evaluate import baselines as B
from birdbridge.evaluate.bootstrap import bootstrap_cis
from birdbridge.evaluate.methods import BaselineMaps, prepare_methods
from birdbridge.evaluate.metrics import knn_correct, per_class_accuracy, retrieval_metrics, topk_accuracy
from birdbridge.evaluate.ranks import TAXON_RANKS, TEACHER_DIRECTIONS, direction_key, direction_metrics, rank_metrics
from birdbridge.evaluate.results import (
    BASELINE_IDS,
    DISPLAY_NAMES,
    GROUPS,
    DatasetSummary,
    EvalResult,
    HoldoutSummary,
    MethodResult,
    TeacherSummary,
    undistilled_name,
)
from birdbridge.evaluate.settings import EvalSettings
from birdbridge.evaluate.soundscape import evaluate_soundscapes
from birdbridge.models.loader import load_student, load_text_encoder
from birdbridge.species import PromptSpec, Taxonomy, species_prompts, species_text_embeddings


@dataclass
class Space:
    """A method's audio embeddings: ``teacher`` (queries in the teacher's space, or None) and the
    queries/kNN references in the method's own space."""

    teacher: np.ndarray | None
    own_query: np.ndarray | None = None
    own_train: np.ndarray | None = None
    zero_shot: np.ndarray | None = None  # [Q, S] species scores, when not through the teacher
    notes: list[str] = field(default_factory=list)


def evaluate(
    models: Mapping[str, str | os.PathLike[str]],
    dataset: str | os.PathLike[str] | Dataset | SoundscapeDataset,
    *,
    names: Mapping[str, str] | None = None,
    teacher: str | None = None,
    base_student: str | None = None,
    baselines: tuple[str, ...] = B.BASELINES,
    settings: EvalSettings | None = None,
    device: str | None = None,
    progress: bool | None = None,
) -> EvalResult:
    """Evaluate trained students and the paper's baselines on ``dataset`` (clips, or soundscapes: see
    :func:`~birdbridge.evaluate.soundscape.evaluate_soundscapes`).

    Args:
        models: given name -> trained student (a ``birdbridge train`` output folder). A lone model's method id is
            ``distilled``; several keep their given names as ids.
        names: display names of the models, by given name (default: the given names).
        baselines: any of ``random``, ``mapping``, ``chain``, ``undistilled`` (ids ``random_projection``,
            ``text_mapping``, ``zero_shot_chain``, ``undistilled``).

    Returns:
        An :class:`~birdbridge.evaluate.results.EvalResult`; ``.write(path)`` writes ``results.json``.
    """
    s = settings or EvalSettings()
    ds = open_dataset(dataset)
    m = prepare_methods(models, names=names, teacher=teacher, base_student=base_student, baselines=baselines,
                        device=device)
    if isinstance(ds, SoundscapeDataset):
        return evaluate_soundscapes(models, ds, m, settings=s, device=device, progress=progress)
    taxonomy, ids, labels, t, base_ref, baselines = ds.taxonomy, m.ids, m.labels, m.teacher, m.base_ref, m.baselines

    queries = ds.audio_split(s.split)
    if not queries:
        raise BirdbridgeError(f"{ds.name}: no audio in split {s.split!r} (splits: {ds.splits()['audio']})")
    train = ds.audio_split(s.knn_split) if s.knn_split else []
    images = ds.images_split(s.image_split) if s.image_split else ds.images
    failures: list[Failure] = []
    held = held_out_species(taxonomy, s.holdout, m.held_out)

    class_spec = PromptSpec(forms=s.class_forms, templates=s.class_templates)
    teacher_classes = species_text_embeddings(t, taxonomy, class_spec, progress=progress)
    text_spec = PromptSpec(forms=s.text_forms, templates="none")
    text_vectors, text_labels = _text_gallery(t, taxonomy, text_spec)
    image_table = cached_image_table([it.path for it in images], t, progress=progress) if images else None
    if image_table is not None:
        failures += image_table.failures
        species_of = {str(it.path): taxonomy.index(it.species) for it in images}
        image_labels = np.array([species_of[n] for n in image_table.names])

    def embed(student, items) -> tuple[np.ndarray, list[int]]:
        """Pooled per-file embeddings and the positions of the items that could be read."""
        if not items:
            return np.zeros((0, 1), np.float32), []
        table = embed_audio_windows([it.path for it in items], student, batch_size=s.batch_size,
                                    progress=progress).pooled()
        failures.extend(table.failures)
        row = {n: i for i, n in enumerate(table.names)}
        keep = [i for i, it in enumerate(items) if str(it.path) in row]
        return table.vectors[[row[str(items[i].path)] for i in keep]], keep

    spaces: dict[str, Space] = {}
    query_keep: dict[str, list[int]] = {}
    train_keep: dict[str, list[int]] = {}
    for name, ref in models.items():
        student = load_student(ref, device)
        method = ids[name]
        q, query_keep[method] = embed(student, queries)
        tr, train_keep[method] = embed(student, train)
        spaces[method] = Space(teacher=q, own_query=q, own_train=tr if train else None)

    if baselines:
        base = load_student(base_ref, device)
        qb, query_keep["_base"] = embed(base, queries)
        tb, train_keep["_base"] = embed(base, train)
        maps = BaselineMaps.fit(load_text_encoder(base_ref, device), t, taxonomy, teacher_classes, s,
                                mapping_species=[k for k in (ds.species_in(train) if train else taxonomy.keys)
                                                 if held is None or k not in held.species]
                                if "mapping" in baselines else None, progress=progress)
        for b in ("random", "mapping", "chain"):
            if b in baselines:
                into = maps.to_teacher(b, qb)
                spaces[BASELINE_IDS[b]] = Space(teacher=into, own_query=into,
                                                own_train=maps.to_teacher(b, tb) if train else None)
        if "undistilled" in baselines:
            spaces[BASELINE_IDS["undistilled"]] = Space(
                teacher=None, own_query=qb, own_train=tb if train else None, zero_shot=qb @ maps.student_classes.T,
            )
            labels[BASELINE_IDS["undistilled"]] = undistilled_name(base.name)
        for method in spaces:
            if method not in query_keep:
                query_keep[method], train_keep[method] = query_keep["_base"], train_keep["_base"]

    query_labels_all = np.array([taxonomy.index(it.species) for it in queries])
    train_labels_all = np.array([taxonomy.index(it.species) for it in train]) if train else None
    have_images = image_table is not None and len(image_table) > 0
    galleries = Galleries(taxonomy, image_table.vectors if have_images else None,
                          image_labels if have_images else None, text_vectors, text_labels, teacher_classes)
    masks = group_masks(taxonomy, held) if held is not None else {}
    methods: dict[str, MethodResult] = {}
    for name, space in spaces.items():
        ql = query_labels_all[query_keep[name]]
        tl = train_labels_all[train_keep[name]] if space.own_train is not None and len(space.own_train) else None
        whole = method_figures(space, ql, tl, galleries, s)
        groups = {g: method_figures(space, ql, tl, galleries, s, species=mask) for g, mask in masks.items()}
        cis = {}
        if s.bootstrap and whole.per_query:
            cis = {k: (float(lo), float(hi)) for k, (lo, hi) in
                   bootstrap_cis(whole.per_query, n_resamples=s.bootstrap, seed=s.seed).items()}
        methods[name] = MethodResult(name, labels.get(name) or DISPLAY_NAMES[name], whole.metrics, cis,
                                     whole.breakdown, directions=whole.directions,
                                     groups={g: {**f.metrics, **f.directions} for g, f in groups.items()})
    reference = {"i": (galleries.images, galleries.image_labels), "t": (teacher_classes, np.arange(len(taxonomy)))}
    teacher_directions = direction_metrics(taxonomy, reference, TEACHER_DIRECTIONS) if have_images else {}
    return EvalResult(
        methods=methods,
        dataset=DatasetSummary(name=ds.name, root=str(ds.root), species=len(taxonomy), queries=len(queries),
                               knn_references=len(train), gallery_images=len(image_table) if image_table else 0,
                               text_gallery=len(text_labels)),
        teacher=TeacherSummary(ref=m.teacher_ref, name=t.name, fingerprint=t.fingerprint),
        base_student=base_ref,
        models={ids[name]: str(ref) for name, ref in models.items()},
        settings=s,
        failures=failures,
        teacher_directions=teacher_directions,
        teacher_groups={g: direction_metrics(taxonomy, reference, TEACHER_DIRECTIONS, species=mask)
                        for g, mask in masks.items()} if have_images else {},
        holdout=held,
    )


@dataclass(frozen=True)
class Galleries:
    """What every method's queries are scored against, in the teacher's space: the pictures (or None) and their
    species, the audio→text gallery (each species' names) and the teacher's species text embeddings [S, D]."""

    taxonomy: Taxonomy
    images: np.ndarray | None
    image_labels: np.ndarray | None
    texts: np.ndarray
    text_labels: np.ndarray
    classes: np.ndarray


@dataclass
class Figures:
    """One method's figures over a set of queries: metrics, the directions (``a2i/genus/map``, ...), per-query
    values (for the bootstrap) and the per-species breakdown."""

    metrics: dict[str, float]
    directions: dict[str, float]
    per_query: dict[str, np.ndarray]
    breakdown: dict[str, dict[str, float]]


def method_figures(space: Space, ql: np.ndarray, tl: np.ndarray | None, g: Galleries, s: EvalSettings, *,
                   species: np.ndarray | None = None) -> Figures:
    """A method's figures for its queries ``ql`` (species indices; kNN against references ``tl``), or with
    ``species`` (bool [S]) for the queries of those species only: recordings, and for image→audio and text→audio
    the pictures and texts of those species. Every gallery (pictures, texts, recordings) stays whole."""
    taxonomy = g.taxonomy
    rows = np.ones(len(ql), bool) if species is None else species[ql]
    qg = ql[rows]
    per_query: dict[str, np.ndarray] = {}
    metrics: dict[str, float] = {"n_queries": int(rows.sum())}
    breakdown: dict[str, dict[str, float]] = {}
    directions: dict[str, float] = {}
    if space.teacher is not None:
        sides = {"a": (space.teacher, ql), "t": (g.classes, np.arange(len(taxonomy)))}
        if g.images is not None:
            sides["i"] = (g.images, g.image_labels)
        directions = direction_metrics(taxonomy, sides, ("a2i", "i2a", "a2t", "t2a"), species=species)
        metrics.update({f"a2i_map_{rank}": directions[direction_key("a2i", rank, "map")]
                        for rank in TAXON_RANKS if direction_key("a2i", rank, "map") in directions})
    if not rows.any():
        return Figures(metrics, directions, per_query, breakdown)
    teacher = space.teacher[rows] if space.teacher is not None else None
    if teacher is not None and g.images is not None:
        a2i = retrieval_metrics(teacher, qg, g.images, g.image_labels)
        metrics.update(a2i_map=a2i.map, a2i_r1=a2i.recall[1], a2i_r5=a2i.recall[5], a2i_r10=a2i.recall[10])
        metrics["i2a_map"] = directions[direction_key("i2a", "species", "map")]
        pq = a2i.per_query()
        per_query["a2i_map"], per_query["a2i_r1"] = pq["map"], pq["recall@1"]
        for label, row in a2i.per_class().items():
            breakdown.setdefault(taxonomy[int(label)].key, {})["a2i_map"] = row["map"]
    if teacher is not None:
        a2t = retrieval_metrics(teacher, qg, g.texts, g.text_labels)
        metrics.update(a2t_map=a2t.map, a2t_r1=a2t.recall[1], a2t_r5=a2t.recall[5], a2t_r10=a2t.recall[10])
    scores = space.zero_shot[rows] if space.zero_shot is not None else (
        teacher @ g.classes.T if teacher is not None else None)
    if scores is not None:
        hits = topk_accuracy(scores, qg, ks=(1, 5))
        metrics.update(zero_shot_top1=100 * hits[1].mean(), zero_shot_top5=100 * hits[5].mean())
        per_query["zero_shot_top1"] = 100 * hits[1].astype(float)
        for label, (acc, n) in per_class_accuracy(hits[1], qg).items():
            breakdown.setdefault(taxonomy[int(label)].key, {}).update(zero_shot_top1=acc, n=n)
        metrics.update(rank_metrics(taxonomy, qg, scores=scores))
    if tl is not None and space.own_train is not None:
        correct = knn_correct(space.own_train, tl, space.own_query[rows], qg, k=s.k, tau=s.tau)
        metrics["knn_acc"] = 100 * correct.mean()
        per_query["knn_acc"] = 100 * correct.astype(float)
    return Figures({k: float(v) for k, v in metrics.items()}, directions, per_query, breakdown)


def held_out_species(taxonomy: Taxonomy, given: tuple[str, ...], recorded: Mapping[str, list[str]]
                     ) -> HoldoutSummary | None:
    """The evaluation's held-out species: ``given`` (names; an unknown one is an error naming it), else the list
    the trained students recorded (they must agree; species this dataset lacks are noted and left aside), else
    None (no seen/unseen figures)."""
    if given:
        keys, source, absent = Holdout(species=list(given)).resolve(taxonomy, "holdout"), "settings", []
    elif recorded:
        lists = {tuple(v) for v in recorded.values()}
        if len(lists) > 1:
            raise BirdbridgeError(f"the students were trained with different held-out species "
                                  f"({', '.join(recorded)}): evaluate them one at a time, or give the holdout")
        names = list(lists.pop())
        keys = [taxonomy[taxonomy.index(n)].key for n in names if taxonomy.get(n) is not None]
        source, absent = "model", [n for n in names if taxonomy.get(n) is None]
        if not keys:
            return None
    else:
        return None
    return HoldoutSummary(species=keys, source=source, seen_species=len(taxonomy) - len(keys),
                          unseen_species=len(keys), not_in_dataset=absent)


def group_masks(taxonomy: Taxonomy, held: HoldoutSummary) -> dict[str, np.ndarray]:
    """``seen`` and ``unseen``: bool [S] over the taxonomy's species."""
    unseen = np.zeros(len(taxonomy), bool)
    unseen[[taxonomy.index(k) for k in held.species]] = True
    return dict(zip(GROUPS, (~unseen, unseen), strict=True))


def open_dataset(dataset: str | os.PathLike[str] | Dataset | SoundscapeDataset) -> Dataset | SoundscapeDataset:
    """A loaded dataset as it is; a path opened as soundscapes when it is a ``type: soundscape`` descriptor (or a
    folder holding one), else with :func:`~birdbridge.datasets.load_dataset`."""
    if isinstance(dataset, (Dataset, SoundscapeDataset)):
        return dataset
    layout, path = detect_layout(dataset)
    if layout == "descriptor" and read_descriptor(path)[0] == "soundscape":
        return load_soundscapes(path)
    return load_dataset(dataset)


def _text_gallery(encoder, taxonomy, spec: PromptSpec) -> tuple[np.ndarray, np.ndarray]:
    """One text per species and form: the audio→text retrieval gallery."""
    texts, labels = [], []
    for i, sp in enumerate(taxonomy):
        prompts = species_prompts(sp, spec)
        texts += prompts
        labels += [i] * len(prompts)
    return encoder.encode_texts(texts).numpy(), np.array(labels)
