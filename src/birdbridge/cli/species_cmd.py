"""``birdbridge species``: the species BirdNET's range model expects at a place in a week, as BirdNET's command."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import AsJson, Date, Latitude, Longitude, RangeModelPath, SfThresh, Week, console_err


def species_cmd(
    lat: Latitude = None,
    lon: Longitude = None,
    week: Week = None,
    date: Date = None,
    sf_thresh: SfThresh = 0.03,  # birdbridge.species.geo.SF_THRESH (a test checks they agree)
    sortby: Annotated[str, typer.Option("--sortby", help="freq (most likely first) or alpha.")] = "freq",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the list to this file (a folder: species_list.txt in it) instead of printing it."
    )] = None,
    as_json: AsJson = False,
    range_model: RangeModelPath = None,
) -> None:
    """The species BirdNET's range model expects at --lat/--lon in --week (or on --date; without either, all year):
    one `Genus species_Common Name` label per line, most likely first, as BirdNET-Analyzer's `species` command.

    The list is a species list for `search --species-list` and `gallery species`. BirdNET's models are licensed
    CC BY-NC-SA 4.0: non-commercial use only.
    """
    from birdbridge.errors import BirdbridgeError, InputError
    from birdbridge.species.geo import labels_text
    from birdbridge.species.where import RangeFilter
    from birdbridge.utils.atomic import write_text

    where = RangeFilter.from_options(lat, lon, week, date, sf_thresh, range_model)
    if where is None:
        raise BirdbridgeError("give --lat and --lon (and --week or --date; without either, the list is for all year)")
    if where.auto:
        raise InputError("--week", "auto reads a recording's date from its name; here give a week 1-48 or --date")
    started = time.perf_counter()
    species = where.species(sortby)
    seconds = time.perf_counter() - started
    if output is not None:
        target = output / "species_list.txt" if output.is_dir() else output
        write_text(target, labels_text(species))
        console_err.print(f"wrote {target}", highlight=False)
    elif as_json:
        rows = [{"label": sp.label, "scientific_name": sp.scientific_name, "common_name": sp.common_name,
                 "score": round(sp.score, 6)} for sp in species]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(labels_text(species))
    console_err.print(f"{len(species)} species {where.describe()} ({seconds:.2f} s)", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("species")(species_cmd)
