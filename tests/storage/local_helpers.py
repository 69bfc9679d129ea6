"""Helpers of the storage tests: the file descriptors this process holds (from
``/proc/self/fd``, Linux), to check for leaks, and a cancellation at a chosen moment."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio

from asyncify_kit import CallCancelled, check_cancelled

FD_DIR = "/proc/self/fd"

T = TypeVar("T")


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


async def cancel_when(
    started: threading.Event,
    fn: Callable[[], Awaitable[object]],
    cancelled: threading.Event | None = None,
) -> bool:
    """Run *fn* in a task and cancel it as soon as *started* is set (by a worker thread
    inside it); whether the cancellation was caught. *cancelled* is set once it is sent."""

    async def run() -> None:
        await fn()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            with anyio.fail_after(5):
                while not started.is_set():
                    await anyio.sleep(0.001)
            scope.cancel()
            if cancelled is not None:
                cancelled.set()
    return scope.cancelled_caught


def returns_late(fn: Callable[..., T], opened: threading.Event) -> Callable[..., T]:
    """*fn*, whose result is handed back only once its caller was cancelled: the open has
    happened in the worker thread, the caller will never get what it opened."""

    def late(*args: object, **kwargs: object) -> T:
        result = fn(*args, **kwargs)
        opened.set()
        _until_cancelled()
        return result

    return late


def raises_late(fn: Callable[..., T], arrived: threading.Event) -> Callable[..., T]:
    """*fn*, whose outcome (its error, say) is handed back only once its caller was
    cancelled."""

    def late(*args: object, **kwargs: object) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            arrived.set()
            _until_cancelled()

    return late


def _until_cancelled() -> None:
    """In a worker thread: wait (10 s at most) for the call's caller to be cancelled."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            check_cancelled()
        except CallCancelled:
            break
        time.sleep(0.001)
