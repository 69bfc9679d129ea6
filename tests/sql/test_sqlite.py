"""SQLite specifics: one shared in-memory connection, dedicated threads, declared types."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import anyio
import pytest

from asyncify_kit import run_sync
from asyncify_kit._offload import post_to_sticky
from asyncify_kit.sql import Database, OperationalError, QueryTimeout
from asyncify_kit.sql._backends._sqlite import SqliteBackend, _SqliteSession, _turns_of
from asyncify_kit.sql._backends.base import Connection

pytestmark = pytest.mark.anyio


async def test_memory_database_is_one_shared_connection() -> None:
    async with Database("sqlite:///:memory:", max_size=5) as db:
        assert db.pool_stats().max_size == 1
        await db.execute("create table t (id integer primary key)")
        order: list[str] = []
        inserted = anyio.Event()

        async def writer() -> None:
            async with db.transaction():
                await db.execute("insert into t (id) values (1)")
                order.append("writer inserted")
                inserted.set()
                with anyio.fail_after(10):
                    while db.pool_stats().waiting == 0:  # until the reader waits for it
                        await anyio.sleep(0.005)
                order.append("writer commits")

        async def reader() -> None:
            await inserted.wait()
            order.append("reader asks")
            count = await db.fetch_val("select count(*) from t")  # waits for the connection
            order.append(f"reader saw {count}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            tg.start_soon(reader)
        assert order == ["writer inserted", "reader asks", "writer commits", "reader saw 1"]


async def test_each_connection_lives_on_its_own_thread(tmp_path: Path) -> None:
    async with Database(f"sqlite:///{tmp_path / 'a.db'}", min_size=2, max_size=2) as db:
        names: set[str] = set()

        async def which() -> None:
            async with db.connection() as conn:
                await conn.execute("select 1")
                names.add(await conn.fetch_val("select :t", {"t": "x"}))
                await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(which)
        threads = [t.name for t in threading.enumerate() if "SqliteSession" in t.name]
        assert len(threads) >= 2
        assert names == {"x"}


async def test_file_database_defaults(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    async with Database(f"sqlite:///{path}") as db:
        assert await db.fetch_val("pragma journal_mode") == "wal"
        assert await db.fetch_val("pragma foreign_keys") == 1
        await db.execute("create table p (id integer primary key)")
        await db.execute("create table c (p integer references p(id))")
        from asyncify_kit.sql import IntegrityError

        with pytest.raises(IntegrityError):
            await db.execute("insert into c (p) values (42)")
    assert await run_sync(path.exists)


async def test_statement_timeout_interrupts(tmp_path: Path) -> None:
    async with Database(f"sqlite:///{tmp_path / 'b.db'}?statement_timeout=0.2") as db:
        with pytest.raises(QueryTimeout, match=r"statement_timeout=0\.2s"):
            await db.fetch_val(
                "with recursive c(x) as (select 1 union all select x + 1 from c) "
                "select count(*) from c"
            )
        assert await db.fetch_val("select 2") == 2


async def test_a_connection_opened_for_a_caller_that_left_is_closed_on_its_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while its connection is opened, a caller never gets it: the connect ends on
    the connection's thread (the "wait" policy), and what it opened is closed there, not left
    open until collected (on whatever thread drops it; Python 3.13's sqlite3 warns then)."""
    opened: list[tuple[_SqliteSession, int]] = []
    closed: list[int] = []
    connect, close = _SqliteSession.connect, _SqliteSession.close

    def slow_connect(self: _SqliteSession) -> None:
        time.sleep(0.2)  # the caller leaves meanwhile
        connect(self)
        opened.append((self, threading.get_ident()))

    def recorded_close(self: _SqliteSession) -> None:
        closed.append(threading.get_ident())
        close(self)

    monkeypatch.setattr(_SqliteSession, "connect", slow_connect)
    monkeypatch.setattr(_SqliteSession, "close", recorded_close)
    async with Database(f"sqlite:///{tmp_path / 'c.db'}", min_size=0, max_size=1) as db:
        with anyio.move_on_after(0.02):
            async with db.connection():
                pytest.fail("a cancelled caller was given the connection")
        assert len(opened) == 1  # the connect ran to its end
        session, home = opened[0]
        with anyio.fail_after(5):
            while session.conn is not None:
                await anyio.sleep(0.01)
        assert closed == [home]
        assert db.pool_stats().size == 0


def test_a_sqlite_url_names_no_host() -> None:
    from asyncify_kit import ConfigError

    with pytest.raises(ConfigError, match="names a file, not a host"):
        Database("sqlite://server/app.db")
    assert SqliteBackend.dialect == "sqlite"


class _Writer:
    """Another writer of the file (a plain sqlite3 connection, as another process would be):
    `hold` takes the write lock, `release` commits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    async def hold(self) -> None:
        def begin() -> sqlite3.Connection:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5
            )
            conn.execute("BEGIN IMMEDIATE")
            return conn

        self.conn = await run_sync(begin)

    async def finds_the_lock_free(self) -> None:
        """Take the write lock (waiting up to 5 s, its busy timeout) and give it back."""
        with anyio.fail_after(10):
            await self.hold()
        await self.release()

    async def release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await run_sync(conn.commit)
            await run_sync(conn.close)


async def _file_with_table(tmp_path: Path, query: str = "") -> tuple[str, _Writer]:
    path = tmp_path / "locked.db"
    async with Database(f"sqlite:///{path}") as setup:
        await setup.execute("create table t (n integer)")
    return f"sqlite:///{path}{query}", _Writer(path)


async def test_a_transaction_cancelled_while_it_waits_for_the_write_lock_leaves_at_once(
    tmp_path: Path,
) -> None:
    # SQLite's own busy handler sleeps through a cancellation: the caller (which waits for
    # its thread) and the connection stayed stuck until busy_timeout, here 30 s
    url, writer = await _file_with_table(tmp_path, "?busy_timeout=30")
    async with Database(url, min_size=1, max_size=1) as db:
        async with db.connection() as conn:
            raw = conn.raw
        await writer.hold()
        try:
            with anyio.fail_after(5):
                with anyio.move_on_after(0.2) as scope:
                    async with db.transaction():
                        pytest.fail("the transaction began while another writer held the lock")
                assert scope.cancelled_caught
                assert await db.fetch_val("select count(*) from t") == 0
        finally:
            await writer.release()
        # the same connection, outside any transaction (a cancelled BEGIN opened none)
        async with db.connection() as conn:
            assert conn.raw is raw
            assert not await run_sync(lambda: conn.raw.in_transaction)
        async with db.transaction():
            await db.execute("insert into t (n) values (1)")
        assert await db.fetch_val("select count(*) from t") == 1


async def test_writers_waiting_for_the_write_lock_go_in_the_order_they_came(
    tmp_path: Path,
) -> None:
    # transactions (0, 2) and statements on their own (1, 3) alike
    url, writer = await _file_with_table(tmp_path)
    async with Database(url, min_size=4, max_size=4) as db:
        await writer.hold()
        try:
            written: list[int] = []

            async def write(n: int) -> None:
                if n % 2:
                    await db.execute("insert into t (n) values (:n)", {"n": n})
                else:
                    async with db.transaction():
                        await db.execute("insert into t (n) values (:n)", {"n": n})
                written.append(n)

            turns = _turns_of(await run_sync(os.path.realpath, writer.path))
            async with anyio.create_task_group() as tg:
                for n in range(4):
                    tg.start_soon(write, n)
                    with anyio.fail_after(5):  # it waits in line before the next one comes
                        while len(turns.queue) < n + 1:
                            await anyio.sleep(0.01)
                await anyio.sleep(0.3)  # the first ones have waited a while: SQLite's own
                # handler then tries the lock every 50-100 ms, the latest comers more often
                assert written == []  # (every connection of the pool is waiting)
                await writer.release()
        finally:
            await writer.release()
        rows = await db.fetch_all("select n from t order by rowid")
        assert [row.n for row in rows] == [0, 1, 2, 3]


async def test_a_statement_cancelled_while_it_waits_for_the_write_lock_leaves_at_once(
    tmp_path: Path,
) -> None:
    url, writer = await _file_with_table(tmp_path, "?busy_timeout=30")
    async with Database(url, min_size=1, max_size=1) as db:
        await writer.hold()
        try:
            with anyio.fail_after(5):
                with anyio.move_on_after(0.2) as scope:
                    await db.execute("insert into t (n) values (1)")
                assert scope.cancelled_caught
                assert await db.fetch_val("select count(*) from t") == 0
        finally:
            await writer.release()
        await db.execute("insert into t (n) values (2)")
        assert await db.fetch_val("select n from t") == 2


async def test_busy_timeout_still_bounds_the_wait_for_the_write_lock(tmp_path: Path) -> None:
    url, writer = await _file_with_table(tmp_path, "?busy_timeout=0.3")
    async with Database(url, min_size=2, max_size=2) as db:
        await writer.hold()
        try:
            failures: list[tuple[str, float]] = []

            async def write() -> None:
                began = time.monotonic()
                with pytest.raises(OperationalError, match="database is locked") as info:
                    async with db.transaction():
                        pytest.fail("the transaction began while another writer held the lock")
                failures.append((str(info.value), time.monotonic() - began))

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(write)  # first in line: tries the lock
                    tg.start_soon(write)  # behind it, in this process
            assert len(failures) == 2
            assert all(waited >= 0.25 for _, waited in failures), failures
        finally:
            await writer.release()
        async with db.transaction():  # and the connections are fine
            await db.execute("insert into t (n) values (1)")
        assert db.pool_stats().size == 2


async def test_a_close_withdrawn_behind_a_busy_call_still_closes_the_connection(
    tmp_path: Path,
) -> None:
    # the pool bounds a close by time: one still queued behind a call under way is
    # withdrawn. The connection's thread then left with the connection open, and the
    # transaction on it kept the write lock until the connection was collected
    url, writer = await _file_with_table(tmp_path)
    async with Database(url, min_size=0, max_size=1) as db:
        conn = await _in_a_transaction(db)
        post_to_sticky(conn._proxy, time.sleep, 0.3)  # type: ignore[attr-defined]
        with anyio.move_on_after(0.05) as scope:
            await conn.close()
        assert scope.cancelled_caught
        await writer.finds_the_lock_free()


async def _in_a_transaction(db: Database) -> Connection:
    """A connection of *db*'s backend, outside its pool, in a write transaction."""
    conn = await db._backend.connect()
    await conn.run("BEGIN IMMEDIATE")
    return conn


async def test_closing_a_connection_with_a_statement_still_referenced_ends_its_transaction(
    tmp_path: Path,
) -> None:
    # sqlite3 closes with sqlite3_close_v2: while a statement of the connection is still
    # referenced (by a cursor that a traceback keeps alive, say) the connection stays open
    # as a "zombie", its transaction and write lock held until that statement is collected
    url, writer = await _file_with_table(tmp_path)
    async with Database(url, min_size=0, max_size=1) as db:
        conn = await _in_a_transaction(db)
        raw = conn.raw

        def open_statement() -> sqlite3.Cursor:
            raw.executemany("insert into t (n) values (?)", [(1,), (2,), (3,)])
            cursor: sqlite3.Cursor = raw.execute("select n from t")
            cursor.fetchone()  # the statement is under way
            return cursor

        cursor = await run_sync(open_statement)
        await conn.close()
        await writer.finds_the_lock_free()
        assert await db.fetch_val("select count(*) from t") == 0  # rolled back
        del cursor
