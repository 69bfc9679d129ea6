"""`Row` and ``as_=``: unit tests, no database needed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
import operator
import pickle
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal

import pytest

from asyncify_kit.sql import ProgrammingError, Row
from asyncify_kit.sql._row import convert_row, converted_rows, make_keys, rows_of


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


def test_a_row_is_a_mapping_and_not_a_sequence() -> None:
    row = _row(id=7, name="ada")
    assert isinstance(row, Row)
    assert isinstance(row, Mapping)
    # not a tuple: json, FastAPI and %-formatting treat tuples as sequences of values and
    # would silently turn a row into a list of its column names
    assert not isinstance(row, (tuple, list, dict, Sequence))
    assert type(row) is Row
    assert type(row).__name__ == "Row"


def test_iteration_and_the_mapping_methods() -> None:
    row = _row(id=7, name="ada", score=None)
    assert list(row) == [*row] == ["id", "name", "score"]
    assert list(reversed(list(row))) == ["score", "name", "id"]
    assert dict(row) == {**row} == {"id": 7, "name": "ada", "score": None}
    assert list(row.keys()) == ["id", "name", "score"]
    assert list(row.values()) == [7, "ada", None]
    assert list(row.items()) == [("id", 7), ("name", "ada"), ("score", None)]
    assert row.get("name") == "ada"
    assert row.get("nope", 1) == 1
    value: object = 7
    assert value not in row  # membership is by column name, as for a dict
    match row:
        case {"id": ident, "name": name}:
            assert (ident, name) == (7, "ada")
        case _:
            pytest.fail("a row matches a mapping pattern")


def test_get_takes_a_name_or_a_position_and_a_default() -> None:
    row = _row(id=7, name="ada", score=None)
    assert row.get("name") == row.get(1) == row.get(-2) == "ada"
    assert row.get(2, "default") is None  # a NULL is a value, not a missing column
    assert row.get("nope") is None
    assert row.get("nope", "default") == "default"
    assert row.get(3, "default") == row.get(-4, "default") == "default"  # past either end
    assert row.get(99) is None


def test_positions_and_slices() -> None:
    row = _row(a=1, b=2, c=3)
    assert (row[0], row[1], row[2], row[-1], row[-3]) == (1, 2, 3, 3, 1)
    assert row[1:] == (2, 3)
    assert row[::-1] == (3, 2, 1)
    assert row[-2:] == (2, 3)
    assert row[5:] == ()
    assert type(row[0:1]) is tuple
    with pytest.raises(IndexError):
        _ = row[-4]


def test_equality_with_dicts_and_other_rows() -> None:
    row = _row(a=1, b=2)
    as_dict = {"a": 1, "b": 2}
    assert row == as_dict
    assert as_dict == row  # dict.__eq__ first, then the row's reflected one
    assert row == {"b": 2, "a": 1}  # mapping equality: the column order does not matter
    assert row == _row(b=2, a=1)
    assert row == Row({"a": 0, "b": 1}, [1, 2])  # whatever sequence holds the values
    assert row != {"a": 1, "b": 3}
    assert row != {"a": 1}
    assert row != {"a": 1, "b": 2, "c": 3}
    assert row != _row(a=1, b=2, c=3)
    assert (row != {"a": 1, "b": 2}) is False
    assert row != (1, 2)  # the values alone are not the row
    assert row != [1, 2]
    assert row != ["a", "b"]
    with pytest.raises(TypeError):
        operator.lt(row, _row(a=2, b=2))  # rows do not order, as dicts do not
    with pytest.raises(TypeError):
        operator.add(row, row)
    with pytest.raises(TypeError):
        operator.add((0,), row)


def test_unhashable_like_a_dict() -> None:
    row = _row(a=1)
    with pytest.raises(TypeError):
        hash(row)
    with pytest.raises(TypeError):
        _ = {row}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_round_trip(protocol: int) -> None:
    keys = make_keys(["id", "name", "a", "a"])
    rows = rows_of(keys, [(1, "x", 2, 3), (2, "y", None, 4)])
    copies = pickle.loads(pickle.dumps(rows, protocol))
    assert copies == rows
    assert all(isinstance(r, Row) and type(r).__name__ == "Row" for r in copies)
    assert [repr(r) for r in copies] == [repr(r) for r in rows]
    assert [r.as_tuple() for r in copies] == [(1, "x", 2, 3), (2, "y", None, 4)]
    assert copies[1].a is None and copies[1][3] == 4  # duplicate names: the first wins


def test_rows_of_two_shapes_in_one_process() -> None:
    people = rows_of(make_keys(["id", "name"]), [(1, "ada"), (2, "bob")])
    prices = rows_of(make_keys(["sku", "price", "id"]), [("t", 2.5, 9)])
    again = rows_of(make_keys(["id", "name"]), [(3, "cy")])
    assert [r.name for r in people + again] == ["ada", "bob", "cy"]
    assert prices[0].price == 2.5 and prices[0].id == 9 and prices[0][2] == 9
    assert repr(people[0]) == "Row(id=1, name='ada')"
    assert repr(prices[0]) == "Row(sku='t', price=2.5, id=9)"
    assert isinstance(people[0], Row) and isinstance(prices[0], Row)
    assert people[0] != prices[0]
    with pytest.raises(AttributeError, match="the columns are sku, price, id"):
        _ = prices[0].name
    with pytest.raises(KeyError, match="the columns are id, name"):
        _ = people[0]["price"]


def test_columns_named_like_sequence_methods_read_as_columns() -> None:
    row = _row(count=3, index=1)
    assert row.count == 3
    assert row.index == 1


def test_mapping_consumers_see_names_and_values() -> None:
    row = _row(id=7, name="ada")
    assert "%(name)s #%(id)d" % row == "ada #7"  # noqa: UP031  # the mapping form on purpose
    assert json.dumps(row, default=dict) == '{"id": 7, "name": "ada"}'
    with pytest.raises(TypeError, match="not JSON serializable"):
        json.dumps(row)
    stream = io.StringIO()
    logger = logging.getLogger("tests.sql.row")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        logger.warning("user %(name)s", row)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "user ada\n"


def test_fastapi_encodes_a_row_as_an_object() -> None:
    # fastapi is a dev dependency: a plain import, so a missing one fails instead of skipping
    from fastapi.encoders import jsonable_encoder

    rows = rows_of(make_keys(["id", "name"]), [(1, "ada")])
    assert jsonable_encoder(rows) == [{"id": 1, "name": "ada"}]


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
