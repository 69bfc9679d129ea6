"""A seeded storm of concurrent requests cancelled at random points, on every backend and
event loop, against a real uvicorn server on loopback of its own.

Each request is planned from one seeded generator: a plain GET, a GET streamed chunk by chunk
(sometimes left early), a POST of up to 2 MiB (read slowly by the server), a chain of
redirects, or a GET with a short per-request timeout; about half run under a cancel scope
with a tiny random deadline (zero for some: cancelled before they connect). Every response
body names its request in every byte (``/storm/<rid>``), so a response that completes must be
exactly its own: bytes of a cancelled request left on a kept-alive connection would show in
the next request's response. After the storm the client must still work, and once it is
closed no socket of this process, no thread of the library's pool and no connection on the
server side may be left.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import psutil  # type: ignore[import-untyped]  # no stubs installed
import pytest

from asyncify_kit import stats
from asyncify_kit._offload import run_sync
from asyncify_kit.http import HttpClient, Limits, Response, Timeout, TimeoutException

from .conftest import ServerInfo, start_server, stop_server
from .server import storm_pieces

pytestmark = pytest.mark.anyio

# another storm: ASYNCIFY_STORM_SEED=<n> pytest tests/http/test_cancellation_storm.py
SEED = int(os.environ.get("ASYNCIFY_STORM_SEED", "20250611"))
TOTAL = 300
IN_FLIGHT = 50
SETTLE = 3.0  # how long the abandoned threads and the server get to wind down after close


@pytest.fixture(scope="module")
def storm_server() -> Iterator[ServerInfo]:
    """A server of this module alone: its connections are the storm's."""
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)


@dataclass
class Plan:
    """One request of the storm, and what its response must be."""

    rid: str
    kind: str  # get, stream, post, redirect, timeout
    method: str
    url: str
    params: dict[str, str]
    body: bytes | None = None
    timeout: Timeout | None = None
    chunk_size: int | None = None
    stop_after: int | None = None  # stream: leave the block after this many chunks
    deadline: float | None = None  # the cancel scope's, when the request is cancelled
    expected: bytes = b""
    received: bytearray = field(default_factory=bytearray)  # streamed so far


def make_plan(rng: random.Random, index: int, kind: str | None = None) -> Plan:
    """A random request; one of *kind*, never cancelled, if given."""
    rid = f"r{index:04d}x{rng.getrandbits(32):08x}"
    given = kind
    kind = kind or rng.choice(["get", "get", "stream", "stream", "post", "redirect", "timeout"])
    chunks = rng.randint(1, 6)
    size = rng.choice([16, 200, 4096, rng.randint(1, 65536)])
    params = {
        "chunks": str(chunks),
        "size": str(size),
        "delay": f"{rng.uniform(0, 0.03):.4f}",
        "gap": f"{rng.choice([0, 0, rng.uniform(0, 0.01)]):.4f}",
        "chunked": rng.choice(["0", "1"]),
    }
    plan = Plan(rid, kind, "GET", f"/storm/{rid}", params)
    if kind == "stream":
        plan.chunk_size = rng.choice([None, 100, 1000, 65536])
        plan.stop_after = rng.choice([None, None, None, 1, 2])
    elif kind == "post":
        plan.method = "POST"
        plan.body = rng.randbytes(rng.choice([0, 100, 70_000, rng.randint(1, 2 << 20)]))
        params["read_gap"] = rng.choice(["0", "0.001"])
    elif kind == "redirect":
        plan.url = f"/storm-redirect/{rid}/{rng.randint(1, 3)}"
        params["hop_delay"] = f"{rng.uniform(0, 0.01):.4f}"
    elif kind == "timeout":
        params["delay"] = f"{rng.uniform(0, 0.08):.4f}"
        plan.timeout = Timeout(rng.uniform(0.01, 0.06))
    if kind != given and rng.random() < 0.5:
        plan.deadline = 0.0 if rng.random() < 0.15 else rng.uniform(0.0005, 0.06)
    plan.expected = b"".join(storm_pieces(rid, chunks, size))
    return plan


def check_response(plan: Plan, r: Response, content: bytes) -> list[str]:
    """What is wrong with *r*, a completed response to *plan*."""
    problems = []
    if r.status_code != 200:
        problems.append(f"status {r.status_code}")
    if r.headers.get("x-rid") != plan.rid:
        problems.append(f"x-rid {r.headers.get('x-rid')!r}")
    if urlsplit(r.url).path != f"/storm/{plan.rid}":
        problems.append(f"url {r.url}")
    if plan.body is not None:
        sha = hashlib.sha256(plan.body).hexdigest()
        if r.headers.get("x-body-sha256") != sha:
            problems.append(
                f"the server got another body: {r.headers.get('x-body-length')} bytes, "
                f"{len(plan.body)} sent"
            )
    if content != plan.expected[: len(content)] or (
        plan.stop_after is None and len(content) != len(plan.expected)
    ):
        problems.append(f"body {content[:60]!r}... ({len(content)} of {len(plan.expected)} bytes)")
    return problems


async def perform(http: HttpClient, plan: Plan) -> list[str]:
    kwargs: dict[str, Any] = {"params": plan.params}
    if plan.body is not None:
        kwargs["content"] = plan.body
    if plan.timeout is not None:
        kwargs["timeout"] = plan.timeout
    if plan.kind != "stream":
        r = await http.request(plan.method, plan.url, **kwargs)
        return check_response(plan, r, r.content)
    async with http.stream(plan.method, plan.url, **kwargs) as r:
        count = 0
        async for chunk in r.aiter_bytes(plan.chunk_size):
            plan.received += chunk
            count += 1
            if plan.stop_after is not None and count >= plan.stop_after:
                break
    return check_response(plan, r, bytes(plan.received))


async def run_plan(http: HttpClient, plan: Plan, outcomes: Counter[str], errors: list[str]) -> None:
    problems: list[str] = []
    try:
        with anyio.move_on_after(math.inf if plan.deadline is None else plan.deadline) as scope:
            problems = await perform(http, plan)
    except TimeoutException as exc:
        if plan.timeout is None:
            problems = [f"timed out with no timeout of its own: {exc!r}"]
        else:
            outcomes["timed out"] += 1
    except Exception as exc:
        problems = [f"raised {exc!r}"]
    else:
        outcomes["cancelled" if scope.cancelled_caught else "completed"] += 1
    if bytes(plan.received) != plan.expected[: len(plan.received)]:
        problems.append(f"streamed {bytes(plan.received[:60])!r}... not a prefix of its body")
    errors.extend(f"{plan.rid} ({plan.kind}, deadline {plan.deadline}): {p}" for p in problems)


async def run_all(http: HttpClient, plans: list[Plan]) -> tuple[Counter[str], list[str]]:
    outcomes: Counter[str] = Counter()
    errors: list[str] = []
    limiter = anyio.CapacityLimiter(IN_FLIGHT)

    async def one(plan: Plan) -> None:
        async with limiter:
            await run_plan(http, plan, outcomes, errors)

    async with anyio.create_task_group() as tg:
        for plan in plans:
            tg.start_soon(one, plan)
    return outcomes, errors


def open_sockets() -> int:
    """The sockets this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except FileNotFoundError:  # the listing's own descriptor, closed since
            pass
    return count


def own_connections() -> list[tuple[Any, ...]]:
    """This process's TCP connections: (local port, remote port, status)."""
    return [
        (c.laddr.port if c.laddr else None, c.raddr.port if c.raddr else None, c.status)
        for c in psutil.Process().net_connections(kind="tcp4")
    ]


def server_connections(server: ServerInfo) -> int:
    """The connections the server holds open (established or closing) on its HTTP port."""
    port = urlsplit(server.url).port
    return sum(
        1
        for c in psutil.Process(server.process.pid).net_connections(kind="tcp4")
        if c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN
    )


# as in test_conformance.test_stream_left_early: under trio, httpx's and httpcore's nested async
# generators warn when collected unfinished (an httpx limitation): those of a response body
# left early (stop_after), and httpx's ByteStream of a request body whose sending was
# cancelled. The facade closed the response, so the connection was released all the same.
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object (AsyncHTTP11Connection|"
    r"HTTP11ConnectionByteStream|PoolByteStream|AsyncResponseStream|BoundAsyncStream|Response|"
    r"ByteStream)\.:pytest.PytestUnraisableExceptionWarning"
)
async def test_cancellation_storm(
    storm_server: ServerInfo, backend: str, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncify_kit")
    rng = random.Random(f"{SEED}-{backend}-{anyio_backend}")
    plans = [make_plan(rng, i) for i in range(TOTAL)]
    after = [
        make_plan(rng, TOTAL + i, kind) for i, kind in enumerate(["get", "stream", "post"] * 20)
    ]
    sockets_before = await run_sync(open_sockets)
    started = time.monotonic()
    async with HttpClient(
        storm_server.url,
        backend=backend,
        retries=0,
        timeout=5,
        limits=Limits(max_connections=25, max_keepalive=25),
    ) as http:
        outcomes, errors = await run_all(http, plans)
        assert not errors, "\n".join(errors[:20])
        # the client is healthy: every request now completes with its own response
        after_outcomes, after_errors = await run_all(http, after)
        assert not after_errors, "\n".join(after_errors[:20])
        assert after_outcomes == {"completed": len(after)}
    # each way of ending was exercised
    assert outcomes["completed"] > 50 and outcomes["cancelled"] > 50, outcomes
    assert outcomes["timed out"] > 0, outcomes
    # after close: the abandoned threads wind down, and nothing stays open on either side
    deadline = time.monotonic() + SETTLE
    while True:
        pool = stats()
        sockets = await run_sync(open_sockets)
        on_server = await run_sync(server_connections, storm_server)
        settled = pool.running == 0 and sockets <= sockets_before and on_server == 0
        if settled or time.monotonic() > deadline:
            break
        await anyio.sleep(0.05)
    assert pool.running == 0, pool.running_calls
    assert sockets <= sockets_before, (
        f"{sockets - sockets_before} sockets left open: {await run_sync(own_connections)}"
    )
    assert on_server == 0, f"{on_server} connections still open on the server"
    ours = [r for r in caplog.records if r.name.startswith("asyncify_kit")]
    assert not ours, [r.getMessage() for r in ours]
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_requests_error_after_the_caller_left_is_not_logged(
    http_server: ServerInfo, caplog: pytest.LogCaptureFixture
) -> None:
    # the requests backend's worker thread finishes the exchange of a cancelled request; when
    # that ended in an HTTP error (here its own read timeout), the thread's late error was
    # logged at WARNING with its traceback, once per cancelled request: on the other backends
    # a cancelled request ends at once and logs nothing
    caplog.set_level(logging.WARNING, logger="asyncify_kit")
    async with HttpClient(http_server.url, backend="requests", retries=0) as http:
        with anyio.move_on_after(0.05) as scope:
            await http.get("/slow", params={"delay": 1}, timeout=0.3)
        assert scope.cancelled_caught
        assert stats().abandoned == 1  # its thread still waits for the response
        deadline = time.monotonic() + 5
        while stats().abandoned and time.monotonic() < deadline:
            await anyio.sleep(0.02)
        assert stats().abandoned == 0  # it timed out, and its outcome was handled
        assert (await http.get("/ok")).text == "ok"
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("asyncify_kit")]
