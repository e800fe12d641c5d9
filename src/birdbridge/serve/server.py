"""Running the app under uvicorn, on a socket the caller opened.

When a shutdown begins (SIGTERM, SIGINT), the app's ``state.shutdown()`` runs at once: model work stops at its
next check and the private uploads folder is removed with every upload in it, rather than after uvicorn's
graceful wait. Requests still running get 503.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from birdbridge.errors import BirdbridgeError

__all__ = ["listen", "serve", "url_of"]

GRACEFUL_S = 5.0  # seconds open connections get to finish after a shutdown begins


class _Server(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.config.app.state.shutdown()
        await super().shutdown(sockets)


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Serve ``app`` (from :func:`~birdbridge.serve.app.create_app`) on ``sock`` until SIGTERM or SIGINT."""
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=GRACEFUL_S)
    _Server(config).run(sockets=[sock])


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port), or a clear error."""
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


def url_of(sock: socket.socket, host: str) -> str:
    """The address a browser opens for a socket listening on ``host``."""
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"
