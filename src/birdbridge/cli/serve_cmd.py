"""``birdbridge serve --model STUDENT --gallery GALLERY``: the web page and JSON API."""

from __future__ import annotations

import socket
from pathlib import Path

import typer

from birdbridge.cli.common import console_err


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port), or a clear error."""
    from birdbridge.errors import BirdbridgeError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, socket.gaierror) as exc:
        raise BirdbridgeError(f"cannot listen on {host}:{port} ({exc})") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = "; choose another with --port" if exc.errno == 98 else ""
        raise BirdbridgeError(f"cannot listen on {host}:{port} ({exc.strerror or exc}){hint}") from exc
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        model: str = typer.Option(..., "--model", "-m", help="The student: a `birdbridge train` output folder, "
                                  "preset, hub id or local folder."),
        gallery: Path = typer.Option(..., "--gallery", "-g", help="A gallery built with `birdbridge index`."),
        host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
        port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on (0: any free port)."),
        max_upload_mb: float = typer.Option(50.0, "--max-upload-mb", min=0.001, help="Largest upload accepted "
                                            "(413 past it)."),
        max_audio_s: float = typer.Option(600.0, "--max-audio-s", min=1.0, help="Most seconds of audio in one "
                                          "recording, from its header and while decoding (413 past it)."),
        max_windows: int = typer.Option(240, "--max-windows", min=1, help="Most analysis windows in one search "
                                        "(413 past it; the full-size student embeds about 8 windows/s on 2 cores)."),
        min_hop: float = typer.Option(0.5, "--min-hop", help="Shortest hop between windows in seconds (422 below "
                                      "it; never under birdbridge's floor of 0.01 s)."),
        body_timeout: float = typer.Option(30.0, "--body-timeout", min=0.1, help="Seconds an upload may stall "
                                           "before it is dropped (408)."),
        max_concurrency: int = typer.Option(1, "--max-concurrency", min=1, help="Model calls run at once."),
        max_queue: int = typer.Option(64, "--max-queue", min=0, help="Model calls that may wait; more get 503."),
        teacher: str | None = typer.Option(None, help="The gallery's teacher, if its recorded reference moved "
                                           "(used for text searches)."),
        device: str | None = typer.Option(None, help="cpu, cuda, cuda:1, mps (default: best available)."),
    ) -> None:
        """Serve the web page (record or upload a bird call, see species and pictures) and its JSON API."""
        from birdbridge.audio.windows import check_window_args
        from birdbridge.errors import BirdbridgeError

        check_window_args(None, min_hop)  # the library's floor and ceiling for a hop
        if not gallery.exists():
            raise BirdbridgeError(f"{gallery}: gallery not found (build one with `birdbridge index`)")
        from birdbridge.search.service import SearchService
        from birdbridge.serve.app import create_app
        from birdbridge.serve.server import serve

        sock = _bind(host, port)
        try:
            console_err.print(f"loading {model} and the gallery {gallery} ...", highlight=False)
            service = SearchService.open(model, gallery, device=device, **({"teacher": teacher} if teacher else {}))
            web = create_app(service, max_upload_mb=max_upload_mb, max_audio_s=max_audio_s, max_windows=max_windows,
                             min_hop_s=min_hop, body_timeout_s=body_timeout, max_concurrency=max_concurrency,
                             max_queue=max_queue)
            url = _url(sock, host)
            console_err.print(f"birdbridge is serving on [bold]{url}[/]  (API docs: {url}docs; Ctrl+C to stop)",
                              highlight=False)
            serve(web, sock)
        finally:
            sock.close()
