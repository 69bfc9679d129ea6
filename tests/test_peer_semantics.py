"""The comparison table of docs/offload.md, checked against the peers themselves.

On its asyncio backend, anyio's `abandon_on_cancel=True` gives its limiter token back while
the abandoned thread still runs (so the limiter admits more threads than its capacity; on
trio, trio's own runner keeps the token); asyncify-kit's
``cancel="abandon"`` keeps the pool slot until the thread really exits.
"""

from __future__ import annotations

import threading
import time

import anyio
import anyio.to_thread
import pytest

from asyncify_kit import asyncify, configure, stats

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_anyio_abandon_releases_its_limiter_token_while_the_thread_runs(
    anyio_backend: str,
) -> None:
    limiter = anyio.CapacityLimiter(1)
    release = threading.Event()
    with anyio.move_on_after(0.05):
        await anyio.to_thread.run_sync(release.wait, 5, abandon_on_cancel=True, limiter=limiter)
    try:
        assert limiter.borrowed_tokens == 0  # the thread is still blocked in release.wait
    finally:
        release.set()


async def test_asyncify_abandon_keeps_the_pool_slot_until_the_thread_exits() -> None:
    configure(pools={"peer-compare": 1})
    release = threading.Event()
    wait = asyncify(pool="peer-compare", cancel="abandon")(release.wait)
    with anyio.move_on_after(0.05):
        await wait(5)
    try:
        assert stats("peer-compare").running == 1
        assert stats("peer-compare").abandoned == 1
    finally:
        release.set()
    with anyio.fail_after(5):
        while stats("peer-compare").running:
            await anyio.sleep(0.01)


async def test_anyio_default_delays_cancellation_until_the_thread_returns() -> None:
    started = time.monotonic()
    with anyio.move_on_after(0.05):
        await anyio.to_thread.run_sync(time.sleep, 0.3)
    assert time.monotonic() - started >= 0.29
