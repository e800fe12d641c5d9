"""Running the app under uvicorn, on a socket the caller opened.

When a shutdown begins (SIGTERM, SIGINT), the app's ``state.shutdown()`` runs at once: model work stops at its
next check and the private uploads folder is removed with every upload in it, rather than after uvicorn's
graceful wait. Requests still running get 503.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

__all__ = ["serve"]

GRACEFUL_S = 5.0  # seconds open connections get to finish after a shutdown begins


class _Server(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.config.app.state.shutdown()
        await super().shutdown(sockets)


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Serve ``app`` (from :func:`~birdbridge.serve.app.create_app`) on ``sock`` until SIGTERM or SIGINT."""
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=GRACEFUL_S)
    _Server(config).run(sockets=[sock])
