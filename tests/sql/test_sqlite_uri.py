"""SQLite URI options: ``?mode=`` (ro, rw, rwc, memory) and ``?cache=`` (private, shared).

SQLite opens ``file:PATH?mode=ro&cache=shared`` with ``uri=True``; the facade builds that URI
from the path and the options, on asyncio and on trio (the ``anyio_backend`` fixture).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path

import pytest

from asyncify_kit import ConfigError, run_sync
from asyncify_kit.sql import ConnectionLost, Database, OperationalError, PoolStats

pytestmark = pytest.mark.anyio


def _make_file(path: Path, journal_mode: str = "wal") -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"pragma journal_mode = {journal_mode}")
        conn.execute("create table t (id integer primary key, name text)")
        conn.execute("insert into t values (1, 'one'), (2, 'two')")
    finally:
        conn.close()


def _assert_read_only_error(exc: BaseException) -> None:
    assert type(exc) is OperationalError  # neither ConnectionLost nor ProgrammingError
    assert not isinstance(exc, ConnectionLost)
    assert "readonly database" in str(exc)
    assert "mode=ro" in str(exc)


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
async def test_mode_ro_reads_and_refuses_every_write(tmp_path: Path, journal_mode: str) -> None:
    path = tmp_path / "ro.db"
    await run_sync(_make_file, path, journal_mode)
    # the journal mode is the file's: a read-only connection leaves it as it is (switching
    # a "delete" file to the default "wal" would itself be a write)
    async with Database(f"sqlite:///{path}?mode=ro", min_size=2) as db:
        assert await db.fetch_val("pragma journal_mode") == journal_mode
        assert [r.name for r in await db.fetch_all("select name from t order by id")] == [
            "one",
            "two",
        ]
        async with db.transaction():  # reading in a transaction works
            assert await db.fetch_val("select count(*) from t") == 2

        writes: dict[str, Callable[[], Awaitable[object]]] = {
            "execute": lambda: db.execute("insert into t values (3, 'three')"),
            "ddl": lambda: db.execute("create table u (id integer)"),
            "execute_many": lambda: db.execute_many(
                "insert into t values (:id, 'x')", [{"id": 4}, {"id": 5}]
            ),
            "fetch_all": lambda: db.fetch_all("update t set name = 'z' returning id"),
        }
        for name, write in writes.items():
            with pytest.raises(OperationalError) as caught:
                await write()
            _assert_read_only_error(caught.value)
            assert caught.value.orig is not None, name

        with pytest.raises(OperationalError) as caught:
            async with db.transaction():
                await db.execute("delete from t")
        _assert_read_only_error(caught.value)

        with pytest.raises(OperationalError) as caught:
            async with db.connection() as conn:
                await conn.execute("update t set name = 'z'")
        _assert_read_only_error(caught.value)

        with pytest.raises(OperationalError) as caught:
            async with aclosing(db.iterate("delete from t returning id")) as rows:
                async for _ in rows:
                    pass
        _assert_read_only_error(caught.value)

        assert await db.fetch_val("select count(*) from t") == 2  # the pool is still fine
        stats = db.pool_stats()
        assert (stats.in_use, stats.waiting) == (0, 0)


async def test_mode_ro_and_rw_never_create_the_file(tmp_path: Path) -> None:
    for mode in ("ro", "rw"):
        path = tmp_path / f"missing-{mode}.db"
        with pytest.raises(OperationalError) as caught:
            async with Database(f"sqlite:///{path}", mode=mode):
                pass
        message = str(caught.value)
        assert str(path) in message and f"mode={mode}" in message
        assert "unable to open database file" in message
        assert not await run_sync(path.exists)
    path = tmp_path / "created.db"
    async with Database(f"sqlite:///{path}?mode=rwc") as db:  # SQLite's default: create it
        await db.execute("create table t (id integer)")
    assert await run_sync(path.exists)


async def test_mode_rw_writes_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "rw.db"
    await run_sync(_make_file, path)
    async with Database(f"sqlite:///{path}?mode=rw&cache=private") as db:
        assert await db.execute("update t set name = 'uno' where id = 1") == 1
        assert await db.fetch_val("select name from t where id = 1") == "uno"


async def test_cache_shared_memory_database_is_seen_by_every_database(tmp_path: Path) -> None:
    name = f"shared-{uuid.uuid4().hex}"
    async with Database(f"sqlite:///{name}?mode=memory&cache=shared", max_size=5) as first:
        assert first.pool_stats() == PoolStats(size=1, idle=1, in_use=0, waiting=0, max_size=1)
        await first.execute("create table kv (k text primary key, v integer)")
        await first.execute("insert into kv values ('a', 1)")
        async with Database(f"sqlite:///{name}?mode=memory&cache=shared") as second:
            assert await second.fetch_val("select v from kv where k = 'a'") == 1
            await second.execute("insert into kv values ('b', 2)")
        assert await first.fetch_val("select count(*) from kv") == 2
        # nothing is written to disk, and a private in-memory database of the same name is
        # another database
        assert not await run_sync((tmp_path / name).exists)
        async with Database(f"sqlite:///{name}?mode=memory") as private:
            assert await private.fetch_val("select count(*) from sqlite_master") == 0


async def test_cache_shared_file_database(tmp_path: Path) -> None:
    # a file name with characters a URI must escape ('?', '#', '%', space), percent-encoded
    # in the URL: the file opened is the one named, not a query string or a fragment
    path = tmp_path / "we?ird #%name.db"
    url = f"sqlite:///{tmp_path}/we%3Fird%20%23%25name.db?cache=shared"
    async with Database(url, min_size=2, max_size=2) as db:
        assert db.pool_stats().size == 2
        await db.execute("create table t (id integer primary key)")
        await db.execute_many("insert into t values (:id)", [{"id": i} for i in range(5)])
        assert await db.fetch_val("select count(*) from t") == 5
        assert await db.fetch_val("pragma journal_mode") == "wal"
    assert await run_sync(path.exists)
    async with Database(f"sqlite:///{tmp_path}/we%3Fird%20%23%25name.db?mode=ro") as db:
        assert await db.fetch_val("select count(*) from t") == 5


async def test_memory_with_cache_shared_is_one_connection() -> None:
    async with Database("sqlite:///:memory:?cache=shared", max_size=4) as db:
        assert db.pool_stats().max_size == 1
        assert await db.fetch_val("select 1") == 1


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mode": "readonly"}, r"invalid value 'readonly' for option 'mode'.*ro, rw, rwc, memory"),
        ({"mode": "RO"}, r"option 'mode'"),
        ({"mode": ""}, r"option 'mode'"),
        ({"cache": "SHARED"}, r"invalid value 'SHARED' for option 'cache'.*private, shared"),
        ({"cache": "yes"}, r"option 'cache'"),
    ],
)
def test_bad_mode_or_cache_values_are_config_errors(
    options: dict[str, str], match: str, tmp_path: Path
) -> None:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    with pytest.raises(ConfigError, match=match):
        Database(f"sqlite:///{tmp_path / 'a.db'}?{query}")
    with pytest.raises(ConfigError, match=match):
        Database(f"sqlite:///{tmp_path / 'a.db'}", **options)
