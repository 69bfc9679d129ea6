"""The same wrong statement raises the same error class on every backend.

PostgreSQL raises `ProgrammingError` for a statement that is wrong; SQLite raised
`OperationalError` for most of them (an unfinished statement, a table that exists already, an
ambiguous column, a wrong number of values or columns...), and MySQL/MariaDB for an ambiguous
column (1052), a UNION of SELECTs with different numbers of columns (1222) and a subquery of
two columns where one goes (1241). The failures of the database itself (locked, read-only,
busy, interrupted) stay `OperationalError`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import Database, OperationalError, ProgrammingError
from asyncify_kit.sql._backends._sqlite import SqliteBackend

pytestmark = pytest.mark.anyio

#: wrong statements, and the dialects where they are wrong ({t}: a table with a column id
#: and an index {t}_ix, holding two rows)
WRONG = [
    ("select (1", None),  # unfinished
    ("create table {t} (id int)", None),  # exists already
    ("create index {t}_ix on {t} (id)", None),  # exists already
    ("create table {t}_2 (a int, a int)", None),  # a column named twice
    ("select id from {t} a, {t} b", None),  # ambiguous column
    ("select * from {t} a, {t} a", None),  # an alias named twice
    ("select abs(1, 2)", None),  # a wrong number of arguments
    ("select 1, 2 union select 3", None),  # different numbers of columns
    ("select 1 from {t} where id in (select 1, 2)", None),  # a subquery of two columns
    ("select (select 1, 2)", None),
    ("insert into {t} values (1, 2)", None),  # more values than columns
    ("insert into {t} (id) values (1, 2)", None),
    ("select id from {t} where max(id) > 1", None),  # an aggregate where none goes
    ("select 1 order by 5", ("mysql", "sqlite")),  # (PostgreSQL orders by the constant)
    ("select (select id from {t})", ("postgresql", "mysql")),  # two rows (SQLite: the first)
]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


async def test_a_wrong_statement_is_a_programming_error(url: BackendURL, table: str) -> None:
    async with Database(url) as db:
        await db.execute(f"create table {table} (id int)")
        try:
            await db.execute(f"create index {table}_ix on {table} (id)")
            await db.execute(f"insert into {table} values (1), (2)")
            raised = {}
            for sql, dialects in WRONG:
                if dialects is not None and db.dialect not in dialects:
                    continue
                try:
                    await db.execute(sql.format(t=table))
                except Exception as exc:
                    raised[sql] = type(exc).__name__
                else:
                    raised[sql] = "no error"
            assert {sql: name for sql, name in raised.items() if name != "ProgrammingError"} == {}
            # and the connections are fine
            assert await db.fetch_val(f"select count(*) from {table}") == 2
        finally:
            await db.execute(f"drop table if exists {table}_2")
            await db.execute(f"drop table {table}")


SQLITE = [pytest.param(("sqlite", loop), id=f"sqlite-{loop}") for loop in ("asyncio", "trio")]


@pytest.mark.parametrize("case", SQLITE, indirect=True)
async def test_sqlites_own_failures_stay_operational(tmp_path: Path) -> None:
    """(A write lock held elsewhere, and an interrupt: tests/sql/test_sqlite.py and
    test_value_edges.py.)"""
    path = tmp_path / "ops.db"
    async with Database(f"sqlite:///{path}") as db:
        await db.execute("create table t (id integer)")
        with pytest.raises(OperationalError, match="readonly"):
            async with db.transaction(read_only=True):
                await db.execute("insert into t values (1)")
    async with Database(f"sqlite:///{path}?mode=ro") as db:
        with pytest.raises(OperationalError, match="readonly"):
            await db.execute("insert into t values (2)")
        with pytest.raises(OperationalError, match="readonly"):
            await db.execute("create table u (id integer)")


#: messages of SQLite's operational failures, as Python 3.10's sqlite3 gives them (without
#: the error code)
OPERATIONAL_MESSAGES = [
    "database is locked",
    "database table is locked",
    "database schema is locked",
    "attempt to write a readonly database",
    "disk I/O error",
    "interrupted",
    "database or disk is full",
    "unable to open database file",
    "database disk image is malformed",
    "file is not a database",
    "cannot commit transaction - SQL statements in progress",
]


def test_without_the_error_code_the_messages_decide() -> None:
    """Python 3.10's sqlite3 gives no error code: the message decides. Each wrong statement's
    real message (here without its code) is a `ProgrammingError`, a failure's an
    `OperationalError`."""
    backend = SqliteBackend(BackendURL.parse("sqlite:///:memory:"), {})
    statements = [sql for sql, dialects in WRONG if dialects is None or "sqlite" in dialects]
    statements += ["create view v as select 2", "create trigger tr after delete on t begin end"]
    messages = []
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("create table t (id int)")
        conn.execute("create index t_ix on t (id)")
        conn.execute("create view v as select 1")
        conn.execute("create trigger tr after insert on t begin select 1; end")
        for sql in statements:
            with pytest.raises(sqlite3.OperationalError) as info:
                conn.execute(sql.format(t="t"))
            messages.append(str(info.value))
    finally:
        conn.close()
    for message in messages:
        err = backend.translate(sqlite3.OperationalError(message))
        assert isinstance(err, ProgrammingError), message
    for message in OPERATIONAL_MESSAGES:
        err = backend.translate(sqlite3.OperationalError(message))
        assert isinstance(err, OperationalError), message
        assert not isinstance(err, ProgrammingError), message
