"""Generic manifests: CSV/TSV or parquet tables with one row per file (``path, species, split``).

Audio manifests may add ``id`` and ``duration_s``; image manifests ``id, source, licence`` (or
``license``) and ``photographer``; video manifests ``id, fps, frame_count, duration_s, target_second,
reliable_audio``. Any other column goes to the item's ``meta``. Relative paths are relative to the
manifest's folder, or to ``root`` when given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from birdbridge.audio.io import AUDIO_EXTENSIONS
from birdbridge.datasets.base import (
    AudioItem,
    Dataset,
    ImageItem,
    Row,
    Table,
    VideoItem,
    absolute_root,
    read_table,
    resolve_path,
)
from birdbridge.errors import InputError
from birdbridge.species import (
    Taxonomy,
    UnknownSpeciesError,
    as_taxonomy,
    split_scientific_name,
    split_species_label,
    taxonomy_from_names,
)
from birdbridge.utils.input_files import IMAGE_EXTENSIONS

__all__ = ["load_manifest", "read_manifest_table"]

_PathLike = str | os.PathLike[str]
_REQUIRED = ("path", "species", "split")
_DURATION_ALIASES = {"duration": "duration_s", "duration_seconds": "duration_s"}
_OPTIONAL = {
    "audio": (("id", "duration_s"), _DURATION_ALIASES),
    "images": (("id", "source", "licence", "photographer"), {"license": "licence"}),
    "videos": (("id", "fps", "frame_count", "duration_s", "target_second", "reliable_audio"), _DURATION_ALIASES),
}
_NAME_HINT = "write 'Genus epithet' or BirdNET-style 'Genus epithet_Common Name', e.g. 'Pica hudsonia'"
_T = TypeVar("_T")


def read_manifest_table(path: _PathLike, modality: str = "audio") -> Table:
    """Read an ``audio``, ``images`` or ``videos`` manifest table, checking its columns."""
    optional, aliases = _OPTIONAL[modality]
    return read_table(path, required=_REQUIRED, optional=optional, aliases=aliases)


def load_manifest(
    audio: _PathLike,
    taxonomy: _PathLike | None = None,
    images: _PathLike | None = None,
    videos: _PathLike | None = None,
    root: _PathLike | None = None,
    *,
    name: str | None = None,
) -> Dataset:
    """Load manifests of recordings (and optionally pictures and videos) into a :class:`Dataset`.

    ``species`` cells match the taxonomy (a CSV, or a BirdNET-style list) by scientific name, code or
    common name. Without a taxonomy one is built from the species names of all manifests, sorted by
    scientific name. Errors name the manifest and its line (or parquet row).
    """
    paths = {"audio": audio, "images": images, "videos": videos}
    tables = {m: read_manifest_table(p, m) for m, p in paths.items() if p is not None}
    if taxonomy is not None:
        tax = as_taxonomy(taxonomy)
        tax_source = str(taxonomy)
    else:
        tax = _taxonomy_from_tables(list(tables.values()))
        tax_source = "the species names of the manifests"
    resolver = _SpeciesResolver(tax, tax_source)

    def folder(manifest: _PathLike) -> Path:
        return absolute_root(root) if root is not None else absolute_root(Path(manifest).parent)

    def load(modality: str, extensions: frozenset[str] | None, build: Callable[..., _T]) -> list[_T]:
        manifest = paths[modality]
        if manifest is None:
            return []
        what = modality.rstrip("s")  # audio, image, video
        return _items(tables[modality], folder(manifest), resolver, extensions, what, build)

    audio_items = load("audio", AUDIO_EXTENSIONS, _audio_item)
    image_items = load("images", IMAGE_EXTENSIONS, _image_item)
    video_items = load("videos", None, _video_item)
    base = folder(audio)
    return Dataset(name or base.name or "manifest", base, tax, audio_items, image_items, video_items)


class _SpeciesResolver:
    """Manifest species cell -> taxonomy key, cached; unknown names raise naming the row."""

    def __init__(self, taxonomy: Taxonomy, source: str) -> None:
        self.taxonomy = taxonomy
        self.source = source
        self.cache: dict[str, str] = {}

    def __call__(self, table: Table, row: Row) -> str:
        name = table.text(row, "species")
        key = self.cache.get(name)
        if key is None:
            try:
                key = self.cache[name] = self.taxonomy[self.taxonomy.index(name)].key
            except UnknownSpeciesError as exc:
                raise table.error(row, f"column 'species': {exc} (taxonomy: {self.source})") from None
        return key


def _taxonomy_from_tables(tables: Sequence[Table]) -> Taxonomy:
    commons: dict[str, str | None] = {}
    where: dict[str, tuple[Table, Row]] = {}
    by_common: dict[str, tuple[str, Table, Row]] = {}
    for table in tables:
        for row in table.rows:
            label = split_species_label(table.text(row, "species"))
            scientific, common = label.scientific or label.name, label.common
            if scientific not in commons:
                try:
                    split_scientific_name(scientific)
                except ValueError as exc:
                    raise table.error(row, f"column 'species': {exc}", _NAME_HINT) from None
                commons[scientific], where[scientific] = None, (table, row)
            if common is None:
                continue
            folded = common.casefold()
            known = commons[scientific]
            if known is not None and known.casefold() != folded:
                first_table, first_row = where[scientific]
                raise table.error(
                    row,
                    f"species {scientific!r} is called {common!r} here but {known!r} at "
                    f"{first_row.where} of {first_table.source}",
                    "use one common name per species",
                )
            other = by_common.get(folded)
            if other is not None and other[0] != scientific:
                raise table.error(
                    row,
                    f"common name {common!r} is also used for {other[0]!r} at {other[2].where} of {other[1].source}",
                    "each common name must belong to one species",
                )
            commons[scientific] = known or common
            by_common.setdefault(folded, (scientific, table, row))
    sources = ", ".join(t.source for t in tables)
    if not commons:
        raise InputError(sources, "the manifests list no items", "add one row per file: path, species, split")
    return taxonomy_from_names(sorted(commons.items()), source=sources)


def _items(
    table: Table,
    base: Path,
    resolver: _SpeciesResolver,
    extensions: frozenset[str] | None,
    what: str,
    build: Callable[[Table, Row, str, Path, str, str], _T],
) -> list[_T]:
    items: list[_T] = []
    seen: dict[str, str] = {}
    for row in table.rows:
        written = table.text(row, "path")
        path = resolve_path(base, written)
        if extensions is not None and path.suffix.lower() not in extensions:
            raise table.error(
                row,
                f"{written!r} is not a supported {what} file name (extensions: {', '.join(sorted(extensions))})",
                f"check that this is the {what} manifest",
            )
        item_id = table.optional_text(row, "id") or written
        table.claim(seen, item_id, row, "id" if "id" in table else "path")
        items.append(build(table, row, item_id, path, resolver(table, row), table.text(row, "split")))
    return items


def _audio_item(table: Table, row: Row, item_id: str, path: Path, species: str, split: str) -> AudioItem:
    return AudioItem(item_id, path, species, split, table.number(row, "duration_s"), table.extras(row))


def _image_item(table: Table, row: Row, item_id: str, path: Path, species: str, split: str) -> ImageItem:
    return ImageItem(
        item_id,
        path,
        species,
        split,
        source=table.optional_text(row, "source"),
        licence=table.optional_text(row, "licence"),
        photographer=table.optional_text(row, "photographer"),
        meta=table.extras(row),
    )


def _video_item(table: Table, row: Row, item_id: str, path: Path, species: str, split: str) -> VideoItem:
    return VideoItem(
        item_id,
        path,
        species,
        split,
        fps=table.number(row, "fps"),
        frame_count=table.integer(row, "frame_count"),
        duration_s=table.number(row, "duration_s"),
        target_second=table.number(row, "target_second"),
        reliable_audio=table.flag(row, "reliable_audio"),
        meta=table.extras(row),
    )
