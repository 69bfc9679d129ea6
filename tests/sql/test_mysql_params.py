"""MySQL/MariaDB parameters and streaming: what the three drivers would get wrong alone.

The drivers pick a parameter's encoding by its exact type and send ``str(value)`` for any
other (an enum member, an application object); and a statement sent while an unbuffered
result is being read makes them drop the rest of that result without an error.
"""

from __future__ import annotations

import enum
from decimal import Decimal

import pytest

from asyncify_kit import BackendURL, run_sync
from asyncify_kit.sql import Database, OperationalError, ProgrammingError

from .conftest import SERVER_CASES

pytestmark = pytest.mark.anyio

MYSQL_CASES = [p for p in SERVER_CASES if p.values[0][0].startswith("mysql")]  # type: ignore[index]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


class Level(enum.IntEnum):
    HIGH = 3


class Colour(str, enum.Enum):
    RED = "red"


@pytest.mark.parametrize("case", MYSQL_CASES, indirect=True)
async def test_parameters_are_sent_as_their_values_or_refused(url: BackendURL) -> None:
    async with Database(url, min_size=1, max_size=1) as db:
        assert await db.fetch_val("select :p", {"p": Level.HIGH}) == 3
        assert await db.fetch_val("select :p", {"p": Colour.RED}) == "red"
        assert await db.fetch_val("select :p", {"p": bytearray(b"ab")}) == b"ab"
        assert await db.fetch_val("select :p + 0", {"p": Decimal("1.25")}) == Decimal("1.25")
        for wrong in (object(), (1, 2), {1, 2}, 1j):
            with pytest.raises(ProgrammingError, match="cannot be sent to MySQL"):
                await db.fetch_val("select :p", {"p": wrong})
        with pytest.raises(ProgrammingError, match="cannot be sent to MySQL"):
            await db.execute_many("select :p", [{"p": 1}, {"p": object()}])
        assert db.pool_stats().in_use == 0


@pytest.mark.parametrize("case", MYSQL_CASES, indirect=True)
async def test_double_dash_without_a_space_is_two_minus_signs(url: BackendURL) -> None:
    async with Database(url, min_size=1, max_size=1) as db:
        assert await db.fetch_val("select 5--:a", {"a": 1}) == 6
        assert await db.fetch_val("select 5-- :not_a_parameter\n + 1") == 6


@pytest.mark.parametrize("case", MYSQL_CASES, indirect=True)
async def test_server_warnings_cost_no_round_trip_and_no_log(
    url: BackendURL, caplog: pytest.LogCaptureFixture
) -> None:
    """A statement that leaves server warnings (a missing table dropped "if exists", a
    division by zero) neither asks the server for them (``SHOW WARNINGS``: one more round
    trip each) nor logs or warns them, on every MySQL driver: asyncmy logged each at WARNING,
    aiomysql raised them as Python warnings (an error under ``-W error``)."""
    async with Database(url, min_size=1, max_size=1) as db, db.connection() as conn:
        shown = "show session status like 'Com_show_warnings'"
        before = int((await conn.fetch_one(shown))[1])  # type: ignore[index]
        with caplog.at_level("DEBUG"):
            await conn.execute("drop table if exists no_such_table_for_warnings")
            assert await conn.fetch_val("select 1/0") is None
        after = int((await conn.fetch_one(shown))[1])  # type: ignore[index]
        assert after == before
        assert not [r for r in caplog.records if r.levelno >= 30], caplog.records


async def _run_raw(conn: object, sql: str) -> None:
    """Run *sql* through the driver's own connection, behind the Database's back."""
    if hasattr(conn, "open"):  # PyMySQL: blocking

        def run() -> None:
            with conn.cursor() as cur:  # type: ignore[attr-defined]
                cur.execute(sql)

        await run_sync(run)
        return
    cursor = conn.cursor()  # type: ignore[attr-defined]
    if hasattr(cursor, "__await__"):  # aiomysql: a future of the cursor
        cursor = await cursor
    try:
        await cursor.execute(sql)
    finally:
        await cursor.close()


@pytest.mark.parametrize("case", MYSQL_CASES, indirect=True)
async def test_a_result_cut_short_behind_the_back_is_an_error(url: BackendURL, table: str) -> None:
    """A statement sent on the raw driver connection while iterate() reads from it makes the
    driver drop the rest of the result: the iteration raises instead of ending early."""
    async with Database(url, min_size=1, max_size=2) as db:
        await db.execute(f"create table {table} (id integer primary key)")
        try:
            await db.execute_many(
                f"insert into {table} (id) values (:id)", [{"id": i} for i in range(20)]
            )
            seen: list[int] = []
            async with db.connection() as conn:
                with pytest.raises(OperationalError, match="dropped the rest of the result"):
                    async for row in db.iterate(
                        f"select id from {table} order by id", batch_size=5
                    ):
                        seen.append(row.id)
                        if row.id == 2:
                            with pytest.warns(UserWarning, match="left incomplete"):
                                await _run_raw(conn.raw, "select 1")
            assert seen == list(range(5))
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


@pytest.mark.parametrize("case", MYSQL_CASES, indirect=True)
async def test_an_iteration_left_open_when_its_transaction_ends(
    url: BackendURL, table: str
) -> None:
    """An iteration not finished nor closed when its transaction ends: the commit reads the
    rest of its result and drops it (no copy is kept for an iteration nobody may read any
    more), and going on with it is an error, as on PostgreSQL. (Rows an earlier statement
    had read into memory are still given.)"""
    query = f"select id from {table} order by id"
    async with Database(url, min_size=1, max_size=1) as db:
        await db.execute(f"create table {table} (id integer primary key)")
        try:
            await db.execute_many(
                f"insert into {table} (id) values (:id)", [{"id": i} for i in range(20)]
            )
            async with db.transaction():
                read = db.iterate(query, batch_size=5)
                assert (await read.__anext__()).id == 0
                await db.execute(f"insert into {table} (id) values (100)")  # reads `read`'s rest
                left = db.iterate(query, batch_size=5)
                assert (await left.__anext__()).id == 0
            assert await db.fetch_val(f"select count(*) from {table}") == 21  # committed
            assert [r.id async for r in read] == list(range(1, 20))
            got: list[int] = []
            with pytest.raises(OperationalError, match=r"transaction that iterate\(\) ran in"):
                async for row in left:
                    got.append(row.id)
            assert got == [1, 2, 3, 4]  # the rest of the batch it had read before the commit
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


@pytest.mark.parametrize("case", MYSQL_CASES, indirect=True)
async def test_the_charset_option_is_the_connections_in_any_case(url: BackendURL) -> None:
    async with Database(url, charset="LATIN1") as db:
        assert await db.fetch_val("select @@character_set_client") == "latin1"
        assert await db.fetch_val("select :s", {"s": "café"}) == "café"
