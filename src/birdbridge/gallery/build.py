"""``build_gallery``: images (or precomputed teacher image embeddings) in, a resumable gallery out.

Sources, each a folder or a file:

1. **a folder of species subfolders**: ``photos/Pica hudsonia/1.jpg`` (or ``Pica_hudsonia/``, or
   BirdNET-style ``Pica hudsonia_Black-billed Magpie/``; deeper folders are fine, the first level names
   the species). Images lying directly in the folder are an error naming them. Hidden files and folders
   are ignored. An image's id is its path relative to the folder (``Pica hudsonia/1.jpg``).
   With ``species_from_filename`` the folder may be flat: each image's file name names its species
   (``Pica hudsonia 3.jpg``, ``Pica_hudsonia_003.png``, ``Pica hudsonia_Black-billed Magpie (2).jpg``: a
   trailing number is dropped); an image whose name names none is skipped and reported. With
   ``species_unknown`` images lying directly in the folder (or, with ``species_from_filename``, whose name names no
   species) are kept as pictures of unknown species (:data:`~birdbridge.gallery.store.UNKNOWN_SPECIES`): searches
   retrieve them as any picture, and they belong to no species of the species index.
2. **a manifest** (``.csv``/``.tsv``/``.parquet`` without an embedding column): ``path`` and ``species``
   (or ``scientific_name``, or ``genus`` + ``specific_epithet``), optionally ``id, split, source,
   licence``/``license``, ``photographer``, ``common_name``, ``kingdom`` … ``family``; other columns
   go to ``meta``. Relative paths are relative to the manifest's folder; the id is the ``id`` cell,
   else the path as written.
3. **precomputed teacher image embeddings** (``.parquet`` with an ``embedding``/``emb``/``vector``
   list column), e.g. the published BioCLIP-2 TreeOfLife embeddings: ``id``/``uuid``, the taxonomy
   columns above (a one-word ``species`` next to ``genus`` is the epithet), no image decoding. The
   width must equal the teacher's; vectors are L2-normalised on the way in. Rows without an id, a
   usable embedding or a species name are skipped and reported.

Species cells and folder names may also be common names or codes of ``species`` (a taxonomy CSV or
a BirdNET list) when one is given.

**Resume rule.** Images are committed every ``commit_every`` (files) or 16,384 rows (precomputed);
ids already in the gallery are skipped, so a killed build loses at most the batch in flight. Without
``add``, ``output`` must be new or empty, or hold an *unfinished* build of the same sources (same
resolved paths, same order) with the same teacher, which is then resumed; any other existing gallery is
an error. With ``add`` the images are appended to an existing gallery (created if missing) whose teacher
must be the same; re-adding the same folder adds only what is new. A path-derived id already in the
gallery for a *different* file is an error (give ids in a manifest instead). On Ray (``ray``) the pictures are
embedded first, one shard per picture (a rerun after a killed build embeds only those without one;
:mod:`birdbridge.embed.ray_jobs`), and then committed in chunks as above.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.datasets.base import read_table, resolve_path
from birdbridge.embed.images import embed_image_files, scan_image_files
from birdbridge.embed.ray_jobs import SHARDS_IN_STORE, image_spec, require_ray, run_bulk
from birdbridge.embed.table import skipped
from birdbridge.embed.text import DEFAULT_FORMS, DEFAULT_TEMPLATES
from birdbridge.errors import BirdbridgeError, Failure, InputError
from birdbridge.gallery.background import build_background
from birdbridge.gallery.species_index import SpeciesIndexSummary, build_species_index, merge_species
from birdbridge.gallery.store import UNKNOWN_SPECIES, Gallery, is_gallery
from birdbridge.models.hub import stable_ref
from birdbridge.species import Species, Taxonomy, as_taxonomy, normalize_rank_name, parse_species_label
from birdbridge.species.background import BackgroundVocabulary, load_background_vocabulary
from birdbridge.store.ann import ANN_THRESHOLD, build_ann, require_engine
from birdbridge.store.vector_store import teacher_meta
from birdbridge.utils.clock import now_iso
from birdbridge.utils.prefetch import batched
from birdbridge.utils.progress import progress_bar
from birdbridge.utils.text import optional_text
from birdbridge.utils.vectors import MIN_NORM

COMMIT_EVERY = 256
PRECOMPUTED_CHUNK_ROWS = 16_384
MAX_REPORTED_FAILURES = 10_000

_EMBEDDING_NAMES = ("embedding", "emb", "vector", "embeddings")
_FILE_COUNTER = re.compile(r"[\s_.-]*(?:\(\d+\)|\d+)$")  # "Pica hudsonia 3", "Pica_hudsonia_003", "... (2)"
_ALIASES = {
    "license": "licence",
    "uuid": "id",
    "image_id": "id",
    "emb": "embedding",
    "vector": "embedding",
    "embeddings": "embedding",
    "species_epithet": "specific_epithet",
    "epithet": "specific_epithet",
    "sci_name": "scientific_name",
    "scientificname": "scientific_name",
    "common": "common_name",
    "commonname": "common_name",
    "vernacular_name": "common_name",
}
_HIGHER_RANKS = ("kingdom", "phylum", "class", "order", "family")
_TAXONOMY_COLUMNS = (*_HIGHER_RANKS, "genus", "specific_epithet", "species", "scientific_name", "common_name")
_RECORD_COLUMNS = ("id", "split", "source", "licence", "photographer")
_SPECIES_HINT = (
    "add a 'species' column ('Genus epithet'), a 'scientific_name' column, or 'genus' and 'specific_epithet'"
)


@dataclass
class BuildReport:
    """What a build did. ``failures`` lists skipped inputs (at most 10,000; ``failures_omitted`` counts the rest)."""

    gallery: Path
    added: int = 0
    skipped_existing: int = 0
    failures: list[Failure] = field(default_factory=list)
    failures_omitted: int = 0
    count: int = 0
    created: bool = False
    resumed: bool = False
    species: SpeciesIndexSummary | None = None
    background: list[str] | None = None  # the background vocabulary's labels
    ann: dict[str, Any] | None = None

    @property
    def n_failures(self) -> int:
        return len(self.failures) + self.failures_omitted

    def fail(self, source: str, message: str) -> None:
        if len(self.failures) < MAX_REPORTED_FAILURES:
            self.failures.append(Failure(source, message))
        else:
            self.failures_omitted += 1


@dataclass(frozen=True)
class _FileImage:
    id: str
    path: Path
    species: Species | None  # None: a picture of unknown species
    origin: str  # the source and line that listed it, for messages
    derived_id: bool
    split: str | None = None
    source: str | None = None
    licence: str | None = None
    photographer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class _Precomputed:
    path: Path
    columns: dict[str, str]  # canonical name -> column name in the file
    dim: int


def build_gallery(
    sources: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    output: str | os.PathLike[str],
    teacher_ref: Any = "bioclip-2",
    *,
    add: bool = False,
    batch_size: int = 32,
    device: str | None = None,
    progress: bool | None = None,
    ann: bool | None = None,
    ann_engine: str | None = None,
    species: Taxonomy | str | os.PathLike[str] | None = None,
    forms: Sequence[str] = DEFAULT_FORMS,
    templates: str | Sequence[str] = DEFAULT_TEMPLATES,
    commit_every: int = COMMIT_EVERY,
    cache: bool = True,
    background: BackgroundVocabulary | str | os.PathLike[str] | bool = True,
    species_from_filename: bool = False,
    species_unknown: bool = False,
    ray: str | None = None,
) -> BuildReport:
    """Index ``sources`` into the gallery at ``output`` with the teacher's image tower; see the module docs.

    ``teacher_ref`` is a preset, hub id, folder or a loaded Teacher. ``species`` (a Taxonomy, a
    taxonomy CSV or a BirdNET list) resolves names and sets the species index's list; without it the
    index keeps its species and adds the gallery's. ``ann``: True builds (or updates) the ANN index,
    False leaves it alone, None does so once the gallery has :data:`ANN_THRESHOLD` rows; ``ann_engine`` builds a
    new index with that engine (:mod:`birdbridge.store.ann`; default: the current index's). ``background``: the
    background vocabulary (:mod:`birdbridge.gallery.background`): True writes the default one unless the
    gallery has one, a vocabulary (or a vocabulary file) replaces it, False writes none.
    ``species_from_filename``: folder sources name each image's species by its file name (a flat folder).
    ``species_unknown``: images of folder sources whose species nothing names are pictures of unknown species.
    ``ray``: embed the pictures on Ray at that address (``local``, ``auto``, ``ray://...``; see
    :mod:`birdbridge.embed.ray_jobs`), then commit them as the local path does.
    """
    from birdbridge.models.loader import load_teacher
    from birdbridge.models.teacher import Teacher

    if ray is not None:
        require_ray()
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not sources:
        raise BirdbridgeError("no image sources given")
    if commit_every < 1 or batch_size < 1:
        raise BirdbridgeError("commit_every and batch_size must be at least 1")
    if ann_engine is not None and ann is not False:
        require_engine(ann_engine)  # before any work
    output = Path(output).expanduser()
    taxonomy = None if species is None else as_taxonomy(species)
    if isinstance(background, (str, os.PathLike)):  # read before any work
        background = load_background_vocabulary(background)
    teacher = teacher_ref if isinstance(teacher_ref, Teacher) else load_teacher(teacher_ref, device)
    ref = None if isinstance(teacher_ref, Teacher) else stable_ref(teacher_ref)
    tmeta = teacher_meta(teacher, ref)

    known: dict[str, Species] = {}
    files, tables, unreadable = _scan_sources(sources, taxonomy, known, teacher.embed_dim, tmeta["name"],
                                              species_from_filename, species_unknown)
    source_key = [str(Path(s).expanduser().resolve()) for s in sources]
    gallery, created, resumed = _open_output(output, tmeta, source_key, add)
    report = BuildReport(gallery.folder, created=created, resumed=resumed)
    for failure in unreadable:
        report.fail(failure.source, failure.message)
    gallery.update_meta(build={"complete": False, "sources": source_key, "teacher_fingerprint": tmeta["fingerprint"],
                               "add": bool(add), "started": now_iso()})

    _ingest_files(files, gallery, teacher, report, batch_size=batch_size, commit_every=commit_every,
                  progress=progress, ray=None if ray is None else (ray, teacher_ref, device))
    for table in tables:
        _ingest_precomputed(table, gallery, taxonomy, known, report, progress=progress)

    if taxonomy is not None or set(gallery.species_counts()) - {UNKNOWN_SPECIES}:
        label = str(species) if isinstance(species, (str, os.PathLike)) else ("species list" if taxonomy else "gallery")
        report.species = build_species_index(
            gallery, teacher, taxonomy=taxonomy, known=known, forms=forms, templates=templates,
            cache=cache, progress=progress, source=label,
        )
        if isinstance(background, BackgroundVocabulary) or (background is True and gallery.background() is None):
            build_background(gallery, teacher, background if isinstance(background, BackgroundVocabulary) else None)
        report.background = None if (stored := gallery.background()) is None else stored[0].labels
    if len(gallery) and (ann is True or (ann is None and len(gallery) >= ANN_THRESHOLD)):
        build_ann(gallery, engine=ann_engine, progress=progress)
    report.ann = gallery.ann_status()
    report.count = len(gallery)
    build = {**(gallery.meta.get("build") or {}), "complete": True, "finished": now_iso()}
    gallery.update_meta(build=build)
    gallery.close()
    return report


# ------------------------------------------------------------------------------------------- output


def _open_output(output: Path, tmeta: dict[str, Any], source_key: list[str], add: bool) -> tuple[Gallery, bool, bool]:
    """(gallery, created, resumed) under the resume rule of the module docs."""
    if not is_gallery(output):
        return Gallery.create(output, tmeta, int(tmeta["embed_dim"])), True, False
    gallery = Gallery.open(output)
    gallery.check_teacher(tmeta, f"--teacher {tmeta['ref']}")
    if add:
        return gallery, False, False
    build = gallery.meta.get("build") or {}
    if build.get("complete") is False and build.get("sources") == source_key:
        return gallery, False, True
    if build.get("complete") is False:
        raise BirdbridgeError(
            f"{output} holds an unfinished build of other sources ({', '.join(build.get('sources') or [])}); "
            "run that command again to finish it, pass --add to add these images to it, or choose another --output"
        )
    raise BirdbridgeError(
        f"{output} already holds a gallery of {len(gallery):,} images; pass --add to add these images to it, "
        "or choose another --output"
    )


def _stored_path(path: Path, gallery_folder: Path) -> str:
    """Paths inside the gallery folder are stored relative to it (so it can move); others absolute."""
    try:
        return path.relative_to(gallery_folder.resolve()).as_posix()
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------- scanning


def _scan_sources(
    sources: Sequence[str | os.PathLike[str]], taxonomy: Taxonomy | None, known: dict[str, Species],
    dim: int, teacher_name: str, from_filename: bool = False, unknown: bool = False,
) -> tuple[list[_FileImage], list[_Precomputed], list[Failure]]:
    """Every source read and checked before anything is written; errors name the file and line. Folder
    entries that cannot be read (unreadable subfolders, broken links, link loops) come back as failures."""
    files: list[_FileImage] = []
    tables: list[_Precomputed] = []
    unreadable: list[Failure] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found, problems = (_scan_named_files if from_filename else _scan_folder)(path.resolve(), taxonomy, unknown)
            files.extend(found)
            unreadable += problems
        elif not path.exists():
            raise InputError(str(path), "no such file or folder")
        elif path.suffix.lower() in (".parquet", ".pq") and _embedding_column(path) is not None:
            tables.append(_scan_precomputed(path.resolve(), dim, teacher_name))
        elif path.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq"):
            files.extend(_scan_manifest(path.resolve(), taxonomy))
        else:
            raise InputError(
                str(path), "is not a folder, a manifest (.csv, .tsv, .parquet) or a parquet of embeddings",
                "pass a folder of species subfolders, a manifest with path and species columns, or precomputed "
                "embeddings in parquet",
            )
    seen: dict[str, _FileImage] = {}
    for item in files:
        first = seen.setdefault(item.id, item)
        if first is not item:
            raise InputError(
                item.origin, f"image id {item.id!r} is also given by {first.origin}",
                "ids must be unique: give an 'id' column in a manifest, or index the folders into separate galleries",
            )
        if item.species is not None:
            _remember(known, item.species)
    return files, tables, unreadable


def _remember(known: dict[str, Species], species: Species) -> None:
    known[species.key] = merge_species(known[species.key], species) if species.key in known else species


def _scan_folder(root: Path, taxonomy: Taxonomy | None, unknown: bool = False
                 ) -> tuple[list[_FileImage], list[Failure]]:
    found = scan_image_files([root])
    files = found.files
    loose = [f.name for f in files if f.parent == root]
    if loose and not unknown:
        shown = ", ".join(loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
        raise InputError(
            str(root), f"{len(loose)} image(s) lie directly in the folder, not in a species subfolder: {shown}",
            "put each species' images in a subfolder named after it (e.g. 'Pica hudsonia/' or "
            "'Pica hudsonia_Black-billed Magpie/'), name each file after its species and pass "
            "--species-from-filename, index them as pictures of unknown species with --species-unknown, or list them "
            "in a manifest CSV with path and species columns",
        )
    labels: dict[str, Species] = {}
    items = []
    for path in files:
        rel = path.relative_to(root)
        if path.parent == root:  # with unknown: a picture of unknown species
            items.append(_FileImage(rel.as_posix(), path, None, str(path), derived_id=True))
            continue
        label = rel.parts[0]
        if label not in labels:
            try:
                labels[label] = parse_species_label(label, taxonomy)
            except ValueError as exc:
                raise InputError(str(root / label), f"folder name: {exc}") from None
        items.append(_FileImage(rel.as_posix(), path, labels[label], str(path), derived_id=True))
    return items, skipped(found.problems)


def _scan_named_files(root: Path, taxonomy: Taxonomy | None, unknown: bool = False
                      ) -> tuple[list[_FileImage], list[Failure]]:
    """The images under ``root``, each of the species its file name names; the others are failures (with
    ``unknown``: pictures of unknown species)."""
    found = scan_image_files([root])
    items, failures = [], skipped(found.problems)
    for path in found.files:
        label = _FILE_COUNTER.sub("", path.stem) or path.stem
        try:
            species = parse_species_label(label, taxonomy)
        except ValueError as exc:
            if not unknown:
                failures.append(Failure(str(path), f"{path}: file name: {exc}"))
                continue
            species = None
        items.append(_FileImage(path.relative_to(root).as_posix(), path, species, str(path), derived_id=True))
    return items, failures


def _scan_manifest(path: Path, taxonomy: Taxonomy | None) -> list[_FileImage]:
    optional = (*_RECORD_COLUMNS, *_TAXONOMY_COLUMNS)
    table = read_table(path, required=("path",), optional=optional, aliases=_ALIASES)
    if not _has_species_columns(table.columns):
        raise InputError(str(path), f"no species column (found: {', '.join(table.columns)})", _SPECIES_HINT)
    base = path.parent
    items = []
    for row in table.rows:
        written = table.text(row, "path")
        try:
            species = _row_species(lambda c, row=row: table.optional_text(row, c), taxonomy)
        except ValueError as exc:
            raise table.error(row, f"species: {exc}") from None
        given = table.optional_text(row, "id")
        items.append(_FileImage(
            given or written, resolve_path(base, written), species, f"{path}, {row.where}", derived_id=given is None,
            split=table.optional_text(row, "split"), source=table.optional_text(row, "source"),
            licence=table.optional_text(row, "licence"), photographer=table.optional_text(row, "photographer"),
            meta=table.extras(row),
        ))
    if not items:
        raise InputError(str(path), "the manifest lists no images", "add one row per image: path, species")
    return items


def _has_species_columns(columns: Iterable[str]) -> bool:
    cols = set(columns)
    return bool({"species", "scientific_name"} & cols) or {"genus", "specific_epithet"} <= cols


def _row_species(get: Callable[[str], str | None], taxonomy: Taxonomy | None) -> Species:
    """The species of one manifest or parquet row from its taxonomy columns; raises ValueError."""
    scientific, species, genus, epithet = (get(c) for c in ("scientific_name", "species", "genus", "specific_epithet"))
    if scientific:
        label = scientific
    elif species and genus and len(species.split()) == 1 and species[:1].islower():
        label = f"{genus} {species}"  # TreeOfLife style: species holds the epithet
    elif species:
        label = species
    elif genus and epithet:
        label = f"{genus} {epithet}"
    else:
        raise ValueError("no species name (the species / scientific_name / genus + specific_epithet cells are empty)")
    found = parse_species_label(label, taxonomy)
    if taxonomy is not None and taxonomy.get(found.key) is found:
        return found
    ranks = [normalize_rank_name(get(rank) or "") for rank in _HIGHER_RANKS]
    return Species(*ranks, found.genus, found.specific_epithet, get("common_name") or found.common_name, found.code)


# ----------------------------------------------------------------------------------- precomputed parquet


def _canonical(name: str) -> str:
    low = name.strip().lower()
    return _ALIASES.get(low, low)


def _embedding_column(path: Path) -> str | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise InputError(str(path), f"not a readable parquet file ({exc})") from None
    for name in names:
        if _canonical(name) == "embedding":
            return name
    return None


def _scan_precomputed(path: Path, dim: int, teacher_name: str) -> _Precomputed:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    columns: dict[str, str] = {}
    for name in schema.names:
        canon = _canonical(name)
        if canon in columns:
            raise InputError(str(path), f"columns {columns[canon]!r} and {name!r} both give {canon!r}", "keep one")
        columns[canon] = name
    if "id" not in columns:
        raise InputError(str(path), f"no id column (found: {', '.join(schema.names)})",
                         "precomputed embeddings need an 'id' or 'uuid' column")
    if not _has_species_columns(columns):
        raise InputError(str(path), f"no species column (found: {', '.join(schema.names)})", _SPECIES_HINT)
    kind = schema.field(columns["embedding"]).type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)) or not (
        pa.types.is_floating(kind.value_type)
    ):
        raise InputError(str(path), f"column {columns['embedding']!r} is {kind}, not a list of floats",
                         "store one embedding per row as a list (or fixed-size list) of floats")
    width = kind.list_size if pa.types.is_fixed_size_list(kind) else _first_width(path, columns["embedding"])
    if width is not None and width != dim:
        raise InputError(
            str(path), f"its embeddings have {width} dimensions but teacher {teacher_name!r} has {dim}",
            "they come from another model: pass the teacher that made them (BioCLIP-2 embeddings are 768-d: "
            "--teacher bioclip-2)",
        )
    return _Precomputed(path, columns, dim)


def _first_width(path: Path, column: str) -> int | None:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=[column]):
        for value in batch.column(0):
            if value.is_valid:
                return len(value)
    return None


def _embedding_matrix(column: Any, dim: int) -> tuple[np.ndarray, list[str | None]]:
    """float32 ``[n, dim]`` from a list column, and per row a problem (or None)."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    problems: list[str | None] = [None] * n
    out = np.zeros((n, dim), np.float32)
    valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        values = column.values.slice(column.offset * width, n * width)
        flat = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32)
        out[:] = flat.reshape(n, width)
        lengths = np.full(n, width)
    else:
        offsets = np.asarray(column.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
        lengths = np.diff(offsets)
        flat = np.asarray(column.values.to_numpy(zero_copy_only=False), dtype=np.float32)
        if valid.all() and (lengths == dim).all():
            out[:] = flat[offsets[0] : offsets[0] + n * dim].reshape(n, dim)
        else:
            for i in np.nonzero(valid & (lengths == dim))[0]:
                out[i] = flat[offsets[i] : offsets[i + 1]]
    norms = np.linalg.norm(out, axis=1)
    for i in range(n):
        if not valid[i]:
            problems[i] = "no embedding (empty cell)"
        elif lengths[i] != dim:
            problems[i] = f"embedding has {lengths[i]} values, expected {dim}"
        elif not np.isfinite(norms[i]):
            problems[i] = "embedding holds NaN or Inf"
        elif norms[i] < MIN_NORM:  # what l2_normalize calls zero
            problems[i] = "embedding is all zeros"
    return out, problems


def _cell(values: dict[str, list[Any]], i: int, column: str) -> str | None:
    return optional_text(values[column][i]) if column in values else None


def _ingest_precomputed(
    table: _Precomputed, gallery: Gallery, taxonomy: Taxonomy | None, known: dict[str, Species],
    report: BuildReport, *, progress: bool | None,
) -> None:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(table.path)
    cols = table.columns
    taken = {cols[c] for c in ("embedding", "id", "path", *_RECORD_COLUMNS, *_TAXONOMY_COLUMNS) if c in cols}
    extra = [name for name in parquet.schema_arrow.names if name not in taken]
    row_base = 0
    with progress_bar(f"Indexing {table.path.name}", parquet.metadata.num_rows, progress) as bar:
        for batch in parquet.iter_batches(batch_size=PRECOMPUTED_CHUNK_ROWS):
            n = batch.num_rows
            vectors, problems = _embedding_matrix(batch.column(cols["embedding"]), table.dim)
            values = {c: batch.column(cols[c]).to_pylist() for c in cols if c != "embedding"}
            extras = {name: batch.column(name).to_pylist() for name in extra}
            records: list[dict[str, Any]] = []
            keep: list[int] = []
            batch_ids: set[str] = set()
            for i in range(n):
                where = f"{table.path}, row {row_base + i + 1}"
                image_id = optional_text(values["id"][i])
                if image_id is None:
                    report.fail(where, f"{where}: no id")
                    continue
                if problems[i] is not None:
                    report.fail(where, f"{where} ({image_id}): {problems[i]}")
                    continue
                if image_id in batch_ids:
                    report.fail(where, f"{where}: id {image_id!r} appears twice")
                    continue
                try:
                    species = _row_species(partial(_cell, values, i), taxonomy)
                except ValueError as exc:
                    report.fail(where, f"{where} ({image_id}): {exc}")
                    continue
                batch_ids.add(image_id)
                _remember(known, species)
                path = optional_text(values["path"][i]) if "path" in values else None
                records.append({
                    "id": image_id,
                    "path": str(resolve_path(table.path.parent, path)) if path else None,
                    "species": species.key,
                    **{c: optional_text(values[c][i]) for c in _RECORD_COLUMNS[1:] if c in values},
                    "meta": {name: extras[name][i] for name in extra if extras[name][i] is not None},
                })
                keep.append(i)
            present = gallery.existing(r["id"] for r in records) if records else {}
            if present:
                report.skipped_existing += len(present)
                pairs = [(r, i) for r, i in zip(records, keep, strict=True) if r["id"] not in present]
                records, keep = [r for r, _ in pairs], [i for _, i in pairs]
            if records:
                report.added += gallery.append(vectors[keep], records, skip_existing=True)
            row_base += n
            bar.advance(n)


# ------------------------------------------------------------------------------------------- images


def _ingest_files(
    items: list[_FileImage], gallery: Gallery, teacher: Any, report: BuildReport, *,
    batch_size: int, commit_every: int, progress: bool | None, ray: tuple[str, Any, str | None] | None = None,
) -> None:
    """Embed the pictures not in the gallery yet (on Ray first, with ``ray``: its address, the teacher's ref and the
    device) and commit them chunk by chunk."""
    if not items:
        return
    present = gallery.existing(item.id for item in items)
    _check_conflicts(items, present, gallery.folder)
    todo = [item for item in items if item.id not in present]
    report.skipped_existing += len(items) - len(todo)
    job = None
    if ray is not None and todo:
        address, ref, device = ray
        job = run_bulk([item.path for item in todo], image_spec(ref, teacher, device), gallery.folder / SHARDS_IN_STORE,
                       address=address, batch_size=batch_size, progress=progress)
    with progress_bar("Indexing images", len(todo), progress) as bar:
        for chunk in batched(todo, commit_every):
            paths = [item.path for item in chunk]
            table = (job.shards.table(paths, job.failures, teacher.embed_dim, timed=False) if job is not None else
                     embed_image_files(paths, teacher, batch_size=batch_size, progress=False))
            for failure in table.failures:
                report.fail(failure.source, failure.message)
            kept: list[_FileImage] = []
            j = 0
            for item in chunk:  # the table keeps input order and drops the failures
                if j < len(table.names) and table.names[j] == str(item.path):
                    kept.append(item)
                    j += 1
            records = [
                {"id": item.id, "path": _stored_path(item.path, gallery.folder),
                 "species": item.species.key if item.species else UNKNOWN_SPECIES, "split": item.split,
                 "source": item.source, "licence": item.licence,
                 "photographer": item.photographer, "meta": item.meta}
                for item in kept
            ]
            if records:
                report.added += gallery.append(table.vectors, records, skip_existing=True)
            bar.advance(len(chunk))
    if job is not None:
        job.shards.remove()


def _check_conflicts(items: list[_FileImage], present: dict[str, str | None], folder: Path) -> None:
    """A path-derived id already in the gallery must be the same file; else the ids collide."""
    clashes = []
    for item in items:
        if item.derived_id and item.id in present and present[item.id] is not None:
            stored = Path(present[item.id])
            stored = stored if stored.is_absolute() else (folder / stored)
            if stored.resolve() != item.path.resolve():
                clashes.append((item, stored))
    if clashes:
        item, stored = clashes[0]
        raise InputError(
            item.origin,
            f"{len(clashes)} image id(s) are already in gallery {folder} for other files, e.g. {item.id!r} is "
            f"{stored} there",
            "give these images distinct ids with a manifest (path, species, id), or index them into another gallery",
        )
