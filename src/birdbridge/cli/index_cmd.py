"""``birdbridge index`` (build or add to an image gallery) and ``birdbridge gallery {info,ann,species,background}``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import (
    ANN_ENGINE_HELP,
    AnnEngine,
    AsJson,
    BatchSize,
    Device,
    Forms,
    GalleryOutput,
    RayAddress,
    RecordedTeacher,
    SpeciesList,
    TaxonomyCsv,
    Teacher,
    Templates,
    console,
    report_failures,
)

gallery_app = typer.Typer(no_args_is_help=True, help="Inspect and maintain image galleries (see `birdbridge index`).")

SHOWN_FAILURES = 20
VOCABULARY_HELP = ("A background vocabulary file, one class a line: `label: prompt; prompt` (default: wind, rain, "
                   "running water, insects, frogs, human speech, engine, silence).")


def register(app: typer.Typer) -> None:
    app.command("index")(index_cmd)


def _forms(text: str) -> list[str]:
    return [f.strip() for f in text.split(",") if f.strip()]


def _species_source(species_list: Path | None, taxonomy: Path | None):
    """The species list or taxonomy as a Taxonomy (:func:`birdbridge.species.as_taxonomy`), or None."""
    from birdbridge.errors import BirdbridgeError
    from birdbridge.species import as_taxonomy

    if species_list is not None and taxonomy is not None:
        raise BirdbridgeError("give either a species list or a taxonomy, not both")
    source = species_list if species_list is not None else taxonomy
    return None if source is None else as_taxonomy(source)


def index_cmd(
    images: Annotated[list[Path], typer.Option(
        "--images", "-i", help="Image sources: a folder of species subfolders, a manifest (.csv/.tsv/.parquet with "
        "path, species), or precomputed teacher embeddings (.parquet with an embedding column). More may follow as "
        "arguments.")],
    output: GalleryOutput,
    more: Annotated[list[Path] | None, typer.Argument(
        help="More image sources (after --images).", show_default=False)] = None,
    teacher: Teacher = "bioclip-2",
    add: Annotated[bool, typer.Option(
        "--add", help="Append to an existing gallery (the teacher must be the same).")] = False,
    ann: Annotated[bool | None, typer.Option(
        "--ann/--no-ann", help="Build (or update) the ANN index; default: automatically from 200,000 images.",
        show_default=False)] = None,
    ann_engine: AnnEngine = None,
    species_list: SpeciesList = None,
    taxonomy: TaxonomyCsv = None,
    forms: Forms = "taxonomic_common",
    templates: Templates = "openai",
    batch_size: BatchSize = 32,
    commit_every: Annotated[int, typer.Option(
        "--commit-every", min=1, help="Images per committed (resumable) chunk.")] = 256,
    background: Annotated[Path | None, typer.Option("--background", help=VOCABULARY_HELP)] = None,
    no_background: Annotated[bool, typer.Option(
        "--no-background", help="Write no background vocabulary (searches then tell no wind or rain from birds).")
    ] = False,
    species_from_filename: Annotated[bool, typer.Option(
        "--species-from-filename", help="Folders of pictures may be flat: each file's name names its species "
        "(`Pica hudsonia 3.jpg`, `Pica_hudsonia_003.png`; a trailing number is dropped).")] = False,
    species_unknown: Annotated[bool, typer.Option(
        "--species-unknown", help="Keep pictures whose species nothing names (lying directly in a source folder, or "
        "with --species-from-filename named after none) as pictures of unknown species: searches retrieve them, "
        "no species claims them.")] = False,
    device: Device = None,
    ray: RayAddress = None,
) -> None:
    """Build an image gallery (or add to one with --add); a killed build resumes when run again.

    The species index holds the species of --species-list or --taxonomy (listed species without pictures are
    kept: open-vocabulary ranking), or else those of the pictures. Beside it goes a background vocabulary (wind,
    rain, running water, insects, frogs, human speech, engine, silence; or --background FILE), so that searches
    name no bird in windows that sound more like those.
    """
    from birdbridge.errors import BirdbridgeError
    from birdbridge.gallery.build import build_gallery

    if background is not None and no_background:
        raise BirdbridgeError("give either --background FILE or --no-background, not both")

    started = time.perf_counter()
    report = build_gallery(
        [*images, *(more or [])], output, teacher, add=add, batch_size=batch_size, device=device, progress=None,
        ann=ann, ann_engine=ann_engine, species=_species_source(species_list, taxonomy), forms=_forms(forms),
        templates=templates,
        commit_every=commit_every, background=False if no_background else background or True,
        species_from_filename=species_from_filename, species_unknown=species_unknown, ray=ray,
    )
    verb = "resumed" if report.resumed else "created" if report.created else "added to"
    console.print(f"{verb} gallery {report.gallery} in {time.perf_counter() - started:.1f} s", highlight=False)
    console.print(
        f"  added {report.added:,} images; {report.skipped_existing:,} already there; "
        f"{report.n_failures:,} skipped; {report.count:,} in all", highlight=False,
    )
    if report.species is not None:
        sp = report.species
        console.print(f"  species index: {sp.total:,} species ({sp.with_images:,} with images, "
                      f"{sp.without_images:,} text only)", highlight=False)
    console.print(f"  background: {_background_text(report.background, str(report.gallery))}", highlight=False)
    console.print(f"  ANN: {_ann_text(report.ann or {}, str(report.gallery))}", highlight=False)
    report_failures(report.failures, "inputs", total=report.n_failures, shown=SHOWN_FAILURES)
    if report.added == 0 and report.n_failures:
        # SystemExit, not typer.Exit: click returns (and cli.app.main drops) typer.Exit in non-standalone mode
        raise SystemExit(1)


def _ann_text(status: dict, folder: str) -> str:
    if not status.get("exists"):
        return ("none: searches are exact (built automatically from 200,000 images, or with "
                f"`birdbridge gallery ann {folder}`)")
    settings = ", ".join(f"{k} {v}" for k, v in status.get("settings", {}).items())
    if status.get("up_to_date"):
        return f"up to date ({status['rows']:,} rows; {settings})"
    return (f"stale: covers {status['rows']:,} of {status['count']:,} rows, so searches are exact until "
            f"`birdbridge gallery ann {folder}` brings it up to date")


def _background_text(labels: list[str] | None, folder: str) -> str:
    if not labels:
        return (f"none: searches tell no wind or rain from birds (add one with `birdbridge gallery background "
                f"{folder}`)")
    return f"{len(labels)} classes ({', '.join(labels)})"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover


@gallery_app.command("info")
def info_cmd(
    gallery: Path = typer.Argument(..., help="The gallery folder."),
    as_json: AsJson = False,
) -> None:
    """Images, dimension, teacher, species, ANN status and size on disk."""
    from birdbridge.gallery.store import Gallery

    info = Gallery.open(gallery).summary()
    if as_json:
        print(json.dumps(info.to_dict(), indent=2))
        return
    t, species = info.teacher, info.species
    lines = [
        f"gallery   {info.gallery}",
        f"images    {info.count:,} of {info.image_species:,} species; {info.dim}-d float16",
        f"teacher   {t['name']} ({t['ref']}; fingerprint {t['fingerprint']})",
    ]
    if species["count"]:
        templates = species.get("templates")
        templates = templates if isinstance(templates, str) else f"{len(templates or [])} custom"
        lines.append(f"species   {species['count']:,} in the species index ({species['with_images']:,} with images, "
                     f"{species['count'] - species['with_images']:,} text only); forms "
                     f"{', '.join(species.get('forms', []))}; templates {templates}")
    else:
        lines.append(f"species   no species index (`birdbridge gallery species {info.gallery} --from-gallery`)")
    lines.append(f"background {_background_text(info.background, info.gallery)}")
    lines.append(f"ANN       {_ann_text(info.ann, info.gallery)}")
    if (info.build or {}).get("complete") is False:
        lines.append("build     unfinished: run the same `birdbridge index` command again to resume")
    parts = ", ".join(f"{name} {_size(size)}" for name, size in sorted(info.files.items()) if not name.startswith("."))
    lines.append(f"on disk   {_size(info.size_bytes)} ({parts})")
    console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)


@gallery_app.command("ann")
def ann_cmd(
    gallery: Annotated[Path, typer.Argument(help="The gallery folder.")],
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Build from scratch instead of adding the new rows.")] = False,
    engine: Annotated[str | None, typer.Option(
        "--engine", "--ann-engine", help=ANN_ENGINE_HELP, show_default=False)] = None,
    dtype: Annotated[str | None, typer.Option(
        help="How the index stores vectors: f16 (default), i8, bf16 or f32.")] = None,
    nlist: Annotated[int | None, typer.Option(
        min=1, help="faiss-ivf: lists (k-means centroids); default: about one per 512 rows, a power of two.")] = None,
    nprobe: Annotated[int | None, typer.Option(
        min=1, max=1024, help="faiss-ivf: lists scanned a query; default 32.")] = None,
    connectivity: Annotated[int | None, typer.Option(min=2, help="usearch: HNSW links per node (M); 16.")] = None,
    expansion_add: Annotated[int | None, typer.Option(
        min=1, help="usearch: search depth while building (efConstruction); 128.")] = None,
    expansion_search: Annotated[int | None, typer.Option(
        min=1, help="usearch: search depth of queries (ef); default 128.")] = None,
) -> None:
    """Build the ANN index, or bring it up to date with the rows added since (another engine, dtype, nlist or
    connectivity rebuilds it; an index's settings are kept unless given)."""
    from birdbridge.gallery.store import Gallery
    from birdbridge.store.ann import AnnSettings, build_ann

    g = Gallery.open(gallery)
    settings = AnnSettings.from_entry(g.meta.get("ann"), engine=engine, connectivity=connectivity,
                                      expansion_add=expansion_add, expansion_search=expansion_search, dtype=dtype,
                                      nlist=nlist, nprobe=nprobe)
    started = time.perf_counter()
    entry = build_ann(g, rebuild=rebuild, settings=settings, progress=None)
    shown = ", ".join(f"{key} {value}" for key, value in g.ann_status()["settings"].items() if key != "engine")
    console.print(
        f"ANN index of {entry['count']:,} rows in {g.folder / entry['file']} ({time.perf_counter() - started:.1f} s; "
        f"{entry['engine']}: {shown}; {entry['added_rows']:,} rows added)", highlight=False,
    )


@gallery_app.command("species")
def species_cmd(
    gallery: Annotated[Path, typer.Argument(help="The gallery folder.")],
    species_list: SpeciesList = None,
    taxonomy: TaxonomyCsv = None,
    from_gallery: Annotated[bool, typer.Option(
        "--from-gallery", help="Only the species the gallery has images of.")] = False,
    forms: Forms = "taxonomic_common",
    templates: Templates = "openai",
    teacher: RecordedTeacher = None,
    device: Device = None,
) -> None:
    """Rebuild the species index from a species list, a taxonomy, or the gallery's own species."""
    from birdbridge.errors import BirdbridgeError
    from birdbridge.gallery.species_index import build_species_index
    from birdbridge.gallery.store import Gallery
    from birdbridge.models.loader import load_teacher

    chosen = [name for name, value in (("--species-list", species_list), ("--taxonomy", taxonomy),
                                       ("--from-gallery", from_gallery)) if value]
    if len(chosen) != 1:
        raise BirdbridgeError("choose one of --species-list FILE, --taxonomy CSV or --from-gallery"
                              + (f" (got {' and '.join(chosen)})" if chosen else ""))
    g = Gallery.open(gallery)
    model = load_teacher(teacher or g.teacher["ref"], device)
    summary = build_species_index(
        g, model, taxonomy=_species_source(species_list, taxonomy), keep_existing=False,
        forms=_forms(forms), templates=templates, progress=None,
        source=str(species_list or taxonomy) if not from_gallery else "gallery",
    )
    console.print(f"species index of {g.folder}: {summary.total:,} species ({summary.with_images:,} with images, "
                  f"{summary.without_images:,} text only)", highlight=False)


@gallery_app.command("background")
def background_cmd(
    gallery: Annotated[Path, typer.Argument(help="The gallery folder.")],
    vocabulary: Annotated[Path | None, typer.Option("--vocabulary", help=VOCABULARY_HELP)] = None,
    none: Annotated[bool, typer.Option("--none", help="Remove the background vocabulary.")] = False,
    teacher: RecordedTeacher = None,
    device: Device = None,
) -> None:
    """Write the gallery's background vocabulary (the default one, or --vocabulary FILE), or remove it (--none).

    A search names no bird in a window that sounds more like a background class than like any species.
    """
    from birdbridge.errors import BirdbridgeError
    from birdbridge.gallery.background import build_background
    from birdbridge.gallery.store import Gallery
    from birdbridge.models.loader import load_teacher
    from birdbridge.species.background import load_background_vocabulary

    if vocabulary is not None and none:
        raise BirdbridgeError("give either --vocabulary FILE or --none, not both")
    g = Gallery.open(gallery)
    if none:
        g.remove_background()
        console.print(f"removed the background vocabulary of {g.folder}", highlight=False)
        return
    chosen = load_background_vocabulary(vocabulary)  # read before the teacher loads
    build_background(g, load_teacher(teacher or g.teacher["ref"], device), chosen)
    console.print(f"background vocabulary of {g.folder}: {_background_text(chosen.labels, str(g.folder))}",
                  highlight=False)
