"""Closing the client while requests wait for a free connection of its pool (all
``max_connections`` busy), on every backend and event loop, against a real server on
loopback: they fail at once with `ReadError`, and none is sent. The requests backend left
them waiting on urllib3's closed pool until their pool timeout (`TimeoutException`; with
``pool=None``, for good, its worker thread too); the httpx backend sent them, on new
connections, once the request under way had ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio
import pytest

from asyncify_kit._executor import DEFAULT_POOL, get_pool
from asyncify_kit._offload import run_sync
from asyncify_kit.http import HttpClient, HTTPError, Limits, ReadError, Response, Timeout

from .conftest import QuietHandler, local_server

pytestmark = pytest.mark.anyio

HOLD = 1.0  # the server answers after this long: the one connection stays busy meanwhile
WAITING = 3  # requests waiting for that connection when the client closes
AT_ONCE = 1.0  # what "at once" allows, from the close (well under the pool timeout)


@dataclass
class _Server:
    url: str
    arrived: threading.Event = field(default_factory=threading.Event)
    paths: list[str] = field(default_factory=list)  # the requests received, in order


@pytest.fixture
def holding_server() -> Iterator[_Server]:
    server = _Server("")

    class Holding(QuietHandler):
        def do_GET(self) -> None:
            server.paths.append(self.path)
            server.arrived.set()
            time.sleep(HOLD)
            self.answer(b"held")

    with local_server(Holding) as url:
        server.url = url
        yield server


@pytest.mark.parametrize("pool", [5.0, None], ids=["pool=5", "pool=None"])
async def test_closing_the_client_fails_the_requests_waiting_for_a_connection(
    holding_server: _Server, backend: str, pool: float | None
) -> None:
    outcomes: dict[str, tuple[Response | HTTPError, float]] = {}

    async def get(path: str) -> None:
        try:
            result: Response | HTTPError = await http.get(path)
        except HTTPError as exc:
            result = exc
        outcomes[path] = (result, time.monotonic())

    limits = Limits(max_connections=1)
    timeout = Timeout(10, pool=pool)
    async with HttpClient(
        holding_server.url, backend=backend, retries=0, timeout=timeout, limits=limits
    ) as http:
        with anyio.fail_after(HOLD + 4):  # (the requests backend's waited for good)
            async with anyio.create_task_group() as tg:
                tg.start_soon(get, "/held")
                assert await run_sync(holding_server.arrived.wait, 5)
                for n in range(WAITING):
                    tg.start_soon(get, f"/waiting{n}")
                await anyio.sleep(0.3)  # each waits for the one connection
                closing = time.monotonic()
                await http.aclose()
                assert time.monotonic() - closing < AT_ONCE  # the close waits for none of them

    for n in range(WAITING):
        result, ended = outcomes[f"/waiting{n}"]
        # before: TimeoutException (pool) 5 s after the close on requests; a 200 on httpx
        assert type(result) is ReadError, repr(result)
        assert ended - closing < AT_ONCE
    assert holding_server.paths == ["/held"]  # no waiting request was sent

    # the request under way when the client closed, as docs/http.md says
    held, _ = outcomes["/held"]
    if backend == "requests":  # its worker thread finishes the exchange
        assert isinstance(held, Response) and held.text == "held", repr(held)
    else:
        assert type(held) is ReadError, repr(held)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_requests_a_request_its_thread_takes_up_after_the_close_is_a_read_error(
    holding_server: _Server,
) -> None:
    """The requests backend: a request the client took, whose worker thread starts only
    after the client has closed (every thread of the pool busy meanwhile), fails with the
    `ReadError` of the requests the close broke. It raised a bare ``RuntimeError`` ("the
    requests backend is not open")."""
    pool = get_pool(DEFAULT_POOL)
    release = threading.Event()
    outcome: list[BaseException] = []

    async def get(http: HttpClient) -> None:
        try:
            await http.get("/never")
        except Exception as exc:
            outcome.append(exc)

    client = HttpClient(holding_server.url, backend="requests", retries=0)
    async with client as http, anyio.create_task_group() as busy:
        for _ in range(pool.size):  # every thread of the pool waits for *release*
            busy.start_soon(run_sync, release.wait, 10)
        await anyio.sleep(0.2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(get, http)
            await anyio.sleep(0.1)  # the request is queued behind the busy threads
            tg.start_soon(http.aclose)  # takes the session at once, then waits too
            await anyio.sleep(0.1)
            release.set()
    assert len(outcome) == 1 and type(outcome[0]) is ReadError, repr(outcome)
    assert "the client was closed" in str(outcome[0])
    assert holding_server.paths == []
