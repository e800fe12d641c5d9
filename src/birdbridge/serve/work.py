"""Model work for requests: one concurrency limit, a bounded queue, and cancellation.

Each call runs in a worker thread, at most ``max_concurrency`` at once (one ``anyio.CapacityLimiter``);
further calls wait without holding a thread, so the event loop stays free. More than ``max_queue``
waiting calls are refused with 503. Every call gets a ``threading.Event`` that the work checks between
batches; it is set when the client disconnects (polled with ``request.is_disconnected()``) or the server
shuts down (:meth:`WorkQueue.cancel_all`). A call cancelled while it waits never starts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from fastapi import HTTPException
from starlette.requests import Request

__all__ = ["ClientGone", "WorkQueue"]

log = logging.getLogger(__name__)
T = TypeVar("T")
POLL_S = 0.2  # seconds between checks that the client is still there


class ClientGone(Exception):
    """The client disconnected (or the server is shutting down) before its work was done."""


class WorkQueue:
    """Run blocking calls ``fn(cancel)`` in worker threads under one concurrency limit."""

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if max_queue < 0:
            raise ValueError("max_queue must be at least 0")
        self.max_concurrency, self.max_queue = max_concurrency, max_queue
        self.pending = 0
        self.closing = False
        self._limiter: anyio.CapacityLimiter | None = None
        self._calls: dict[threading.Event, anyio.CancelScope] = {}

    def start(self) -> None:
        """A new limiter for a new run of the app (it belongs to the running event loop)."""
        self.closing = False
        self._limiter = anyio.CapacityLimiter(self.max_concurrency)

    def cancel_all(self) -> None:
        """Cancel every call: running ones stop at their next check, waiting ones are dropped."""
        self.closing = True
        for cancel, scope in list(self._calls.items()):
            cancel.set()
            scope.cancel()

    async def run(self, fn: Callable[[threading.Event], T], request: Request | None = None) -> T:
        """``fn(cancel)`` in a worker thread, in turn.

        Raises:
            HTTPException: 503 when ``max_queue`` calls wait already, or the server is shutting down.
            ClientGone: the client went away (or the server began shutting down) first.
        """
        if self.closing:
            raise HTTPException(503, "the server is shutting down; try again shortly")
        if self.pending >= self.max_concurrency + self.max_queue:
            raise HTTPException(503, f"the server is busy ({self.pending} requests in progress); try again shortly")
        if self._limiter is None:
            self.start()
        cancel = threading.Event()
        outcome: tuple[T | None, Exception | None] | None = None
        self.pending += 1
        try:
            async with anyio.create_task_group() as tasks:
                self._calls[cancel] = tasks.cancel_scope
                if request is not None:
                    tasks.start_soon(_watch, request, cancel, tasks.cancel_scope)
                try:
                    outcome = (await anyio.to_thread.run_sync(fn, cancel, limiter=self._limiter), None)
                except Exception as exc:  # raised below, outside the task group (which would wrap it)
                    outcome = (None, exc)
                tasks.cancel_scope.cancel()
        finally:
            self.pending -= 1
            self._calls.pop(cancel, None)
        if outcome is None or cancel.is_set():
            raise ClientGone
        result, error = outcome
        if error is not None:
            raise error
        return result  # type: ignore[return-value]


async def _watch(request: Request, cancel: threading.Event, scope: anyio.CancelScope) -> None:
    """Set ``cancel`` (and drop the call if it still waits) once the client has disconnected."""
    while not await request.is_disconnected():
        await anyio.sleep(POLL_S)
    log.info("client disconnected: cancelling its work")
    cancel.set()
    scope.cancel()
