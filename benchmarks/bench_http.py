"""HTTP: GET round trips through `HttpClient` versus the raw libraries.

Two scenarios against a minimal keep-alive HTTP/1.1 server in a separate process (uvloop,
a fixed 13-byte response, so the clients are what is measured):

* sequential: one GET at a time;
* 200 concurrent: 200 tasks each sending GETs back to back.

Implementations: raw ``httpx.AsyncClient`` (baseline), raw ``aiohttp.ClientSession``
(reference), asyncify-kit's ``httpx``, ``aiohttp`` and ``requests`` backends, and the
hand-written way of calling requests from async code, ``asyncio.to_thread(session.get, url)``.
Every client allows 200 connections and keeps them alive; retries are off.

``python -m benchmarks.bench_http --serve`` runs the server alone and prints its port.
"""

from __future__ import annotations

import asyncio
import atexit
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from benchmarks._harness import Case, Runner, Scenario, Section, Target, timed

CONCURRENCY = 200
CONNECTIONS = 200
TIMEOUT = 60.0

BASELINE = "httpx.AsyncClient (raw)"
RAW_AIOHTTP = "aiohttp.ClientSession (raw)"
KIT_HTTPX = "asyncify-kit httpx"
KIT_AIOHTTP = "asyncify-kit aiohttp"
KIT_REQUESTS = "asyncify-kit requests"
TO_THREAD = "asyncio.to_thread(requests)"

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
    b"Connection: keep-alive\r\n\r\nHello, world!"
)


# --- the server (its own process) ------------------------------------------------------------


class _Responder(asyncio.Protocol):
    """Answers every request on a keep-alive connection with the fixed response."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        count = self.buffer.count(b"\r\n\r\n")  # GETs only: no request bodies
        if count:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * count)


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Responder, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


_server: subprocess.Popen[bytes] | None = None
_url = ""


def _server_url() -> str:
    """Start the server process once (stopped at exit) and return its URL."""
    global _server, _url
    if _server is None:
        _server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_http", "--serve"],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert _server.stdout is not None
        port = int(_server.stdout.readline())
        _url = f"http://127.0.0.1:{port}/"
        atexit.register(_stop_server)
    return _url


def _stop_server() -> None:
    if _server is not None:
        _server.terminate()
        _server.wait(timeout=10)


# --- the runners -------------------------------------------------------------------------------


def _runner(get: Callable[[], Awaitable[object]], concurrent: bool) -> Runner:
    if not concurrent:

        async def sequential(ops: int) -> float:
            return await timed(ops, get)

        return sequential

    async def many(ops: int) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        per_task, extra = divmod(ops, CONCURRENCY)
        await asyncio.gather(*(timed(per_task + (i < extra), get) for i in range(CONCURRENCY)))
        return loop.time() - start

    return many


def _raw_httpx(concurrent: bool) -> Callable[[], Any]:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        import httpx

        url = _server_url()
        limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        async with httpx.AsyncClient(limits=limits, timeout=TIMEOUT) as client:

            async def get() -> bytes:
                r = await client.get(url)
                return r.content

            yield _runner(get, concurrent)

    return setup


def _raw_aiohttp(concurrent: bool) -> Callable[[], Any]:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        import aiohttp

        url = _server_url()
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT, sock_read=TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def get() -> bytes:
                async with session.get(url) as r:
                    return await r.read()

            yield _runner(get, concurrent)

    return setup


def _kit(backend: str, concurrent: bool) -> Callable[[], Any]:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        from asyncify_kit.http import HttpClient, Limits

        base = _server_url()
        limits = Limits(max_connections=CONNECTIONS, max_keepalive=CONNECTIONS)
        async with HttpClient(
            base, backend=backend, retries=0, limits=limits, timeout=TIMEOUT
        ) as http:

            async def get() -> bytes:
                r = await http.get("/")
                return r.content

            yield _runner(get, concurrent)

    return setup


def _to_thread(concurrent: bool) -> Callable[[], Any]:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        import requests
        import requests.adapters

        url = _server_url()
        session = requests.Session()
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=CONNECTIONS))
        try:

            async def get() -> bytes:
                r = await asyncio.to_thread(session.get, url, timeout=TIMEOUT)
                return r.content

            yield _runner(get, concurrent)
        finally:
            session.close()

    return setup


def _cases() -> list[Case]:
    cases = []
    for scenario, concurrent in (("sequential", False), ("concurrent", True)):
        cases += [
            Case(scenario, BASELINE, setup=_raw_httpx(concurrent), reference=True),
            Case(scenario, RAW_AIOHTTP, setup=_raw_aiohttp(concurrent), reference=True),
            Case(scenario, KIT_HTTPX, setup=_kit("httpx", concurrent), peer=False),
            Case(scenario, KIT_AIOHTTP, setup=_kit("aiohttp", concurrent), peer=False),
            Case(scenario, KIT_REQUESTS, setup=_kit("requests", concurrent), peer=False),
            Case(scenario, TO_THREAD, setup=_to_thread(concurrent)),
        ]
    return cases


SECTION = Section(
    name="http",
    title="HTTP: GET round trips",
    baseline=BASELINE,
    scenarios=(
        Scenario(
            "sequential",
            "one GET at a time",
            ops=140,
            targets=(
                Target(KIT_HTTPX, max_ratio=1.05),
                Target(KIT_REQUESTS, faster_than_peers=True),
            ),
        ),
        Scenario(
            "concurrent",
            f"{CONCURRENCY} concurrent GETs",
            ops=400,
            quick_ops=200,
            targets=(
                Target(KIT_HTTPX, max_ratio=1.05),
                Target(KIT_AIOHTTP, max_ratio=0.6),
                Target(KIT_REQUESTS, faster_than_peers=True),
            ),
        ),
    ),
    cases=_cases,
    # 3x the rounds (a third of the sequential ops): the server process shares the two cores,
    # and one round's ratio swung from 0.89x to 1.74x for the same code
    repeat_factor=3,
    packages=("httpx", "aiohttp", "requests"),
    notes=(
        "The server is a minimal keep-alive HTTP/1.1 responder on uvloop in its own process.",
        f"Every client allows {CONNECTIONS} connections, kept alive, with {TIMEOUT:.0f} s "
        "timeouts; asyncify-kit retries are off. asyncio.to_thread uses asyncio's default "
        "executor (min(32, CPUs + 4) threads) and a requests session whose pool holds 200 "
        "connections; asyncify-kit's requests backend uses its default 40-thread pool.",
    ),
)


def _main() -> None:
    if "--serve" not in sys.argv:
        raise SystemExit("usage: python -m benchmarks.bench_http --serve")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dev dependency
        asyncio.run(_serve())
    else:
        uvloop.run(_serve())


if __name__ == "__main__":
    _main()
