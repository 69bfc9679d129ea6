"""A streamed response cancelled in the middle of reading a chunk, on every backend and event
loop, against the real server on loopback: the cancellation is silent, and the connection
(and, on the requests backend, the worker thread reading it) is released at once, not when the
server sends the rest."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import anyio
import psutil  # type: ignore[import-untyped]  # no stubs installed
import pytest
import requests.adapters

from asyncify_kit import stats
from asyncify_kit._offload import run_sync
from asyncify_kit.http import HttpClient
from asyncify_kit.http._backends._requests import RequestsBackend

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
        with anyio.CancelScope() as scope:
            async with http.stream("GET", "/slow-body", params={"delay": DELAY}) as r:
                ours = await run_sync(established_to, port) - before
                # the 0.5 s start once the connection is found: psutil reads every process's
                # sockets, which took more than 0.5 s under CI's load (``ours`` stayed empty)
                started = time.monotonic()
                scope.deadline = anyio.current_time() + 0.5
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
        assert not [c for c in stats().running_calls if "_chunks_in_thread" in c]
        assert (await http.get("/ok")).text == "ok"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def urllib3_pool(http: HttpClient, url: str) -> Any:
    """The one urllib3 pool of the requests backend of *http*, that of *url*'s host and port."""
    backend = http._backend
    assert isinstance(backend, RequestsBackend) and backend._session is not None
    adapter = backend._session.get_adapter(url)
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    pools = adapter.poolmanager.pools
    (key,) = await run_sync(pools.keys)
    return await run_sync(pools.__getitem__, key)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_requests_cancel_as_the_body_ends_spares_the_next_request(
    http_server: ServerInfo,
) -> None:
    # urllib3 gives a connection back to its pool from inside the read that reaches the end of
    # the body. A reader cancelled just then still counted as reading, so aclose() shut the
    # socket down under the request that had taken the connection meanwhile: that one failed
    # with ReadError ("Connection aborted"). Here the read is held inside that hand-back until
    # the next request has the connection and the reader is cancelled.
    released, taken, resume = threading.Event(), threading.Event(), threading.Event()
    async with HttpClient(http_server.url, backend="requests", retries=0, timeout=5) as http:
        assert (await http.get("/ok")).text == "ok"  # the pool, with one idle connection
        pool = await urllib3_pool(http, http_server.url)
        put_conn, get_conn = pool._put_conn, pool._get_conn

        def put_conn_and_hold(conn: Any) -> None:
            put_conn(conn)
            released.set()
            resume.wait(5)

        def get_conn_and_signal(timeout: float | None = None) -> Any:
            conn = get_conn(timeout)
            taken.set()
            return conn

        async def next_request() -> None:
            await run_sync(released.wait, 5)
            pool._get_conn = get_conn_and_signal
            assert (await http.get("/slow", params={"delay": 0.3})).text == "slow"

        async with http.stream("GET", "/bytes/1000") as r, anyio.create_task_group() as tg:
            pool._put_conn = put_conn_and_hold
            tg.start_soon(next_request)
            with anyio.CancelScope() as scope:

                async def cancel_once_taken() -> None:
                    await run_sync(taken.wait, 5)
                    scope.cancel()
                    await anyio.sleep(0.05)
                    resume.set()  # (the read's cancellation waits for its thread)

                tg.start_soon(cancel_once_taken)
                await r.aiter_bytes().__anext__()  # the one read, which ends the body
            assert scope.cancelled_caught
            resume.set()
    assert released.is_set() and taken.is_set()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_requests_reader_cancelled_between_chunks_releases_once(
    http_server: ServerInfo,
) -> None:
    # A reader cancelled between two chunks leaves the closing of its generator to its worker
    # thread, while aclose() closes the response from another thread. Closing the generator
    # also collected urllib3's generator of the body, which closed the connection and gave
    # it back to the pool too: with the two at once, the pool got it twice and handed it to
    # two requests (ResponseNotReady, AttributeError, or a reply read by the wrong request).
    # Here each hand-back is held until another comes (or 0.5 s passed), so the two overlap.
    puts: list[int] = []
    second = threading.Event()
    async with HttpClient(http_server.url, backend="requests", retries=0, timeout=5) as http:
        assert (await http.get("/ok")).text == "ok"  # the pool, with one idle connection
        backend = http._backend
        assert isinstance(backend, RequestsBackend) and backend._session is not None
        adapter = backend._session.get_adapter(http_server.url)
        assert isinstance(adapter, requests.adapters.HTTPAdapter)
        pools = adapter.poolmanager.pools
        (key,) = await run_sync(pools.keys)
        pool = await run_sync(pools.__getitem__, key)
        put_conn = pool._put_conn

        def put_conn_and_hold(conn: Any) -> None:
            puts.append(id(conn))
            if len(puts) > 1:
                second.set()
            put_conn(conn)
            second.wait(0.5)

        # four pieces sent at once: the rest of the body waits in the socket
        params = {"chunks": 4, "size": 1000, "chunked": 1}
        async with http.stream("GET", "/storm/between", params=params) as r:
            chunks = r.aiter_bytes()
            assert (await chunks.__anext__()).startswith(b"<between#0>")
            pool._put_conn = put_conn_and_hold
            with anyio.CancelScope() as scope:
                scope.cancel()
                await chunks.__anext__()
        assert len(puts) == 1, "the connection went back to the pool twice"
        pool._put_conn = put_conn

        # the pool holds it once: two requests at once each get a connection of their own
        async def slow() -> None:
            assert (await http.get("/slow", params={"delay": 0.1})).text == "slow"

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            tg.start_soon(slow)
