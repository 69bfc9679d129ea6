"""Values the drivers treat differently, and batches inside transactions, on every backend.

Each test here reproduces a difference between backends (or a raw exception, or a connection
left unusable) that the conformance suite did not cover.
"""

from __future__ import annotations

import uuid
from contextlib import aclosing

import anyio
import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import (
    ConnectionLost,
    Database,
    DatabaseError,
    IntegrityError,
    Json,
    OperationalError,
    ProgrammingError,
    QueryTimeout,
)

from .conftest import CASES, SERVER_CASES

pytestmark = pytest.mark.anyio

PG_CASES = [p for p in SERVER_CASES if p.values[0][0].startswith("postgresql")]  # type: ignore[index]

SQLITE_CASES = [pytest.param(("sqlite", loop), id=f"sqlite-{loop}") for loop in ("asyncio", "trio")]

JSON_TYPE = {"postgresql": "jsonb", "mysql": "json", "sqlite": "json"}


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


async def test_execute_many_in_a_transaction_is_all_or_nothing(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key, x integer)")
        try:
            await db.execute(f"insert into {table} values (1, 0), (2, 0), (3, 0)")
            async with db.transaction():
                await db.execute(f"insert into {table} values (10, 0)")
                with pytest.raises(IntegrityError):
                    # the first row applies, the second collides with it
                    await db.execute_many(
                        f"update {table} set id = :new where id = :id",
                        [{"id": 1, "new": 100}, {"id": 2, "new": 100}],
                    )
                # the transaction goes on (on PostgreSQL too), without any of the batch
                await db.execute(f"insert into {table} values (11, 0)")
            ids = [row.id for row in await db.fetch_all(f"select id from {table} order by id")]
            assert ids == [1, 2, 3, 10, 11]
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


async def test_json_text_and_json_markers_are_stored_alike(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer, j {JSON_TYPE[db.dialect]})")
        try:
            values = [
                '{"a": [1, 2]}',  # JSON text: the object it spells
                '"quoted"',  # JSON text of a string
                Json("plain"),  # a string, sent as JSON
                Json(None),  # JSON null, not SQL NULL
                {"b": None},
            ]
            for index, value in enumerate(values):
                await db.execute(f"insert into {table} values (:id, :j)", {"id": index, "j": value})
            rows = await db.fetch_all(f"select j, j is null as missing from {table} order by id")
            assert [row.j for row in rows] == [{"a": [1, 2]}, "quoted", "plain", None, {"b": None}]
            assert [bool(row.missing) for row in rows] == [False] * len(values)
        finally:
            await db.execute(f"drop table {table}")


@pytest.mark.parametrize("case", PG_CASES, indirect=True)
async def test_arrays_of_uuid_and_bytea_hold_the_same_types(url: BackendURL) -> None:
    ident = uuid.uuid4()
    async with Database(url) as db:
        row = await db.fetch_one(
            "select array[:u::uuid, null] as ids, array[:b::bytea] as blobs",
            {"u": str(ident), "b": b"\x00\xff"},
        )
        assert row is not None
        assert row.ids == [ident, None]
        assert type(row.ids[0]) is uuid.UUID
        assert row.blobs == [b"\x00\xff"]
        assert type(row.blobs[0]) is bytes


async def test_a_string_the_server_cannot_take_is_a_programming_error(url: BackendURL) -> None:
    # a lone surrogate (os.fsdecode of a non-UTF-8 file name, say); one connection, so the
    # statement after it must run on the very connection that met the bad value
    async with Database(url, min_size=1, max_size=1) as db:
        sql = "select :v::text" if db.dialect == "postgresql" else "select :v"
        with pytest.raises(ProgrammingError):
            await db.fetch_val(sql, {"v": "name-\udcff.txt"})
        assert await db.fetch_val(sql, {"v": "fine"}) == "fine"
        assert await db.fetch_val("select 1") == 1
        assert db.pool_stats().in_use == 0


async def test_values_a_driver_refuses_are_programming_errors(url: BackendURL) -> None:
    async with Database(url) as db:
        if db.dialect == "postgresql":
            with pytest.raises(ProgrammingError):  # PostgreSQL text holds no NUL character
                await db.fetch_val("select :v::text", {"v": "a\x00b"})
        elif db.dialect == "sqlite":
            with pytest.raises(ProgrammingError):  # beyond SQLite's 64-bit integers
                await db.fetch_val("select :v", {"v": 2**70})
        else:
            assert await db.fetch_val("select :v", {"v": 2**70}) == 2**70  # a MySQL decimal
        assert await db.fetch_val("select 1") == 1
        assert db.pool_stats().in_use == 0


@pytest.mark.parametrize(
    ("declared", "stored"),
    [
        ("json", "not json"),
        ("date", "01/02/2024"),  # (a timestamp's text is read as its date)
        ("timestamp", 1700000000),
        ("uuid", "nope"),
        ("decimal", "abc"),
        ("time", "25:00"),
    ],
)
@pytest.mark.parametrize("case", SQLITE_CASES, indirect=True)
async def test_sqlite_values_that_do_not_match_the_declared_type(
    url: BackendURL, declared: str, stored: object
) -> None:
    async with Database(url) as db:
        await db.execute(f"create table t (v {declared})")
        await db.execute("insert into t values (:v)", {"v": stored})
        with pytest.raises(ProgrammingError, match=f"declared {declared.upper()}"):
            await db.fetch_val("select v from t")
        with pytest.raises(ProgrammingError, match=f"declared {declared.upper()}"):
            await db.fetch_all("select v from t")
        # read as it is stored, by a cast (no declared type, no conversion)
        assert await db.fetch_val("select cast(v as text) from t") == str(stored)


async def test_execute_counts_the_same_rows_on_every_backend(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key, x integer)")
        try:
            assert await db.execute(f"insert into {table} values (1, 1), (2, 2)") == 2
            # an UPDATE counts the rows it matched, also when a value does not change
            assert await db.execute(f"update {table} set x = 1 where id = 1") == 1
            assert await db.execute(f"update {table} set x = 1 where id in (1, 2)") == 2
            assert await db.execute(f"update {table} set x = 1 where id = 9") == 0
            # a query counts the rows it returned
            assert await db.execute(f"select * from {table}") == 2
            assert await db.execute(f"delete from {table}") == 2
        finally:
            await db.execute(f"drop table {table}")


#: psycopg and psycopg2 iterate through DECLARE, which takes queries only (docs/sql.md)
ITERATE_ANY = [
    p
    for p in CASES
    if p.values[0][0] not in ("postgresql+psycopg", "postgresql+psycopg2")  # type: ignore[index]
]


@pytest.mark.parametrize("case", ITERATE_ANY, indirect=True)
async def test_iterate_over_a_statement_without_rows_yields_nothing(
    url: BackendURL, table: str
) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key)")
        try:
            # like fetch_all: the statement runs, and there is no row (nor an error)
            assert [row async for row in db.iterate(f"insert into {table} values (1)")] == []
            assert await db.fetch_all(f"insert into {table} values (2)") == []
            async with db.connection():
                rows = [row async for row in db.iterate(f"insert into {table} values (3)")]
                assert rows == []
            assert await db.fetch_val(f"select count(*) from {table}") == 3
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


@pytest.mark.parametrize("sql", ["", " ;", "-- nothing", "/* nothing */"])
async def test_an_empty_statement_is_no_crash(url: BackendURL, sql: str) -> None:
    async with Database(url, min_size=1, max_size=1) as db:
        try:
            count = await db.execute(sql)
        except DatabaseError:  # some drivers refuse it (psycopg2, MySQL for a blank one)
            pass
        else:
            assert count in (-1, 0)
        assert await db.fetch_val("select 1") == 1


async def test_an_iteration_cut_by_disconnect_raises_connection_lost(url: BackendURL) -> None:
    db = Database(url, close_timeout=0.05)
    await db.connect()
    sql = "select 1 as n union all select 2 union all select 3"
    got: list[int] = []
    try:
        async with aclosing(db.iterate(sql, batch_size=1)) as rows:
            async for row in rows:
                got.append(row.n)
                if len(got) == 1:
                    await db.disconnect()  # waits close_timeout, then closes our connection
    except ConnectionLost:
        pass  # the rest of the result was lost with the connection
    else:
        assert got == [1, 2, 3]  # or it had all arrived before the close
    assert got[0] == 1


@pytest.mark.parametrize("case", PG_CASES, indirect=True)
async def test_an_application_name_with_spaces_reaches_the_server_whole(url: BackendURL) -> None:
    name = "billing worker \\ 2"
    async with Database(url, application_name=name) as db:
        assert await db.fetch_val("select current_setting('application_name')") == name


PYMYSQL_CASES = [p for p in SERVER_CASES if p.values[0][0] == "mysql+pymysql"]  # type: ignore[index]


@pytest.mark.parametrize("case", PYMYSQL_CASES, indirect=True)
async def test_a_read_timeout_is_a_query_timeout_and_never_replays(
    url: BackendURL, table: str
) -> None:
    async with Database(url, read_timeout=1) as db:
        await db.execute(f"create table {table} (x double)")
        try:
            await db.fetch_val("select 1")  # the next statement runs on a reused connection
            with pytest.raises(QueryTimeout):
                await db.execute(f"insert into {table} (x) values (sleep(2))")
            # the server goes on with the statement: wait until it is done with it
            running = (
                "select count(*) from information_schema.processlist "
                f"where info like 'insert into {table}%'"
            )
            with anyio.fail_after(30):
                while await db.fetch_val(running):
                    await anyio.sleep(0.1)
            assert await db.fetch_val(f"select count(*) from {table}") == 1  # once, not twice
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


@pytest.mark.parametrize("case", SQLITE_CASES, indirect=True)
async def test_a_transaction_cancelled_while_it_opens_is_not_left_open(url: BackendURL) -> None:
    async with Database(url, min_size=1, max_size=2) as db:
        await db.execute("create table d (x integer)")
        holding, release = anyio.Event(), anyio.Event()

        async def writer() -> None:
            async with db.transaction():  # holds SQLite's write lock until released
                await db.execute("insert into d values (1)")
                holding.set()
                await release.wait()

        async def impatient() -> None:
            with anyio.move_on_after(0.2):  # BEGIN IMMEDIATE waits for the lock meanwhile
                async with db.transaction():
                    await db.execute("insert into d values (2)")

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await holding.wait()
            tg.start_soon(impatient)
            await anyio.sleep(0.5)  # the impatient caller has left; its BEGIN still waits
            release.set()  # the lock comes free: that BEGIN now succeeds, for nobody
        assert db.pool_stats().in_use == 0
        await db.execute("insert into d values (3)")  # on the most recently used connection
        async with Database(url) as other:  # committed, for everyone to see
            assert [row.x for row in await other.fetch_all("select x from d order by x")] == [1, 3]
            await other.execute("insert into d values (4)")  # and the write lock is free


@pytest.mark.parametrize("case", PG_CASES, indirect=True)
async def test_concurrent_connects_open_one_pool(url: BackendURL) -> None:
    name = f"asyncify-{uuid.uuid4().hex[:12]}"
    db = Database(url, min_size=2, application_name=name)
    count = "select count(*) from pg_stat_activity where application_name = :name"
    async with Database(url) as control:
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(db.connect)
            assert db.pool_stats().size == 2
            assert await control.fetch_val(count, {"name": name}) == 2  # not one pool per call
        finally:
            await db.disconnect()
        with anyio.fail_after(10):  # and none is left open once the database is closed
            while await control.fetch_val(count, {"name": name}):
                await anyio.sleep(0.05)


async def test_min_size_connections_are_opened_up_front(url: BackendURL) -> None:
    async with Database(url, min_size=3, max_size=4) as db:
        stats = db.pool_stats()
        assert (stats.size, stats.idle, stats.in_use) == (3, 3, 0)


@pytest.mark.parametrize("case", SERVER_CASES, indirect=True)
async def test_a_transaction_goes_no_further_after_a_deadlock(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key, x integer)")
        try:
            await db.execute(f"insert into {table} values (1, 0), (2, 0)")
            locked = {1: anyio.Event(), 2: anyio.Event()}
            victims: list[int] = []
            refused: list[int] = []

            async def worker(first: int, second: int) -> None:
                bump = f"update {table} set x = x + 1 where id = :id"
                try:
                    async with db.transaction():
                        await db.execute(bump, {"id": first})
                        locked[first].set()
                        await locked[second].wait()
                        try:
                            await db.execute(bump, {"id": second})  # one of the two deadlocks
                        except OperationalError:
                            victims.append(first)
                            # the server rolled the transaction back: this must not commit
                            await db.execute(
                                f"insert into {table} values (:id, 99)", {"id": first + 10}
                            )
                except OperationalError:
                    refused.append(first)

            async with anyio.create_task_group() as tg:
                tg.start_soon(worker, 1, 2)
                tg.start_soon(worker, 2, 1)
            assert len(victims) == 1 and refused == victims
            rows = await db.fetch_all(f"select id, x from {table} order by id")
            assert [row.as_tuple() for row in rows] == [(1, 1), (2, 1)]  # the survivor's only
            async with db.transaction():  # the connections are fine for the next transaction
                await db.execute(f"update {table} set x = 0")
            assert await db.fetch_val(f"select sum(x) from {table}") == 0
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")
