"""Common names in the user's language on search results (``--locale``); the names are
:mod:`birdbridge.species.common_names`'."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from birdbridge.search.results import FileResult, ImageHit, SpeciesHit
from birdbridge.species.common_names import CommonNames

GALLERY_LABELS = "labels"
"""The folder of a gallery whose label files give its common names in other languages (without ``--labels-dir``)."""


def gallery_names(folder: str | os.PathLike[str]) -> CommonNames:
    """The names of the label files in the gallery's ``labels/`` folder (English only when it has none)."""
    labels = Path(folder) / GALLERY_LABELS
    return CommonNames.load(labels) if labels.is_dir() else CommonNames()


def localize_hits(species: Sequence[SpeciesHit], images: Sequence[ImageHit], names: Mapping[str, str] | None
                  ) -> tuple[list[SpeciesHit], list[ImageHit]]:
    """The hits with the common names of ``names`` (``{species key: name}``; None: as they are)."""
    if names is None:
        return list(species), list(images)
    return ([replace(h, common_name=names.get(h.key, h.common_name or h.scientific_name)) for h in species],
            [replace(i, common_name=names.get(i.species, i.common_name or i.species)) for i in images])


def localize_results(results: list[FileResult], names: Mapping[str, str] | None) -> list[FileResult]:
    """``results`` with the common names of ``names`` in every window (changed in place; None: as they are)."""
    if names is not None:
        for result in results:
            for window in result.windows:
                window.species, window.images = localize_hits(window.species, window.images, names)
    return results


def localize_query(query: dict[str, Any], names: CommonNames, locale: str | None) -> dict[str, Any]:
    """A query's description (an archive search's) with the common name of the species it reads as in ``locale``
    (None: as it is)."""
    if locale is None or query.get("read_as") != "species":
        return query
    name = names.names(locale, [(query["species"], query.get("common_name"))])[query["species"]]
    return {**query, "common_name": name}
