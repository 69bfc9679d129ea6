"""What closing an `HttpClient` does to a streamed response still open, on every backend and
event loop, against the real server on loopback."""

from __future__ import annotations

from urllib.parse import urlsplit

import psutil  # type: ignore[import-untyped]  # no stubs installed
import pytest

from asyncify_kit._offload import run_sync
from asyncify_kit.http import HttpClient, ReadError, TimeoutException

from .conftest import ServerInfo

pytestmark = pytest.mark.anyio

SIZE = 8 << 20


async def test_reading_a_stream_after_the_client_closed(
    http_server: ServerInfo, backend: str
) -> None:
    # aclose() closes every connection: the rest of a body still being streamed cannot be
    # read, and says so with ReadError (aiohttp raised a raw RuntimeError("Connection
    # closed."); requests went on reading from a connection aclose() had left open)
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        stream = http.stream("GET", f"/stream/{SIZE}", params={"chunk": 65536})
        r = await stream.__aenter__()
        chunks = r.aiter_bytes()
        received = len(await chunks.__anext__())
    with pytest.raises(ReadError) as info:
        async for chunk in chunks:
            received += len(chunk)
    assert received < SIZE
    assert info.value.__cause__ is info.value.orig
    await stream.__aexit__(None, None, None)


def connections_to(port: int) -> set[tuple[str, int]]:
    """The local addresses of this process's TCP connections open to *port*."""
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process().net_connections(kind="tcp4")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_requests_close_closes_idle_connections(http_server: ServerInfo) -> None:
    # urllib3 2.8's PoolManager.clear() (which Session.close() calls) forgets its pools
    # without closing them: their idle keep-alive connections stayed open until the pools
    # were garbage-collected, and every urllib3 error holds its pool (``.pool``), as the
    # TimeoutException kept here does through `.orig`
    port = urlsplit(http_server.url).port
    assert port is not None
    before = await run_sync(connections_to, port)
    async with HttpClient(http_server.url, backend="requests", retries=0) as http:
        with pytest.raises(TimeoutException) as info:
            await http.get("/slow", params={"delay": 0.5}, timeout=0.05)
        assert (await http.get("/ok")).text == "ok"  # its connection stays in the pool
        assert await run_sync(connections_to, port) - before
    assert info.value.orig is not None  # still held, and with it urllib3's pool
    assert not await run_sync(connections_to, port) - before
