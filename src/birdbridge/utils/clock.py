"""Timestamps as metadata files record them."""

from __future__ import annotations

from datetime import datetime, timezone


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second: ``2025-01-01T12:00:00+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
