"""Open any supported dataset from one path: SSW60, iNatSounds, a ``dataset.yaml`` descriptor, or a manifest.

A descriptor is a small YAML mapping; paths in it are relative to its folder::

    type: manifest            # manifest | ssw60 | inatsounds | soundscape
    name: my-birds            # optional
    audio: audio.csv          # manifest: audio (required), images, videos, taxonomy, root
    images: images.parquet
    taxonomy: taxonomy.csv

SSW60 descriptors take ``root`` and ``image_sources``; iNatSounds ones ``annotations`` (a file or a
list; default: the train/val/test JSON files beside the YAML), ``root``, ``split`` and ``supercategory``.
Soundscape descriptors (annotated long recordings, a different kind of dataset) are opened with
:func:`birdbridge.datasets.soundscape.load_soundscapes`; :func:`load_dataset` refuses them with a clear error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from birdbridge.datasets.base import Dataset
from birdbridge.datasets.inatsounds import INATSOUNDS_SPLITS, load_inatsounds
from birdbridge.datasets.manifest import load_manifest
from birdbridge.datasets.ssw60 import IMAGE_SOURCES, SSW60_FILES, load_ssw60
from birdbridge.errors import InputError

__all__ = ["DESCRIPTOR_NAMES", "LAYOUTS", "detect_layout", "load_dataset", "load_descriptor", "read_descriptor"]

DESCRIPTOR_NAMES = ("dataset.yaml", "dataset.yml")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
LAYOUTS = (
    "a dataset.yaml descriptor (or a folder holding one)",
    "an SSW60 folder (taxa.csv + audio_ml.csv)",
    "an iNatSounds folder (train.json / val.json / test.json) or one of its JSON files",
    "a manifest table (.csv, .tsv or .parquet with columns path, species, split)",
)
_DESCRIPTOR_KEYS: dict[str, dict[str, str]] = {  # type -> key -> kind
    "manifest": {"audio": "path", "images": "path", "videos": "path", "taxonomy": "path", "root": "path"},
    "ssw60": {"root": "path", "image_sources": "strings"},
    "inatsounds": {"annotations": "paths", "root": "path", "split": "string", "supercategory": "strings"},
    "soundscape": {
        "recordings": "path", "annotations": "path", "annotation_format": "string", "species_column": "string",
        "taxonomy": "path", "min_confidence": "number", "window_s": "number", "hop_s": "number",
        "min_overlap_s": "number", "min_overlap_fraction": "number",
    },
}


def _layouts_hint() -> str:
    return "birdbridge reads " + "; ".join(LAYOUTS)


def detect_layout(ref: str | os.PathLike[str]) -> tuple[str, Path]:
    """``(layout, path)``: layout is ``descriptor``, ``ssw60``, ``inatsounds`` or ``manifest``.

    For a folder holding a descriptor, ``path`` is the descriptor file. Raises InputError listing the
    understood layouts when nothing matches.
    """
    path = Path(ref).expanduser()
    if not path.exists():
        raise InputError(str(path), "no such file or folder", "check the path")
    if path.is_dir():
        for descriptor in DESCRIPTOR_NAMES:
            if (path / descriptor).is_file():
                return "descriptor", path / descriptor
        present = [f for f in SSW60_FILES if (path / f).is_file()]
        if len(present) == len(SSW60_FILES):
            return "ssw60", path
        if any((path / f"{s}.json").is_file() for s in INATSOUNDS_SPLITS):
            return "inatsounds", path
        if present:
            missing = [f for f in SSW60_FILES if f not in present]
            raise InputError(str(path), f"looks like SSW60 but {', '.join(missing)} is missing", _layouts_hint())
        raise InputError(str(path), "folder holds no dataset birdbridge recognises", _layouts_hint())
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "descriptor", path
    if suffix == ".json":  # its sections are checked when loading, to parse a large file once
        return "inatsounds", path
    if suffix in TABLE_SUFFIXES:
        return "manifest", path
    raise InputError(str(path), f"unsupported dataset file type {suffix or '(no extension)'!r}", _layouts_hint())


def load_dataset(ref: str | os.PathLike[str]) -> Dataset:
    """Open a dataset from a folder, descriptor, iNatSounds JSON or manifest table (see :data:`LAYOUTS`)."""
    layout, path = detect_layout(ref)
    if layout == "descriptor":
        return load_descriptor(path)
    if layout == "ssw60":
        return load_ssw60(path)
    if layout == "inatsounds":
        files = [path / f"{s}.json" for s in INATSOUNDS_SPLITS] if path.is_dir() else [path]
        return load_inatsounds([f for f in files if f.is_file()])
    return load_manifest(path)


# ------------------------------------------------------------------------------------------ descriptor


def load_descriptor(path: str | os.PathLike[str]) -> Dataset:
    """Load the dataset a ``dataset.yaml`` describes; unknown keys or types raise InputError naming them."""
    kind, values, base, source = read_descriptor(path)
    if kind == "soundscape":
        raise InputError(
            source,
            "is a soundscape dataset (long recordings with time-stamped annotations), not clips of one species",
            "open it with birdbridge.datasets.load_soundscapes",
        )
    loaders: dict[str, Callable[[dict[str, Any], Path, str], Dataset]] = {
        "manifest": _load_manifest_descriptor,
        "ssw60": _load_ssw60_descriptor,
        "inatsounds": _load_inatsounds_descriptor,
    }
    return loaders[kind](values, base, source)


def read_descriptor(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any], Path, str]:
    """``(type, values, folder, source)`` of a ``dataset.yaml``: keys checked, paths made relative to its folder."""
    import yaml

    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(source, "file not found", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(source, f"cannot be read as UTF-8 text: {exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(source, f"{where}not valid YAML: {problem}") from None
    example = "e.g. 'type: manifest' and 'audio: audio.csv'"
    if not isinstance(doc, dict):
        raise InputError(source, "expected a mapping of keys to values", example)

    kind = doc.get("type")
    if not isinstance(kind, str) or kind not in _DESCRIPTOR_KEYS:
        shown = "missing" if kind is None else repr(kind)
        raise InputError(source, f"'type' is {shown}", f"use one of {', '.join(_DESCRIPTOR_KEYS)}")
    allowed = {"type": "string", "name": "string", **_DESCRIPTOR_KEYS[kind]}
    unknown = [str(k) for k in doc if k not in allowed]
    if unknown:
        raise InputError(
            source,
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for type {kind!r}",
            f"allowed keys: {', '.join(allowed)}",
        )
    base = path.parent
    values = {k: _value(source, k, v, allowed[k], base) for k, v in doc.items() if k != "type" and v is not None}
    return kind, values, base, source


def _value(source: str, key: str, value: Any, kind: str, base: Path) -> Any:
    def bad(expected: str) -> InputError:
        return InputError(source, f"{key!r} must be {expected}, got {value!r}")

    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("a number")
        return float(value)
    if kind in ("string", "path"):
        if not isinstance(value, str) or not value.strip():
            raise bad("a non-empty string")
        return value.strip() if kind == "string" else base / Path(value.strip()).expanduser()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
        raise bad("a string or a list of strings")
    if kind == "paths":
        if not items:
            raise bad("a file name or a non-empty list of file names")
        return [base / Path(v.strip()).expanduser() for v in items]
    return [v.strip() for v in items]


def _load_manifest_descriptor(values: dict[str, Any], base: Path, source: str) -> Dataset:
    if "audio" not in values:
        raise InputError(source, "type 'manifest' needs an 'audio' key", "e.g. 'audio: audio.csv'")
    return load_manifest(
        values["audio"],
        taxonomy=values.get("taxonomy"),
        images=values.get("images"),
        videos=values.get("videos"),
        root=values.get("root"),
        name=values.get("name") or base.resolve().name,
    )


def _load_ssw60_descriptor(values: dict[str, Any], base: Path, source: str) -> Dataset:
    kwargs: dict[str, Any] = {"name": values.get("name", "ssw60")}
    if "image_sources" in values:
        unknown = [s for s in values["image_sources"] if s not in IMAGE_SOURCES]
        if unknown:
            shown = ", ".join(map(repr, unknown))
            raise InputError(source, f"'image_sources' has unknown {shown}", f"use {', '.join(IMAGE_SOURCES)}")
        kwargs["image_sources"] = values["image_sources"]
    return load_ssw60(values.get("root", base), **kwargs)


def _load_inatsounds_descriptor(values: dict[str, Any], base: Path, source: str) -> Dataset:
    files = values.get("annotations")
    if files is None:
        files = [base / f"{s}.json" for s in INATSOUNDS_SPLITS if (base / f"{s}.json").is_file()]
    if not files:
        raise InputError(
            source,
            "type 'inatsounds' needs 'annotations', or train.json / val.json / test.json beside it",
            "e.g. 'annotations: [train.json, val.json]'",
        )
    return load_inatsounds(
        files,
        values.get("root"),
        split=values.get("split"),
        supercategory=values.get("supercategory"),
        name=values.get("name", "inatsounds"),
    )
