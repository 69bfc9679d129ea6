"""SQLite specifics: one shared in-memory connection, dedicated threads, declared types."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import pytest

from asyncify_kit import run_sync
from asyncify_kit.sql import Database, QueryTimeout
from asyncify_kit.sql._backends._sqlite import SqliteBackend, _SqliteSession

pytestmark = pytest.mark.anyio


async def test_memory_database_is_one_shared_connection() -> None:
    async with Database("sqlite:///:memory:", max_size=5) as db:
        assert db.pool_stats().max_size == 1
        await db.execute("create table t (id integer primary key)")
        order: list[str] = []

        async def writer() -> None:
            async with db.transaction():
                await db.execute("insert into t (id) values (1)")
                order.append("writer inserted")
                await anyio.sleep(0.1)
                order.append("writer commits")

        async def reader() -> None:
            await anyio.sleep(0.02)
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
