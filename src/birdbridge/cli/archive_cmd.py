"""``birdbridge archive {build,search,label,labels,info,export}``: window embeddings of recordings, searched,
labelled and exported (``archive probe`` is :mod:`birdbridge.cli.probe_cmd`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import (
    AnnEngine,
    AsJson,
    Backend,
    BatchSize,
    Date,
    Device,
    Format,
    Hop,
    LabelsDir,
    Latitude,
    Locale,
    Longitude,
    MinConf,
    MinSim,
    OptionalGallery,
    Precision,
    RangeModelPath,
    Rank,
    RayAddress,
    RecordedTeacher,
    Score,
    Sensitivity,
    SfThresh,
    SpeciesList,
    TaxonomyCsv,
    Week,
    Window,
    comma_list,
    console,
    console_err,
    report_failures,
)

app = typer.Typer(no_args_is_help=True, help="Archives of recordings: embed every window once; search them by "
                  "species name, picture or example; label them.")

SHOWN_FAILURES = 20

ArchiveFolder = Annotated[Path, typer.Argument(help="The archive folder.", show_default=False)]
ArchiveStudent = Annotated[str | None, typer.Option(
    "--model", "-m", help="The distilled student (a `birdbridge train` output folder); default: the one the archive "
    "records.")]


@app.command("build")
def build_cmd(
    archive: ArchiveFolder,
    recordings: Annotated[list[Path], typer.Argument(
        help="Recordings, or folders of recordings (searched recursively).", show_default=False)],
    model: ArchiveStudent = None,
    window: Window = None,
    hop: Hop = None,
    metadata: Annotated[Path | None, typer.Option(
        "--metadata", help="CSV with file (or path), date, time, site, lat, lon per recording; wins over the dates "
        "and sites read from file names.")] = None,
    add: Annotated[bool, typer.Option("--add", help="Add these recordings to an existing archive.")] = False,
    ann: Annotated[bool | None, typer.Option(
        "--ann/--no-ann", help="Build (or update) the ANN index; default: automatically from 200,000 windows.",
        show_default=False)] = None,
    ann_engine: AnnEngine = None,
    batch_size: BatchSize = 16,
    commit_every: Annotated[int, typer.Option(
        "--commit-every", min=1, help="Windows per committed (resumable) chunk of whole recordings.")] = 256,
    device: Device = None,
    backend: Backend = "auto",
    precision: Precision = "fp32",
    ray: RayAddress = None,
) -> None:
    """Embed every window of the recordings into an archive; run it again to resume, --add to add recordings.

    Dates, times and sites come from AudioMoth / Song Meter style file names (SITE_20240501_053000.wav) or
    --metadata. Channels are mixed to mono.
    """
    from birdbridge.archive.build import build_archive

    started = time.perf_counter()
    report = build_archive(recordings, archive, model, window_s=window, hop_s=hop, metadata=metadata, add=add,
                           batch_size=batch_size, device=device, progress=None, ann=ann, ann_engine=ann_engine,
                           commit_windows=commit_every,
                           backend=backend, precision=precision,
                           ray=ray)
    verb = "resumed" if report.resumed else "created" if report.created else "added to"
    console.print(f"{verb} archive {report.archive} in {time.perf_counter() - started:.1f} s", highlight=False)
    console.print(
        f"  added {report.files_added:,} recordings ({report.windows_added:,} windows, "
        f"{report.windows_per_s:,.1f} windows/s); {report.already:,} already there; {len(report.failures):,} skipped; "
        f"{report.files:,} recordings and {report.count:,} windows in all", highlight=False)
    console.print(f"  audio tower: {report.backend['backend']} {report.backend['precision']} "
                  f"({report.backend['runtime']})", highlight=False)
    if metadata is not None:
        console.print(f"  metadata: {report.metadata_updated:,} recordings already there updated; "
                      f"{report.metadata_unmatched:,} rows name none of the recordings", highlight=False)
    report_failures(report.failures, "recordings", shown=SHOWN_FAILURES)
    if report.files_added == 0 and report.already == 0 and report.failures:
        raise SystemExit(1)  # nothing could be embedded


@app.command("search")
def search_cmd(
    archive: ArchiveFolder,
    text: Annotated[str | None, typer.Option(
        "--text", help="A species (scientific name, BirdNET label; common names and codes with --taxonomy) or a "
        "description, through the teacher's text tower.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="A picture, through the teacher's image tower.")
                     ] = None,
    like: Annotated[str | None, typer.Option(
        "--like", help="An example recording, or a part of one: call.wav:12.5-17.5 (seconds).")] = None,
    taxonomy: TaxonomyCsv = None,
    free_text: Annotated[bool, typer.Option("--free-text", help="Embed --text as written, even if it names a "
                                            "species.")] = False,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many windows.")] = 20,
    min_score: Annotated[float | None, typer.Option(
        "--min-score", min=-1.0, max=1.0, help="Lowest cosine similarity shown.")] = None,
    per_file: Annotated[int | None, typer.Option("--per-file", min=1, help="At most this many hits per recording.")
                        ] = None,
    date_from: Annotated[str | None, typer.Option("--date-from", help="First date (YYYY-MM-DD).")] = None,
    date_to: Annotated[str | None, typer.Option("--date-to", help="Last date (YYYY-MM-DD).")] = None,
    time_from: Annotated[str | None, typer.Option("--time-from", help="Earliest time of day (HH:MM).")] = None,
    time_to: Annotated[str | None, typer.Option(
        "--time-to", help="Latest time of day (HH:MM); earlier than --time-from wraps midnight.")] = None,
    site: Annotated[list[str] | None, typer.Option("--site", help="Only this site (repeatable).")] = None,
    fmt: Format = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the hits to this file.")] = None,
    exact: Annotated[bool, typer.Option("--exact", help="Never use the ANN index.")] = False,
    gallery: OptionalGallery = None,
    top_k_species: Annotated[int, typer.Option(
        "--top-k-species", min=1, help="Candidate species per hit (with --gallery).")] = 3,
    score: Score = "confidence",
    min_conf: MinConf = 0.25,  # the defaults of birdbridge search
    sensitivity: Sensitivity = 1.0,
    min_sim: MinSim = 0.5,
    rank: Rank = "species",
    species_list: SpeciesList = None,
    lat: Latitude = None,
    lon: Longitude = None,
    week: Week = None,
    date: Date = None,
    sf_thresh: SfThresh = 0.03,
    range_model: RangeModelPath = None,
    locale: Locale = None,
    labels_dir: LabelsDir = None,
    model: ArchiveStudent = None,
    teacher: RecordedTeacher = None,
    device: Device = None,
) -> None:
    """The windows nearest to a species name, a picture or an example recording, best first.

    Filters (dates, times of day, sites) are exact; a window's date and time are those of its start. With --gallery
    each hit gets its candidate species (--top-k-species, scored as `birdbridge search` scores a window: --score,
    --min-conf, --rank, ...). --lat/--lon with --week (auto: each recording's date; a recording's own lat/lon where the
    archive records them) keep the candidates expected there and then, and search a species --text only where it is
    expected. --rank genus/family/order/auto also reads a --text that is no species as a taxon.
    """
    from birdbridge.archive.formats import check_format, format_text, hits_table, write_results
    from birdbridge.archive.store import Archive
    from birdbridge.errors import BirdbridgeError
    from birdbridge.search.archive_hits import archive_engine, archive_search
    from birdbridge.search.scoring import Scoring
    from birdbridge.species.common_names import CommonNames
    from birdbridge.species.where import RangeFilter, species_filter

    check_format(fmt)
    if fmt == "parquet" and output is None:
        raise BirdbridgeError("--format parquet writes a file: give --output")
    where = RangeFilter.from_options(lat, lon, week, date, sf_thresh, range_model)
    species_filter(where, species_list)
    scoring = Scoring(score, min_conf=min_conf, sensitivity=sensitivity, min_sim=min_sim, rank=rank)
    if gallery is None and (where is not None or rank != "species") and text is None:
        raise BirdbridgeError("--lat/--lon and --rank apply to the hits' candidate species (give --gallery) or to a "
                              "species or taxon --text")
    names = CommonNames.load(labels_dir) if labels_dir is not None and gallery is None else None
    arc = Archive.open(archive)
    engine = None if gallery is None else archive_engine(arc, gallery, model=model, teacher=teacher, device=device,
                                                         labels=labels_dir, locale=locale)
    results = archive_search(
        arc, engine=engine, top_k_species=top_k_species, scoring=scoring, where=where, species=species_list,
        locale=locale, names=names, text=text, image=image, like=like, top_k=top_k, min_score=min_score,
        per_file=per_file, date_from=date_from, date_to=date_to, time_from=time_from, time_to=time_to, sites=site,
        taxonomy=taxonomy, free_text=free_text, model=model, teacher=teacher, device=device,
        exact=True if exact else None)
    for note in results.notes:
        console_err.print(note, highlight=False, markup=False, soft_wrap=True)
    if output is not None:
        write_results(output, "csv" if fmt == "table" else fmt, results)
        console.print(f"wrote {len(results.hits)} hits to {output}", highlight=False)
    elif fmt == "table":
        console.print(hits_table(results))
    else:
        sys.stdout.write(format_text(fmt, results))


@app.command("label")
def label_cmd(
    archive: ArchiveFolder,
    source: Annotated[Path, typer.Argument(
        help="A Raven selection table, a labels CSV (file, start, end, label, value), or (with --label) a result "
        "file of `birdbridge archive search`.", show_default=False)],
    label: Annotated[str | None, typer.Option(
        "--label", help="Mark hits of a search result file with this label (with --yes/--no and --rows).")] = None,
    value: Annotated[bool | None, typer.Option("--yes/--no", help="The hits are (not) the label.",
                                               show_default=False)] = None,
    rows: Annotated[str | None, typer.Option("--rows", help="Ranks of the hits to mark: 1,3,5 (or all).")] = None,
    label_column: Annotated[str | None, typer.Option(
        "--label-column", help="Raven: the column holding the labels (default: Annotation, Label, Species, Common "
        "Name, Scientific Name or Class).")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", help="Raven: the recording of a table without Begin Path or Begin File.")] = None,
    min_overlap: Annotated[float, typer.Option(
        "--min-overlap", min=0.01, max=1.0, help="Fraction of the shorter of label and window that must overlap.")
    ] = 0.5,
    by: Annotated[str | None, typer.Option("--by", help="Who (or what) labels; default: your user name.")] = None,
) -> None:
    """Attach labels to the windows they overlap, with who gave them, when and from which file."""
    from birdbridge.archive.labels import hit_labels
    from birdbridge.archive.store import Archive
    from birdbridge.errors import BirdbridgeError

    arc = Archive.open(archive)
    if label is not None:
        if value is None or rows is None:
            raise BirdbridgeError("--label marks hits of a search result file: give --yes or --no, and --rows")
        ranks = None if rows.strip().lower() == "all" else _ranks(rows)
        spans = hit_labels(source, label, value, ranks)
        report = arc.add_labels(spans, who=by, source=str(source.resolve()))
    else:
        if value is not None or rows is not None:
            raise BirdbridgeError("--yes/--no and --rows go with --label (marking hits of a search result file)")
        report = arc.add_labels(source, who=by, min_overlap=min_overlap, label_column=label_column, file=file)
    console.print(f"added {report.added:,} labels to {report.windows:,} windows of {arc.folder} "
                  f"({report.already:,} already there) from {report.read:,} rows", highlight=False)
    report_failures(report.skipped, "label rows", shown=SHOWN_FAILURES)
    if report.added == 0 and report.already == 0 and report.skipped:
        raise SystemExit(1)


def _ranks(text: str) -> list[int]:
    from birdbridge.errors import BirdbridgeError

    try:
        ranks = [int(part) for part in comma_list(text)]
    except ValueError:
        raise BirdbridgeError(f"--rows {text!r}: give ranks as whole numbers, e.g. 1,3,5 (or all)") from None
    if not ranks:
        raise BirdbridgeError("--rows is empty: give ranks such as 1,3,5 (or all)")
    return ranks


@app.command("labels")
def labels_cmd(archive: ArchiveFolder, as_json: AsJson = False) -> None:
    """Windows labelled yes and no, per label (a window's last label of a name counts)."""
    from rich.table import Table

    from birdbridge.archive.store import Archive

    counts = Archive.open(archive).label_counts()
    if as_json:
        print(json.dumps({name: {"yes": c.yes, "no": c.no} for name, c in counts.items()}, indent=2))
        return
    if not counts:
        console.print(f"no labels in {archive}; add some with `birdbridge archive label`", highlight=False)
        return
    table = Table(title=f"labels of {archive}")
    for column in ("label", "yes", "no"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for name, c in counts.items():
        table.add_row(name, f"{c.yes:,}", f"{c.no:,}")
    console.print(table)


@app.command("info")
def info_cmd(archive: ArchiveFolder, as_json: AsJson = False) -> None:
    """Recordings, windows, hours, dates, sites, models, labels, ANN status and size on disk."""
    from birdbridge.archive.store import Archive

    info = Archive.open(archive).summary()
    if as_json:
        print(json.dumps(info.to_dict(), indent=2))
        return
    s, t, w = info.student, info.teacher, info.windowing
    first, last = info.dates
    sites = ", ".join(f"{name or '(none)'} {n:,}" for name, n in list(info.sites.items())[:10])
    lines = [
        f"archive   {info.archive}",
        f"windows   {info.windows:,} of {info.files:,} recordings ({info.hours:,.1f} h); {w.get('window_s', 0):g} s "
        f"every {w.get('hop_s', 0):g} s, {w.get('channels', '')}; {info.dim}-d float16",
        f"dates     {first or '-'} to {last or '-'}; {info.undated_files:,} recordings without a date",
        f"sites     {len(info.sites):,}: {sites}{', ...' if len(info.sites) > 10 else ''}",
        f"student   {s.get('name')} ({s.get('ref')}; fingerprint {s.get('fingerprint')})",
        f"teacher   {t['name']} ({t['ref']}; fingerprint {t['fingerprint']})",
        f"labels    {info.labels:,}",
        f"ANN       {'up to date' if info.ann.get('up_to_date') else 'none or stale: searches are exact'}",
        f"on disk   {info.size_bytes / 1e6:,.1f} MB",
    ]
    if (info.build or {}).get("complete") is False:
        lines.append("build     unfinished: run the same `birdbridge archive build` command again to resume")
    console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)


@app.command("export")
def export_cmd(
    archive: ArchiveFolder,
    output: Annotated[Path, typer.Argument(help="A new folder for the export.", show_default=False)],
    fmt: Annotated[str, typer.Option(
        "--to", help="hoplite (a perch-hoplite database; needs birdbridge[hoplite]) or parquet (windows.parquet with "
        "the embeddings, labels.parquet).")] = "hoplite",
) -> None:
    """Export the archive's windows, embeddings and labels to perch-hoplite or parquet."""
    from birdbridge.archive.export import export_archive
    from birdbridge.archive.store import Archive

    counts = export_archive(Archive.open(archive), output, fmt)
    console.print(f"exported {counts['windows']:,} windows of {counts['files']:,} recordings and "
                  f"{counts['labels']:,} labels to {output} ({fmt})", highlight=False)


def register(app_: typer.Typer) -> None:
    from birdbridge.cli import probe_cmd

    app.add_typer(probe_cmd.app, name="probe")
    app_.add_typer(app, name="archive")
