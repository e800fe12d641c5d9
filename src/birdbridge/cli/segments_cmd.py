"""``birdbridge segments``: the detections of result files cut into short clips to check by ear."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import MinConf, console_err, report_failures


def segments_cmd(
    results: Annotated[list[Path], typer.Argument(
        help="Result files, or folders of them: birdbridge's (any --format) or BirdNET-Analyzer's.",
        show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the clips (one folder per species) and "
                                         "their index, birdbridge.segments.csv.")],
    audio: Annotated[list[Path] | None, typer.Option(
        "--audio", "-a", help="The recordings (files or folders, repeatable), where they are now; default: the paths "
        "the results name.")] = None,
    collection_mode: Annotated[str, typer.Option(
        "--collection-mode", "--collection_mode", help="random, confidence (the most confident) or balanced (spread "
        "over confidence bins), as BirdNET-Analyzer's.")] = "random",
    max_segments: Annotated[int, typer.Option(
        "--max-segments", "--max_segments", "--max-per-species", min=1,
        help="Clips per species at most (BirdNET-Analyzer's --max_segments).")] = 100,
    min_conf: MinConf = 0.0,
    max_conf: Annotated[float, typer.Option("--max-conf", "--max_conf", min=0.0, max=1.0,
                                            help="Highest confidence of a detection cut.")] = 1.0,
    n_bins: Annotated[int, typer.Option("--n-bins", "--n_bins", min=1,
                                        help="Confidence bins of --collection-mode balanced.")] = 10,
    seg_length: Annotated[float, typer.Option(
        "--seg-length", "--seg_length", help="Shortest clip in seconds, widened evenly around the detection "
        "(BirdNET-Analyzer's --seg_length).")] = 3.0,
    context: Annotated[float, typer.Option(
        "--context", help="Seconds of audio before and after each detection, so the call is heard in context.")] = 1.0,
    max_total: Annotated[int, typer.Option("--max-total", min=1, help="Clips in all at most (species take turns).")
                         ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random choices.")] = 42,
) -> None:
    """Cut the detections of result files into short clips to check by ear, with a CSV index.

    Clips go into one folder per species, named <confidence>_<n>_<recording>_<start>s_<end>s.wav as
    BirdNET-Analyzer's segments command names them. A result file whose recordings cannot be found is reported
    (give --audio where they are now) and the rest is cut.
    """
    from birdbridge.segments import cut_segments

    report = cut_segments(results, output, audio=audio, collection_mode=collection_mode,
                          max_per_species=max_segments, min_conf=min_conf, max_conf=max_conf, n_bins=n_bins,
                          seg_length=seg_length, context=context, max_total=max_total, seed=seed)
    species = len({clip.detection.key for clip in report.clips})
    console_err.print(f"cut {len(report.clips)} clips of {species} species (of {report.read} detections read) "
                      f"into {output}; index: {report.index}", highlight=False)
    if report.over_total:
        console_err.print(f"{report.over_total} more chosen clips not cut: --max-total {max_total}", highlight=False)
    report_failures(report.failures, "results")


def register(app: typer.Typer) -> None:
    app.command("segments")(segments_cmd)
