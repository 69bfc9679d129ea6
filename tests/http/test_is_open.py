"""`HttpClient.is_open` on every backend and event loop, against the real server on
loopback (the other facades': tests/test_facades_is_open.py)."""

from __future__ import annotations

import pytest

from asyncify_kit.http import HttpClient

from .conftest import ServerInfo

pytestmark = pytest.mark.anyio


def state(client: HttpClient) -> str:
    """(A function, so that mypy does not narrow ``is_open`` after the first assert.)"""
    return "open" if client.is_open else "closed"


async def test_is_open_inside_async_with_only(http_server: ServerInfo, backend: str) -> None:
    client = HttpClient(http_server.url, backend=backend, retries=0)
    assert state(client) == "closed"
    for _ in range(2):  # a closed client can be opened again
        async with client:
            assert state(client) == "open" and repr(client).endswith(" open>")
            assert (await client.get("/echo")).status_code == 200
        assert state(client) == "closed" and repr(client).endswith(" closed>")
