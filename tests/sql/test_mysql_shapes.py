"""MySQL/MariaDB result shapes: the per-description cache of names and conversions.

Results of the same description share their name table and converters (`mysql_shape`), so
these tests make the description lie: columns that look the same in the DB-API description
but need different conversions (MariaDB ``JSON`` vs ``LONGBLOB``, ``UUID`` vs ``CHAR(36)``),
and a query whose result changes shape between two runs (``ALTER TABLE``).
"""

from __future__ import annotations

import uuid

import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import Database

from .conftest import SERVER_CASES

pytestmark = pytest.mark.anyio

MYSQL_CASES = [p for p in SERVER_CASES if p.values[0][0].startswith("mysql")]  # type: ignore[index]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


@pytest.mark.parametrize("case", MYSQL_CASES, indirect=True)
async def test_look_alike_columns_keep_their_own_conversions(url: BackendURL, table: str) -> None:
    blob, text = f"{table}_blob", f"{table}_json"
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    async with Database(url, min_size=1, max_size=1) as db:
        await db.execute(f"create table {blob} (data longblob, id char(36))")
        await db.execute(f"create table {text} (data json, id uuid)")
        try:
            await db.execute(
                f"insert into {blob} values (:d, :i)", {"d": b'{"a": 1}', "i": str(value)}
            )
            await db.execute(f"insert into {text} values (:d, :i)", {"d": {"a": 1}, "i": value})
            for _ in range(2):  # the second round reads through whatever the first cached
                for name in (blob, text, blob):
                    row = await db.fetch_one(f"select data, id from {name}")
                    assert row is not None
                    if name == blob:
                        assert row.data == b'{"a": 1}'
                        assert row.id == str(value)
                    else:
                        assert row.data == {"a": 1}
                        assert row.id == value
        finally:
            await db.execute(f"drop table if exists {blob}")
            await db.execute(f"drop table if exists {text}")


@pytest.mark.parametrize("case", MYSQL_CASES, indirect=True)
async def test_a_query_whose_result_changes_shape(url: BackendURL, table: str) -> None:
    async with Database(url, min_size=1, max_size=1) as db:
        await db.execute(f"create table {table} (id int primary key, flag tinyint(1))")
        try:
            await db.execute(f"insert into {table} values (1, 1)")
            first = await db.fetch_all(f"select * from {table}")
            again = await db.fetch_all(f"select * from {table}")
            assert first == again == [{"id": 1, "flag": True}]
            assert first[0]._keys is again[0]._keys  # one name table for the same shape
            await db.execute(f"alter table {table} modify flag int, add note varchar(10)")
            await db.execute(f"update {table} set flag = 7, note = 'n'")
            rows = await db.fetch_all(f"select * from {table}")
            assert rows == [{"id": 1, "flag": 7, "note": "n"}]
            assert type(rows[0].flag) is int
        finally:
            await db.execute(f"drop table if exists {table}")
