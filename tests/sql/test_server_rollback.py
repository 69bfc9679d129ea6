"""A transaction the server rolled back on its own, whose error the block caught.

MySQL and MariaDB roll back the whole transaction on a deadlock (1213). A block that caught
the deadlock's error and went on used to end normally, without an error, with nothing of it
committed (PostgreSQL, which aborts the transaction instead, raised `OperationalError` as the
block ended); with the docs' portable way (a nested block around the statement that may
fail) the outer block ended silently too, everything lost. Now the block's end raises
`OperationalError` saying that nothing of it is committed, on every server backend.
"""

from __future__ import annotations

import contextlib

import anyio
import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import Database, OperationalError

from .conftest import SERVER_CASES

pytestmark = pytest.mark.anyio

MYSQL_CASES = [p for p in SERVER_CASES if p.values[0][0].startswith("mysql")]  # type: ignore[index]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


async def _deadlock(db: Database, table: str, *, nested: bool) -> dict[int, str]:
    """Two blocks that lock rows 1 and 2 in opposite orders, each logging itself (id 10 + its
    first row) first; the one whose second update deadlocks catches the error and goes on.
    Returns how each block ended: "committed", or the text of its error."""
    locked = {1: anyio.Event(), 2: anyio.Event()}
    ended: dict[int, str] = {}

    async def worker(first: int, second: int) -> None:
        bump = f"update {table} set x = x + 1 where id = :id"
        try:
            async with db.transaction():
                await db.execute(f"insert into {table} values (:id, 0)", {"id": 10 + first})
                await db.execute(bump, {"id": first})
                locked[first].set()
                await locked[second].wait()
                try:
                    if nested:
                        async with db.transaction():  # the docs' portable way
                            await db.execute(bump, {"id": second})
                    else:
                        await db.execute(bump, {"id": second})
                except OperationalError as exc:
                    assert "deadlock" in str(exc).lower()
            ended[first] = "committed"
        except OperationalError as exc:
            ended[first] = str(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker, 1, 2)
        tg.start_soon(worker, 2, 1)
    return ended


async def _logged(db: Database, table: str) -> list[int]:
    rows = await db.fetch_all(f"select id from {table} where id > 2 order by id")
    return [row.id - 10 for row in rows]


@pytest.mark.parametrize("case", SERVER_CASES, indirect=True)
async def test_a_block_that_caught_a_deadlock_raises_as_it_ends(
    url: BackendURL, table: str
) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key, x integer)")
        try:
            await db.execute(f"insert into {table} values (1, 0), (2, 0)")
            ended = await _deadlock(db, table, nested=False)
            victims = [first for first, how in ended.items() if how != "committed"]
            assert len(victims) == 1, ended
            assert "nothing of it is committed" in ended[victims[0]]
            (survivor,) = set(ended) - set(victims)
            assert await _logged(db, table) == [survivor]  # the victim's insert is gone
            assert await db.fetch_val(f"select sum(x) from {table}") == 2
            async with db.transaction():  # its connection is fine for the next transaction
                await db.execute(f"update {table} set x = 0")
            assert await db.fetch_val(f"select sum(x) from {table}") == 0
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


@pytest.mark.parametrize("case", SERVER_CASES, indirect=True)
async def test_a_deadlock_in_a_nested_block(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key, x integer)")
        try:
            await db.execute(f"insert into {table} values (1, 0), (2, 0)")
            ended = await _deadlock(db, table, nested=True)
            if db.dialect == "postgresql":
                # the savepoint undid the failed update alone: both blocks commit the rest
                assert ended == {1: "committed", 2: "committed"}
                assert await _logged(db, table) == [1, 2]
                assert await db.fetch_val(f"select sum(x) from {table}") == 3
            else:
                # MySQL rolled back the whole transaction: the outer block says so as it ends
                victims = [first for first, how in ended.items() if how != "committed"]
                assert len(victims) == 1, ended
                assert "nothing of it is committed" in ended[victims[0]]
                (survivor,) = set(ended) - set(victims)
                assert await _logged(db, table) == [survivor]
                assert await db.fetch_val(f"select sum(x) from {table}") == 2
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


@pytest.mark.parametrize("case", SERVER_CASES, indirect=True)
async def test_a_nested_block_whose_transaction_is_gone_raises_too(
    url: BackendURL, table: str
) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id integer primary key, x integer)")
        try:
            await db.execute(f"insert into {table} values (1, 0), (2, 0)")
            locked = {1: anyio.Event(), 2: anyio.Event()}
            nested_ends: list[str] = []

            async def worker(first: int, second: int) -> None:
                bump = f"update {table} set x = x + 1 where id = :id"
                try:
                    async with db.transaction():
                        await db.execute(bump, {"id": first})
                        locked[first].set()
                        await locked[second].wait()
                        try:
                            async with db.transaction():
                                # caught inside the nested block, which ends normally
                                with contextlib.suppress(OperationalError):
                                    await db.execute(bump, {"id": second})
                        except OperationalError as exc:
                            nested_ends.append(str(exc))
                            raise
                except OperationalError:
                    pass

            async with anyio.create_task_group() as tg:
                tg.start_soon(worker, 1, 2)
                tg.start_soon(worker, 2, 1)
            assert len(nested_ends) == 1
            if db.dialect == "mysql":
                assert "rolled back the whole transaction this nested block is in" in nested_ends[0]
            else:  # PostgreSQL aborted the transaction: rolled back to the savepoint
                assert "aborts a transaction on any error" in nested_ends[0]
            assert await db.fetch_val(f"select sum(x) from {table}") == 2
            assert db.pool_stats().in_use == 0
        finally:
            await db.execute(f"drop table {table}")


@pytest.mark.parametrize("case", MYSQL_CASES, indirect=True)
async def test_a_lock_wait_timeout_follows_the_servers_setting(url: BackendURL, table: str) -> None:
    """A lock wait timeout (1205) undoes the statement alone, unless the server runs with
    ``innodb_rollback_on_timeout``: then it rolled back the whole transaction."""
    async with Database(url) as db, Database(url, max_size=1) as waiter:
        await db.execute(f"create table {table} (id integer primary key, x integer)")
        try:
            await db.execute(f"insert into {table} values (1, 0), (2, 0)")
            whole = bool(await db.fetch_val("select @@innodb_rollback_on_timeout"))
            await waiter.execute("set session innodb_lock_wait_timeout = 1")
            async with db.transaction():
                await db.execute(f"update {table} set x = 1 where id = 1")
                outcome: list[str] = []
                try:
                    async with waiter.transaction():
                        await waiter.execute(f"update {table} set x = 5 where id = 2")
                        try:
                            await waiter.execute(f"update {table} set x = 5 where id = 1")
                        except OperationalError as exc:
                            assert "lock wait timeout" in str(exc).lower()
                    outcome.append("committed")
                except OperationalError as exc:
                    outcome.append(str(exc))
            if whole:
                assert "nothing of it is committed" in outcome[0]
                assert await db.fetch_val(f"select x from {table} where id = 2") == 0
            else:
                assert outcome == ["committed"]
                assert await db.fetch_val(f"select x from {table} where id = 2") == 5
        finally:
            await db.execute(f"drop table {table}")
