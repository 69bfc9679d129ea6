"""Edge cases of the facade's API on every backend, against the real servers.

Each test here reproduces a raw exception or a silently wrong result that the conformance
suite did not cover.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import Database, OperationalError, ProgrammingError

from .conftest import CASES, SERVER_CASES

pytestmark = pytest.mark.anyio

PG_CASES = [p for p in SERVER_CASES if p.values[0][0].startswith("postgresql")]  # type: ignore[index]
SQLITE_CASES = [p for p in CASES if p.values[0][0] == "sqlite"]  # type: ignore[index]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


async def test_fetch_val_of_a_missing_column_is_a_programming_error(url: BackendURL) -> None:
    async with Database(url) as db:
        with pytest.raises(ProgrammingError, match="no column 2"):
            await db.fetch_val("select 1, 2", column=2)
        async with db.connection() as conn:
            with pytest.raises(ProgrammingError, match="no column 5"):
                await conn.fetch_val("select 1", column=5)
            with pytest.raises(ProgrammingError, match="no column 3"):
                await db.fetch_val("select 1", column=3)
            assert await conn.fetch_val("select 7") == 7  # the connection is still usable
        assert await db.fetch_val("select 1, 2", column=1) == 2
        assert await db.fetch_val("select 1 where 1 = 0", column=3) is None
        assert db.pool_stats().in_use == 0


@pytest.mark.parametrize("case", PG_CASES + SQLITE_CASES)
async def test_a_positional_placeholder_is_refused_not_bound_to_a_name(url: BackendURL) -> None:
    # the compiler numbers :a as $1 (asyncpg, psycopg) or as the first ? (SQLite), so a $1 or
    # ?1 written in the query silently took the value of :a
    mark = "$1" if url.dialect == "postgresql" else "?1"
    cast = "::int" if url.dialect == "postgresql" else ""
    async with Database(url) as db:
        with pytest.raises(ProgrammingError, match=re.escape(mark)):
            await db.fetch_val(f"select {mark}{cast} + :a{cast}", {"a": 5})
        assert await db.fetch_val(f"select '{mark}' || :a", {"a": "x"}) == f"{mark}x"


@pytest.mark.parametrize("batch_size", [2**31, 2**63])
async def test_iterate_takes_any_batch_size(url: BackendURL, batch_size: int) -> None:
    # MySQL streamed these; PostgreSQL's FETCH, asyncpg and sqlite3 refused a count past 32
    # bits (a server syntax error, or an OverflowError reported as a value not sendable)
    sql = "select 1 as a union all select 2 as a"
    async with Database(url) as db:
        assert [r.a async for r in db.iterate(sql, batch_size=batch_size)] == [1, 2]
        async with db.connection():
            assert [r.a async for r in db.iterate(sql, batch_size=batch_size)] == [1, 2]
        assert db.pool_stats().in_use == 0


async def test_a_caller_that_timed_out_waiting_is_no_longer_counted(url: BackendURL) -> None:
    # the native pools kept an expired waiter in their queue: stats() counted it as waiting
    # until a connection came back (and the queue grew with every timeout meanwhile)
    async with Database(url, max_size=1, acquire_timeout=0.05) as db:
        async with db.connection():  # holds the only connection

            async def other_task() -> None:  # a child task: not on the pinned connection
                for _ in range(3):
                    with pytest.raises(OperationalError, match="acquire_timeout"):
                        await db.fetch_val("select 1")

            async with anyio.create_task_group() as tg:
                tg.start_soon(other_task)
            assert db.pool_stats().waiting == 0
        assert db.pool_stats().waiting == 0
        assert await db.fetch_val("select 1") == 1


_SEVERAL = {  # what docs/sql.md says of `select 1; select 2` in one call, per driver
    "postgresql+asyncpg": None,  # refused
    "mysql+pymysql": None,
    "sqlite": None,
    "postgresql+psycopg": 1,  # the first result
    "mysql+asyncmy": 1,
    "mysql+aiomysql": 1,
    "postgresql+psycopg2": 2,  # the last result
}


async def test_several_statements_in_one_call_are_as_documented(
    url: BackendURL, case: tuple[str, str]
) -> None:
    async with Database(url) as db:
        expected = _SEVERAL[case[0]]
        if expected is None:
            with pytest.raises(ProgrammingError):
                await db.fetch_all("select 1 as n; select 2 as n")
        else:
            assert [row.n for row in await db.fetch_all("select 1 as n; select 2 as n")] == [
                expected
            ]
        assert await db.fetch_val("select 3") == 3  # the connection is still usable


@pytest.mark.parametrize("block", ["transaction", "connection"])
async def test_an_iteration_closed_while_a_statement_reads_its_rest(
    url: BackendURL, block: str
) -> None:
    """An iteration left with ``break`` (no ``aclosing``) is closed later by asyncio's
    finalizer, in a task of its own, maybe while the next statement runs on the same
    connection. On MySQL that statement first reads the rest of the iteration's result, and
    the iteration's close read it too, at the same time: asyncmy raised "Packet sequence
    number wrong", aiomysql hung, PyMySQL read garbage; on PostgreSQL in a connection block,
    asyncpg refused the close ("another operation is in progress"), leaving the cursor open.
    Here the close comes, from another task, while the statement reads the rest (in a
    transaction or a connection block: the same connection)."""
    table = f"t_rest_{uuid.uuid4().hex[:8]}"
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key, v varchar(80))")
        try:
            # a rest of some MB: more than the socket holds, so reading it waits for the server
            rows = [{"id": i, "v": f"value {i}".ljust(80, ".")} for i in range(20000)]
            await db.execute_many(f"insert into {table} (id, v) values (:id, :v)", rows)
            for _ in range(3):
                async with db.transaction() if block == "transaction" else db.connection():
                    left = db.iterate(f"select id, v from {table} order by id", batch_size=100)
                    assert (await left.__anext__()).id == 0

                    async def close_it(iteration: AsyncGenerator[Any, None] = left) -> None:
                        await anyio.sleep(0)  # once the statement below waits for its rows
                        await iteration.aclose()

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(close_it)
                        with anyio.fail_after(10):
                            count = await db.fetch_val(f"select count(*) from {table}")
                    assert count == 20000
                    await db.execute(f"update {table} set v = :v where id = 0", {"v": "changed"})
                    if block == "connection" and url.dialect == "postgresql":
                        # its cursor was closed (asyncpg: the close came between statements)
                        left_open = "select name from pg_cursors where name <> ''"
                        assert await db.fetch_all(left_open) == []  # ('': this query's portal)
                assert await db.fetch_val(f"select v from {table} where id = 0") == "changed"
                await db.execute(f"update {table} set v = 'value 0' where id = 0")  # (again)
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


async def test_other_tasks_run_between_the_batches_of_an_iteration(url: BackendURL) -> None:
    """Each batch lets the event loop run other tasks. On aiomysql and asyncmy, batches of a
    result already in memory (here: read in by a statement run inside the loop) came one
    after another without yielding: 2,000 rows held the loop 32-37 ms at a stretch.

    At each batch's end the iteration wakes a task that counts its turns: it gets one before
    the next batch's end only if the iteration let the loop run it. (It waits to be woken
    rather than yielding in a loop: a task that never waits kept the loop's thread holding
    the GIL, and each hop of the worker threads took 10-115 ms: 37-63 s for SQLite on trio.)
    """
    sql = (  # (MariaDB stops a recursion at 1,000 rounds, silently: twice 1,000 rows)
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < 1000) "
        "select i + 1000 * h.h as i from n, (select 0 as h union all select 1) h order by i"
    )
    turns = 0
    woken = anyio.Event()
    done = False

    async def counter() -> None:
        nonlocal turns, woken
        while True:
            await woken.wait()
            if done:
                return
            woken = anyio.Event()
            turns += 1

    seen: list[int] = []
    at_batch: list[int] = []
    async with Database(url) as db, db.connection(), anyio.create_task_group() as tg:
        tg.start_soon(counter)
        async for row in db.iterate(sql, batch_size=100):
            seen.append(row.i)
            if len(seen) == 1:
                assert await db.fetch_val("select 1") == 1  # on MySQL: the rest is read in
            if len(seen) % 100 == 0:
                at_batch.append(turns)
                woken.set()
        done = True
        woken.set()
    assert seen == list(range(1, 2001))
    # (from the second batch on: the statement in the loop body waited before it)
    assert all(later > earlier for earlier, later in itertools.pairwise(at_batch[1:]))
