"""iNatSounds (Chasmai et al. 2024): COCO-style JSON per split with ``audio``, ``categories``, ``annotations``.

``file_name`` is relative to the dataset root (``train/<audio_dir_name>/<recording>.wav``); the root
defaults to the folder of each JSON file. Errors name the JSON file and the entry (``annotations[17]``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from birdbridge.datasets.base import AudioItem, Dataset, absolute_root, resolve_path
from birdbridge.errors import InputError
from birdbridge.species.taxonomy import Species, Taxonomy, normalize_rank_name

__all__ = ["INATSOUNDS_SPLITS", "load_inatsounds"]

INATSOUNDS_SPLITS = ("train", "val", "test")
_SECTIONS = ("audio", "categories", "annotations")
_RANK_FIELDS = ("kingdom", "phylum", "class", "order", "family")
_AUDIO_FIELDS = ("id", "file_name", "duration")
_PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class _Category:
    species: Species
    supercategory: str | None
    source: str
    entry: str


def load_inatsounds(
    annotations: _PathLike | Sequence[_PathLike],
    root: _PathLike | None = None,
    *,
    split: str | None = None,
    supercategory: str | Sequence[str] | None = None,
    name: str = "inatsounds",
) -> Dataset:
    """Load one or more iNatSounds split files (``train.json``, ``val.json``, ``test.json``).

    The split of each file is its stem unless ``split`` is given. Categories are merged across files
    (the same id defined differently is an error) and ordered by id; ``supercategory`` (e.g. ``"Aves"``)
    keeps only those categories and their recordings. Audio ids are the JSON ids as strings.
    """
    files = [Path(annotations)] if isinstance(annotations, (str, os.PathLike)) else [Path(a) for a in annotations]
    if not files:
        raise InputError("annotations", "no iNatSounds JSON file given", "give train.json, val.json and/or test.json")
    base_root = absolute_root(root) if root is not None else None
    docs = [(path, _read_json(path)) for path in files]

    categories: dict[str, _Category] = {}
    per_file: list[dict[str, _Category]] = []
    for path, doc in docs:
        own = _parse_categories(str(path), doc["categories"])
        for cid, cat in own.items():
            prev = categories.setdefault(cid, cat)
            if (prev.species, prev.supercategory) != (cat.species, cat.supercategory):
                raise InputError(
                    cat.source,
                    f"{cat.entry}: category id {cid} is defined differently in {prev.source} {prev.entry}",
                    "use annotation files from the same iNatSounds release",
                )
        per_file.append(own)

    kept = _select_categories(categories, supercategory, files)
    taxonomy = _taxonomy(categories, kept)
    audio: list[AudioItem] = []
    seen_ids: dict[str, str] = {}
    for (path, doc), own in zip(docs, per_file, strict=True):
        folder = base_root if base_root is not None else absolute_root(path.parent)
        split_name = split or path.stem
        audio += _parse_audio(path, doc, own, kept, folder, split_name, seen_ids)
    return Dataset(name, base_root or absolute_root(files[0].parent), taxonomy, audio)


def _read_json(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(source, "file not found", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(source, f"cannot be read as UTF-8 text: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(source, f"line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from None
    hint = "expected an iNatSounds annotation file with 'audio', 'categories' and 'annotations' lists"
    if not isinstance(doc, dict):
        raise InputError(source, f"the top level is a {type(doc).__name__}, not an object", hint)
    missing = [k for k in _SECTIONS if k not in doc]
    if missing:
        found = ", ".join(repr(k) for k in doc) or "none"
        raise InputError(source, f"missing {', '.join(map(repr, missing))} (found keys: {found})", hint)
    for key in _SECTIONS:
        if not isinstance(doc[key], list):
            raise InputError(source, f"{key!r} is a {type(doc[key]).__name__}, not a list", hint)
    return doc


def _entry(source: str, section: str, index: int, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(source, f"{section}[{index}]: expected an object, got {type(value).__name__}")
    return value


def _id(source: str, entry: str | tuple[str, int], obj: dict[str, Any], field: str) -> str:
    """An integer or string id as text; ``entry`` may be ``(section, index)``, formatted only for errors."""
    value = obj.get(field)
    if type(value) is int:  # the common case, checked first: this runs for every entry
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    where = entry if isinstance(entry, str) else f"{entry[0]}[{entry[1]}]"
    shown = "missing" if field not in obj else f"{value!r}"
    raise InputError(source, f"{where}: {field!r} must be an integer or a string, got {shown}")


def _string(obj: dict[str, Any], field: str) -> str:
    value = obj.get(field)
    return " ".join(value.split()) if isinstance(value, str) else ""


def _parse_categories(source: str, entries: list[Any]) -> dict[str, _Category]:
    out: dict[str, _Category] = {}
    for i, raw in enumerate(entries):
        entry = f"categories[{i}]"
        obj = _entry(source, "categories", i, raw)
        cid = _id(source, entry, obj, "id")
        if cid in out:
            raise InputError(source, f"{entry}: duplicate category id {cid} (first at {out[cid].entry})")
        genus, epithet = _string(obj, "genus"), _string(obj, "specific_epithet")
        missing = [f for f, v in (("genus", genus), ("specific_epithet", epithet)) if not v]
        if missing:
            label = _string(obj, "name") or f"id {cid}"
            raise InputError(
                source,
                f"{entry} ({label}): missing {' and '.join(map(repr, missing))}",
                "every category needs its genus and specific epithet",
            )
        ranks = [normalize_rank_name(_string(obj, f)) for f in _RANK_FIELDS]
        try:
            species = Species(*ranks, genus, epithet, _string(obj, "common_name") or None)
        except ValueError as exc:
            raise InputError(source, f"{entry} (id {cid}): {exc}") from None
        out[cid] = _Category(species, _string(obj, "supercategory") or None, source, entry)
    return out


def _select_categories(
    categories: dict[str, _Category], supercategory: str | Sequence[str] | None, files: list[Path]
) -> list[str]:
    """Category ids to keep, ordered by id."""
    ids = sorted(categories, key=lambda c: (0, int(c), "") if c.lstrip("-").isdigit() else (1, 0, c))
    if supercategory is None:
        return ids
    names = [supercategory] if isinstance(supercategory, str) else list(supercategory)
    wanted = {s.casefold() for s in names}
    kept = [c for c in ids if (categories[c].supercategory or "").casefold() in wanted]
    if not kept:
        available = sorted({c.supercategory for c in categories.values() if c.supercategory})
        raise InputError(
            ", ".join(map(str, files)),
            f"no category has supercategory {', '.join(map(repr, names))}",
            f"supercategories found: {', '.join(available) or 'none'}",
        )
    return kept


def _taxonomy(categories: dict[str, _Category], kept: list[str]) -> Taxonomy:
    for what, get in (
        ("species", lambda sp: sp.key),
        ("common name", lambda sp: sp.common_name.casefold() if sp.common_name else None),
    ):
        first: dict[str, _Category] = {}
        for cid in kept:
            cat = categories[cid]
            value = get(cat.species)
            if value is None:
                continue
            if value in first:
                prev = first[value]
                raise InputError(
                    cat.source,
                    f"{cat.entry}: the {what} {value!r} is also category {prev.entry} of {prev.source}",
                    "each species must be one category",
                )
            first[value] = cat
    return Taxonomy(categories[cid].species for cid in kept)


def _duration(source: str, entry: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise InputError(source, f"{entry}: 'duration' is not a number of seconds: {value!r}")
    return number


def _parse_audio(
    path: Path,
    doc: dict[str, Any],
    own: dict[str, _Category],
    kept: list[str],
    folder: Path,
    split: str,
    seen_ids: dict[str, str],
) -> list[AudioItem]:
    source = str(path)
    audio: dict[str, tuple[int, dict[str, Any]]] = {}  # id -> (index in "audio", object)
    for i, raw in enumerate(doc["audio"]):
        obj = _entry(source, "audio", i, raw)
        aid = _id(source, ("audio", i), obj, "id")
        if aid in audio:
            raise InputError(source, f"audio[{i}]: duplicate audio id {aid} (first at audio[{audio[aid][0]}])")
        if aid in seen_ids:
            raise InputError(source, f"audio[{i}]: audio id {aid} is also {seen_ids[aid]}", "audio ids must be unique")
        file_name = obj.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            raise InputError(source, f"audio[{i}] (id {aid}): 'file_name' is missing or empty")
        audio[aid] = (i, obj)

    labels: dict[str, tuple[str, int]] = {}  # audio id -> (category id, index in "annotations")
    annotation_ids: dict[str, int] = {}
    for j, raw in enumerate(doc["annotations"]):
        obj = _entry(source, "annotations", j, raw)
        entry = ("annotations", j)
        if "id" in obj:
            ann_id = _id(source, entry, obj, "id")
            if ann_id in annotation_ids:
                first = annotation_ids[ann_id]
                raise InputError(
                    source, f"annotations[{j}]: duplicate annotation id {ann_id} (first at annotations[{first}])"
                )
            annotation_ids[ann_id] = j
        aid, cid = _id(source, entry, obj, "audio_id"), _id(source, entry, obj, "category_id")
        if aid not in audio:
            raise InputError(
                source, f"annotations[{j}]: audio_id {aid} is not in 'audio'", "the file looks truncated or edited"
            )
        if cid not in own:
            raise InputError(source, f"annotations[{j}]: category_id {cid} is not in 'categories'")
        if aid in labels and labels[aid][0] != cid:
            raise InputError(
                source,
                f"annotations[{j}]: audio {aid} is already labelled category {labels[aid][0]} "
                f"by annotations[{labels[aid][1]}]",
                "one species per recording is supported",
            )
        labels.setdefault(aid, (cid, j))

    unlabelled = [i for aid, (i, _) in audio.items() if aid not in labels]
    if unlabelled:
        more = f" and {len(unlabelled) - 1} more" if len(unlabelled) > 1 else ""
        raise InputError(
            source,
            f"audio[{unlabelled[0]}]{more}: audio without an annotation",
            "every recording needs a category; use the labelled release of this split",
        )

    keep = set(kept)
    keys = {cid: cat.species.key for cid, cat in own.items()}
    items: list[AudioItem] = []
    for aid, (i, obj) in audio.items():
        cid = labels[aid][0]
        seen_ids[aid] = f"audio[{i}] of {source}"
        if cid not in keep:
            continue
        meta = {k: v for k, v in obj.items() if k not in _AUDIO_FIELDS}
        meta["category_id"] = _as_json_id(cid)
        path = resolve_path(folder, obj["file_name"].strip())
        duration = _duration(source, f"audio[{i}]", obj.get("duration"))
        items.append(AudioItem(aid, path, keys[cid], split, duration, meta))
    return items


def _as_json_id(value: str) -> int | str:
    return int(value) if value.lstrip("-").isdigit() else value
