"""``birdbridge archive probe {train,apply}``: classifiers from an archive's labels, and their detections."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import (
    AsJson,
    Date,
    Device,
    Format,
    LabelsDir,
    Latitude,
    Locale,
    Longitude,
    MinConf,
    RangeModelPath,
    Rank,
    RecordedTeacher,
    Sensitivity,
    SfThresh,
    SpeciesList,
    TaxonomyCsv,
    Week,
    comma_list,
    console,
    console_err,
)

app = typer.Typer(no_args_is_help=True, help="Probes: a classifier per label, trained on the archive's labelled "
                  "windows, that scores the whole archive.")

ArchiveFolder = Annotated[Path, typer.Argument(help="The archive folder.", show_default=False)]
ProbesFile = Annotated[Path | None, typer.Option(
    "--probes", "-p", help="The probes file (default: ARCHIVE/probes.json).")]


@app.command("train")
def train_cmd(
    archive: ArchiveFolder,
    labels: Annotated[str | None, typer.Option(
        "--labels", help="Labels to train, comma-separated (default: every label of the archive).")] = None,
    text_prior: Annotated[bool, typer.Option(
        "--text-prior", help="Start each probe from its species' teacher text embedding; the labels refine it.")
    ] = False,
    l2: Annotated[float, typer.Option("--l2", min=1e-6, help="L2 penalty of the logistic fit (1/C).")] = 0.1,
    prior_weight: Annotated[float, typer.Option(
        "--prior-weight", min=1e-6, help="Penalty on the text direction's scale relative to any other weight (with "
        "--text-prior); smaller ties the probe closer to the text query.")] = 1.0,
    background: Annotated[int, typer.Option(
        "--background", min=0, help="Random unlabelled windows used as weak negatives.")] = 100,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Folds of the cross-validated AP.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the folds and background draws.")] = 0,
    output: ProbesFile = None,
    taxonomy: TaxonomyCsv = None,
    teacher: RecordedTeacher = None,
    device: Device = None,
    as_json: AsJson = False,
) -> None:
    """Train a logistic probe per label; report each one's cross-validated average precision."""
    from rich.table import Table

    from birdbridge.archive.store import Archive
    from birdbridge.errors import BirdbridgeError
    from birdbridge.probes.train import default_probes_path, train_probes

    arc = Archive.open(archive)
    probes = train_probes(arc, labels=comma_list(labels) if labels else None, text_prior=text_prior, l2=l2,
                          prior_weight=prior_weight, background=background, folds=folds, seed=seed, teacher=teacher,
                          taxonomy=taxonomy, device=device)
    if not probes.probes:
        reasons = "; ".join(f"{label}: {why}" for label, why in probes.skipped.items())
        raise BirdbridgeError(f"no probe could be trained ({reasons}); label more windows with `birdbridge archive "
                              "label`")
    path = probes.write(output or default_probes_path(arc))
    if as_json:
        print(json.dumps({"file": str(path), "skipped": probes.skipped, "probes": {
            p.label: {"positives": p.positives, "negatives": p.negatives, "cv_ap": p.cv_ap, "folds": p.cv_folds}
            for p in probes.probes}}, indent=2))
    else:
        table = Table(title=f"probes of {arc.folder}{' (text prior)' if text_prior else ''}")
        for column in ("label", "positives", "negatives", "CV AP", "folds"):
            table.add_column(column, justify="left" if column == "label" else "right")
        for p in probes.probes:
            table.add_row(p.label, str(p.positives), str(p.negatives), "-" if p.cv_ap is None else f"{p.cv_ap:.3f}",
                          str(p.cv_folds or "-"))
        console.print(table)
        for label, why in probes.skipped.items():
            console.print(f"skipped {label}: {why}", highlight=False)
        console.print(f"wrote {len(probes.probes)} probes to {path}", highlight=False)


@app.command("apply")
def apply_cmd(
    archive: ArchiveFolder,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the detections.")],
    fmt: Format = "csv",
    probes_file: ProbesFile = None,
    min_conf: MinConf = 0.25,
    sensitivity: Sensitivity = 1.0,
    rank: Rank = "species",
    species_list: SpeciesList = None,
    lat: Latitude = None,
    lon: Longitude = None,
    week: Week = None,
    date: Date = None,
    sf_thresh: SfThresh = 0.03,
    range_model: RangeModelPath = None,
    taxonomy: TaxonomyCsv = None,
    locale: Locale = None,
    labels_dir: LabelsDir = None,
) -> None:
    """Score every window with the probes; write the detections (calibrated confidences) as search does (csv, raven,
    json or parquet).

    Labels that name species: --lat/--lon with --week (auto: each recording's date; a recording's own lat/lon where the
    archive records them) or --species-list remove the detections of species not expected there and then; --locale
    names them in a language (--labels-dir); --rank combines the confidences of a taxon's species (noisy-OR; family
    and order from --taxonomy).
    """
    from collections import Counter

    from birdbridge.archive.store import Archive
    from birdbridge.probes.apply import apply_probes
    from birdbridge.probes.train import ProbeSet, default_probes_path
    from birdbridge.search.formats import FILE_FORMATS, check_format, write_results
    from birdbridge.species.common_names import CommonNames
    from birdbridge.species.ranks import check_rank
    from birdbridge.species.where import RangeFilter, species_filter

    check_format(fmt, FILE_FORMATS)
    check_rank(rank)
    chosen = species_filter(RangeFilter.from_options(lat, lon, week, date, sf_thresh, range_model), species_list)
    names = CommonNames.load(labels_dir) if labels_dir is not None else None
    arc = Archive.open(archive)
    probes = ProbeSet.read(probes_file or default_probes_path(arc))
    found = apply_probes(arc, probes, min_conf=min_conf, sensitivity=sensitivity, rank=rank,
                         where=chosen, taxonomy=taxonomy, locale=locale,
                         names=names)
    band = arc.student.get("band_hz") or (0.0, 0.0)
    write_results(output, fmt, found.results, n_images=0, band_hz=(float(band[0]), float(band[1])))
    for note in found.notes:
        console_err.print(note, highlight=False, markup=False, soft_wrap=True)
    counts = Counter(h.key for r in found.results for w in r.windows for h in w.species)
    shown = ", ".join(f"{label} {counts.get(label, 0):,}" for label in (probes.labels if rank == "species"
                                                                         else sorted(counts)))
    console.print(f"wrote {sum(counts.values()):,} detections in {len(arc):,} windows to {output} ({shown or 'none'})",
                  highlight=False)
