"""A statement called while its caller is already cancelled is never sent, on every backend.

"Already cancelled": a cancelled anyio or trio cancel scope around the call, or on asyncio a
``task.cancel()`` not yet delivered. A native driver wrote the statement to its socket
before its first real await (an idle pooled connection is taken without one), so an
autocommitted insert could land although its caller saw the cancellation; a threaded one
ran it when a worker picked it up before the cancellation came. `Database` now checks first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import Database, DatabaseConnection

from .conftest import CASES

pytestmark = pytest.mark.anyio

ROUNDS = 20
ON_ASYNCIO = [p for p in CASES if p.values[0][1] == "asyncio"]  # type: ignore[index]

Statement = Callable[[Database, str, int], Awaitable[Any]]


async def _iterate(db: Database, table: str, i: int) -> None:
    async with aclosing(db.iterate(f"insert into {table} (id) values ({i}) returning id")) as it:
        async for _row in it:
            pass


async def _on_connection(db: Database, table: str, i: int) -> None:
    conn: DatabaseConnection = db.connection()
    async with conn:
        await conn.execute(f"insert into {table} (id) values ({i})")


STATEMENTS: dict[str, Statement] = {
    "execute": lambda db, table, i: db.execute(f"insert into {table} (id) values ({i})"),
    "execute_many": lambda db, table, i: db.execute_many(
        f"insert into {table} (id) values (:id)", [{"id": i}]
    ),
    "fetch_all": lambda db, table, i: db.fetch_all(
        f"insert into {table} (id) values ({i}) returning id"
    ),
    "iterate": _iterate,
    "connection().execute": _on_connection,
}


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


async def _committed(url: BackendURL, table: str) -> list[int]:
    async with Database(url) as check:
        rows = await check.fetch_all(f"select id from {table} order by id")
        await check.execute(f"drop table {table}")
    return [row.id for row in rows]


@pytest.mark.parametrize("statement", list(STATEMENTS))
async def test_called_in_a_cancelled_scope(url: BackendURL, table: str, statement: str) -> None:
    run = STATEMENTS[statement]
    async with Database(url, min_size=1, max_size=2) as db:
        await db.execute(f"create table {table} (id integer)")
        await db.fetch_val("select 1")  # an idle pooled connection: taken without an await
        for i in range(ROUNDS):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await run(db, table, i)
            assert scope.cancelled_caught
        assert await db.fetch_val("select 1") == 1  # the pool is healthy after it all
    assert await _committed(url, table) == []


@pytest.mark.parametrize("case", ON_ASYNCIO)  # task.cancel() is asyncio's
@pytest.mark.parametrize("statement", list(STATEMENTS))
async def test_called_with_a_task_cancel_pending(
    url: BackendURL, table: str, statement: str
) -> None:
    run = STATEMENTS[statement]
    async with Database(url, min_size=1, max_size=2) as db:
        await db.execute(f"create table {table} (id integer)")

        async def cancelled_then(i: int) -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await run(db, table, i)

        for i in range(ROUNDS):
            with pytest.raises(asyncio.CancelledError):
                await asyncio.create_task(cancelled_then(i))
        assert await db.fetch_val("select 1") == 1
    assert await _committed(url, table) == []


async def test_a_block_ending_while_cancelled_is_rolled_back(url: BackendURL, table: str) -> None:
    """Its COMMIT is a statement called while cancelled: never sent; the block rolls back."""
    async with Database(url, min_size=1, max_size=1) as db:
        await db.execute(f"create table {table} (id integer)")
        for i in range(ROUNDS):
            with anyio.CancelScope() as scope:
                async with db.transaction():
                    await db.execute(f"insert into {table} (id) values ({i})")
                    scope.cancel()  # the block then ends without an error of its own
            assert scope.cancelled_caught
            assert await db.fetch_val(f"select count(*) from {table}") == 0
    assert await _committed(url, table) == []
