"""``birdbridge search``: recordings (or a text, a picture, or similar recordings) against a gallery."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import (
    Backend,
    BatchSize,
    Date,
    Device,
    Format,
    GalleryFolder,
    Hop,
    LabelsDir,
    Latitude,
    Locale,
    Longitude,
    MinConf,
    MinSim,
    Precision,
    RangeModelPath,
    Rank,
    RayAddress,
    RecordedTeacher,
    Recordings,
    ResultsOutput,
    Score,
    Sensitivity,
    SfThresh,
    SpeciesList,
    Student,
    Week,
    Window,
    command_line,
    console,
    console_err,
    report_failures,
)


def search_cmd(
    gallery: GalleryFolder,
    inputs: Recordings = None,
    model: Student = None,
    text: Annotated[str | None, typer.Option("--text", help="Search pictures (and species) by text instead.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Search pictures similar to this picture.")] = None,
    like: Annotated[Path | None, typer.Option("--like", help="Find similar recordings in this embedding store "
                                              "(.parquet from `birdbridge embed audio`).")] = None,
    window: Window = None,
    hop: Hop = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Species per window.")] = 5,
    images: Annotated[int, typer.Option("--images", min=0, help="Pictures per window.")] = 5,
    score: Score = "confidence",
    min_conf: MinConf = 0.25,  # the defaults of birdbridge.search.search (a test checks they agree)
    sensitivity: Sensitivity = 1.0,
    min_sim: MinSim = 0.5,
    min_score: Annotated[float, typer.Option(
        "--min-score", min=0.0, max=1.0, help="Lowest softmax score shown, with --score softmax.")] = 0.05,
    rank: Rank = "species",
    species_list: SpeciesList = None,
    lat: Latitude = None,
    lon: Longitude = None,
    week: Week = None,
    date: Date = None,
    sf_thresh: SfThresh = 0.03,  # birdbridge.species.geo.SF_THRESH (a test checks they agree)
    range_model: RangeModelPath = None,
    merge: Annotated[bool, typer.Option("--merge", help="Merge consecutive windows with the same top species.")
                     ] = False,
    fmt: Format = "table",
    output: ResultsOutput = None,
    combined: Annotated[bool, typer.Option("--combined", help="One file for all recordings.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo recordings whose results already exist.")
                         ] = False,
    birdnet_names: Annotated[bool, typer.Option(
        "--birdnet-names", help="Name result files as BirdNET-Analyzer does (<stem>.BirdNET.results.csv, "
        "<stem>.BirdNET.selection.table.txt, ...), so that its segments and review tools find them.")] = False,
    additional_columns: Annotated[list[str] | None, typer.Option(
        "--additional-columns", "--additional_columns", help="Settings added to each csv/parquet row, comma-separated "
        "or repeated (BirdNET-Analyzer's: lat, lon, week, overlap, sensitivity, min_conf, species_list, model; and "
        "sf_thresh, score, threshold, window, hop, gallery, teacher).")] = None,
    locale: Locale = None,
    labels_dir: LabelsDir = None,
    teacher: RecordedTeacher = None,
    device: Device = None,
    backend: Backend = "auto",
    precision: Precision = "fp32",
    batch_size: BatchSize = 16,
    channel: Annotated[str, typer.Option(
        "--channel", help="mix (the channels averaged), left, right, or a channel number from 1: search that channel "
        "of each recording (one without it is reported and skipped); Raven's Channel column names it.")] = "mix",
    ray: RayAddress = None,
) -> None:
    """Species detected, with confidences, and the closest pictures for each window of each recording.

    Runs that write files also write birdbridge.search-params.json beside them: the model, teacher, gallery, window,
    thresholds, species filter, version and command line.

    A window where no species reaches --min-conf, or that sounds more like the gallery's background (wind, rain,
    ...) than like any bird, has no detection. --species-list keeps only the listed species (those the gallery
    lacks are left out with a warning). --lat/--lon with --week (or --date, or --week auto for each recording's date
    from its name) keep the species BirdNET's range model expects there and then (needs birdbridge[geo]).
    """
    from birdbridge.audio.io import parse_channel
    from birdbridge.audio.windows import check_window_args
    from birdbridge.errors import BirdbridgeError
    from birdbridge.search import SearchEngine, search
    from birdbridge.search.formats import check_format, format_text, results_summary, results_table
    from birdbridge.search.params import check_columns
    from birdbridge.search.scoring import Scoring
    from birdbridge.species.where import RangeFilter, species_filter

    check_window_args(window, hop)  # before the model and gallery are loaded
    try:
        parse_channel(channel)
    except ValueError as exc:
        raise BirdbridgeError(f"--channel: {exc}") from None
    where = RangeFilter.from_options(lat, lon, week, date, sf_thresh, range_model)
    species_filter(where, species_list)
    Scoring(score, min_conf=min_conf, sensitivity=sensitivity, min_sim=min_sim, min_score=min_score, rank=rank)
    check_format(fmt)
    if like is not None and rank != "species":
        raise BirdbridgeError("--like finds similar recordings, not species: --rank does not apply to it (leave it "
                              "out, or search the recordings themselves with --rank)")
    if (additional_columns or birdnet_names) and (output is None or fmt == "table"):
        raise BirdbridgeError("--birdnet-names and --additional-columns are for result files: give --format and "
                              "--output")
    check_columns(additional_columns)
    if fmt == "parquet" and output is None and not (text or image or like):
        raise BirdbridgeError("--format parquet writes files: give --output (a folder, or a file with --combined)")
    engine = SearchEngine.open(gallery, model, teacher=teacher, device=device, labels=labels_dir, locale=locale,
                               backend=backend, precision=precision)
    if text or image:
        hits = (engine.search_texts([text], n_images=images, top_k=top_k, rank=rank) if text
                else engine.search_images([image], n_images=images, top_k=top_k, rank=rank))[0]
        _print_query(hits, text or str(image), fmt)
        return
    if not inputs:
        raise BirdbridgeError("give recordings (files or folders), or --text / --image")
    if like is not None:
        _print_like(engine, inputs, like, top_k, window, hop, fmt)
        return
    report = search(inputs, engine=engine, window_s=window, hop_s=hop, top_k=top_k, n_images=images,
                    score=score, min_conf=min_conf, sensitivity=sensitivity, min_sim=min_sim, min_score=min_score,
                    rank=rank, species=where or species_list, merge=merge,
                    output=None if fmt == "table" else output, format=fmt, combined=combined, overwrite=overwrite,
                    birdnet_names=birdnet_names, additional_columns=additional_columns, command=command_line(),
                    batch_size=batch_size, channel=channel, ray=ray)
    if fmt == "table":
        console.print(results_table(report.results, images))
        console.print(results_summary(report.results), highlight=False)
    elif output is None:  # csv, raven or json on standard output
        sys.stdout.write(format_text(fmt, report.results, n_images=images, band_hz=engine.band_hz))
    for note in report.notes:
        console_err.print(note, highlight=False)
    if report.skipped:
        console_err.print(f"skipped {len(report.skipped)} recordings already done (use --overwrite to redo)")
    if report.written:
        console_err.print(f"wrote {len(report.written)} result file(s) under {output}")
    report_failures(report.failures, "recordings")


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)


def _print_query(hits, query: str, fmt: str) -> None:
    from rich.table import Table

    from birdbridge.search.results import hits_to_dict

    species, pictures = hits
    if fmt == "json":
        print(json.dumps({"query": query, **hits_to_dict(species, pictures)}, indent=2))
        return
    table = Table(title=f"closest pictures to {query!r}")
    for column in ("rank", "picture", "species", "score"):
        table.add_column(column)
    for rank, hit in enumerate(pictures, start=1):
        table.add_row(str(rank), hit.path or hit.id, hit.common_name or hit.species, f"{hit.score:.3f}")
    console.print(table)
    if species:
        console.print("species: " + ", ".join(
            f"{h.label if h.taxon_rank != 'species' else h.common_name or h.scientific_name} ({h.score:.2f})"
            for h in species))


def _print_like(engine, inputs: list[Path], store: Path, k: int, window: float | None, hop: float | None,
                fmt: str) -> None:
    from rich.table import Table

    from birdbridge.search.like import search_like

    rows, failures = search_like(inputs, store, engine.student, k=k, window_s=window, hop_s=hop)
    if fmt == "json":
        print(json.dumps([row.to_dict() for row in rows], indent=2))
    else:
        out = Table(title=f"similar recordings in {store}")
        for column in ("file", "start (s)", "similar recording", "at (s)", "score"):
            out.add_column(column)
        for row in rows:
            for rank, n in enumerate(row.similar):
                out.add_row(Path(row.file).name if rank == 0 else "", f"{row.start_s:.1f}" if rank == 0 else "",
                            Path(n.name).name, "" if n.start_s is None else f"{n.start_s:.1f}", f"{n.score:.3f}")
        console.print(out)
    report_failures(failures, "recordings")
