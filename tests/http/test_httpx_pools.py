"""The httpx backend spreads requests over several `httpx.AsyncClient` pools (one per 25
allowed connections, at most 8): each request goes to the pool with the fewest requests
under way. Requests one at a time all use the first pool and its one connection (round-robin
opened a connection in every pool and took turns among them); requests at once still spread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import pytest

from asyncify_kit.http import HttpClient, Limits

from .conftest import QuietHandler, local_server

pytestmark = pytest.mark.anyio


class _Peers(QuietHandler):
    """Answers with the client's port (one per connection), after ``?wait`` 0.2 s."""

    def do_GET(self) -> None:
        if self.path.endswith("?wait"):
            time.sleep(0.2)
        self.answer(str(self.client_address[1]).encode())


@pytest.fixture
def peers_url() -> Iterator[str]:
    with local_server(_Peers) as url:
        yield url


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_requests_one_at_a_time_keep_one_connection(
    anyio_backend: str, peers_url: str
) -> None:
    limits = Limits(max_connections=200, max_keepalive=200)  # 8 pools
    async with HttpClient(peers_url, backend="httpx", limits=limits, timeout=10) as http:
        ports = {(await http.get("/")).text for _ in range(16)}
        assert len(ports) == 1
        at_once: list[str] = []

        async def get() -> None:
            at_once.append((await http.get("/?wait")).text)

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(get)
        assert len(set(at_once)) == 40  # each on a connection of its own
