"""``birdbridge embed {audio,image,text,species}``: inputs -> embeddings file."""

from __future__ import annotations

from pathlib import Path

import typer

from birdbridge.cli.common import console_err, report_failures

app = typer.Typer(no_args_is_help=True, help="Turn recordings, pictures, texts or species into embeddings.")

MODEL_HELP = "Preset name (see `birdbridge models`), hub id, or local model folder."
OUTPUT_HELP = ".npy (float32 [N, D]), .parquet or .csv (with input names and, for audio, window times)."


def _check_output(output: Path) -> None:
    """Refuse an unknown output format before any work is done."""
    from birdbridge.embed.writers import FORMATS
    from birdbridge.errors import BirdbridgeError

    if output.suffix.lower() not in FORMATS:
        raise BirdbridgeError(f"{output}: unknown output format {output.suffix!r}; use one of {', '.join(FORMATS)}")


def _finish(table, output: Path, what: str) -> None:
    from birdbridge.embed.writers import write_table

    report_failures(table.failures, what)
    if not len(table):
        raise typer.Exit(1)
    write_table(output, table)
    console_err.print(f"wrote {len(table)} × {table.dim} embeddings to {output}")


@app.command("audio")
def embed_audio_cmd(
    inputs: list[Path] = typer.Argument(..., help="Audio files or folders (searched recursively)."),
    output: Path = typer.Option(..., "--output", "-o", help=OUTPUT_HELP),
    model: str = typer.Option("biolingual", "--model", "-m", help=MODEL_HELP),
    window: float | None = typer.Option(None, help="Window length in seconds (default: the model's)."),
    hop: float | None = typer.Option(None, help="Hop between windows in seconds (default: the window)."),
    pool: bool = typer.Option(False, "--pool", help="One mean embedding per file instead of per window."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", min=1),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1, mps (default: best available)."),
) -> None:
    """Embed recordings in fixed windows; bad files are skipped and reported."""
    from birdbridge.audio.windows import check_window_args

    check_window_args(window, hop)  # before the model is loaded
    _check_output(output)
    from birdbridge.embed.audio import embed_audio_windows

    table = embed_audio_windows(
        inputs, model, window_s=window, hop_s=hop, batch_size=batch_size, device=device, progress=None
    )
    _finish(table.pooled() if pool else table, output, "audio files")


@app.command("image")
def embed_image_cmd(
    inputs: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    output: Path = typer.Option(..., "--output", "-o", help=OUTPUT_HELP),
    model: str = typer.Option("bioclip-2", "--model", "-m", help=MODEL_HELP),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1, mps (default: best available)."),
) -> None:
    """Embed pictures with an image-text model; bad images are skipped and reported."""
    _check_output(output)
    from birdbridge.embed.images import embed_image_files

    table = embed_image_files(inputs, model, batch_size=batch_size, device=device)
    _finish(table, output, "images")


@app.command("text")
def embed_text_cmd(
    texts: list[str] = typer.Argument(None, help="Texts to embed (or use --file)."),
    output: Path = typer.Option(..., "--output", "-o", help=OUTPUT_HELP),
    file: Path | None = typer.Option(None, "--file", "-f", help="A UTF-8 file with one text per line."),
    model: str = typer.Option("bioclip-2", "--model", "-m", help=MODEL_HELP),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1, mps (default: best available)."),
) -> None:
    """Embed texts with the text side of an image-text model or a CLAP model."""
    _check_output(output)
    import numpy as np

    from birdbridge.embed.table import EmbeddingTable
    from birdbridge.embed.text import embed_texts
    from birdbridge.errors import BirdbridgeError, InputError

    items = list(texts or [])
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(str(file), f"cannot read the text file ({exc})", "use UTF-8, one text per line") from exc
        items.extend(line.strip() for line in lines if line.strip())
    if not items:
        raise BirdbridgeError("no texts given: pass them as arguments or with --file")
    vectors = embed_texts(items, model, device=device)
    _finish(EmbeddingTable(np.asarray(vectors), items), output, "texts")


@app.command("species")
def embed_species_cmd(
    species: Path = typer.Argument(..., help="Taxonomy CSV, a species list (`Genus species_Common Name` lines), "
                                   "or one species name."),
    output: Path = typer.Option(..., "--output", "-o", help=OUTPUT_HELP),
    model: str = typer.Option("bioclip-2", "--model", "-m", help=MODEL_HELP),
    forms: str = typer.Option(
        "taxonomic_common", help="Comma-separated text forms: taxonomic, taxonomic_common, scientific, common, "
        "scientific_common."
    ),
    templates: str = typer.Option("openai", help="Template set: openai (80, as pybioclip), single, none."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute instead of using the on-disk cache."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1, mps (default: best available)."),
) -> None:
    """One text embedding per species, averaged over forms × templates (cached on disk)."""
    _check_output(output)
    import numpy as np

    from birdbridge.embed.table import EmbeddingTable
    from birdbridge.embed.text import embed_species
    from birdbridge.species import as_taxonomy

    taxonomy = as_taxonomy(species)
    vectors = embed_species(
        taxonomy, model, forms=[f.strip() for f in forms.split(",") if f.strip()], templates=templates,
        cache=not no_cache, device=device,
    )
    _finish(EmbeddingTable(np.asarray(vectors), [s.scientific_name for s in taxonomy]), output, "species")
