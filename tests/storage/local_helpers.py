"""Helpers of the local backends' tests: the file descriptors this process holds (from
``/proc/self/fd``, Linux), to check for leaks, and a cancellation at a chosen moment."""

from __future__ import annotations

import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

FD_DIR = "/proc/self/fd"


def fd_targets() -> list[str]:
    """The paths this process's descriptors point at (blocking: call it off the loop)."""
    targets = []
    for name in os.listdir(FD_DIR):
        try:
            targets.append(os.readlink(f"{FD_DIR}/{name}"))
        except FileNotFoundError:  # the descriptor listdir itself used
            continue
    return targets


async def held_under(root: Path) -> list[str]:
    """The descriptors open on files under *root* (unlinked ones included; ROOT's own not)."""
    prefix = f"{root}/"
    return [t for t in await anyio.to_thread.run_sync(fd_targets) if t.startswith(prefix)]


async def cancel_when(started: threading.Event, fn: Callable[[], Awaitable[object]]) -> bool:
    """Run *fn* in a task and cancel it as soon as *started* is set (by a worker thread
    inside it); whether the cancellation was caught."""

    async def run() -> None:
        await fn()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            with anyio.fail_after(5):
                while not started.is_set():
                    await anyio.sleep(0.001)
            scope.cancel()
    return scope.cancelled_caught
