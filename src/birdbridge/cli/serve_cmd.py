"""``birdbridge serve --model STUDENT --gallery GALLERY [--archive ARCHIVE]``: the web page and JSON API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from birdbridge.cli.common import (
    Backend,
    Device,
    GalleryFolder,
    LabelsDir,
    Locale,
    Precision,
    RecordedTeacher,
    Student,
    console_err,
)


def serve_cmd(
    model: Student,  # required here
    gallery: GalleryFolder,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(
        "--max-upload-mb", min=0.001, help="Largest upload accepted (413 past it).")] = 50.0,
    max_audio_s: Annotated[float, typer.Option(
        "--max-audio-s", min=1.0, help="Most seconds of audio in one recording, from its header and while decoding "
        "(413 past it).")] = 600.0,
    max_windows: Annotated[int, typer.Option(
        "--max-windows", min=1, help="Most analysis windows in one search (413 past it; the full-size student embeds "
        "about 8 windows/s on 2 cores).")] = 240,
    min_hop: Annotated[float, typer.Option(
        "--min-hop", help="Shortest hop between windows in seconds (422 below it; never under birdbridge's floor of "
        "0.01 s).")] = 0.5,
    body_timeout: Annotated[float, typer.Option(
        "--body-timeout", min=0.1, help="Seconds an upload may stall before it is dropped (408).")] = 30.0,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1, help="Model calls run at once.")] = 1,
    max_queue: Annotated[int, typer.Option("--max-queue", min=0, help="Model calls that may wait; more get 503.")
                         ] = 64,
    archive: Annotated[Path | None, typer.Option(
        "--archive", help="An archive (`birdbridge archive build`) to search in the page's Archive tab and under "
        "/api/archive; it must be in the gallery's teacher space.", show_default=False)] = None,
    locale: Locale = None,
    labels_dir: LabelsDir = None,
    teacher: RecordedTeacher = None,
    device: Device = None,
    backend: Backend = "auto",
    precision: Precision = "fp32",
) -> None:
    """Serve the web page (record or upload a bird call, see species and pictures) and its JSON API; with --archive,
    its Archive tab searches an archive by name, picture or recording and labels the windows found yes or no.

    --locale is the page's default language of common names; a request's `locale` parameter (the page's
    language menu) chooses another of those --labels-dir (or the gallery's labels/ folder) holds."""
    from birdbridge.audio.windows import check_window_args
    from birdbridge.errors import BirdbridgeError

    check_window_args(None, min_hop)  # the library's floor and ceiling for a hop
    if not gallery.exists():
        raise BirdbridgeError(f"{gallery}: gallery not found (build one with `birdbridge index`)")
    from birdbridge.gallery import Gallery
    from birdbridge.search import SearchEngine
    from birdbridge.serve.app import create_app
    from birdbridge.serve.server import listen, serve, url_of

    shown = Gallery.open(gallery)
    served = None
    if archive is not None:  # refused before the model loads when it does not fit the gallery
        from birdbridge.archive.store import Archive
        from birdbridge.serve.archive import check_archive

        served = Archive.open(archive)
        check_archive(served, shown.teacher)

    sock = listen(host, port)
    try:
        console_err.print(f"loading {model} and the gallery {gallery} ...", highlight=False)
        engine = SearchEngine.open(shown, model, teacher=teacher, device=device, labels=labels_dir, locale=locale,
                                   backend=backend, precision=precision)
        for note in engine.notes():  # an uncalibrated model, a gallery without background vocabulary
            console_err.print(f"[yellow]note:[/] {note}", highlight=False)
        web = create_app(engine, max_upload_mb=max_upload_mb, max_audio_s=max_audio_s, max_windows=max_windows,
                         min_hop_s=min_hop, body_timeout_s=body_timeout, max_concurrency=max_concurrency,
                         max_queue=max_queue, archive=served)
        url = url_of(sock, host)
        console_err.print(f"birdbridge is serving on [bold]{url}[/]  (API docs: {url}docs; Ctrl+C to stop)",
                          highlight=False)
        serve(web, sock)
    finally:
        sock.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
