"""A cancelled caller's statement stops on the server soon, on every server driver.

PyMySQL had no way to stop it: its cancelled caller waited for the statement's end (5 s of a
5 s statement), and one waiting for a row lock kept waiting, with the locks of its own
transaction, until that lock came free. Now its statement is killed (``KILL QUERY`` from a
connection of its own), as on asyncmy and aiomysql; psycopg2 and psycopg (threaded under
trio) send libpq's cancel request. The threaded drivers' callers still wait for their driver
call to end, which is now a matter of milliseconds; the native ones leave at once and the
statement is stopped in the background (see ``test_cancelled_statements.py``).
"""

from __future__ import annotations

import time
import uuid

import anyio
import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import Database
from asyncify_kit.sql._backends.base import MAX_ABANDONING

from .conftest import SERVER_CASES
from .test_cancelled_statements import _long_statement, _none_running, _running_once_settled

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


@pytest.mark.parametrize("case", SERVER_CASES, indirect=True)
async def test_a_cancelled_caller_is_back_soon_and_its_statement_is_gone(
    url: BackendURL,
) -> None:
    marker = f"m{uuid.uuid4().hex[:12]}"
    async with Database(url) as monitor, Database(url) as db:
        started = time.monotonic()
        with anyio.move_on_after(0.3) as scope:
            await db.fetch_val(_long_statement(db, marker))
        assert scope.cancelled_caught
        assert time.monotonic() - started < 2.0  # not the statement's 5 s
        assert await _none_running(monitor, marker, within=1.5)
        assert await db.fetch_val("select 1") == 1  # the pool goes on
        assert db.pool_stats().in_use == 0


@pytest.mark.parametrize("case", SERVER_CASES, indirect=True)
async def test_a_cancelled_wait_for_a_row_lock_stops_and_releases_its_own_locks(
    url: BackendURL, table: str
) -> None:
    marker = f"m{uuid.uuid4().hex[:12]}"
    async with Database(url) as monitor, Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key, x integer)")
        try:
            await db.execute(f"insert into {table} values (1, 0), (2, 0)")
            locked = anyio.Event()

            async def hold_row_2() -> None:
                async with db.transaction():
                    await db.execute(f"update {table} set x = 9 where id = 2")
                    locked.set()
                    await anyio.sleep(5)  # then the waiter below gets the lock at last

            async with anyio.create_task_group() as tg:
                tg.start_soon(hold_row_2)
                await locked.wait()
                started = time.monotonic()
                with anyio.move_on_after(0.5) as scope:
                    async with db.transaction():
                        await db.execute(f"update {table} set x = 1 where id = 1")
                        await db.execute(f"update {table} set x = 1 where id = 2 -- {marker}")
                assert scope.cancelled_caught
                assert time.monotonic() - started < 2.0  # not when row 2 came free
                assert await _none_running(monitor, marker, within=1.5)
                # the cancelled transaction's lock on row 1 is gone (rolled back)
                started = time.monotonic()
                await monitor.execute(f"update {table} set x = 2 where id = 1")
                assert time.monotonic() - started < 2.0
                tg.cancel_scope.cancel()  # (rolls back the holder's transaction)
            rows = await db.fetch_all(f"select id, x from {table} order by id")
            assert [tuple(row.values()) for row in rows] == [(1, 2), (2, 0)]
            assert db.pool_stats().in_use == 0
        finally:
            await monitor.execute(f"drop table {table}")


#: the drivers that stop a statement from a connection of their own, at most MAX_ABANDONING at
#: once per pool; libpq's cancel request (psycopg2, psycopg under trio) opens no session, so
#: every cancelled statement of those is stopped
BOUNDED_CASES = [
    p
    for p in SERVER_CASES
    if p.values[0][0] != "postgresql+psycopg2"  # type: ignore[index]
    and p.values[0] != ("postgresql+psycopg", "trio")
]


@pytest.mark.parametrize("case", BOUNDED_CASES, indirect=True)
async def test_at_most_max_abandoning_statements_of_a_pool_are_stopped_at_once(
    url: BackendURL,
) -> None:
    # a storm of cancellations: the statements of MAX_ABANDONING callers are stopped, the
    # others run to their ends (PyMySQL's callers wait for them meanwhile)
    marker = f"m{uuid.uuid4().hex[:12]}"
    storm = MAX_ABANDONING + 2
    async with Database(url) as monitor, Database(url, max_size=storm) as db:

        async def cancelled_storm() -> None:
            with anyio.move_on_after(0.5):
                async with anyio.create_task_group() as tg:
                    for _ in range(storm):
                        tg.start_soon(db.fetch_val, _long_statement(db, marker))

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancelled_storm)
            await anyio.sleep(0.6)  # (cancelled at 0.5 s)
            expected = storm - MAX_ABANDONING  # the stopped ones go; the others run on
            assert await _running_once_settled(monitor, marker, expected) == expected
        assert db.pool_stats().in_use == 0
