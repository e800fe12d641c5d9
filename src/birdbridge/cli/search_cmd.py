"""``birdbridge search``: recordings (or a text, a picture, or similar recordings) against a gallery."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from birdbridge.cli.common import console, console_err, report_failures


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search_cmd(
        inputs: list[Path] = typer.Argument(None, help="Recordings or folders of recordings (searched recursively)."),
        gallery: Path = typer.Option(..., "--gallery", "-g", help="A gallery built with `birdbridge index`."),
        model: str | None = typer.Option(None, "--model", "-m", help="Student distilled for the gallery's teacher."),
        text: str | None = typer.Option(None, "--text", help="Search pictures (and species) by text instead."),
        image: Path | None = typer.Option(None, "--image", help="Search pictures similar to this picture."),
        like: Path | None = typer.Option(None, "--like", help="Find similar recordings in this embedding store "
                                         "(.parquet from `birdbridge embed audio`)."),
        window: float | None = typer.Option(None, help="Window length in seconds (default: the model's)."),
        hop: float | None = typer.Option(None, help="Hop between windows in seconds (default: the window)."),
        top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Species per window."),
        images: int = typer.Option(5, "--images", min=0, help="Pictures per window."),
        min_score: float = typer.Option(0.05, "--min-score", min=0.0, max=1.0, help="Lowest species score shown."),
        species_list: Path | None = typer.Option(
            None, "--species-list", "--slist", help="Only these species: a BirdNET-style list (scientific or common "
            "names, codes, `Genus species_Common Name` labels; one per line) or a taxonomy CSV."),
        merge: bool = typer.Option(False, "--merge", help="Merge consecutive windows with the same top species."),
        fmt: str = typer.Option("table", "--format", "-f", help="table, csv, raven, json or parquet."),
        output: Path | None = typer.Option(None, "--output", "-o", help="Folder for per-file results, or a file "
                                           "(or folder) for --combined."),
        combined: bool = typer.Option(False, "--combined", help="One file for all recordings."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Redo recordings whose results already exist."),
        teacher: str | None = typer.Option(None, help="The gallery's teacher, if its recorded reference moved."),
        device: str | None = typer.Option(None, help="cpu, cuda, cuda:1, mps (default: best available)."),
    ) -> None:
        """Species with scores and the closest pictures for each window of each recording."""
        from birdbridge.audio.windows import check_window_args
        from birdbridge.errors import BirdbridgeError
        from birdbridge.search.engine import SearchEngine
        from birdbridge.search.formats import FORMATS, results_table, to_csv, to_json, to_raven
        from birdbridge.search.runner import SearchOptions, run_search

        check_window_args(window, hop)  # before the model and gallery are loaded
        if fmt not in FORMATS:
            raise BirdbridgeError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
        if fmt == "parquet" and output is None and not (text or image or like):
            raise BirdbridgeError("--format parquet writes files: give --output (a folder, or a file with --combined)")
        engine = SearchEngine.open(gallery, model, teacher=teacher, device=device)
        if text or image:
            hits = (engine.search_texts([text], n_images=images, top_k=top_k) if text
                    else engine.search_images([image], n_images=images, top_k=top_k))[0]
            _print_query(hits, text or str(image), fmt)
            return
        if not inputs:
            raise BirdbridgeError("give recordings (files or folders), or --text / --image")
        if like is not None:
            _like(engine, inputs, like, top_k, window, hop, fmt)
            return
        options = SearchOptions(window, hop, top_k, images, min_score, species_list, merge)
        report = run_search(engine, inputs, options, output=output, fmt=fmt, combined=combined, overwrite=overwrite)
        if fmt == "table":
            console.print(results_table(report.results, images))
        elif output is None:  # csv, raven or json on standard output
            band = (engine.student.frontend_config.fmin, engine.student.frontend_config.fmax)
            text_out = {"csv": lambda: to_csv(report.results, images), "json": lambda: to_json(report.results),
                        "raven": lambda: to_raven(report.results, *band)}[fmt]()
            sys.stdout.write(text_out)
        if report.skipped:
            console_err.print(f"skipped {len(report.skipped)} recordings already done (use --overwrite to redo)")
        if report.written:
            console_err.print(f"wrote {len(report.written)} result file(s) under {output}")
        report_failures(report.failures, "recordings")
        if report.failures and not (report.results or report.written or report.skipped):
            raise typer.Exit(1)


def _print_query(hits, query: str, fmt: str) -> None:
    import json
    from dataclasses import asdict

    species, pictures = hits
    if fmt == "json":
        print(json.dumps({"query": query, "species": [asdict(h) for h in species],
                          "images": [asdict(i) for i in pictures]}, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"closest pictures to {query!r}")
    for column in ("rank", "picture", "species", "score"):
        table.add_column(column)
    for rank, hit in enumerate(pictures, start=1):
        table.add_row(str(rank), hit.path or hit.id, hit.common_name or hit.species, f"{hit.score:.3f}")
    console.print(table)
    if species:
        console.print("species: " + ", ".join(f"{h.common_name or h.scientific_name} ({h.score:.2f})" for h in species))


def _like(engine, inputs, store_path: Path, k: int, window, hop, fmt: str) -> None:
    import json

    from rich.table import Table

    from birdbridge.embed.audio import embed_audio_windows
    from birdbridge.search.like import load_store, nearest

    store = load_store(store_path, engine.student)
    table = embed_audio_windows(inputs, engine.student, window_s=window, hop_s=hop)
    neighbours = nearest(table.vectors, store, k)
    rows = [{"file": name, "start_s": float(s), "end_s": float(e),
             "similar": [n.__dict__ for n in near]}
            for name, s, e, near in zip(table.names, table.start_s, table.end_s, neighbours, strict=True)]
    if fmt == "json":
        print(json.dumps(rows, indent=2))
    else:
        out = Table(title=f"similar recordings in {store_path}")
        for column in ("file", "start (s)", "similar recording", "at (s)", "score"):
            out.add_column(column)
        for row in rows:
            for rank, n in enumerate(row["similar"]):
                out.add_row(Path(row["file"]).name if rank == 0 else "", f"{row['start_s']:.1f}" if rank == 0 else "",
                            Path(n["name"]).name, "" if n["start_s"] is None else f"{n['start_s']:.1f}",
                            f"{n['score']:.3f}")
        console.print(out)
    report_failures(table.failures, "recordings")
