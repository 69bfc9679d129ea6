"""One conformance suite, run over all seven backends against the real servers.

Every backend must give the same Python types for the same SQL types, the same `Row`, the
same parameter style, the same errors and the same transaction behaviour.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import pickle
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from decimal import Decimal
from typing import Any

import anyio
import psutil  # type: ignore[import-untyped]  # no stubs installed
import pydantic
import pytest

from asyncify_kit import BackendURL, run_sync
from asyncify_kit.sql import (
    Database,
    DatabaseError,
    IntegrityError,
    IsolationLevel,
    Json,
    ProgrammingError,
    QueryTimeout,
    Row,
)

from .conftest import CASES

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


COLUMNS: dict[str, dict[str, str]] = {
    "postgresql": {
        "i": "bigint",
        "f": "double precision",
        "d": "numeric(12,4)",
        "s": "text",
        "b": "bytea",
        "flag": "boolean",
        "day": "date",
        "t": "time",
        "ts": "timestamptz",
        "u": "uuid",
        "j": "jsonb",
    },
    "mysql": {
        "i": "bigint",
        "f": "double",
        "d": "decimal(12,4)",
        "s": "text",
        "b": "blob",
        "flag": "boolean",
        "day": "date",
        "t": "time(6)",
        "ts": "datetime(6)",
        "u": "uuid",
        "j": "json",
    },
    "sqlite": {
        "i": "integer",
        "f": "real",
        "d": "decimal",
        "s": "text",
        "b": "blob",
        "flag": "boolean",
        "day": "date",
        "t": "time",
        "ts": "timestamp",
        "u": "uuid",
        "j": "json",
    },
}

VALUES: dict[str, Any] = {
    "i": 2**40 + 7,
    "f": 1.5,
    "d": Decimal("1234.5678"),
    "s": "héllo 'wörld' %s :x",
    "b": b"\x00\xff binary",
    "flag": True,
    "day": dt.date(2024, 2, 29),
    "t": dt.time(13, 14, 15, 123456),
    "ts": dt.datetime(2024, 2, 29, 23, 59, 58, 654321, tzinfo=dt.timezone.utc),
    "u": uuid.UUID("0b4e1a3a-2d54-4f8a-9a3f-6a5b8f1e2c3d"),
    "j": {"a": [1, 2, {"b": None}], "ü": "x"},
}


@asynccontextmanager
async def typed_table(db: Database, name: str) -> AsyncIterator[str]:
    columns = COLUMNS[db.dialect]
    body = ", ".join(f"{col} {kind}" for col, kind in columns.items())
    await db.execute(f"create table {name} (id integer primary key, {body})")
    try:
        yield name
    finally:
        await db.execute(f"drop table {name}")


async def test_same_python_types_from_every_backend(url: BackendURL, table: str) -> None:
    async with Database(url) as db, typed_table(db, table):
        cols = ", ".join(VALUES)
        marks = ", ".join(f":{c}" for c in VALUES)
        inserted = await db.execute(f"insert into {table} (id, {cols}) values (1, {marks})", VALUES)
        assert inserted == 1
        await db.execute(f"insert into {table} (id) values (2)")
        row = await db.fetch_one(f"select {cols} from {table} where id = 1")
        assert row is not None
        for name, expected in VALUES.items():
            value = row[name]
            assert type(value) is type(expected), (name, value)
            assert value == expected, name
        assert row["ts"].utcoffset() == dt.timedelta(0)
        nulls = await db.fetch_one(f"select {cols} from {table} where id = 2")
        assert nulls is not None
        assert all(nulls[name] is None for name in VALUES)


async def test_false_and_json_list_round_trip(url: BackendURL, table: str) -> None:
    async with Database(url) as db, typed_table(db, table):
        await db.execute(
            f"insert into {table} (id, flag, j) values (:id, :flag, :j)",
            {"id": 1, "flag": False, "j": Json([1, "two", None])},
        )
        row = await db.fetch_one(f"select flag, j from {table}")
        assert row is not None
        assert row.flag is False
        assert row.j == [1, "two", None]


@dataclasses.dataclass
class Item:
    id: int
    name: str
    price: Decimal | None = None


class ItemModel(pydantic.BaseModel):
    id: int
    name: str
    price: Decimal | None = None


async def test_rows_and_as_(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await db.execute(
            f"create table {table} (id integer primary key, name varchar(50), price decimal(8,2))"
        )
        try:
            await db.execute_many(
                f"insert into {table} (id, name, price) values (:id, :name, :price)",
                [{"id": i, "name": f"item {i}", "price": Decimal(f"{i}.50")} for i in range(5)],
            )
            rows = await db.fetch_all(f"select id, name, price from {table} order by id")
            assert [r.id for r in rows] == [0, 1, 2, 3, 4]
            first = rows[0]
            assert isinstance(first, Row)
            assert type(first).__name__ == "Row"
            assert tuple not in type(first).__mro__  # a mapping, whatever the driver's rows are
            assert pickle.loads(pickle.dumps(first)) == first
            one = await db.fetch_one(f"select id, name, price from {table} where id = 0")
            assert isinstance(one, Row)
            assert one == first == {"id": 0, "name": "item 0", "price": Decimal("0.50")}
            assert repr(one).startswith("Row(id=0, name='item 0', price=Decimal(")
            assert first["name"] == first.name == first[1] == "item 0"
            assert list(first) == ["id", "name", "price"]
            assert dict(first) == {"id": 0, "name": "item 0", "price": Decimal("0.50")}
            assert first[-1] == Decimal("0.50")
            with pytest.raises(AttributeError, match="nope"):
                _ = first.nope
            with pytest.raises(KeyError):
                _ = first["nope"]
            items = await db.fetch_all(f"select * from {table} order by id", as_=Item)
            assert items[2] == Item(2, "item 2", Decimal("2.50"))
            model = await db.fetch_one(
                f"select * from {table} where id = :id", {"id": 3}, as_=ItemModel
            )
            assert model == ItemModel(id=3, name="item 3", price=Decimal("3.50"))
            assert await db.fetch_one(f"select * from {table} where id = 99") is None
            # statements without a result read as no rows, on every backend
            assert await db.fetch_all(f"update {table} set name = name where id = 99") == []
            assert await db.fetch_one(f"update {table} set name = name where id = 99") is None
            assert await db.fetch_val(f"update {table} set name = name where id = 99") is None
            assert await db.fetch_val(f"select name from {table} where id = 99") is None
            assert await db.fetch_val(f"select id, name from {table} where id = 4", column=1) == (
                "item 4"
            )
            assert await db.fetch_val(f"select count(*) from {table}") == 5
            changed = await db.execute(
                f"update {table} set name = :n where id < :k", {"n": "x", "k": 3}
            )
            assert changed == 3
            assert await db.execute(f"delete from {table} where id = :id", {"id": 4}) == 1
        finally:
            await db.execute(f"drop table {table}")


async def test_parameters_are_named_and_never_formatted(url: BackendURL) -> None:
    async with Database(url) as db:
        tricky = "'; drop table users; -- :x %s %(x)s ?"
        assert await db.fetch_val("select :v", {"v": tricky}) == tricky
        assert await db.fetch_val("select ':not_a_param' -- :nor_this\n") == ":not_a_param"
        assert await db.fetch_val("select /* :x */ '100%'") == "100%"
        # one name used twice is one value (asyncpg types parameters from the statement, so
        # an untyped parameter in a select list is text there: strings are portable)
        twice = await db.fetch_one("select :a as x, :a as y", {"a": "2"})
        assert twice is not None
        assert twice.as_tuple() == ("2", "2")
        with pytest.raises(ProgrammingError, match=r"missing :b"):
            await db.fetch_val("select :a, :b", {"a": 1})
        with pytest.raises(ProgrammingError, match=r"unexpected 'c'"):
            await db.fetch_val("select :a", {"a": 1, "c": 2})
        with pytest.raises(ProgrammingError, match="mapping"):
            await db.fetch_val("select :a", [1])  # type: ignore[arg-type]
        with pytest.raises(ProgrammingError, match=r"missing :a"):
            await db.fetch_val("select :a")  # no mapping at all
        assert await db.fetch_val("select 7") == 7  # no placeholders, no mapping: nothing to bind
        assert db.pool_stats().in_use == 0


async def test_iterate_streams_in_batches(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key, v varchar(10))")
        try:
            await db.execute_many(
                f"insert into {table} (id, v) values (:id, :v)",
                [{"id": i, "v": str(i)} for i in range(1000)],
            )
            seen = [
                r.id async for r in db.iterate(f"select id from {table} order by id", batch_size=64)
            ]
            assert seen == list(range(1000))
            typed = [
                i
                async for i in db.iterate(
                    f"select id, v as name from {table} where id < :n order by id",
                    {"n": 3},
                    as_=Item,
                )
            ]
            assert typed == [Item(0, "0"), Item(1, "1"), Item(2, "2")]
            # leaving early gives the connection back (and ends the cursor's transaction)
            async with aclosing(
                db.iterate(f"select id from {table} order by id", batch_size=10)
            ) as it:
                async for row in it:
                    if row.id == 15:
                        break
            assert db.pool_stats().in_use == 0
            assert await db.fetch_val(f"select count(*) from {table}") == 1000
            async with db.transaction():
                await db.execute(f"delete from {table} where id >= 10")
                inside = [r.id async for r in db.iterate(f"select id from {table}", batch_size=3)]
                assert sorted(inside) == list(range(10))
            assert await db.fetch_val(f"select count(*) from {table}") == 10
        finally:
            await db.execute(f"drop table {table}")


async def test_errors_are_translated(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key)")
        try:
            await db.execute(f"insert into {table} (id) values (1)")
            with pytest.raises(IntegrityError) as caught:
                await db.execute(f"insert into {table} (id) values (:id)", {"id": 1})
            assert caught.value.orig is caught.value.__cause__
            assert caught.value.orig is not None
            assert not isinstance(caught.value.orig, DatabaseError)
            with pytest.raises(ProgrammingError):
                await db.execute("selec nothing")
            with pytest.raises(ProgrammingError):
                await db.fetch_all("select * from no_such_table_here")
            async with db.transaction():
                with pytest.raises(IntegrityError):
                    async with db.transaction():
                        await db.execute(f"insert into {table} (id) values (1)")
                await db.execute(f"insert into {table} (id) values (2)")
            assert await db.fetch_val(f"select count(*) from {table}") == 2
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


async def test_statement_timeout(url: BackendURL, case: tuple[str, str]) -> None:
    slow = {
        "postgresql": "select pg_sleep(3)",
        "mysql": "select sleep(3)",
        "sqlite": (
            "with recursive c(x) as (select 1 union all select x + 1 from c where x < 100000000)"
            " select count(*) from c"
        ),
    }
    async with Database(url, statement_timeout=0.3, min_size=0) as db:
        started = anyio.current_time()
        with pytest.raises(QueryTimeout) as caught:
            await db.fetch_val(slow[db.dialect])
        assert anyio.current_time() - started < 2.5
        assert isinstance(caught.value, TimeoutError)
        assert await db.fetch_val("select 1") == 1


@pytest.mark.parametrize(
    "case",
    [p for p in CASES if p.values[0][0] == "postgresql+asyncpg"],  # type: ignore[index]
    indirect=True,
)
async def test_asyncpg_command_timeout_is_a_query_timeout(url: BackendURL) -> None:
    """asyncpg's client-side ``command_timeout`` raises asyncio's TimeoutError (before Python
    3.11 not the builtin one): the `Database` reports it as `QueryTimeout`, as docs/sql.md
    says."""
    async with Database(url, command_timeout=0.3, min_size=0) as db:
        started = anyio.current_time()
        with pytest.raises(QueryTimeout, match=r"command_timeout=0\.3s") as caught:
            await db.fetch_val("select pg_sleep(3)")
        assert anyio.current_time() - started < 2.5
        assert isinstance(caught.value, TimeoutError)
        assert await db.fetch_val("select 1") == 1


class _Boom(Exception):
    pass


async def test_transactions(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key)")
        try:
            async with db.transaction():
                await db.execute(f"insert into {table} (id) values (1)")
            with pytest.raises(_Boom):
                async with db.transaction():
                    await db.execute(f"insert into {table} (id) values (2)")
                    raise _Boom
            async with db.transaction():
                await db.execute(f"insert into {table} (id) values (3)")
                with pytest.raises(_Boom):
                    async with db.transaction():  # a savepoint
                        await db.execute(f"insert into {table} (id) values (4)")
                        raise _Boom
                async with db.transaction():
                    await db.execute(f"insert into {table} (id) values (5)")

            @db.transaction()
            async def add(n: int, fail: bool) -> int:
                await db.execute(f"insert into {table} (id) values (:n)", {"n": n})
                if fail:
                    raise _Boom
                return n

            assert await add(6, False) == 6
            with pytest.raises(_Boom):
                await add(7, True)
            ids = [r.id for r in await db.fetch_all(f"select id from {table} order by id")]
            assert ids == [1, 3, 5, 6]
            async with db.transaction(isolation="serializable", read_only=True):
                assert await db.fetch_val(f"select count(*) from {table}") == 4
            with pytest.raises(DatabaseError):
                async with db.transaction(read_only=True):
                    await db.execute(f"insert into {table} (id) values (8)")
            assert await db.fetch_val(f"select count(*) from {table}") == 4
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


async def test_isolation_levels(url: BackendURL) -> None:
    async with Database(url) as db:
        levels: list[IsolationLevel] = (
            ["serializable"]
            if db.dialect == "sqlite"
            else ["read_uncommitted", "read_committed", "repeatable_read", "serializable"]
        )
        for level in levels:
            async with db.transaction(isolation=level):
                assert await db.fetch_val("select 1") == 1


async def test_concurrent_tasks_never_share_a_transaction(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key)")
        try:
            seen_by_child: list[int] = []

            async def child() -> None:
                # inherits the context of the transaction below, but not its connection
                seen_by_child.append(await db.fetch_val(f"select count(*) from {table}"))

            with pytest.raises(_Boom):
                async with db.transaction():
                    await db.execute(f"insert into {table} (id) values (1)")
                    assert await db.fetch_val(f"select count(*) from {table}") == 1
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(child)
                    raise _Boom
            assert seen_by_child == [0]

            async def worker(n: int) -> None:
                with pytest.raises(_Boom) if n % 2 else contextlib.nullcontext():
                    async with db.transaction():
                        await db.execute(f"insert into {table} (id) values (:n)", {"n": n})
                        await anyio.sleep(0.01)
                        if n % 2:
                            raise _Boom

            async with anyio.create_task_group() as tg:
                for n in range(10, 16):
                    tg.start_soon(worker, n)
            ids = [r.id for r in await db.fetch_all(f"select id from {table} order by id")]
            assert ids == [10, 12, 14]
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


async def test_pinned_connection(url: BackendURL) -> None:
    async with Database(url) as db:
        async with db.connection() as conn:
            assert conn.raw is not None
            assert db.pool_stats().in_use == 1
            assert await conn.fetch_val("select :x", {"x": "5"}) == "5"
            assert await db.fetch_val("select 6") == 6  # same pinned connection
            assert db.pool_stats().in_use == 1
            async with conn.transaction():
                assert (await conn.fetch_one("select 1 as one")) == {"one": 1}
        assert db.pool_stats().in_use == 0


HUGE = {
    "postgresql": "select repeat('x', 500) as pad from generate_series(1, 300000)",
    "mysql": "select repeat('x', 500) as pad from seq_1_to_300000",
    "sqlite": (
        "with recursive c(x) as (select 1 union all select x + 1 from c where x < 300000)"
        " select printf('%.500c', 'x') as pad from c"
    ),
}


async def test_iterate_keeps_memory_bounded_and_leaves_early_cheaply(url: BackendURL) -> None:
    """A 150 MB result, read 1,000 rows at a time and left early: memory stays flat."""
    process = await run_sync(psutil.Process)
    async with Database(url, min_size=1, max_size=2) as db:
        before = await run_sync(lambda: process.memory_info().rss)
        seen = 0
        started = anyio.current_time()
        async with aclosing(db.iterate(HUGE[db.dialect], batch_size=1_000)) as rows:
            async for row in rows:
                assert len(row.pad) == 500
                seen += 1
                if seen == 5_000:
                    break
        grown = await run_sync(lambda: process.memory_info().rss) - before
        assert grown < 60_000_000, f"memory grew by {grown / 1e6:.0f} MB"
        assert anyio.current_time() - started < 20
        stats = db.pool_stats()
        assert (stats.in_use, stats.waiting) == (0, 0)
        assert await db.fetch_val("select 'still fine'") == "still fine"


async def _committed(url: BackendURL, sql: str) -> Any:
    """*sql*'s value as another connection sees it: only what was committed."""
    async with Database(url, min_size=1, max_size=1) as other:
        return await other.fetch_val(sql)


@asynccontextmanager
async def numbered_table(db: Database, name: str) -> AsyncIterator[str]:
    """*name* with the ids 0 to 19, and an empty ``{name}_log`` for loop bodies to write to
    (its name is yielded); both dropped after."""
    log = f"{name}_log"
    await db.execute(f"create table {name} (id integer primary key)")
    await db.execute(f"create table {log} (id integer primary key)")
    try:
        await db.execute_many(
            f"insert into {name} (id) values (:id)", [{"id": i} for i in range(20)]
        )
        yield log
    finally:
        await db.execute(f"drop table {name}")
        await db.execute(f"drop table {log}")


async def test_iterate_with_statements_on_its_own_connection(url: BackendURL, table: str) -> None:
    """Inside a transaction (or a pinned connection) the loop body's statements run on the
    iteration's connection; every row still comes, on MySQL too (the protocol carries one
    result at a time: the rest of the iteration's is read into memory first)."""
    query = f"select id from {table} order by id"
    async with Database(url) as db, numbered_table(db, table) as log:
        seen: list[int] = []
        async with db.transaction():
            async for row in db.iterate(query, batch_size=5):
                seen.append(row.id)
                await db.execute(f"insert into {log} (id) values (:id)", {"id": row.id})
                if row.id == 7:
                    async with db.transaction():  # a savepoint inside the loop
                        await db.execute(f"insert into {log} (id) values (100)")
                if row.id == 12:  # an iteration inside the loop
                    inner = [r.id async for r in db.iterate(query, batch_size=3)]
                    assert inner == list(range(20))
        assert seen == list(range(20))
        assert await _committed(url, f"select count(*) from {log}") == 21
        seen.clear()
        async with db.connection():
            async for row in db.iterate(query, batch_size=6):
                seen.append(row.id)
                assert await db.fetch_val("select :n", {"n": str(row.id)}) == str(row.id)
        assert seen == list(range(20))
        assert db.pool_stats().in_use == 0


async def test_iterate_left_early_keeps_the_transaction_and_the_connection(
    url: BackendURL, table: str
) -> None:
    query = f"select id from {table} order by id"
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key)")
        try:
            await db.execute_many(
                f"insert into {table} (id) values (:id)", [{"id": i} for i in range(20)]
            )
            async with db.transaction():
                await db.execute(f"insert into {table} (id) values (100)")
                async with aclosing(db.iterate(query, batch_size=5)) as rows:
                    async for row in rows:
                        assert row.id == 0
                        break
                await db.execute(f"insert into {table} (id) values (101)")
                assert await db.fetch_val(f"select count(*) from {table}") == 22
            assert await _committed(url, f"select count(*) from {table} where id >= 100") == 2
            async with db.connection():
                # a temporary table lives on its connection only: it is still there after
                await db.execute(f"create temporary table {table}_tmp (id integer)")
                async with aclosing(db.iterate(query, batch_size=5)) as rows:
                    async for _ in rows:
                        break
                assert await db.fetch_val(f"select count(*) from {table}_tmp") == 0
            assert db.pool_stats().in_use == 0
            assert await db.fetch_val(f"select count(*) from {table}") == 22
        finally:
            await db.execute(f"drop table {table}")


async def _outcome(db: Database, query: str) -> object:
    """What iterating *query* to the end gives: the number of rows, or the error's class."""
    try:
        return len([row async for row in db.iterate(query, batch_size=2)])
    except DatabaseError as exc:
        return type(exc)


async def test_pinning_changes_nothing_iterate_accepts(url: BackendURL, table: str) -> None:
    """Inside `db.connection()` `iterate` takes what it takes outside: a statement returning
    rows that PostgreSQL's DECLARE refuses (INSERT ... RETURNING, EXPLAIN) still streams on
    asyncpg, and fails alike both ways where the driver always declares a cursor."""
    async with Database(url) as db, numbered_table(db, table) as log:
        insert = f"insert into {log} (id) values ({{0}}), ({{0}} + 1) returning id"
        explain = f"explain select id from {table} where id > {{0}}"
        for query in (insert, explain):
            unpinned = await _outcome(db, query.format(100))
            async with db.connection():
                pinned = await _outcome(db, query.format(200))
            assert pinned == unpinned


async def test_iterate_in_a_pinned_connection_leaves_the_loop_body_in_autocommit(
    url: BackendURL, table: str
) -> None:
    """In a `db.connection()` block without a transaction, each statement of the loop body is
    committed as it would be without the iteration, however the iteration ends (PostgreSQL's
    cursor needs a transaction: the body's statements must not end up inside it), and
    iterations nest."""
    query = f"select id from {table} order by id"
    async with Database(url) as db, numbered_table(db, table) as log:
        logged = f"select count(*) from {log}"
        add = f"insert into {log} (id) values (:id)"
        async with db.connection():
            async for row in db.iterate(query, batch_size=5):  # to the end
                if row.id < 3:
                    await db.execute(add, {"id": row.id})
            assert await _committed(url, logged) == 3
            async with aclosing(db.iterate(query, batch_size=5)) as rows:  # left early
                async for row in rows:
                    await db.execute(add, {"id": 100 + row.id})
                    if row.id == 1:
                        break
            assert await _committed(url, logged) == 5
            with pytest.raises(_Boom):  # the loop body raises
                async with aclosing(db.iterate(query, batch_size=5)) as rows:
                    async for _ in rows:
                        await db.execute(add, {"id": 200})
                        raise _Boom
            assert await _committed(url, logged) == 6
            seen: list[int] = []
            async for row in db.iterate(query, batch_size=5):
                seen.append(row.id)
                with pytest.raises(IntegrityError):  # fails alone; the loop goes on
                    await db.execute(add, {"id": 200})
                if row.id == 7:
                    await db.execute(add, {"id": 300})
                if row.id == 8:
                    with pytest.raises(_Boom):  # a transaction decides about its own
                        async with db.transaction():
                            await db.execute(add, {"id": 400})
                            raise _Boom
                if row.id == 9:
                    await db.execute_many(add, [{"id": 401}, {"id": 402}])
            assert seen == list(range(20))
            assert await _committed(url, logged) == 9
            seen.clear()
            async for row in db.iterate(query, batch_size=5):
                seen.append(row.id)
                if row.id == 4:  # iterations inside the loop
                    inner = [r.id async for r in db.iterate(query, batch_size=3)]
                    assert inner == list(range(20))
                    async with aclosing(db.iterate(query, batch_size=3)) as rows:
                        async for inner_row in rows:
                            await db.execute(add, {"id": 500 + inner_row.id})
                            if inner_row.id == 1:
                                break
            assert seen == list(range(20))
            assert await _committed(url, logged) == 11
        assert db.pool_stats().in_use == 0
        with pytest.raises(_Boom):  # in a transaction, the transaction decides
            async with db.transaction():
                async with aclosing(db.iterate(query, batch_size=5)) as rows:
                    async for _ in rows:
                        await db.execute(add, {"id": 600})
                        break
                raise _Boom
        assert await db.fetch_val(logged) == 11


async def test_an_iteration_left_open_in_a_pinned_connection_stays_with_it(
    url: BackendURL, table: str
) -> None:
    """An iteration still open when its `db.connection()` block ends (a loop left without
    `aclosing`) hands neither its transaction nor its cursor to the connection's next user."""
    async with Database(url, min_size=1, max_size=1) as db, numbered_table(db, table):
        rows = db.iterate(f"select id from {table} order by id", batch_size=5)
        async with db.connection():
            assert (await rows.__anext__()).id == 0
        await db.execute(f"insert into {table} (id) values (100)")  # the pool's next user
        assert await _committed(url, f"select count(*) from {table} where id = 100") == 1
        if db.dialect == "postgresql":
            assert await db.fetch_val("select count(*) from pg_cursors where name <> ''") == 0
        await rows.aclose()
        assert db.pool_stats().in_use == 0


async def test_a_cancelled_iteration_in_a_pinned_connection_is_closed_and_loses_nothing(
    url: BackendURL, table: str
) -> None:
    """Cancelled while its loop body waits, an iteration in a `db.connection()` block keeps
    the body's statements, and its cleanup (closing the cursor, ending its transaction) is
    done at once and in full: the connection goes on in autocommit, with no cursor left, and
    goes back to the pool."""
    async with Database(url, min_size=1, max_size=1) as db, numbered_table(db, table) as log:
        logged = f"select count(*) from {log}"
        add = f"insert into {log} (id) values (:id)"
        for writes in (True, False):
            async with db.connection():
                started = anyio.current_time()
                with anyio.move_on_after(0.5) as scope:
                    query = f"select id from {table} order by id"
                    async with aclosing(db.iterate(query, batch_size=5)) as rows:
                        async for row in rows:
                            if writes:
                                await db.execute(add, {"id": row.id})
                            if row.id == 3:
                                await anyio.sleep(30)
                assert scope.cancelled_caught
                assert anyio.current_time() - started < 5
                await db.execute(add, {"id": 100 if writes else 101})
                assert await _committed(url, logged) == (5 if writes else 6)
                if db.dialect == "postgresql":
                    named = "select count(*) from pg_cursors where name <> ''"
                    assert await db.fetch_val(named) == 0
            stats = db.pool_stats()
            assert (stats.size, stats.in_use) == (1, 0)  # kept, not discarded


async def test_a_transaction_object_used_again(url: BackendURL, table: str) -> None:
    """One `Transaction` object used in turn as a savepoint and as the outermost transaction
    (and the other way round) commits each time."""
    async with Database(url, max_size=1) as db:
        await db.execute(f"create table {table} (id integer primary key)")
        try:
            tx = db.transaction()
            async with db.transaction(), tx:  # tx is nested: a savepoint
                await db.execute(f"insert into {table} (id) values (1)")
            async with tx:  # now the outermost transaction: a COMMIT
                await db.execute(f"insert into {table} (id) values (2)")
            assert db.pool_stats().in_use == 0
            assert await _committed(url, f"select count(*) from {table}") == 2
            with pytest.raises(_Boom):
                async with db.transaction():
                    async with tx:  # a savepoint again: rolled back with its transaction
                        await db.execute(f"insert into {table} (id) values (3)")
                    raise _Boom
            async with tx:
                await db.execute(f"insert into {table} (id) values (4)")
            assert await _committed(url, f"select count(*) from {table}") == 3
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


class _Point:
    """An application object passed as a parameter by mistake."""


async def test_a_parameter_of_an_unknown_type_is_refused(url: BackendURL) -> None:
    async with Database(url) as db:
        sql = "select :p::text" if db.dialect == "postgresql" else "select :p"
        with pytest.raises(ProgrammingError):
            await db.fetch_val(sql, {"p": _Point()})
        assert await db.fetch_val(sql, {"p": "fine"}) == "fine"
        assert db.pool_stats().in_use == 0
