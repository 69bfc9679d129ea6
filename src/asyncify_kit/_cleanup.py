"""Clean-ups (a close, an abort, a rollback) that run to their end whatever cancels their
caller, for the facades' backends."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import anyio

from ._executor import asyncio_loop

__all__ = ["finish"]

T = TypeVar("T")


async def finish(cleanup: Coroutine[Any, Any, T]) -> T:
    """Await *cleanup* (a close, an abort, a discard) to its end, even while the caller is
    being cancelled; a cancellation that arrived meanwhile is raised after it.

    A shield holds off anyio's and trio's cancellation, not asyncio's own (``task.cancel()``,
    ``asyncio.timeout``, ``wait_for``): that one went through and withdrew a close still
    waiting for its thread (the engine's pool and aiofiles' executor drop a call not yet
    started), so a file, a temp file or a connection stayed open. On asyncio the cleanup
    runs as a task of its own, which that cancellation does not reach, and is waited for.
    """
    if asyncio_loop() is None:  # trio
        with anyio.CancelScope(shield=True):
            return await cleanup
    task = asyncio.ensure_future(cleanup)
    cancelled: asyncio.CancelledError | None = None
    with anyio.CancelScope(shield=True):
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError as exc:
                cancelled = exc
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved: the caller's cancellation is what it sees
        raise cancelled
    return task.result()
