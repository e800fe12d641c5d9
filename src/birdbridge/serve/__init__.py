"""The web page and JSON API: ``birdbridge serve`` (see :func:`birdbridge.serve.app.create_app`)."""

from __future__ import annotations

from birdbridge.serve.app import create_app

__all__ = ["create_app"]
