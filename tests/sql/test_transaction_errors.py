"""A statement's error caught inside a transaction, on every backend.

PostgreSQL aborts a transaction on any failed statement, and its COMMIT then rolls back
without an error: a block that caught such an error and ended normally used to "commit"
nothing, silently, where MySQL and SQLite (which undo the failed statement alone) committed
the rest of the block. Now PostgreSQL's block raises `OperationalError` as it ends.
"""

from __future__ import annotations

import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import Database, IntegrityError, OperationalError, ProgrammingError

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


async def _ids(db: Database, table: str) -> list[int]:
    return [row.id for row in await db.fetch_all(f"select id from {table} order by id")]


async def _table(db: Database, table: str) -> None:
    await db.execute(f"create table {table} (id int primary key)")
    await db.execute(f"insert into {table} (id) values (1)")


async def _go_on_after_an_error(db: Database, table: str) -> None:
    async with db.transaction():
        await db.execute(f"insert into {table} (id) values (2)")
        with pytest.raises(IntegrityError):
            await db.execute(f"insert into {table} (id) values (1)")


async def test_a_block_that_caught_a_statement_error(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await _table(db, table)
        if db.dialect == "postgresql":
            with pytest.raises(OperationalError, match="nothing of it is committed"):
                await _go_on_after_an_error(db, table)
            assert await _ids(db, table) == [1]
        else:  # MySQL and SQLite undo the failed statement alone: the rest is committed
            await _go_on_after_an_error(db, table)
            assert await _ids(db, table) == [1, 2]
        # the connection went back to the pool in a usable state
        assert await db.fetch_val("select 5") == 5
        await db.execute(f"drop table {table}")


async def test_a_nested_block_that_caught_a_statement_error(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await _table(db, table)
        async with db.transaction():
            await db.execute(f"insert into {table} (id) values (2)")
            try:
                async with db.transaction():
                    await db.execute(f"insert into {table} (id) values (3)")
                    with pytest.raises(IntegrityError):
                        await db.execute(f"insert into {table} (id) values (1)")
            except OperationalError as exc:
                assert db.dialect == "postgresql"
                assert "rolled back to its savepoint" in str(exc)
            else:
                assert db.dialect != "postgresql"
            # either way the enclosing transaction goes on, and commits
            await db.execute(f"insert into {table} (id) values (4)")
        expected = [1, 2, 4] if db.dialect == "postgresql" else [1, 2, 3, 4]
        assert await _ids(db, table) == expected
        await db.execute(f"drop table {table}")


async def test_an_error_that_never_reached_the_server_still_commits(
    url: BackendURL, table: str
) -> None:
    """A value the driver cannot send fails before the statement is sent: the transaction
    is not aborted (PostgreSQL is asked once, then the block commits as usual)."""
    async with Database(url) as db:
        await _table(db, table)
        async with db.transaction():
            await db.execute(f"insert into {table} (id) values (2)")
            with pytest.raises(ProgrammingError):
                await db.execute(f"insert into {table} (id) values (:v)", {"v": object()})
        assert await _ids(db, table) == [1, 2]
        await db.execute(f"drop table {table}")


async def test_a_savepoint_that_undid_the_error_lets_the_block_commit(
    url: BackendURL, table: str
) -> None:
    """The portable way: the statement that may fail in a nested block, its error caught
    outside it. Every backend then commits the rest."""
    async with Database(url) as db:
        await _table(db, table)
        async with db.transaction():
            await db.execute(f"insert into {table} (id) values (2)")
            with pytest.raises(IntegrityError):
                async with db.transaction():
                    await db.execute(f"insert into {table} (id) values (1)")
            await db.execute(f"insert into {table} (id) values (3)")
        assert await _ids(db, table) == [1, 2, 3]
        await db.execute(f"drop table {table}")
