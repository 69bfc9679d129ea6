"""Streams of the requests backend cancelled while they wait for the response headers, against
the real server on loopback: each gives its place in urllib3's blocking pool back once its
thread has the headers, so the client keeps working (it lost one place per cancellation, and
after ``max_connections`` of them every request failed with a pool timeout)."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import pytest

from asyncify_kit import stats
from asyncify_kit._offload import run_sync
from asyncify_kit.http import HttpClient, Limits

from .conftest import ServerInfo
from .test_stream_cancellation import urllib3_pool

pytestmark = pytest.mark.anyio

MAX_CONNECTIONS = 3
CANCELLED = 3 * MAX_CONNECTIONS
DELAY = 0.3  # /slow waits this long before it sends the headers


def free_places(pool: Any) -> int:
    """The places of urllib3's pool no request holds: its queue of connections (None for a
    place with no connection yet)."""
    return int(pool.pool.qsize())


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_streams_cancelled_before_their_headers_give_their_places_back(
    http_server: ServerInfo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    limits = Limits(max_connections=MAX_CONNECTIONS)
    async with HttpClient(
        http_server.url, backend="requests", retries=0, timeout=2, limits=limits
    ) as http:
        for _ in range(CANCELLED):
            with anyio.move_on_after(0.05) as scope:
                async with http.stream("GET", "/slow", params={"delay": DELAY}):
                    pytest.fail("the headers came before the cancellation")
            assert scope.cancelled_caught
        # before the fix: "pool timeout ... Pool is empty and a new connection can't be
        # opened", though no request was under way any more
        assert (await http.get("/ok")).text == "ok"
        pool = await urllib3_pool(http, http_server.url)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            running = [c for c in stats().running_calls if "_stream_in_thread" in c]
            if not running and await run_sync(free_places, pool) == MAX_CONNECTIONS:
                break
            await anyio.sleep(0.05)
        assert not [c for c in stats().running_calls if "_stream_in_thread" in c]
        assert await run_sync(free_places, pool) == MAX_CONNECTIONS  # no place is held
        assert (await http.get("/ok")).text == "ok"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
