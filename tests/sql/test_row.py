"""`Row` and ``as_=``: unit tests, no database needed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
import uuid
from collections.abc import Mapping
from decimal import Decimal

import pytest

from asyncify_kit.sql import ProgrammingError, Row
from asyncify_kit.sql._row import convert_row, converted_rows, make_keys


def _row(**values: object) -> Row:
    return Row(make_keys(list(values)), tuple(values.values()))


def test_access_by_name_attribute_and_position() -> None:
    row = _row(id=7, name="ada", score=None)
    assert isinstance(row, Mapping)
    assert row["name"] == row.name == row[1] == "ada"
    assert row[-1] is None
    assert row[0:2] == (7, "ada")
    assert list(row) == ["id", "name", "score"]
    assert len(row) == 3
    assert "id" in row
    assert "nope" not in row
    assert row.as_tuple() == (7, "ada", None)
    assert row.as_dict() == {"id": 7, "name": "ada", "score": None}
    assert row == {"id": 7, "name": "ada", "score": None}
    assert row == _row(id=7, name="ada", score=None)
    assert row != _row(id=8, name="ada", score=None)
    assert repr(row) == "Row(id=7, name='ada', score=None)"
    assert pickle.loads(pickle.dumps(row)) == row


def test_errors_name_the_columns() -> None:
    row = _row(id=1, name="x")
    with pytest.raises(KeyError, match="the columns are id, name"):
        _ = row["nme"]
    with pytest.raises(AttributeError, match="no column 'nme'; the columns are id, name"):
        _ = row.nme
    with pytest.raises(IndexError):
        _ = row[5]
    with pytest.raises(AttributeError):
        row.id = 2  # type: ignore[attr-defined]  # on purpose
    with pytest.raises(TypeError):
        hash(row)


def test_duplicate_column_names_keep_the_first() -> None:
    row = Row(make_keys(["a", "a", "b"]), (1, 2, 3))
    assert row["a"] == 1
    assert row[1] == 2


@dataclasses.dataclass
class Typed:
    id: uuid.UUID
    doc: dict[str, object]
    active: bool
    at: dt.time
    price: Decimal
    note: str | None = None


def test_as_dataclass_converts_what_the_server_could_not_type() -> None:
    u = uuid.uuid4()
    row = _row(
        id=str(u),
        doc='{"a": 1}',
        active=1,
        at=dt.timedelta(hours=1, seconds=2),
        price=2.5,
        extra="ignored",
    )
    value = convert_row(row, Typed)
    assert value == Typed(u, {"a": 1}, True, dt.time(1, 0, 2), Decimal("2.5"))


def test_as_rejects_other_classes() -> None:
    with pytest.raises(ProgrammingError, match="dataclass or a pydantic model"):
        convert_row(_row(a=1), dict)
    with pytest.raises(ProgrammingError, match="cannot build Typed"):
        convert_row(_row(id=str(uuid.uuid4())), Typed)


def test_converted_rows_convert_only_the_columns_that_need_it() -> None:
    keys = make_keys(["id", "flag", "doc", "name"])
    records = [(1, 0, '{"a": 1}', "x"), (2, None, None, "y"), (3, 1, "[2]", None)]
    rows = converted_rows(keys, [None, bool, _loads, None], records)
    assert [r.as_tuple() for r in rows] == [
        (1, False, {"a": 1}, "x"),
        (2, None, None, "y"),  # NULL is never converted
        (3, True, [2], None),
    ]
    assert all(type(r.as_tuple()) is tuple for r in rows)
    assert rows[0]._keys is rows[2]._keys  # one name table per result


def test_converted_rows_with_one_converter_keep_records_with_null_as_they_are() -> None:
    keys = make_keys(["id", "flag"])
    kept, changed = (1, None), (2, 1)
    rows = converted_rows(keys, [None, bool], [kept, changed])
    assert rows[0]._values is kept  # nothing to convert: the driver's record is not copied
    assert rows[1].as_tuple() == (2, True)
    assert changed == (2, 1)  # the driver's record is never modified


def test_converted_rows_without_converters_keep_the_records() -> None:
    records = [(1, "a"), (2, "b")]
    rows = converted_rows(make_keys(["id", "name"]), [None, None], records)
    assert [r._values for r in rows] == records
    assert rows[0]._values is records[0]


def _loads(value: str) -> object:
    import json

    return json.loads(value)
