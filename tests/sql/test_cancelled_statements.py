"""A statement whose caller was cancelled (or timed out) midway stops on the server too.

The pool closed such a connection at once: on asyncpg that cut off asyncpg's own cancel
request, and on asyncmy and aiomysql nothing asked the server to stop. The server ran the
statement to its end, and a transaction given up that way kept its row locks until then
(4.7 s of a 5 s statement, where psycopg and psycopg2 took 0.01 s). Now the connection is
given up in the background, after the statement was cancelled (asyncpg) or killed (``KILL
QUERY`` from a connection of its own, on asyncmy and aiomysql); `disconnect()` waits for it.

The threaded drivers are among the cases too: their cancelled callers wait for their driver
call, which psycopg2 and psycopg cut short with libpq's cancel request, and PyMySQL with a
``KILL QUERY`` of its own (see ``test_cancelled_statements_stop.py``, which also times them).
"""

from __future__ import annotations

import time
import uuid

import anyio
import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import Database

from .conftest import SERVER_CASES

pytestmark = pytest.mark.anyio

STOPPING_CASES = SERVER_CASES


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


def _long_statement(db: Database, marker: str) -> str:
    """A statement that runs for 5 s unless stopped, which *marker* finds on the server."""
    sleep = "pg_sleep" if db.dialect == "postgresql" else "sleep"
    return f"select {sleep}(5), '{marker}'"


async def _running(monitor: Database, marker: str) -> int:
    """How many statements with *marker* in their text the server is running."""
    pattern = f"%{marker}%"
    if monitor.dialect == "postgresql":
        sql = (
            "select count(*) from pg_stat_activity where query like :p and state = 'active' "
            "and pid <> pg_backend_pid()"
        )
    else:
        sql = (
            "select count(*) from information_schema.processlist where info like :p "
            "and id <> connection_id()"
        )
    count: int = await monitor.fetch_val(sql, {"p": pattern})
    return count


async def _running_once_settled(monitor: Database, marker: str, expected: int) -> int:
    """How many statements with *marker* still run once the stopped ones are gone: wait
    until no more than *expected* run (under 4 s from now: the statements last 5 s), then
    count again a little later (stopped ones may have stopped late, not the others)."""
    deadline = time.monotonic() + 3.5
    while await _running(monitor, marker) > expected and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    await anyio.sleep(0.3)
    return await _running(monitor, marker)


async def _none_running(monitor: Database, marker: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while await _running(monitor, marker):
        if time.monotonic() > deadline:
            return False
        await anyio.sleep(0.05)
    return True


@pytest.mark.parametrize("case", STOPPING_CASES, indirect=True)
async def test_a_statement_cut_short_stops_on_the_server(url: BackendURL) -> None:
    marker = f"m{uuid.uuid4().hex[:12]}"
    async with Database(url) as monitor:
        db = Database(url)
        await db.connect()
        try:
            with anyio.move_on_after(0.3) as scope:
                await db.fetch_val(_long_statement(db, marker))
            assert scope.cancelled_caught
            assert await _none_running(monitor, marker, within=1.5)
        finally:
            await db.disconnect()
        stats = db.pool_stats()
        assert (stats.size, stats.in_use) == (0, 0)


@pytest.mark.parametrize("case", STOPPING_CASES, indirect=True)
async def test_disconnect_right_after_a_statement_cut_short_leaves_nothing_running(
    url: BackendURL,
) -> None:
    marker = f"m{uuid.uuid4().hex[:12]}"
    async with Database(url) as monitor:
        async with Database(url) as db:
            with anyio.move_on_after(0.3):
                await db.fetch_val(_long_statement(db, marker))
        # the statement was stopped before the pool's close ended, well before its own end
        assert await _none_running(monitor, marker, within=0.5)


@pytest.mark.parametrize("case", STOPPING_CASES, indirect=True)
async def test_a_transaction_cut_short_releases_its_locks_at_once(
    url: BackendURL, table: str
) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key, x integer)")
        try:
            await db.execute(f"insert into {table} values (1, 0)")
            with anyio.move_on_after(0.3) as scope:
                async with db.transaction():
                    await db.execute(f"update {table} set x = 1 where id = 1")
                    await db.fetch_val(_long_statement(db, "locks"))
            assert scope.cancelled_caught
            started = time.monotonic()
            await db.execute(f"update {table} set x = 2 where id = 1")  # waits for the lock
            assert time.monotonic() - started < 2.0
            assert await db.fetch_val(f"select x from {table} where id = 1") == 2
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")
