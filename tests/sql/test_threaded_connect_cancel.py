"""A caller cancelled while the pool of a blocking driver (psycopg2, PyMySQL, psycopg on trio)
opens a connection for it leaves at once, as on the native drivers: the connect goes on in
its thread, and what it makes is the pool's (idle), or closed when the pool was closed
meanwhile; a connect that fails then is logged at debug level only. The caller used to wait
for the whole connect (up to ``connect_timeout`` with a server that never answers), and a
failure was logged as a warning with its traceback.

The servers are on 127.0.0.1: a listener that accepts and never answers, and the real
PostgreSQL and MariaDB behind a relay that holds each new connection a while first.
"""

from __future__ import annotations

import logging
import secrets
import select
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import psutil  # type: ignore[import-untyped]  # no stubs installed
import pytest

from asyncify_kit import BackendURL, run_sync
from asyncify_kit.sql import Database, PoolStats

from .conftest import SERVER_CASES

pytestmark = pytest.mark.anyio

THREADED_CASES = [
    p
    for p in SERVER_CASES
    if p.values[0][0] in ("postgresql+psycopg2", "mysql+pymysql")  # type: ignore[index]
    or p.values[0] == ("postgresql+psycopg", "trio")
]

#: the relay holds each connection this long before it reaches the real server
HOLD = 1.5
#: the callers are cancelled this long after they started
CANCEL_AFTER = 0.3
#: how soon they must have left (they waited for the whole connect: HOLD, or 2 s)
LEFT_WITHIN = 0.8


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


class Relay:
    """A TCP listener on 127.0.0.1 that holds each connection it accepts *hold* seconds
    (reading what the client sends meanwhile), then relays it to *upstream* both ways; with
    no *upstream*, it never answers (a hung server), and hangs up after 8 s. Counts the
    connections it accepted."""

    def __init__(self, upstream: tuple[str, int] | None, hold: float = HOLD) -> None:
        self._upstream = upstream
        self._hold = hold
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.accepted = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._accept_thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.02)
            if not ready:
                continue
            client, _ = self._listener.accept()
            with self._lock:
                self.accepted += 1
            thread = threading.Thread(target=self._relay, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _relay(self, client: socket.socket) -> None:
        started = time.monotonic()
        upstream: socket.socket | None = None
        pending: list[bytes] = []
        try:
            while not self._stop.is_set():
                waited = time.monotonic() - started
                if upstream is None and self._upstream is not None and waited >= self._hold:
                    upstream = socket.create_connection(self._upstream)
                    for chunk in pending:
                        upstream.sendall(chunk)
                elif upstream is None and waited > 8:
                    return
                ends = [client] if upstream is None else [client, upstream]
                ready, _, _ = select.select(ends, [], [], 0.02)
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    if sock is upstream:
                        client.sendall(data)
                    elif upstream is not None:
                        upstream.sendall(data)
                    else:
                        pending.append(data)
        except OSError:
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def count(self) -> int:
        with self._lock:
            return self.accepted

    def close(self) -> None:
        self._stop.set()
        self._accept_thread.join(5)
        for thread in self._threads:
            thread.join(5)
        self._listener.close()


@pytest.fixture
def silent() -> Iterator[Relay]:
    relay = Relay(None)
    try:
        yield relay
    finally:
        relay.close()


@pytest.fixture
def slow(url: BackendURL) -> Iterator[Relay]:
    relay = Relay((url.hostname, int(url.port or 0)))
    try:
        yield relay
    finally:
        relay.close()


def _sockets_to(port: int) -> list[Any]:
    """This process's TCP sockets connected to *port* (none once the client closed them)."""
    return [
        c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port
    ]


def _connect_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("asyncify-sql-") and t.name.endswith("-connect")
    ]


async def _left_after(call: Callable[[], Awaitable[object]]) -> float:
    """Run *call*, cancelled after `CANCEL_AFTER`; how long until it left."""
    started = anyio.current_time()
    with anyio.move_on_after(CANCEL_AFTER) as scope:
        await call()
    assert scope.cancelled_caught
    return anyio.current_time() - started


async def _until(check: Callable[[], bool], within: float = 10.0) -> None:
    with anyio.fail_after(within):
        while not check():  # (a pool's counts change in worker threads)
            await anyio.sleep(0.02)


async def _all_closed(relay: Relay) -> None:
    """The connects to *relay* ended and closed their sockets; their threads are gone."""
    with anyio.fail_after(10):
        while await run_sync(_sockets_to, relay.port) or _connect_threads():
            await anyio.sleep(0.05)


def _loud(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def _failed_late(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "failed after its caller left" in r.getMessage()]


@pytest.mark.parametrize("case", THREADED_CASES, indirect=True)
async def test_a_caller_cancelled_while_a_hung_server_is_connected_to_leaves_at_once(
    case: tuple[str, str], silent: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """The server accepts and never answers: a query, a transaction and ``connect()``
    cancelled while their connection opens leave at once (they waited ``connect_timeout``).
    The connects keep their places in the pool until they fail, which is logged at debug
    level (it was a warning with a traceback), and leave no socket or thread behind."""
    caplog.set_level(logging.DEBUG, logger="asyncify_kit")
    backend = case[0]
    url = BackendURL.parse(f"{backend}://app:{secrets.token_hex(6)}@127.0.0.1:{silent.port}/s")

    async def in_transaction() -> None:
        async with db.transaction():
            pass  # pragma: no cover - the connect never ends in time

    async with Database(url, min_size=0, max_size=2, connect_timeout=2) as db:
        assert await _left_after(lambda: db.fetch_val("select 1")) < LEFT_WITHIN
        assert await _left_after(in_transaction) < LEFT_WITHIN
        assert db.pool_stats() == PoolStats(size=2, idle=0, in_use=0, waiting=0, max_size=2)
        await _until(lambda: db.pool_stats().size == 0)
        assert db.pool_stats() == PoolStats(size=0, idle=0, in_use=0, waiting=0, max_size=2)
    await _all_closed(silent)
    assert silent.count() == 2
    assert len(_failed_late(caplog)) == 2

    # at startup: connect() opens min_size connections
    starting = Database(url, min_size=1, connect_timeout=2)
    assert await _left_after(starting.connect) < LEFT_WITHIN
    assert starting.pool_stats() == PoolStats(size=0, idle=0, in_use=0, waiting=0, max_size=10)
    await _all_closed(silent)
    assert silent.count() == 3
    assert len(_failed_late(caplog)) == 3
    assert _loud(caplog) == []


@pytest.mark.parametrize("case", THREADED_CASES, indirect=True)
async def test_a_connection_opened_for_a_cancelled_caller_goes_to_the_pool(
    case: tuple[str, str], url: BackendURL, slow: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """Against the real server, each new connection held `HOLD` s on its way: a query and a
    transaction cancelled while their connection opens leave at once, and the connection,
    once open, is idle in the pool and serves the next statements (no other connect)."""
    caplog.set_level(logging.DEBUG, logger="asyncify_kit")
    proxied = url.replace(host="127.0.0.1", port=slow.port)

    async def in_transaction() -> None:
        async with db.transaction():
            await db.fetch_val("select 1")  # pragma: no cover - its connect is too slow

    async with Database(proxied, min_size=0, max_size=2) as db:
        assert await _left_after(lambda: db.fetch_val("select 1")) < LEFT_WITHIN
        assert db.pool_stats() == PoolStats(size=1, idle=0, in_use=0, waiting=0, max_size=2)
        await _until(lambda: db.pool_stats().idle == 1)
        assert db.pool_stats() == PoolStats(size=1, idle=1, in_use=0, waiting=0, max_size=2)
        assert await db.fetch_val("select 1") == 1
        assert slow.count() == 1

        # another task holds the pool's one connection: the transaction opens a new one
        done = anyio.Event()

        async def hold(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            async with db.connection() as held:
                assert await held.fetch_val("select 2") == 2
                task_status.started()
                await done.wait()

        async with anyio.create_task_group() as tg:
            await tg.start(hold)
            assert await _left_after(in_transaction) < LEFT_WITHIN
            assert db.pool_stats() == PoolStats(size=2, idle=0, in_use=1, waiting=0, max_size=2)
            await _until(lambda: db.pool_stats().idle == 1)
            done.set()
        assert db.pool_stats() == PoolStats(size=2, idle=2, in_use=0, waiting=0, max_size=2)
        async with db.transaction():
            assert await db.fetch_val("select 3") == 3
        assert slow.count() == 2
    assert db.pool_stats() == PoolStats(size=0, idle=0, in_use=0, waiting=0, max_size=2)
    await _all_closed(slow)
    assert _loud(caplog) == [] and _failed_late(caplog) == []


@pytest.mark.parametrize("case", THREADED_CASES, indirect=True)
async def test_a_connection_opened_for_a_cancelled_caller_of_a_closed_pool_is_closed(
    case: tuple[str, str], url: BackendURL, slow: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """``disconnect()`` does not wait for a connect whose caller left (as on asyncpg), and a
    cancelled ``connect()`` closes its pool: the connection such a connect makes afterwards
    is closed, not left to the garbage collector."""
    caplog.set_level(logging.DEBUG, logger="asyncify_kit")
    proxied = url.replace(host="127.0.0.1", port=slow.port)

    db = Database(proxied, min_size=0)
    await db.connect()
    assert await _left_after(lambda: db.fetch_val("select 1")) < LEFT_WITHIN
    started = anyio.current_time()
    await db.disconnect()
    assert anyio.current_time() - started < LEFT_WITHIN
    assert db.pool_stats() == PoolStats(size=0, idle=0, in_use=0, waiting=0, max_size=10)
    await _all_closed(slow)
    assert slow.count() == 1

    starting = Database(proxied, min_size=1)
    assert await _left_after(starting.connect) < LEFT_WITHIN
    assert starting.pool_stats() == PoolStats(size=0, idle=0, in_use=0, waiting=0, max_size=10)
    await _all_closed(slow)
    assert slow.count() == 2
    assert _loud(caplog) == [] and _failed_late(caplog) == []
