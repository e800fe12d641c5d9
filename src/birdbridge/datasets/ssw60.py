"""SSW60 (Sapsucker Woods 60, Van Horn et al. 2022): 60 bird species in audio, images and video.

The archive root holds ``taxa.csv``, ``audio_ml.csv`` + ``audio_ml/{asset_id}.wav``,
``images_nabirds.csv`` + ``images_nabirds/{asset_id}.jpg``, ``images_inat.csv`` + ``images_inat/{asset_id}.jpg``
and ``video_ml.csv`` + ``video_ml/{asset_id}.mp4``; every table's ``label`` column points at ``taxa.csv``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from birdbridge.datasets.base import AudioItem, Dataset, ImageItem, Row, Table, VideoItem, absolute_root, read_table
from birdbridge.errors import InputError
from birdbridge.species.taxonomy import Species, Taxonomy, load_taxonomy_csv

__all__ = ["IMAGE_SOURCES", "SSW60_FILES", "load_ssw60"]

IMAGE_SOURCES = ("nabirds", "inat")
SSW60_FILES = ("taxa.csv", "audio_ml.csv")  # required; the image and video tables are optional
_ITEM_COLUMNS = ("asset_id", "label", "split")
_TAXA_COLUMNS = ("label", "scientific_name")
_HIGHER = {"kingdom": "Animalia", "phylum": "Chordata", "cls": "Aves"}


def load_ssw60(
    root: str | os.PathLike[str], image_sources: Sequence[str] = IMAGE_SOURCES, *, name: str = "ssw60"
) -> Dataset:
    """Load SSW60 from its archive root; absent image or video tables give empty lists.

    Image ids are ``"{source}/{asset_id}"`` (NABirds and iNat ids could collide); audio and video ids are
    the asset ids. Raises InputError naming the file and line for an unknown label, a missing column,
    a duplicate asset id or a non-numeric number.
    """
    root = absolute_root(root)
    sources = tuple(image_sources)
    unknown = [s for s in sources if s not in IMAGE_SOURCES]
    if unknown:
        raise InputError(
            "image_sources", f"unknown SSW60 image source {', '.join(map(repr, unknown))}", f"use {IMAGE_SOURCES}"
        )
    if not root.is_dir():
        raise InputError(str(root), "SSW60 folder not found", "give the folder that holds taxa.csv and audio_ml.csv")
    missing = [f for f in SSW60_FILES if not (root / f).is_file()]
    if missing:
        raise InputError(
            str(root),
            f"not an SSW60 folder: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing",
            "give the archive root, which holds taxa.csv, audio_ml.csv and the audio_ml/ folder",
        )
    taxonomy, labels = _load_taxa(root / "taxa.csv")
    audio = _load_audio(root, labels)
    images: list[ImageItem] = []
    for source in sources:
        if (root / f"images_{source}.csv").is_file():
            images += _load_images(root, source, labels)
    videos = _load_videos(root, labels) if (root / "video_ml.csv").is_file() else []
    return Dataset(name, root, taxonomy, audio, images, videos)


def _load_taxa(path: Path) -> tuple[Taxonomy, dict[str, str]]:
    """The taxonomy (file order, class Aves, family descriptions dropped) and label -> species key."""
    species = list(load_taxonomy_csv(path))  # validates names and duplicate species/codes/common names
    table = read_table(path, required=_TAXA_COLUMNS)
    if len(table.rows) != len(species):  # pragma: no cover - both readers skip the same blank lines
        raise InputError(str(path), "rows could not be matched to species", "remove blank or filtered rows")
    labels: dict[str, str] = {}
    seen: dict[str, str] = {}
    filled: list[Species] = []
    for row, sp in zip(table.rows, species, strict=True):
        label = _label(table, row)
        table.claim(seen, label, row, "label")
        missing = {k: v for k, v in _HIGHER.items() if not getattr(sp, k)}
        sp = dataclasses.replace(sp, **missing) if missing else sp
        filled.append(sp)
        labels[label] = sp.key
    return Taxonomy(filled), labels


def _label(table: Table, row: Row) -> str:
    text = table.text(row, "label")
    try:  # "7" and "7.0" are the same label
        number = float(text)
        return str(int(number)) if number.is_integer() else text
    except ValueError:
        return text


def _species(table: Table, row: Row, labels: dict[str, str]) -> str:
    label = _label(table, row)
    if label not in labels:
        shown = ", ".join(list(labels)[:5]) + (", ..." if len(labels) > 5 else "")
        raise table.error(row, f"label {label!r} is not in taxa.csv", f"taxa.csv labels: {shown}")
    return labels[label]


def _common(table: Table, row: Row, labels: dict[str, str], seen: dict[str, str]) -> tuple[str, str, str]:
    """``(asset_id, species, split)`` of a row, checking the asset id is new."""
    asset_id = table.text(row, "asset_id")
    table.claim(seen, asset_id, row, "asset_id")
    return asset_id, _species(table, row, labels), table.text(row, "split")


def _load_audio(root: Path, labels: dict[str, str]) -> list[AudioItem]:
    numbers = ("samplerate", "channels", "samples")
    table = read_table(root / "audio_ml.csv", required=_ITEM_COLUMNS, optional=(*numbers, "duration_seconds"))
    items: list[AudioItem] = []
    seen: dict[str, str] = {}
    for row in table.rows:
        asset_id, species, split = _common(table, row, labels, seen)
        meta = {k: table.integer(row, k) for k in numbers if k in table}
        duration = table.number(row, "duration_seconds")
        if duration is None and meta.get("samples") and meta.get("samplerate"):
            duration = meta["samples"] / meta["samplerate"]
        meta.update(table.extras(row))
        path = root / "audio_ml" / f"{asset_id}.wav"
        items.append(AudioItem(asset_id, path, species, split, duration, meta))
    return items


def _load_images(root: Path, source: str, labels: dict[str, str]) -> list[ImageItem]:
    table = read_table(root / f"images_{source}.csv", required=_ITEM_COLUMNS, optional=("height", "width"))
    items: list[ImageItem] = []
    seen: dict[str, str] = {}
    for row in table.rows:
        asset_id, species, split = _common(table, row, labels, seen)
        meta = {"asset_id": asset_id, **{k: table.integer(row, k) for k in ("height", "width") if k in table}}
        meta.update(table.extras(row))
        path = root / f"images_{source}" / f"{asset_id}.jpg"
        items.append(ImageItem(f"{source}/{asset_id}", path, species, split, source=source, meta=meta))
    return items


def _load_videos(root: Path, labels: dict[str, str]) -> list[VideoItem]:
    optional = ("fps", "frame_count", "duration_seconds", "target_second", "reliable_audio")
    table = read_table(root / "video_ml.csv", required=_ITEM_COLUMNS, optional=optional)
    items: list[VideoItem] = []
    seen: dict[str, str] = {}
    for row in table.rows:
        asset_id, species, split = _common(table, row, labels, seen)
        items.append(
            VideoItem(
                asset_id,
                root / "video_ml" / f"{asset_id}.mp4",
                species,
                split,
                fps=table.number(row, "fps"),
                frame_count=table.integer(row, "frame_count"),
                duration_s=table.number(row, "duration_seconds"),
                target_second=table.number(row, "target_second"),
                reliable_audio=table.flag(row, "reliable_audio"),
                meta=table.extras(row),
            )
        )
    return items
