"""A result that names two columns alike (``select o.id, c.id ...``): its rows keep both.

Before, a `Row` was a mapping of its distinct names: ``len(row)`` was 2 for 3 columns, and
``values()``, ``items()``, iteration and the repr dropped the second ``id`` (only ``row[1]``
reached it), where asyncpg's ``Record``, ``sqlite3.Row`` and the drivers' tuples keep every
column. Now every column is kept in order; by name, a repeated name is its first column.
"""

from __future__ import annotations

import pickle

import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import Database, Row
from asyncify_kit.sql._row import make_keys, rows_of


def _dup_row() -> Row:
    return rows_of(make_keys(["id", "id", "name"]), [(100, 7, "ann")])[0]


def test_every_column_is_kept_in_order() -> None:
    row = _dup_row()
    assert len(row) == 3
    assert list(row) == list(row.keys()) == ["id", "id", "name"]
    assert list(row.values()) == [100, 7, "ann"]
    assert list(row.items()) == [("id", 100), ("id", 7), ("name", "ann")]
    assert len(row.keys()) == len(row.values()) == len(row.items()) == 3
    assert row.as_tuple() == (100, 7, "ann")
    assert row[0:3] == (100, 7, "ann") and row[1] == 7 and row[-2] == 7
    assert repr(row) == "Row(id=100, id=7, name='ann')"
    assert 7 in row.values()
    assert ("id", 7) in row.items() and ("id", 100) in row.items()
    assert ("id", 8) not in row.items() and ("name", 7) not in row.items()
    assert "id" in row.keys() and "nope" not in row.keys()  # noqa: SIM118  # the view's own


def test_by_name_a_repeated_name_is_its_first_column() -> None:
    row = _dup_row()
    assert row["id"] == row.id == row.get("id") == 100
    assert dict(row) == {**row} == row.as_dict() == {"id": 100, "name": "ann"}
    assert row == {"id": 100, "name": "ann"}  # a dict holds one value a name: the first
    assert row == dict(row)
    match row:
        case {"id": ident, "name": name}:
            assert (ident, name) == (100, "ann")
        case _:
            pytest.fail("a row matches a mapping pattern")


def test_rows_with_repeated_names_compare_every_column() -> None:
    row = _dup_row()
    assert row == _dup_row()
    assert row != rows_of(make_keys(["id", "id", "name"]), [(100, 8, "ann")])[0]
    assert row != rows_of(make_keys(["id", "name"]), [(100, "ann")])[0]
    assert rows_of(make_keys(["id", "name"]), [(100, "ann")])[0] != row


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickled_rows_keep_the_repeated_names(protocol: int) -> None:
    row = _dup_row()
    copy = pickle.loads(pickle.dumps(row, protocol))
    assert list(copy.items()) == [("id", 100), ("id", 7), ("name", "ann")]
    assert copy == row and copy.id == 100 and len(copy) == 3


def test_distinct_names_keep_a_plain_table() -> None:
    assert type(make_keys(["id", "name"])) is dict
    row = rows_of(make_keys(["b", "a"]), [(2, 1)])[0]
    assert list(row.items()) == [("b", 2), ("a", 1)]
    assert row == {"a": 1, "b": 2} == rows_of(make_keys(["a", "b"]), [(1, 2)])[0]
    # a table built by hand, its positions in another order: the views follow its order
    by_hand = Row({"b": 1, "a": 0}, (1, 2))
    assert list(by_hand) == ["b", "a"]
    assert list(by_hand.values()) == [2, 1]
    assert list(by_hand.items()) == [("b", 2), ("a", 1)]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


@pytest.mark.anyio
async def test_every_backend_keeps_both_columns_of_a_join(url: BackendURL) -> None:
    async with Database(url) as db:
        row = await db.fetch_one("select 100 as id, 7 as id, 'ann' as name")
        assert row is not None
        assert len(row) == 3
        assert list(row.values()) == [100, 7, "ann"]
        assert list(row.items()) == [("id", 100), ("id", 7), ("name", "ann")]
        assert row.id == 100 and row[1] == 7
        assert dict(row) == {"id": 100, "name": "ann"}
        rows = await db.fetch_all("select 1 as a, 2 as a union all select 3, 4")
        assert [list(r.values()) for r in rows] == [[1, 2], [3, 4]]
