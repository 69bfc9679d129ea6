"""Opening and closing a `Database` on every backend: what a failed connect says, how
``connect_timeout`` bounds a connect to a server that never answers, and what `pool_stats()`
reports before `connect()` and after `disconnect()`."""

from __future__ import annotations

import contextlib
import secrets
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import psutil  # type: ignore[import-untyped]  # no stubs installed
import pytest

from asyncify_kit import BackendURL, run_sync
from asyncify_kit.sql import Database, OperationalError, PoolStats
from tests.conftest import ON_CI

from .conftest import CASES, SERVER_CASES

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


def _closed(max_size: int) -> PoolStats:
    return PoolStats(size=0, idle=0, in_use=0, waiting=0, max_size=max_size)


@pytest.mark.parametrize("case", CASES, indirect=True)
async def test_pool_stats_before_connect_and_after_disconnect(url: BackendURL) -> None:
    db = Database(url, min_size=2, max_size=3)
    assert db.pool_stats() == _closed(3)  # never connected: an empty pool, no error
    for _ in range(2):  # and again after a reconnect
        await db.connect()
        assert await db.fetch_val("select 1") == 1
        stats = db.pool_stats()
        assert (stats.size, stats.in_use, stats.max_size) == (2, 0, 3)
        await db.disconnect()
        assert db.pool_stats() == _closed(3)
        # using the closed database is still an error
        with pytest.raises(OperationalError, match="not connected"):
            await db.fetch_val("select 1")
    await db.disconnect()  # twice is fine, and so is the count
    assert db.pool_stats() == _closed(3)
    async with Database(url, min_size=1, max_size=2) as other:
        assert await other.fetch_val("select 2") == 2
    assert other.pool_stats() == _closed(2)


@pytest.mark.parametrize("case", CASES, indirect=True)
async def test_pool_stats_during_a_disconnect_show_the_connection_still_lent(
    url: BackendURL,
) -> None:
    """While `disconnect()` waits for a lent connection, the stats show it; once its block
    ends, the connection goes back to the closing pool, which then closes at once (not after
    the whole ``close_timeout``)."""
    db = Database(url, min_size=1, max_size=2, close_timeout=5)
    await db.connect()
    held, release = anyio.Event(), anyio.Event()

    async def hold() -> None:
        async with db.connection():
            held.set()
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        await held.wait()
        tg.start_soon(db.disconnect)  # waits (up to close_timeout) for the lent connection
        await anyio.sleep(0.1)
        stats = db.pool_stats()
        assert (stats.in_use, stats.max_size) == (1, 2)
        released = anyio.current_time()
        release.set()
    assert anyio.current_time() - released < 2.5
    assert db.pool_stats() == _closed(2)


def _no_such_database(url: BackendURL) -> BackendURL:
    return url.replace(path=f"/no_such_db_{secrets.token_hex(4)}")


@pytest.mark.parametrize("case", SERVER_CASES, indirect=True)
@pytest.mark.parametrize("failure", ["no such database", "wrong password"])
async def test_a_failed_connect_names_host_port_and_database(url: BackendURL, failure: str) -> None:
    secret = f"Wr0ng-{secrets.token_hex(6)}"
    bad = _no_such_database(url) if failure == "no such database" else url.replace(password=secret)
    expected = [f"host {url.host}", f"port {url.port}", f"database {bad.database!r}"]

    def check(exc: OperationalError) -> None:
        message = str(exc)
        assert message.startswith("could not connect to ")
        assert all(part in message for part in expected), message
        assert f"user {url.username!r}" in message
        # neither password nor the URL (nor its options) is shown
        assert secret not in message and (url.password or secret) not in message
        assert "://" not in message and "connect_timeout" not in message
        assert exc.orig is not None and exc.__cause__ is exc.orig

    # at startup (min_size connections opened by connect())...
    db = Database(bad, min_size=1, connect_timeout=5)
    with pytest.raises(OperationalError) as caught:
        await db.connect()
    check(caught.value)
    assert db.pool_stats() == PoolStats(size=0, idle=0, in_use=0, waiting=0, max_size=10)

    # ...and when the pool opens a connection later, for a query or a transaction
    async with Database(bad, min_size=0, connect_timeout=5) as lazy:
        with pytest.raises(OperationalError) as caught:
            await lazy.fetch_val("select 1")
        check(caught.value)
        with pytest.raises(OperationalError) as caught:
            async with lazy.transaction():
                pass
        check(caught.value)
        stats = lazy.pool_stats()
        assert (stats.size, stats.in_use, stats.waiting) == (0, 0, 0)


class SilentServer:
    """A TCP listener on 127.0.0.1 that accepts every connection and never writes a byte (a
    hung server, or a wrong port that accepts and stays silent).

    A thread accepts the connections and holds them, reading (and ignoring) what the client
    sends, and counts the connections the client closed. One still open after *hang_up*
    seconds is closed from this side, so that a client that would wait for ever ends too.
    """

    def __init__(self, hang_up: float = 6.0) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port: int = self._listener.getsockname()[1]
        self._hang_up = hang_up
        self._lock = threading.Lock()
        self.accepted = 0
        self.closed_by_client = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        held: dict[socket.socket, float] = {}
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self._listener, *held], [], [], 0.02)
                for sock in ready:
                    if sock is self._listener:
                        conn, _ = self._listener.accept()
                        held[conn] = time.monotonic()
                        with self._lock:
                            self.accepted += 1
                        continue
                    try:
                        data = sock.recv(4096)
                    except OSError:  # reset by the client: closed too
                        data = b""
                    if not data:
                        del held[sock]
                        sock.close()
                        with self._lock:
                            self.closed_by_client += 1
                now = time.monotonic()
                for sock, since in list(held.items()):
                    if now - since > self._hang_up:
                        del held[sock]
                        sock.close()
        finally:
            for sock in held:
                sock.close()

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.accepted, self.closed_by_client

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def _sockets_to(port: int) -> list[Any]:
    """This process's TCP sockets connected to *port* (none once the client closed them)."""
    return [
        c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port
    ]


@pytest.mark.parametrize("case", SERVER_CASES, indirect=True)
async def test_connect_timeout_bounds_a_connect_to_a_server_that_never_answers(
    case: tuple[str, str], silent_server: SilentServer
) -> None:
    """The server accepts the TCP connection and never sends its greeting: ``connect_timeout``
    bounds the whole connect (on MySQL the drivers' own timeout covers the TCP connect only),
    at startup and when the pool grows later, for a query and for a transaction. It is the
    named `OperationalError`, and no socket to the server is left open."""
    backend = case[0]
    port = silent_server.port
    url = BackendURL.parse(f"{backend}://app:{secrets.token_hex(6)}@127.0.0.1:{port}/shop")
    target = ["host 127.0.0.1", f"port {port}", "database 'shop'", "user 'app'"]

    def check(exc: BaseException, elapsed: float) -> None:
        assert isinstance(exc, OperationalError), repr(exc)
        message = str(exc)
        assert message.startswith("could not connect to "), message
        assert all(part in message for part in target), message
        if backend.startswith("mysql"):  # as asyncpg's; libpq says it in its own words
            assert "no connection within connect_timeout=1s (TimeoutError)" in message
        # connect_timeout=1 (libpq waits 2 s at the least), not the server hanging up (6 s)
        assert 0.9 <= elapsed < 3.5, f"{backend}: failed after {elapsed:.2f}s: {message}"

    async def attempt(opening: Any) -> None:
        started = anyio.current_time()
        with anyio.fail_after(15):  # (the server hangs up after 6 s in any case)
            with pytest.raises(Exception) as caught:
                await opening()
        check(caught.value, anyio.current_time() - started)

    # at startup: connect() opens min_size connections
    db = Database(url, min_size=1, connect_timeout=1)
    await attempt(db.connect)
    assert db.pool_stats() == PoolStats(size=0, idle=0, in_use=0, waiting=0, max_size=10)

    # later, when the pool opens connections for a query and a transaction at the same time
    async def in_transaction() -> None:
        async with lazy.transaction():
            pass  # pragma: no cover - the connect fails

    async with Database(url, min_size=0, max_size=2, connect_timeout=1) as lazy:
        async with anyio.create_task_group() as tg:
            tg.start_soon(attempt, lambda: lazy.fetch_val("select 1"))
            tg.start_soon(attempt, in_transaction)
        stats = lazy.pool_stats()
        assert (stats.size, stats.in_use, stats.waiting) == (0, 0, 0)

    # every connection the drivers made to the server, they closed (none is left half-made)
    accepted, closed = silent_server.counts()
    for _ in range(250):
        if closed == accepted and not await run_sync(_sockets_to, port):
            break
        await anyio.sleep(0.02)
        accepted, closed = silent_server.counts()
    assert accepted >= 3, accepted  # the startup connect, the query's and the transaction's
    assert closed == accepted, f"{backend}: {accepted - closed} of {accepted} left open"
    assert await run_sync(_sockets_to, port) == []


ASYNCPG_CASES = [p for p in SERVER_CASES if p.values[0][0] == "postgresql+asyncpg"]  # type: ignore[index]


@pytest.mark.parametrize("case", ASYNCPG_CASES, indirect=True)
async def test_asyncpg_connect_timeout_is_named_as_on_mysql(silent_server: SilentServer) -> None:
    """asyncpg's own connect timeout raises asyncio's TimeoutError (before Python 3.11 not the
    builtin one): the error still says "no connection within connect_timeout", as MySQL's."""
    port = silent_server.port
    url = BackendURL.parse(f"postgresql+asyncpg://app:{secrets.token_hex(6)}@127.0.0.1:{port}/s")
    with pytest.raises(OperationalError) as caught:
        async with Database(url, min_size=1, connect_timeout=1):
            pass  # pragma: no cover - the connect fails
    assert "no connection within connect_timeout=1s (TimeoutError)" in str(caught.value)


MYSQL_CASES = [p for p in SERVER_CASES if p.values[0][0].startswith("mysql")]  # type: ignore[index]


@pytest.mark.parametrize("case", MYSQL_CASES, indirect=True)
async def test_connect_timeout_ends_with_the_connect(url: BackendURL) -> None:
    """The connect deadline does not outlive the connect: a statement that runs longer than
    ``connect_timeout`` after it is not cut short, and PyMySQL's socket is back to its
    ``read_timeout`` (the connect bounded its reads by the time left)."""
    extra = {"read_timeout": 30} if url.driver == "pymysql" else {}
    async with Database(url, min_size=1, max_size=2, connect_timeout=1, **extra) as db:
        await anyio.sleep(1.1)  # the connect's deadline has passed
        assert await db.fetch_val("select sleep(1.2)") == 0
        async with db.connection() as conn:  # a second connection, opened later
            assert await conn.fetch_val("select sleep(1.2)") == 0
            if url.driver == "pymysql":
                raw = conn.raw
                assert raw._read_timeout == 30 and raw._write_timeout is None
                assert raw._sock.gettimeout() == 30
                assert "_read_packet" not in vars(raw) and "_write_bytes" not in vars(raw)


THREADED_CASES = [
    p
    for p in SERVER_CASES
    if p.values[0][0] in ("postgresql+psycopg2", "mysql+pymysql")  # type: ignore[index]
]


@pytest.mark.parametrize("case", THREADED_CASES, indirect=True)
async def test_connect_and_disconnect_leave_no_thread_pool_behind(url: BackendURL) -> None:
    """Each connect() of a blocking driver makes a named pool of worker threads for its
    connections; disconnect() drops it from asyncify's registry (30 cycles kept 30 pools)."""
    from asyncify_kit import _executor

    _executor.get_pool(_executor.DEFAULT_POOL)  # made on first use, by whichever test
    before = set(_executor._pools)
    for _ in range(5):
        async with Database(url, min_size=1) as db:
            assert await db.fetch_val("select 1") == 1
    assert set(_executor._pools) == before


class Ipv6Relay:
    """A TCP relay listening on ``[::1]`` in front of a server on 127.0.0.1 (the test services
    listen on IPv4 only): it forwards bytes both ways, one thread per direction."""

    def __init__(self, target_port: int) -> None:
        self._listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        self._target = target_port
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, name="ipv6-relay", daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self.accepted += 1
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(
                    target=self._pipe, args=(source, sink), name="ipv6-relay", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (Linux)
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def ipv6_relay(url: BackendURL) -> Iterator[Ipv6Relay]:
    try:
        relay = Ipv6Relay(url.port or 0)
    except OSError as exc:  # no IPv6 loopback on this machine (CI's has one: it must run)
        if ON_CI:
            raise
        pytest.skip(f"cannot listen on [::1]: {exc}")
    try:
        yield relay
    finally:
        relay.close()


@pytest.mark.parametrize("case", SERVER_CASES, indirect=True)
async def test_an_ipv6_host_reaches_the_server(url: BackendURL, ipv6_relay: Ipv6Relay) -> None:
    """``postgresql://u:p@[::1]:5432/db``: the drivers were given the host with its brackets,
    looked ``[::1]`` up as a host name and failed ("Name or service not known")."""
    ipv6 = BackendURL.parse(
        url.replace(host="[::1]", port=ipv6_relay.port).render(hide_password=False)
    )
    async with Database(ipv6, min_size=1, max_size=1, connect_timeout=5) as db:
        assert await db.fetch_val("select 1") == 1
    assert ipv6_relay.accepted >= 1  # through [::1], not some other way
