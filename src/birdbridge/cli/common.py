"""Shared CLI pieces: consoles, failure reports, and every option that several commands take, defined once.

Commands declare their parameters with these ``Annotated`` aliases (``device: Device = None``) and give the
default in their own signature, so that a flag is spelled, abbreviated and explained the same everywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from birdbridge.errors import Failure

# Piped output is not squeezed to 80 columns: tables stay readable in files and logs.
console = Console(width=None if sys.stdout.isatty() else 200)
console_err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

# ---------------------------------------------------------------------------------------------------
# Models and devices

MODEL_HELP = "Preset name (see `birdbridge models`), hub id, or local model folder."
Device = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1, mps (default: best available).")]
Model = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
Student = Annotated[str | None, typer.Option(
    "--model", "-m", help="The student distilled for the gallery's teacher: a `birdbridge train` output folder "
    "(or a preset, hub id or local folder).")]
TrainedModels = Annotated[list[str] | None, typer.Option(
    "--model", "-m", help="Trained student: PATH or NAME=PATH (repeatable).")]
Teacher = Annotated[str, typer.Option(
    "--teacher", "-t", help="The image-text teacher: preset (see `birdbridge models`), hub id, or local model folder.")]
RecordedTeacher = Annotated[str | None, typer.Option(
    "--teacher", "-t", help="The image-text teacher (preset, hub id or folder); default: the one the gallery (or the "
    "trained students) record. Give it if that reference has moved; searches use it for text and picture queries.")]
ANN_ENGINE_HELP = ("Engine of a new ANN index: faiss-ivf (the default where faiss-cpu is installed: "
                   "`pip install 'birdbridge[faiss]'`) or usearch. An existing index keeps its engine unless this is "
                   "given.")
AnnEngine = Annotated[str | None, typer.Option("--ann-engine", help=ANN_ENGINE_HELP, show_default=False)]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Inputs (windows, images) per forward pass.")]
Backend = Annotated[str, typer.Option(
    "--backend", envvar="BIRDBRIDGE_BACKEND", help="What runs the student's audio tower: auto (ONNX Runtime on the "
    "CPU when birdbridge[onnx] is installed, else torch), torch, or onnx (needs `pip install 'birdbridge[onnx]'`).")]
Precision = Annotated[str, typer.Option(
    "--precision", envvar="BIRDBRIDGE_PRECISION", help="fp32, or int8: the tower's Linear weights quantised "
    "(faster on the CPU; embeddings within cosine 0.99 of fp32).")]
RAY_OPTION = "--ray"
RayAddress = Annotated[str | None, typer.Option(
    RAY_OPTION, metavar="[ADDRESS]", show_default=False, help="Run the work as a Ray Data pipeline (resumable per "
    "file): `--ray` alone starts a local Ray instance, `--ray auto` joins the cluster this machine belongs to (as "
    "under `ray job submit`), or give a Ray address (ray://host:10001). Needs `pip install 'birdbridge[ray]'`.")]

# ---------------------------------------------------------------------------------------------------
# Inputs

Recordings = Annotated[list[Path] | None, typer.Argument(
    help="Recordings, or folders of recordings (searched recursively).", show_default=False)]
GALLERY_HELP = "A gallery built with `birdbridge index`."
GalleryFolder = Annotated[Path, typer.Option("--gallery", "-g", help=GALLERY_HELP)]
OptionalGallery = Annotated[Path | None, typer.Option("--gallery", "-g", help=GALLERY_HELP)]
Window = Annotated[float | None, typer.Option(
    "--window", help="Window length in seconds (default: the model's; evaluate: the dataset's).")]
Hop = Annotated[float | None, typer.Option("--hop", help="Hop between windows in seconds (default: the window).")]
SpeciesList = Annotated[Path | None, typer.Option(
    "--species-list", "--slist", help="A species list: BirdNET-style (scientific or common names, codes, "
    "`Genus species_Common Name` labels; one per line) or a taxonomy CSV.")]
TaxonomyCsv = Annotated[Path | None, typer.Option(
    "--taxonomy", help="Taxonomy CSV (scientific_name, common_name, ...): the species and their names.")]
Forms = Annotated[str, typer.Option(
    "--forms", help="Comma-separated text forms: taxonomic, taxonomic_common, scientific, common, scientific_common.")]
Templates = Annotated[str, typer.Option("--templates", help="Template set: openai (80, as pybioclip), single, none.")]

# ---------------------------------------------------------------------------------------------------
# Names in the user's language (birdbridge.species.common_names)

Locale = Annotated[str | None, typer.Option(
    "--locale", help="Language of common names in every output: de, fr, es, pt_BR, ... (BirdNET-Analyzer's "
    "--locale); missing names fall back to English, then to the scientific name.")]
LabelsDir = Annotated[Path | None, typer.Option(
    "--labels-dir", help="Where --locale names come from: a folder of BirdNET-style label files "
    "(BirdNET_GLOBAL_6K_V2.4_Labels_de.txt, ...: `Genus species_Common name` lines), one such file, or a taxonomy "
    "CSV with common_name_de, ... columns (default: the gallery's labels/ folder).")]

# ---------------------------------------------------------------------------------------------------
# Where and when: BirdNET's range model (birdbridge.species.where; BirdNET-Analyzer's names, needs birdbridge[geo])

Latitude = Annotated[float | None, typer.Option(
    "--lat", help="Recording location latitude in decimal degrees: keep the species BirdNET's range model expects "
    "there (needs `pip install 'birdbridge[geo]'`).")]
Longitude = Annotated[float | None, typer.Option("--lon", help="Recording location longitude in decimal degrees.")]
Week = Annotated[str | None, typer.Option(
    "--week", help="Week of the year, 1-48 (4 per month); -1 or none: the whole year; auto: each recording's, from its "
    "AudioMoth-style name (YYYYMMDD_HHMMSS).")]
Date = Annotated[str | None, typer.Option("--date", help="The recording date, YYYY-MM-DD (instead of --week).")]
SfThresh = Annotated[float, typer.Option(
    "--sf-thresh", "--sf_thresh", help="Lowest range-model score of a species kept (BirdNET-Analyzer's --sf_thresh).")]
RangeModelPath = Annotated[Path | None, typer.Option(
    "--range-model", help="A range model .tflite (its *_Labels.txt beside it) or a folder holding both; default: "
    "BirdNET's, installed with birdbridge[geo].")]

# ---------------------------------------------------------------------------------------------------
# Detections (see birdbridge.models.detection; the defaults are given by the commands, from there)

Score = Annotated[str, typer.Option(
    "--score", help="What ranks species and makes detections: confidence (the model's calibration), similarity "
    "(raw cosine) or softmax (plain retrieval: every window names a species).")]
MinConf = Annotated[float, typer.Option(
    "--min-conf", min=0.0, max=1.0, help="Lowest confidence of a detection (BirdNET-Analyzer's --min_conf).")]
Sensitivity = Annotated[float, typer.Option(
    "--sensitivity", min=0.5, max=1.5, help="Detection sensitivity, 0.5-1.5 (BirdNET-Analyzer's): higher values give "
    "higher confidences.")]
MinSim = Annotated[float, typer.Option(
    "--min-sim", min=-1.0, max=1.0, help="Lowest cosine similarity of a detection, with --score similarity or a model "
    "without calibration.")]
Rank = Annotated[str, typer.Option(
    "--rank", help="Answer at this rank: species, genus, family, order (the scores of each taxon's species combined: "
    "summed softmax probability, noisy-OR of confidences), or auto: per window, the lowest rank that reaches "
    "--min-conf (\"Corvus, species uncertain\").")]

# ---------------------------------------------------------------------------------------------------
# Outputs

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table or text.")]
Format = Annotated[str, typer.Option(
    "--format", "-f", help="table, csv, raven, audacity, kaleidoscope, json or parquet.")]
EmbeddingsFile = Annotated[Path, typer.Option(
    "--output", "-o", help=".npy (float32 [N, D]), .parquet or .csv (with input names and, for audio, window times).")]
ResultsOutput = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Folder for per-file results, or a file (or folder) for --combined.")]
ResultsJson = Annotated[Path, typer.Option("--output", "-o", help="Where to write results.json.")]
GalleryOutput = Annotated[Path, typer.Option("--output", "-o", help="The gallery folder.")]
DemoOutput = Annotated[Path, typer.Option("--output", "--out", "-o", help="Output folder (replaced if it is a demo).")]


_COMMAND: list[str] = []


def set_command_line(args: Sequence[str]) -> None:
    """Remember the arguments the ``birdbridge`` command was run with (``cli.app.main`` does, for params files)."""
    _COMMAND[:] = ["birdbridge", *map(str, args)]


def command_line() -> list[str] | None:
    """``["birdbridge", arg, ...]`` as this command was run (None when it was not run through ``main``)."""
    return list(_COMMAND) or None


def ray_address_given(args: Sequence[str]) -> list[str]:
    """``args`` with ``--ray`` given no address (last, or before another option) made ``--ray local``."""
    out = list(args)
    for i in range(len(out) - 1, -1, -1):
        if out[i] == RAY_OPTION and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, "local")
    return out


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def report_failures(failures: Sequence[Failure], what: str = "inputs", *, total: int | None = None,
                    shown: int | None = None) -> None:
    """Print the skipped inputs at the end of a batch job: ``shown`` of them at most, of ``total`` in all
    (default: all of ``failures``); each names its input (its source, when the message does not)."""
    total = len(failures) if total is None else total
    if not total:
        return
    console_err.print(f"[yellow]skipped {total:,} {what}:[/]", highlight=False)
    for failure in failures[:shown]:
        text = failure.message if failure.source in failure.message else f"{failure.source}: {failure.message}"
        console_err.print(f"  - {text}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    if total > len(failures[:shown]):
        console_err.print(f"  ... and {total - len(failures[:shown]):,} more", highlight=False)
