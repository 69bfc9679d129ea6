"""Before reusing a pooled connection, httpcore asks its network stream whether the socket
is readable (data, or the server's close, waiting): twice a request. The httpx backend's
streams answer from the socket itself, as httpcore's anyio stream does, but without anyio
building its table of every attribute of the stream (15 us of the event loop each time on
the test machine, about 3% of a GET over loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import anyio._backends._asyncio as anyio_asyncio
import pytest

from asyncify_kit.http import HttpClient

from .conftest import QuietHandler, local_server

pytestmark = pytest.mark.anyio


class _ClosesAfterEach(QuietHandler):
    """Answers with the client's port, then closes the connection without saying so (no
    ``Connection: close``): the client sees it only by reading the socket's end."""

    def do_GET(self) -> None:
        self.answer(str(self.client_address[1]).encode())
        self.close_connection = True


class _KeepsAlive(QuietHandler):
    def do_GET(self) -> None:
        self.answer(b"ok")


@pytest.fixture
def closing_url() -> Iterator[str]:
    with local_server(_ClosesAfterEach) as url:
        yield url


@pytest.fixture
def keepalive_url() -> Iterator[str]:
    with local_server(_KeepsAlive) as url:
        yield url


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_connection_closed_by_server_is_not_reused(
    anyio_backend: str, closing_url: str
) -> None:
    """Each GET goes on a new connection: a pooled one the server closed is seen as such
    (readable: its end is waiting) and dropped. Were it taken as idle, the GET would fail
    with the server's disconnection."""
    async with HttpClient(closing_url, backend="httpx", retries=0, timeout=10) as http:
        ports = []
        for _ in range(5):
            ports.append((await http.get("/")).text)
            await anyio.sleep(0.05)  # the server's close reaches the client's socket
        assert len(set(ports)) == 5


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_reuse_check_does_not_build_anyio_attribute_tables(
    anyio_backend: str, keepalive_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    table = anyio_asyncio.SocketStream.extra_attributes

    def counted(self: anyio_asyncio.SocketStream) -> object:
        nonlocal calls
        calls += 1
        return table.fget(self)  # type: ignore[attr-defined]

    monkeypatch.setattr(anyio_asyncio.SocketStream, "extra_attributes", property(counted))
    async with HttpClient(keepalive_url, backend="httpx", retries=0, timeout=10) as http:
        assert (await http.get("/")).text == "ok"  # the connection is made
        calls = 0
        for _ in range(10):
            assert (await http.get("/")).text == "ok"
    assert calls == 0  # were 2 a GET
