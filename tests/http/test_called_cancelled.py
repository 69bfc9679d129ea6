"""A request made while its caller is already cancelled is never sent, on every backend.

"Already cancelled": a cancelled anyio or trio cancel scope around the call, or on asyncio a
``task.cancel()`` not yet delivered. A POST could reach the server although its caller saw
the cancellation: sent on a pooled connection before the backend's first real await, or
picked up by a worker thread before the cancellation came. `HttpClient` now checks first.
The server counts the requests that reach ``/retry/<id>``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from asyncify_kit.http import HttpClient

from .conftest import COMBOS, ServerInfo

pytestmark = pytest.mark.anyio

ROUNDS = 20
ON_ASYNCIO = [combo for combo in COMBOS if combo[1] == "asyncio"]


async def _streamed(http: HttpClient, path: str) -> None:
    async with http.stream("POST", path, content=b"x") as response:
        await response.aread()


Send = Callable[[HttpClient, str], Awaitable[Any]]
SENDS: dict[str, Send] = {
    "post": lambda http, path: http.post(path, content=b"x"),
    "request": lambda http, path: http.request("PUT", path, json={"a": 1}),
    "stream": _streamed,
}


async def _reached(http: HttpClient, test_id: str) -> int:
    response = await http.get(f"/attempts/{test_id}")
    return int(response.json()["attempts"])


@pytest.mark.parametrize("send", list(SENDS))
async def test_called_in_a_cancelled_scope(
    http_server: ServerInfo, backend: str, test_id: str, send: str
) -> None:
    run = SENDS[send]
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        assert (await http.get("/ok")).text == "ok"  # a pooled connection, ready to send on
        for _ in range(ROUNDS):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await run(http, f"/retry/{test_id}?fail=0")
            assert scope.cancelled_caught
        assert await _reached(http, test_id) == 0


@pytest.mark.parametrize("combo", ON_ASYNCIO, ids=[b for b, _ in ON_ASYNCIO])  # asyncio's
@pytest.mark.parametrize("send", list(SENDS))
async def test_called_with_a_task_cancel_pending(
    http_server: ServerInfo, backend: str, test_id: str, send: str
) -> None:
    run = SENDS[send]
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        assert (await http.get("/ok")).text == "ok"

        async def cancelled_then() -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await run(http, f"/retry/{test_id}?fail=0")

        for _ in range(ROUNDS):
            with pytest.raises(asyncio.CancelledError):
                await asyncio.create_task(cancelled_then())
        assert await _reached(http, test_id) == 0
