"""Cancellation at the worst moment, one test per way it once left a database unhealthy.

Each test reproduces, deterministically, a failure that the cancellation storm
(``test_cancellation_storm.py``) found: a cancelled savepoint whose work was committed; a
pooled connection handed on inside a transaction, read-only, or with a statement left open;
and asyncpg connects reported to the event loop's exception handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import pytest

from asyncify_kit import BackendURL, run_sync, stats
from asyncify_kit.sql import ConnectionLost, Database, DatabaseConnection

from .conftest import ASYNCIO_ONLY, CASES, SERVER_CASES

pytestmark = pytest.mark.anyio

#: the backends whose connections run each call in a worker thread to its end (cancel-safe)
THREADED_CASES = [
    p
    for p in CASES
    if p.values[0][0] not in ASYNCIO_ONLY  # type: ignore[index]
    and p.values[0] != ("postgresql+psycopg", "asyncio")
]
SQLITE_CASES = [p for p in CASES if p.values[0][0] == "sqlite"]  # type: ignore[index]
ASYNCPG_CASES = [p for p in CASES if p.values[0][0] == "postgresql+asyncpg"]  # type: ignore[index]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


async def _make_table(url: BackendURL, table: str) -> None:
    async with Database(url) as setup:
        await setup.execute(f"create table {table} (id integer)")


async def _ids_and_drop(url: BackendURL, table: str) -> list[int]:
    """The ids in *table*, as another `Database` sees them (committed ones only); then drop."""
    async with Database(url) as check:
        rows = await check.fetch_all(f"select id from {table} order by id")
        await check.execute(f"drop table {table}")
    return [row.id for row in rows]


def _slow_statement(case: tuple[str, str]) -> str:
    """A statement that runs for about half a second, on *case*'s database."""
    if case[0].startswith("postgresql"):
        return "select pg_sleep(0.5)"
    if case[0].startswith("mysql"):
        return "select sleep(0.5)"
    return (  # SQLite: counting, which sqlite3's interrupt() stops
        "with recursive c(x) as (select 1 union all select x + 1 from c where x < 20000000) "
        "select count(*) from c"
    )


@pytest.mark.parametrize("when", ["called cancelled", "cancelled midway", "cancelled at its end"])
async def test_a_cancelled_savepoint_never_commits_its_work(
    url: BackendURL, table: str, case: tuple[str, str], when: str
) -> None:
    """A savepoint whose statement is cancelled is rolled back. Called cancelled, the
    statement is never sent, and the transaction goes on; so does a savepoint cancelled as
    its block ends (its RELEASE never sent: it used to stay, and the commit took its rows).
    Cancelled midway on a native async driver, the statement leaves its connection in an
    unknown state: the transaction cannot go on, its next statement raises
    `ConnectionLost`, and nothing is committed.
    (asyncpg's connection stayed usable: the transaction went on and committed the
    savepoint's row, although the savepoint block was left by the cancellation.)"""
    threaded = case in [p.values[0] for p in THREADED_CASES]
    await _make_table(url, table)
    try:
        async with Database(url, min_size=1, max_size=2) as db:
            lost = False
            try:
                async with db.transaction():
                    await db.execute(f"insert into {table} (id) values (1)")
                    if when == "called cancelled":
                        with anyio.CancelScope() as scope:
                            async with db.transaction():
                                scope.cancel()
                                await db.execute(f"insert into {table} (id) values (2)")
                    elif when == "cancelled at its end":  # its RELEASE: called cancelled
                        with anyio.CancelScope() as scope:
                            async with db.transaction():
                                await db.execute(f"insert into {table} (id) values (2)")
                                scope.cancel()
                    else:
                        with anyio.move_on_after(0.1) as scope:
                            async with db.transaction():
                                await db.execute(f"insert into {table} (id) values (2)")
                                await db.execute(_slow_statement(case))
                    assert scope.cancelled_caught
                    await db.execute(f"insert into {table} (id) values (3)")
            except ConnectionLost:
                lost = True
            goes_on = threaded or when != "cancelled midway"
            assert lost is not goes_on
            assert db.pool_stats().in_use == 0
            assert await db.fetch_val("select 1") == 1
    finally:
        ids = await _ids_and_drop(url, table)
    assert ids == ([1, 3] if goes_on else [])


@pytest.mark.parametrize("case", SQLITE_CASES, indirect=True)
async def test_an_iteration_cancelled_while_its_cursor_opens_leaves_no_statement_open(
    url: BackendURL, table: str
) -> None:
    """The thread that opens an iteration's cursor finishes when its caller has left; the
    cursor is closed all the same. (Its open statement used to stay on the pooled
    connection: its next user read an old snapshot, and its writes failed at once with
    "database is locked".)"""
    async with Database(url, min_size=1, max_size=1) as db, Database(url) as other:
        await db.execute(f"create table {table} (id integer)")
        await db.execute(f"insert into {table} values (1), (2), (3)")
        async with db.connection() as conn:
            # the first row takes 0.3 s in one SQL function call, which the cancellation
            # cannot interrupt: the cursor opens after its caller has left
            await run_sync(conn.raw.create_function, "slowly", 1, _slowly)
        with anyio.move_on_after(0.1) as scope:
            async with aclosing(db.iterate(f"select slowly(id) from {table}")) as rows:
                async for _ in rows:
                    pass
        assert scope.cancelled_caught
        await other.execute(f"insert into {table} values (4)")
        assert await db.fetch_val(f"select count(*) from {table}") == 4
        with anyio.fail_after(5):
            async with db.transaction():
                await db.execute(f"insert into {table} values (5)")
        assert await other.fetch_val(f"select count(*) from {table}") == 5


def _slowly(value: Any) -> Any:
    time.sleep(0.3)
    return value


async def _hold_back_calls(
    tg: anyio.abc.TaskGroup, db: Database, conn: DatabaseConnection, release: threading.Event
) -> None:
    """From now until *release* is set, a call on *conn*'s connection waits in a queue, no
    worker thread takes it: SQLite's connection thread runs a query of another task that
    waits for *release*; for the other threaded backends, every worker of asyncify's default
    pool does. (The waiting tasks run in *tg*.)"""
    if db.dialect == "sqlite":
        await run_sync(conn.raw.create_function, "held", 0, release.wait)
        tg.start_soon(conn.fetch_val, "select held()")
        await anyio.sleep(0.1)  # its thread is in held() by now
        return
    for _ in range(stats().size):
        tg.start_soon(run_sync, release.wait)
    with anyio.fail_after(5):
        while stats().running < stats().size:
            await anyio.sleep(0.01)


@pytest.mark.parametrize("case", THREADED_CASES, indirect=True)
async def test_a_transaction_cancelled_before_its_commit_started_is_rolled_back(
    url: BackendURL, table: str
) -> None:
    """Cancelled while its COMMIT waits for a worker thread (so the call is withdrawn), the
    transaction is rolled back. (Its connection used to go back to the pool inside the
    transaction: its next user's statements ran in it, and were never committed.)"""
    await _make_table(url, table)
    release = threading.Event()

    async def cancel_then_release(scope: anyio.CancelScope) -> None:
        await anyio.sleep(0.2)  # the COMMIT waits in the queue by then
        scope.cancel()
        await anyio.sleep(0.2)
        release.set()

    try:
        async with Database(url, min_size=1, max_size=1) as db:
            async with anyio.create_task_group() as tg, db.connection() as conn:
                with anyio.CancelScope() as scope:
                    async with db.transaction():
                        await db.execute(f"insert into {table} (id) values (1)")
                        await _hold_back_calls(tg, db, conn, release)
                        tg.start_soon(cancel_then_release, scope)
                assert scope.cancelled_caught
            # the one pooled connection: its next user runs outside any transaction
            with anyio.fail_after(5):
                await db.execute(f"insert into {table} (id) values (2)")
            assert db.pool_stats().in_use == 0
    finally:
        release.set()
        ids = await _ids_and_drop(url, table)
    assert ids == [2]


@pytest.mark.parametrize("case", ASYNCPG_CASES, indirect=True)
async def test_a_cancelled_asyncpg_connect_reports_nothing_and_leaves_no_connection(
    url: BackendURL,
) -> None:
    """A task cancelled while the pool opens an asyncpg connection for it leaves, and the
    connection is closed once made. (asyncpg's connect, cancelled just as its socket
    connected, left a future with an exception nobody retrieved: "Future exception was never
    retrieved ... unexpected connection_lost() call" reached the loop's exception handler.)
    The cancellation comes after 0, 1, 2 ... loop iterations, so it meets every step."""
    app = f"cancelled-connect-{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        for iterations in range(40):
            async with Database(url, min_size=0, max_size=1, application_name=app) as db:
                with anyio.CancelScope() as scope:

                    async def cancel_after(scope: anyio.CancelScope, count: int) -> None:
                        for _ in range(count):
                            await anyio.lowlevel.checkpoint()
                        scope.cancel()

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(cancel_after, scope, iterations)
                        async with db.connection():
                            await anyio.sleep_forever()
        async with Database(url, min_size=1, max_size=1) as control:
            with anyio.fail_after(5):
                while await control.fetch_val(
                    "select count(*) from pg_stat_activity where application_name = :app",
                    {"app": app},
                ):
                    await anyio.sleep(0.02)
        gc.collect()  # a future dropped unread reports when it is collected
        await anyio.sleep(0.05)
    finally:
        loop.set_exception_handler(previous)
    assert [context.get("message") for context in reported] == []


@pytest.mark.parametrize("case", SQLITE_CASES, indirect=True)
async def test_a_read_only_transaction_cancelled_after_its_commit_leaves_no_read_only_connection(
    url: BackendURL, table: str
) -> None:
    """On SQLite a read-only transaction ends with ``PRAGMA query_only = OFF`` after its
    COMMIT; cancelled while that call waits for the connection's thread, the connection is
    discarded. (It used to go back to the pool read-only: its next user's writes failed with
    "attempt to write a readonly database".)"""
    async with Database(url, min_size=1, max_size=1) as db:
        await db.execute(f"create table {table} (id integer)")
        release, held_done = threading.Event(), anyio.Event()
        token = anyio.lowlevel.current_token()
        async with anyio.create_task_group() as tg, db.connection() as conn:
            with anyio.CancelScope() as scope:

                async def hold_the_thread() -> None:
                    await conn.fetch_val("select held()")  # queued behind the COMMIT
                    held_done.set()

                async def cancel_then_release() -> None:
                    await anyio.sleep(0.2)  # the PRAGMA waits behind held() by then
                    scope.cancel()
                    release.set()

                def on_statement(sql: str) -> None:  # on the connection's thread
                    if sql == "COMMIT":
                        anyio.from_thread.run_sync(tg.start_soon, hold_the_thread, token=token)
                        anyio.from_thread.run_sync(tg.start_soon, cancel_then_release, token=token)
                        time.sleep(0.05)  # hold_the_thread queues its call meanwhile

                await run_sync(conn.raw.create_function, "held", 0, release.wait)
                await run_sync(conn.raw.set_trace_callback, on_statement)
                async with db.transaction(read_only=True):
                    assert await db.fetch_val(f"select count(*) from {table}") == 0
            assert scope.cancelled_caught
            await held_done.wait()
        with anyio.fail_after(5):
            await db.execute(f"insert into {table} (id) values (1)")
        assert await db.fetch_val(f"select count(*) from {table}") == 1
        await db.execute(f"drop table {table}")


ON_ASYNCIO = [p for p in CASES if p.values[0][1] == "asyncio"]  # type: ignore[index]


@pytest.mark.parametrize("case", ON_ASYNCIO)  # task.cancel() is asyncio's
@pytest.mark.parametrize("when", ["before the rollback", "during the rollback"])
async def test_a_rollback_runs_to_its_end_under_asyncio_cancellation(
    url: BackendURL, table: str, when: str
) -> None:
    """A block that ends in an error while a ``task.cancel()`` is pending, or one cancelled
    again and again while it rolls back, still rolls back before its connection goes back to
    the pool. On the threaded backends the ROLLBACK, still waiting for its worker thread,
    was withdrawn by that cancellation (anyio's shield does not hold it off), and the next
    user of the connection found itself inside the transaction, seeing its rows."""
    async with Database(url, min_size=1, max_size=1) as db:
        await db.execute(f"create table {table} (id integer)")
        for i in range(10):

            async def block(i: int = i) -> None:
                async with db.transaction():
                    await db.execute(f"insert into {table} (id) values ({i})")
                    task = asyncio.current_task()
                    assert task is not None
                    if when == "before the rollback":
                        task.cancel()  # pending as the block's error starts the rollback
                        raise ValueError("the block failed")
                    await asyncio.sleep(10)

            task = asyncio.create_task(block())
            if when == "during the rollback":
                await asyncio.sleep(0.05)
                for _ in range(4):  # the first starts the rollback, the others land in it
                    task.cancel()
                    await asyncio.sleep(0)
            with pytest.raises((asyncio.CancelledError, ValueError)):
                await task
            # the pool's one connection: outside any transaction, its rows gone
            assert await db.fetch_val(f"select count(*) from {table}") == 0
    assert await _ids_and_drop(url, table) == []


async def other_connections(watcher: Database) -> int:
    """The connections to the test database, other than *watcher*'s own."""
    if watcher.dialect == "postgresql":
        sql = (
            "select count(*) from pg_stat_activity where datname = current_database() "
            "and pid <> pg_backend_pid() and backend_type = 'client backend'"
        )
    else:
        sql = (
            "select count(*) from information_schema.processlist "
            "where db = database() and id <> connection_id()"
        )
    return int(await watcher.fetch_val(sql))


@pytest.mark.parametrize(
    "case",
    [p for p in SERVER_CASES if p.values[0][1] == "asyncio"],  # type: ignore[index]
)
async def test_disconnect_closes_every_connection_under_asyncio_cancellation(
    url: BackendURL, case: tuple[str, str]
) -> None:
    """`disconnect()`, cancelled again and again by ``task.cancel()``, still closes every
    connection of its pool. (On psycopg2 a close waiting for its thread was withdrawn, and
    its connection stayed open on the server.)"""
    async with Database(url, max_size=1) as watcher:
        for _ in range(5):
            db = Database(url, min_size=4, max_size=4)
            await db.connect()
            nap = (
                "select pg_sleep(0.05)"
                if case[0].startswith("postgresql")
                else "select sleep(0.05)"
            )
            await asyncio.gather(*(db.fetch_val(nap) for _ in range(4)))  # 4 connections open
            task = asyncio.create_task(db.disconnect())
            await asyncio.sleep(0)
            for _ in range(5):
                task.cancel()
                await asyncio.sleep(0)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for _ in range(250):  # the server notices a closed connection a little later
                if await other_connections(watcher) == 0:
                    break
                await asyncio.sleep(0.02)
            assert await other_connections(watcher) == 0


@pytest.mark.parametrize("case", SQLITE_CASES, indirect=True)
async def test_a_discarded_sqlite_connection_is_closed_at_once(url: BackendURL) -> None:
    """A SQLite connection thrown away while a statement runs on it (here: still busy when
    `disconnect()`'s close_timeout ends) is interrupted, then closed on its own thread right
    after. It used to stay open until its next use or until it was garbage-collected, on
    whatever thread dropped it last."""
    db = Database(url, close_timeout=0.2)
    await db.connect()
    sessions: list[Any] = []
    slow = _slow_statement(("sqlite", "asyncio"))

    async def busy() -> None:
        async with db.connection() as conn:
            sessions.append(conn._pinned().conn._session)  # type: ignore[attr-defined]
            await conn.execute(slow)

    async with anyio.create_task_group() as tg:
        tg.start_soon(_expect_lost, busy)
        while not sessions:
            await anyio.sleep(0.01)
        (session,) = sessions
        raw = session.conn
        closers: list[threading.Thread] = []
        close = session.close

        def close_and_record() -> None:
            try:
                close()
            finally:  # recorded once the close is done (`session.conn` is None before that)
                closers.append(threading.current_thread())

        session.close = close_and_record
        await anyio.sleep(0.05)  # the statement runs
        await db.disconnect()
    # (never touched here while its thread may use it: sqlite3 does not guard that)
    for _ in range(500):
        if closers:  # closed, on its own thread
            break
        await anyio.sleep(0.01)
    else:
        pytest.fail("the discarded connection is still open")
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        raw.total_changes  # noqa: B018 - what sqlite3 raises on a closed connection
    assert closers and threading.main_thread() not in closers  # not on the loop's thread


async def _expect_lost(fn: Callable[[], Awaitable[None]]) -> None:
    with pytest.raises(ConnectionLost):
        await fn()
