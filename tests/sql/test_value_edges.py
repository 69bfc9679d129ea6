"""Parameter values at the edges of what a backend can send, and how an interrupted statement
is reported, against the real servers.

Each test here reproduces a backend that disagreed with the others: a naive timestamp that
matched nothing on SQLite, NaN stored as NULL, an iteration cut by ``disconnect()`` (or any
interrupt) reported as a timeout, a plain enum member sent by name.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import math
import uuid
from decimal import Decimal
from typing import Any

import anyio
import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import (
    ConnectionLost,
    Database,
    Json,
    OperationalError,
    ProgrammingError,
    QueryTimeout,
)

from .conftest import CASES

pytestmark = pytest.mark.anyio

SQLITE_CASES = [p for p in CASES if p.values[0][0] == "sqlite"]  # type: ignore[index]
PG_CASES = [p for p in CASES if p.values[0][0].startswith("postgresql")]  # type: ignore[index]

TIMESTAMP_TYPE = {"postgresql": "timestamptz", "mysql": "datetime(6)", "sqlite": "timestamp"}
DOUBLE_TYPE = {"postgresql": "double precision", "mysql": "double", "sqlite": "real"}
JSON_TYPE = {"postgresql": "jsonb", "mysql": "json", "sqlite": "json"}

#: a statement that runs for seconds on SQLite, and checks its progress handler meanwhile
SLOW_SQLITE = (
    "with recursive c(x) as (select 1 union all select x + 1 from c where x < 100000000) "
    "select count(*) from c"
)


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


async def test_a_naive_datetime_is_the_utc_one_in_comparisons_too(
    url: BackendURL, table: str
) -> None:
    # SQLite compares timestamps as text: a naive value went without the offset that an
    # aware one carries, so it matched none of the rows the servers match
    aware = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    naive = aware.replace(tzinfo=None)
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer, at {TIMESTAMP_TYPE[db.dialect]})")
        try:
            await db.execute(f"insert into {table} values (1, :at)", {"at": aware})
            await db.execute(f"insert into {table} values (2, :at)", {"at": naive})
            rows = await db.fetch_all(f"select id, at from {table} order by id")
            assert [(row.id, row.at) for row in rows] == [(1, aware), (2, aware)]
            assert all(row.at.tzinfo is not None for row in rows)
            for value in (aware, naive):
                for op in ("=", "<=", ">="):
                    count = await db.fetch_val(
                        f"select count(*) from {table} where at {op} :t", {"t": value}
                    )
                    assert count == 2, (value, op)
            later = naive + dt.timedelta(microseconds=1)
            assert await db.fetch_val(f"select count(*) from {table} where at < :t", {"t": later})
            assert (
                await db.fetch_val(f"select count(*) from {table} where at > :t", {"t": later}) == 0
            )
        finally:
            await db.execute(f"drop table {table}")


class _Float(float):
    """A float subclass (as numpy's float64 is)."""


async def test_nan_is_never_stored_as_null(url: BackendURL, table: str) -> None:
    # SQLite stored NaN as NULL without a word; the MySQL drivers refuse it, PostgreSQL
    # stores NaN itself
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer, x {DOUBLE_TYPE[db.dialect]})")
        try:
            for value in (math.nan, _Float(math.nan)):
                try:
                    await db.execute(f"insert into {table} values (1, :x)", {"x": value})
                except ProgrammingError:
                    assert db.dialect != "postgresql"
                    assert await db.fetch_val(f"select count(*) from {table}") == 0
                else:
                    assert db.dialect == "postgresql"
                    stored = await db.fetch_val(f"select x from {table}")
                    assert stored is not None and math.isnan(stored)
                await db.execute(f"delete from {table}")
            assert await db.fetch_val("select 1") == 1  # the connection is still usable
        finally:
            await db.execute(f"drop table {table}")


@pytest.mark.parametrize("case", SQLITE_CASES)
async def test_sqlite_refuses_nan_everywhere_and_keeps_infinities(
    url: BackendURL, table: str
) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer, x real, n numeric)")
        insert = f"insert into {table} values (:id, :x, :n)"
        with pytest.raises(ProgrammingError, match="NaN"):
            await db.execute(insert, {"id": 1, "x": 1.5, "n": math.nan})
        with pytest.raises(ProgrammingError, match="NaN"):
            await db.execute_many(
                insert, [{"id": 2, "x": 1.0, "n": 1}, {"id": 3, "x": math.nan, "n": 1}]
            )
        async with db.transaction():
            with pytest.raises(ProgrammingError, match="NaN"):
                await db.fetch_val("select :x is null", {"x": math.nan})
            await db.execute(insert, {"id": 4, "x": math.inf, "n": 2})  # the block goes on
            await db.execute(insert, {"id": 5, "x": -math.inf, "n": 3})
        rows = await db.fetch_all(f"select id, x from {table} order by id")
        assert [(row.id, row.x) for row in rows] == [(4, math.inf), (5, -math.inf)]
        assert await db.fetch_val(f"select count(*) from {table} where x = :x", {"x": math.inf})


@pytest.mark.parametrize("case", SQLITE_CASES)
async def test_sqlite_decimals_as_documented(url: BackendURL, table: str) -> None:
    """docs/sql.md: a DECIMAL column keeps integers within 64 bits and rounds the rest to a
    64-bit float; a `DECIMAL TEXT` column keeps every value exactly."""
    values = ["12345678901234567", "3.50", "12345678901234567890.12", "1234567890.0000000001"]
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer, d decimal, t decimal text)")
        await db.execute_many(
            f"insert into {table} values (:id, :v, :v)",
            [{"id": i, "v": Decimal(v)} for i, v in enumerate(values)],
        )
        rows = await db.fetch_all(f"select d, t from {table} order by id")
    assert [row.t for row in rows] == [Decimal(v) for v in values]
    assert [row.d for row in rows] == [
        Decimal("12345678901234567"),
        Decimal("3.5"),
        Decimal("1.23456789012346E+19"),
        Decimal("1234567890"),
    ]


@pytest.mark.parametrize("case", SQLITE_CASES)
async def test_sqlite_an_iteration_cut_by_disconnect_is_connection_lost(url: BackendURL) -> None:
    # the statement was still running (its first row not computed yet) when disconnect()
    # interrupted it: that was reported as a QueryTimeout, without any statement_timeout
    db = Database(url, close_timeout=0.2)
    await db.connect()
    errors: list[BaseException] = []

    async def iterate() -> None:
        try:
            async for _ in db.iterate(SLOW_SQLITE):
                pass
        except Exception as exc:
            errors.append(exc)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(iterate)
            await anyio.sleep(0.3)
            await db.disconnect()
    assert len(errors) == 1
    assert isinstance(errors[0], ConnectionLost), repr(errors[0])
    assert not isinstance(errors[0], QueryTimeout)


@pytest.mark.parametrize("case", SQLITE_CASES)
@pytest.mark.parametrize("how", ["fetch_val", "iterate"])
async def test_sqlite_an_interrupt_is_a_timeout_only_past_statement_timeout(
    url: BackendURL, how: str
) -> None:
    async def run(db: Database) -> Any:
        if how == "fetch_val":
            return await db.fetch_val(SLOW_SQLITE)
        return [row async for row in db.iterate(SLOW_SQLITE)]

    # an interrupt from elsewhere (the raw connection's interrupt()): neither a timeout nor
    # a cancellation of a caller that was not cancelled
    async with Database(url) as db, db.connection() as conn:

        async def interrupt() -> None:
            while True:
                await anyio.sleep(0.1)
                conn.raw.interrupt()  # thread-safe

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(interrupt)
                with pytest.raises(OperationalError, match="interrupted") as caught:
                    await run(db)  # on the pinned connection (a child task would take another)
                tg.cancel_scope.cancel()
        assert type(caught.value) is OperationalError
        assert await db.fetch_val("select 3") == 3

    async with Database(url, statement_timeout=0.2) as db:
        with anyio.fail_after(30), pytest.raises(QueryTimeout, match=r"statement_timeout=0\.2s"):
            await run(db)
        assert await db.fetch_val("select 4") == 4


class _Colour(enum.Enum):
    RED = "red"


class _Size(enum.Enum):
    LARGE = 3


class _Tone(str, enum.Enum):
    WARM = "warm"


class _Level(enum.IntEnum):
    HIGH = 7


async def test_a_plain_enum_member_is_refused_and_str_and_int_enums_send_values(
    url: BackendURL, table: str
) -> None:
    # psycopg sent a plain member's name ('RED'); every other backend refuses it
    async with Database(url) as db:
        await db.execute(f"create table {table} (s varchar(20), n integer)")
        insert = f"insert into {table} values (:s, :n)"
        try:
            for params in ({"s": _Colour.RED, "n": 1}, {"s": "x", "n": _Size.LARGE}):
                with pytest.raises(ProgrammingError):
                    await db.execute(insert, params)
                async with db.transaction():
                    with pytest.raises(ProgrammingError):
                        await db.execute(insert, params)
                    await db.execute(insert, {"s": "kept", "n": 0})  # the block goes on
            await db.execute(insert, {"s": _Tone.WARM, "n": _Level.HIGH})
            rows = await db.fetch_all(f"select s, n from {table} order by n")
            assert [row.as_tuple() for row in rows] == [("kept", 0), ("kept", 0), ("warm", 7)]
        finally:
            await db.execute(f"drop table {table}")


class _Opaque:
    """An application object: JSON cannot hold it."""


async def test_a_dict_parameter_is_the_same_json_on_every_backend(
    url: BackendURL, table: str
) -> None:
    # psycopg and psycopg2 used the plain json.dumps: a Decimal, UUID or datetime in a dict
    # was a bare TypeError there, and an unknown object one everywhere but asyncpg
    doc = {"price": Decimal("1.10"), "id": uuid.UUID(int=7), "at": dt.datetime(2024, 5, 1, 12)}
    async with Database(url) as db:
        await db.execute(f"create table {table} (doc {JSON_TYPE[db.dialect]})")
        try:
            await db.execute(f"insert into {table} values (:doc)", {"doc": doc})
            assert await db.fetch_val(f"select doc from {table}") == {
                "price": "1.10",
                "id": "00000000-0000-0000-0000-000000000007",
                "at": "2024-05-01T12:00:00",
            }
            for bad in ({"x": _Opaque()}, Json([_Opaque()])):
                with pytest.raises(ProgrammingError, match="as JSON"):
                    await db.execute(f"insert into {table} values (:doc)", {"doc": bad})
            assert await db.fetch_val(f"select count(*) from {table}") == 1
        finally:
            await db.execute(f"drop table {table}")


@pytest.mark.parametrize("case", PG_CASES)
async def test_postgres_infinite_decimals_and_arrays_of_uuids_and_dicts(
    url: BackendURL, table: str
) -> None:
    # psycopg2 stored both infinities as NaN without a word, and could not adapt a UUID or
    # a dict inside a list (`id = any(:ids)`)
    ids = [uuid.UUID(int=1), uuid.UUID(int=2)]
    async with Database(url) as db:
        await db.execute(f"create table {table} (id uuid, v numeric)")
        try:
            for i, v in zip(ids, (Decimal("Infinity"), Decimal("-Infinity")), strict=True):
                await db.execute(f"insert into {table} values (:id, :v)", {"id": i, "v": v})
            rows = await db.fetch_all(f"select v from {table} order by v")
            assert [row.v for row in rows] == [Decimal("-Infinity"), Decimal("Infinity")]
            count = f"select count(*) from {table} where id = any(:ids)"
            assert await db.fetch_val(count, {"ids": ids}) == 2
            assert await db.fetch_val("select :docs::jsonb[]", {"docs": [{"a": 1}]}) == [{"a": 1}]
        finally:
            await db.execute(f"drop table {table}")


@pytest.mark.parametrize("case", PG_CASES)
async def test_postgres_network_addresses_are_ipaddress_objects(
    url: BackendURL, table: str
) -> None:
    # psycopg2 returned inet and cidr values as text and could not send an ipaddress object;
    # asyncpg and psycopg read and send the ipaddress types
    host = ipaddress.ip_address("10.0.0.1")
    iface = ipaddress.ip_interface("10.1.2.3/16")
    net = ipaddress.ip_network("2001:db8::/32")
    async with Database(url) as db:
        await db.execute(f"create table {table} (id int, a inet, n cidr)")
        try:
            insert = f"insert into {table} values (:id, :a, :n)"
            await db.execute(insert, {"id": 1, "a": host, "n": net})
            await db.execute(insert, {"id": 2, "a": iface, "n": None})
            rows = await db.fetch_all(f"select a, n from {table} order by id")
            assert [tuple(row.values()) for row in rows] == [(host, net), (iface, None)]
            assert [type(row.a) for row in rows] == [ipaddress.IPv4Address, ipaddress.IPv4Interface]
            count = f"select count(*) from {table} where a = any(:hosts)"
            assert await db.fetch_val(count, {"hosts": [host, iface]}) == 2
            arrays = await db.fetch_one(
                f"select array[a] as a, array[n] as n from {table} where id = 1"
            )
            assert arrays is not None and (arrays.a, arrays.n) == ([host], [net])
        finally:
            await db.execute(f"drop table {table}")


@pytest.mark.parametrize("case", PG_CASES)
@pytest.mark.parametrize(
    "sql", ["select '24:00'::time", "select '24:00+02'::timetz", "select array['24:00'::time]"]
)
async def test_postgres_time_24_00_is_refused_on_every_backend(url: BackendURL, sql: str) -> None:
    # PostgreSQL's end of day has no `datetime.time`: asyncpg and psycopg refused it, and
    # psycopg2 read it as midnight, the start of the day, without a word
    async with Database(url) as db:
        with pytest.raises(ProgrammingError, match=r"hour must be in 0\.\.23"):
            await db.fetch_val(sql)
        assert await db.fetch_val("select '23:59:59.999999'::time") == dt.time(23, 59, 59, 999999)
        assert await db.fetch_val("select array['00:00'::time]") == [dt.time(0)]


@pytest.mark.parametrize("case", PG_CASES)
async def test_postgres_void_is_none_on_every_backend(url: BackendURL) -> None:
    # a function returning void (pg_sleep, pg_notify): asyncpg read None, psycopg and
    # psycopg2 the empty string
    async with Database(url) as db:
        assert await db.fetch_val("select pg_sleep(0)") is None
        row = await db.fetch_one("select pg_notify('asyncify_void', 'x') as n, 1 as one")
        assert row is not None and (row.n, row.one) == (None, 1)


async def test_fetch_val_takes_a_column_index_only(url: BackendURL) -> None:
    # a name worked on asyncpg only, and was a bare TypeError (KeyError) on the others
    async with Database(url) as db:
        assert await db.fetch_val("select 1 as i, 2 as j", column=1) == 2
        for column in ("j", "nope", 1.0, True):
            with pytest.raises(ProgrammingError, match="column is the index"):
                await db.fetch_val("select 1 as i, 2 as j", column=column)  # type: ignore[arg-type]
            async with db.connection() as conn:
                with pytest.raises(ProgrammingError, match="column is the index"):
                    await conn.fetch_val("select 1 as i", column=column)  # type: ignore[arg-type]
        with pytest.raises(ProgrammingError, match="no column 5"):
            await db.fetch_val("select 1 as i, 2 as j", column=5)


@pytest.mark.parametrize("case", PG_CASES)
async def test_a_table_made_again_by_another_connection_does_not_break_prepared_queries(
    url: BackendURL, table: str
) -> None:
    # psycopg kept its prepared statement: "cached plan must not change result type" on
    # every later run of the query on that connection, for good
    query = f"select v from {table}"
    async with Database(url, max_size=1) as db, Database(url, max_size=1) as other:
        await db.execute(f"create table {table} (v date)")
        try:
            for _ in range(8):  # prepared by now (psycopg's prepare_threshold is 5)
                assert await db.fetch_all(query) == []
            await other.execute(f"drop table {table}")
            await other.execute(f"create table {table} (v text)")
            await other.execute(f"insert into {table} values ('x')")
            assert [row.v for row in await db.fetch_all(query)] == ["x"]
            assert await db.fetch_val(query) == "x"

            for _ in range(8):
                await db.fetch_all(query)
            await other.execute(f"alter table {table} alter column v type varchar(5)")
            try:
                async with db.transaction():
                    await db.fetch_all(query)  # may fail in a transaction: it is aborted
            except ProgrammingError:
                pass
            assert [row.v for row in await db.fetch_all(query)] == ["x"]
        finally:
            await other.execute(f"drop table {table}")


async def test_a_datetime_written_to_a_date_column_reads_back_as_its_date(
    url: BackendURL, table: str
) -> None:
    # SQLite kept the timestamp's text, then refused to read the row ("cannot be read as DATE")
    async with Database(url) as db:
        await db.execute(f"create table {table} (d date)")
        try:
            at = dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc)
            await db.execute(f"insert into {table} values (:d)", {"d": at})
            assert await db.fetch_val(f"select d from {table}") == dt.date(2024, 5, 1)
        finally:
            await db.execute(f"drop table {table}")
