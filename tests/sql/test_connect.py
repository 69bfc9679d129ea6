"""Opening and closing a `Database` on every backend: what a failed connect says, and what
`pool_stats()` reports before `connect()` and after `disconnect()`."""

from __future__ import annotations

import secrets

import anyio
import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import Database, OperationalError, PoolStats

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
