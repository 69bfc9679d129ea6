"""What closing an `HttpClient` does to a streamed response still open, on every backend and
event loop, against the real server on loopback."""

from __future__ import annotations

import pytest

from asyncify_kit.http import HttpClient, ReadError

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
