"""Where and when each recording of an archive was made, for BirdNET's range model (``--lat/--lon/--week``).

A :class:`~birdbridge.species.where.RangeFilter` applies to an archive's recordings one by one:

* **place**: a recording's own ``lat``/``lon`` (from the ``--metadata`` CSV at build time) where the archive records
  them, else the filter's ``--lat``/``--lon``;
* **week**: the filter's (``--week N``, ``--date``, or the whole year); with ``--week auto`` each recording's date
  (from its file name or the metadata CSV). A recording without a date then gets the whole year's list (BirdNET's
  week -1), and is reported (:attr:`RecordingPlaces.undated`): it is neither dropped nor filtered by a week it lacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from birdbridge.archive.store import Archive
from birdbridge.species.taxonomy import Taxonomy
from birdbridge.species.where import RangeFilter


@dataclass
class RecordingPlaces:
    """Per recording (file id), the range filter of its place and week; the paths of recordings without a date under
    ``--week auto`` and of those placed by their own recorded position."""

    filters: dict[int, RangeFilter] = field(default_factory=dict)
    undated: list[str] = field(default_factory=list)
    positioned: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        """What the summary says about them."""
        notes = []
        if self.positioned:
            notes.append(f"range filter: {len(self.positioned):,} recordings placed at their own lat/lon (from the "
                         "archive's metadata), the others at --lat/--lon")
        if self.undated:
            shown = ", ".join(self.undated[:3]) + (" …" if len(self.undated) > 3 else "")
            notes.append(f"--week auto: {len(self.undated):,} recordings have no date and were filtered with the whole "
                         f"year's list ({shown}); give their dates with `birdbridge archive build --metadata`")
        return notes


def recording_places(archive: Archive, where: RangeFilter, files: Iterable[int] | None = None) -> RecordingPlaces:
    """The range filter of each recording (``files``: their ids; default all) as the module docs say."""
    wanted = None if files is None else set(files)
    places = RecordingPlaces()
    for f in archive.files():
        if wanted is not None and f.id not in wanted:
            continue
        own = f.lat is not None and f.lon is not None
        if own:
            places.positioned.append(f.path)
        if where.auto and f.date is None:
            places.undated.append(f.path)
            place = RangeFilter(where.lat, where.lon, None, where.sf_thresh, where.model)
            places.filters[f.id] = place.at(lat=f.lat if own else None, lon=f.lon if own else None)
        else:
            places.filters[f.id] = where.at(f.date, f.lat if own else None, f.lon if own else None)
    return places


def expected_in(place: RangeFilter, species: Taxonomy, cache: dict[RangeFilter, bool] | None = None) -> bool:
    """Whether BirdNET's range model expects any of ``species`` at ``place`` (memoised in ``cache``)."""
    if cache is not None and place in cache:
        return cache[place]
    found = len(place.match(species).taxonomy) > 0
    if cache is not None:
        cache[place] = found
    return found


__all__ = ["RecordingPlaces", "expected_in", "recording_places"]
