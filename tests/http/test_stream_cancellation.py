"""A streamed response cancelled in the middle of reading a chunk, on every backend and event
loop, against the real server on loopback: the cancellation is silent, and the connection
(and, on the requests backend, the worker thread reading it) is released at once, not when the
server sends the rest."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

import anyio
import psutil  # type: ignore[import-untyped]  # no stubs installed
import pytest

from asyncify_kit import stats
from asyncify_kit._offload import run_sync
from asyncify_kit.http import HttpClient

from .conftest import ServerInfo

pytestmark = pytest.mark.anyio

DELAY = 2.0  # /slow-body sends 4 bytes, waits this long, then sends the last 4


def established_to(port: int) -> set[tuple[str, int]]:
    """The local addresses of the TCP connections of this machine that are open to *port*."""
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="tcp4")
        if c.laddr and c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


async def test_cancel_in_the_middle_of_a_chunk(
    http_server: ServerInfo, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # requests: the cancelled reader's thread stayed in the read until the server sent the
    # rest, while aclose() closed the response from another thread under it; http.client then
    # failed in that thread and the library logged "AttributeError: 'NoneType' object has no
    # attribute 'close'" (raised after its caller had left), with the connection open till then
    caplog.set_level(logging.WARNING)
    port = urlsplit(http_server.url).port
    assert port is not None
    async with HttpClient(http_server.url, backend=backend, retries=0, timeout=30) as http:
        before = await run_sync(established_to, port)
        ours: set[tuple[str, int]] = set()
        received: list[bytes] = []
        started = time.monotonic()
        with anyio.move_on_after(0.5) as scope:
            async with http.stream("GET", "/slow-body", params={"delay": DELAY}) as r:
                ours = await run_sync(established_to, port) - before
                # the first 4 bytes come at once; the rest DELAY seconds later (the requests
                # backend reads 256 KiB chunks: it waits for the rest in its first read)
                async for chunk in r.aiter_bytes():
                    received.append(chunk)
        cancelled = time.monotonic()
        assert scope.cancelled_caught
        assert received in ([], [b"slow"])
        assert ours  # the connection of the stream
        # the connection is closed when the block ends, not when the server sends the rest
        released_after = None
        while time.monotonic() - started < DELAY + 1:
            if not (await run_sync(established_to, port)) & ours:
                released_after = time.monotonic() - cancelled
                break
            await anyio.sleep(0.05)
        # past the moment the server sends the rest: a late error would have been logged
        await anyio.sleep(max(0.0, started + DELAY + 0.5 - time.monotonic()))
        problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert not problems, [
            (r.getMessage(), r.exc_info[1] if r.exc_info else None) for r in problems
        ]
        assert cancelled - started < 1.5  # leaving the block did not wait for the server
        assert released_after is not None and released_after < 1.0, released_after
        # no worker thread is still reading the cancelled body
        assert not [c for c in stats().running_calls if "_next_in_thread" in c]
        assert (await http.get("/ok")).text == "ok"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
