"""``birdbridge embed {audio,image,text,species}``: inputs -> embeddings file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import (
    Backend,
    BatchSize,
    Device,
    EmbeddingsFile,
    Forms,
    Hop,
    Model,
    Precision,
    RayAddress,
    Recordings,
    Templates,
    Window,
    comma_list,
    console_err,
    report_failures,
)

app = typer.Typer(no_args_is_help=True, help="Turn recordings, pictures, texts or species into embeddings.")


def _shards(output: Path) -> Path:
    """Where a Ray run keeps its per-file shards until the output is written (a rerun resumes from them)."""
    return output.parent / f".{output.name}.ray-shards"


def _finish(table, output: Path, what: str) -> None:
    from birdbridge.embed.writers import write_table

    report_failures(table.failures, what)
    if not len(table):
        raise typer.Exit(1)
    write_table(output, table)
    console_err.print(f"wrote {len(table)} × {table.dim} embeddings to {output}")


@app.command("audio")
def embed_audio_cmd(
    inputs: Recordings,
    output: EmbeddingsFile,
    model: Model = "biolingual",
    window: Window = None,
    hop: Hop = None,
    pool: Annotated[bool, typer.Option("--pool", help="One mean embedding per file instead of per window.")] = False,
    batch_size: BatchSize = 16,
    device: Device = None,
    backend: Backend = "auto",
    precision: Precision = "fp32",
    ray: RayAddress = None,
) -> None:
    """Embed recordings in fixed windows; bad files are skipped and reported."""
    from birdbridge.audio.windows import check_window_args
    from birdbridge.embed.audio import embed_audio_windows
    from birdbridge.embed.writers import check_format

    check_window_args(window, hop)  # before the model is loaded
    check_format(output)
    if ray is not None:
        from birdbridge.embed.ray_jobs import embed_audio_on_ray

        table = embed_audio_on_ray(inputs or [], model, _shards(output), window_s=window, hop_s=hop,
                                   batch_size=batch_size, device=device, address=ray)
    else:
        table = embed_audio_windows(
            inputs, model, window_s=window, hop_s=hop, batch_size=batch_size, device=device, progress=None,
            backend=backend, precision=precision,
        )
    _finish(table.pooled() if pool else table, output, "audio files")


@app.command("image")
def embed_image_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    output: EmbeddingsFile,
    model: Model = "bioclip-2",
    batch_size: BatchSize = 32,
    device: Device = None,
    ray: RayAddress = None,
) -> None:
    """Embed pictures with an image-text model; bad images are skipped and reported."""
    from birdbridge.embed.images import embed_image_files
    from birdbridge.embed.writers import check_format

    check_format(output)
    if ray is not None:
        from birdbridge.embed.ray_jobs import embed_images_on_ray

        table = embed_images_on_ray(inputs, model, _shards(output), batch_size=batch_size, device=device,
                                    address=ray)
    else:
        table = embed_image_files(inputs, model, batch_size=batch_size, device=device)
    _finish(table, output, "images")


@app.command("text")
def embed_text_cmd(
    output: EmbeddingsFile,
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to embed (or use --file).")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="A UTF-8 file with one text per line.")] = None,
    model: Model = "bioclip-2",
    device: Device = None,
) -> None:
    """Embed texts with the text side of an image-text model or a CLAP model."""
    import numpy as np

    from birdbridge.embed.table import EmbeddingTable
    from birdbridge.embed.text import embed_texts
    from birdbridge.embed.writers import check_format
    from birdbridge.errors import BirdbridgeError
    from birdbridge.utils.input_files import read_text_file

    check_format(output)
    items = list(texts or [])
    if file is not None:
        items.extend(line.strip() for line in read_text_file(file).splitlines() if line.strip())
    if not items:
        raise BirdbridgeError("no texts given: pass them as arguments or with --file")
    vectors = embed_texts(items, model, device=device)
    _finish(EmbeddingTable(np.asarray(vectors), items), output, "texts")


@app.command("species")
def embed_species_cmd(
    species: Annotated[Path, typer.Argument(help="Taxonomy CSV, a species list (`Genus species_Common Name` lines), "
                                            "or one species name.")],
    output: EmbeddingsFile,
    model: Model = "bioclip-2",
    forms: Forms = "taxonomic_common",
    templates: Templates = "openai",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute instead of using the on-disk cache.")] = False,
    device: Device = None,
) -> None:
    """One text embedding per species, averaged over forms × templates (cached on disk)."""
    import numpy as np

    from birdbridge.embed.table import EmbeddingTable
    from birdbridge.embed.text import embed_species
    from birdbridge.embed.writers import check_format
    from birdbridge.species import as_taxonomy

    check_format(output)
    taxonomy = as_taxonomy(species)
    vectors = embed_species(taxonomy, model, forms=comma_list(forms), templates=templates, cache=not no_cache,
                            device=device)
    _finish(EmbeddingTable(np.asarray(vectors), [s.scientific_name for s in taxonomy]), output, "species")
