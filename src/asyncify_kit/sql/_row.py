"""`Row`: one result row, readable by column name, by attribute and by position.

A row is a read-only `Mapping` of column names to values (iterating it yields the names, as
for a `dict`), and also ``row.name`` and ``row[0]``. Rows of one result share a single
name-to-position table and keep the driver's row object, so building them copies nothing.

A result may name two columns alike (``select o.id, c.id``). Its rows keep every column, as
asyncpg's ``Record`` and ``sqlite3.Row`` do: iteration, ``len()``, ``keys()``, ``values()``
and ``items()`` have one entry per column, in order, and ``row[1]`` reaches the second
``id``; by name (``row["id"]``, ``row.id``, ``dict(row)``, `Row.as_dict`) a name is its
first column (as ``sqlite3.Row``; asyncpg's gives the last). The table of such a result is a
`_Columns`, which carries the names in order; a result with distinct names (nearly all)
keeps a plain `dict`, so nothing changes for it.

The two references a row holds live in a small C base (`_rowcore`, built at install when a
compiler is there) that also builds a whole result's rows in one loop: about 40 ns a row
instead of 150-250 ns through ``Row.__init__``, which is what a 100-row ``fetch_all`` needs to
stay within 10% of the raw driver. Without it (no compiler, or ``ASYNCIFY_KIT_NO_EXTENSIONS``
set) the pure-Python base below behaves the same, only slower; `SPEEDUPS` tells which is used.

`convert_row` builds a dataclass or a pydantic model from a row (the ``as_=`` argument of the
fetch methods).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import typing
import uuid
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, Sequence, ValuesView
from decimal import Decimal
from itertools import repeat
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ..exceptions import ProgrammingError

__all__ = ["SPEEDUPS", "Row", "convert_row", "converted_rows", "make_keys", "rows_of"]

T = TypeVar("T")


class _Columns(dict[str, int]):
    """The name-to-position table of a result whose column names repeat: by name, the first
    column so named; `names`, every column's name in order, for a row's iteration, ``len()``
    and views (else they had one entry per distinct name, and dropped a column)."""

    __slots__ = ("names",)

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        for index, name in enumerate(names):
            self.setdefault(name, index)
        self.names: tuple[str, ...] = tuple(names)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Columns, (self.names,))


def make_keys(names: Sequence[str]) -> dict[str, int]:
    """The name-to-position table of a result (the first of duplicate names wins); a
    `_Columns`, which keeps every name, when names repeat."""
    keys: dict[str, int] = {}
    for index, name in enumerate(names):
        keys.setdefault(name, index)
    if len(keys) != len(names):
        return _Columns(names)
    return keys


def rows_of(keys: Mapping[str, int], records: Sequence[Sequence[Any]]) -> list[Row]:
    """`Row` objects sharing *keys*, one per driver record (the record itself is kept)."""
    return _build_rows(Row, keys, records)


def converted_rows(
    keys: Mapping[str, int],
    convert: Sequence[Callable[[Any], Any] | None],
    records: Sequence[Sequence[Any]],
) -> list[Row]:
    """`Row` objects sharing *keys*, each record's values passed through *convert*.

    *convert* has one entry per column, None where the value is kept as it is; NULL is never
    converted. Only the columns with a conversion are visited, so a 10-column result with
    one JSON column costs one call per row, not ten.

    >>> converted_rows({"n": 0, "flag": 1}, [None, bool], [(1, 0), (2, None)])
    [Row(n=1, flag=False), Row(n=2, flag=None)]
    """
    work = [(index, fn) for index, fn in enumerate(convert) if fn is not None]
    if not work:
        return rows_of(keys, records)
    converted: list[Sequence[Any]] = []
    append = converted.append
    if len(work) == 1:
        [(index, fn)] = work
        for record in records:
            value = record[index]
            if value is None:
                append(record)
            else:
                values = list(record)
                values[index] = fn(value)
                append(tuple(values))
        return rows_of(keys, converted)
    for record in records:
        values = list(record)
        for index, fn in work:
            value = values[index]
            if value is not None:
                values[index] = fn(value)
        append(tuple(values))
    return rows_of(keys, converted)


class _PyRowBase:
    """The pure-Python twin of ``_rowcore.RowBase``: the two references a `Row` holds."""

    __slots__ = ("_keys", "_values")

    _keys: Mapping[str, int]
    _values: Sequence[Any]

    def __init__(self, keys: Mapping[str, int], values: Sequence[Any]) -> None:
        # plain slot stores: a row has no __dict__, so ``row.name = ...`` fails anyway, and
        # building 100 rows costs about 20 µs instead of 50 with a guarding __setattr__
        self._keys = keys
        self._values = values


_R = TypeVar("_R", bound=_PyRowBase)


def _py_build_rows(
    cls: type[_R], keys: Mapping[str, int], records: Sequence[Sequence[Any]]
) -> list[_R]:
    return list(map(cls, repeat(keys, len(records)), records))


def _speedups_wanted() -> bool:
    return os.environ.get("ASYNCIFY_KIT_NO_EXTENSIONS", "") in ("", "0")


if TYPE_CHECKING:
    _RowBase = _PyRowBase
    _build_rows = _py_build_rows
else:
    _RowBase, _build_rows = _PyRowBase, _py_build_rows
    if _speedups_wanted():
        try:
            from . import _rowcore
        except ImportError:  # built without a compiler: the pure-Python base
            pass
        else:
            _RowBase, _build_rows = _rowcore.RowBase, _rowcore.rows_of

#: True when `Row` runs on its C base (``_rowcore``), False on the pure-Python one.
SPEEDUPS: bool = _RowBase is not _PyRowBase


class Row(_RowBase, Mapping[str, Any]):
    """One result row: ``row["id"]``, ``row.id`` and ``row[0]`` all work.

    ``Row(keys, values)``: *keys* maps each column name to its position in *values*.

    >>> row = Row({"id": 0, "name": 1}, (7, "ada"))
    >>> row["name"], row.name, row[0], dict(row)
    ('ada', 'ada', 7, {'id': 7, 'name': 'ada'})
    """

    __slots__ = ()

    @overload
    def __getitem__(self, key: str) -> Any: ...
    @overload
    def __getitem__(self, key: int) -> Any: ...
    @overload
    def __getitem__(self, key: slice) -> tuple[Any, ...]: ...
    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            try:
                return self._values[self._keys[key]]
            except KeyError:
                raise KeyError(
                    f"no column {key!r}; the columns are {', '.join(self._keys)}"
                ) from None
        if isinstance(key, slice):
            return tuple(self._values)[key]
        return self._values[key]

    def get(self, key: str | int, default: Any = None) -> Any:
        """The value of column *key*, a name or a position as for ``row[key]``, or *default*
        when the row has no such column (`Mapping.get` would raise the `IndexError` of a
        position past the end, as it catches `KeyError` only)."""
        if isinstance(key, str):
            index = self._keys.get(key)
            return default if index is None else self._values[index]
        try:
            return self._values[key]
        except IndexError:
            return default

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[self._keys[name]]
        except KeyError:
            raise AttributeError(
                f"row has no column {name!r}; the columns are {', '.join(self._keys)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        keys = self._keys
        return iter(keys.names if type(keys) is _Columns else keys)

    def __len__(self) -> int:
        keys = self._keys
        return len(keys.names if type(keys) is _Columns else keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def _positions(self) -> Iterable[int]:
        """Each column's position in *_values*, in the order of iteration."""
        keys = self._keys
        return range(len(keys.names)) if type(keys) is _Columns else keys.values()

    def values(self) -> ValuesView[Any]:
        """The values, one per column, a repeated name's columns included."""
        return _RowValues(self)

    def items(self) -> ItemsView[str, Any]:
        """The (name, value) pairs, one per column, a repeated name's columns included."""
        return _RowItems(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Row):
            if type(self._keys) is _Columns or type(other._keys) is _Columns:
                # names repeat: equal when every column is, in order
                return list(self.items()) == list(other.items())
            return self.as_dict() == other.as_dict()
        if isinstance(other, Mapping):
            return self.as_dict() == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a row compares like a dict

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"Row({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        keys = self._keys
        return (Row, (keys if type(keys) is _Columns else dict(keys), tuple(self._values)))

    def as_tuple(self) -> tuple[Any, ...]:
        """The values in column order."""
        return tuple(self._values)

    def as_dict(self) -> dict[str, Any]:
        """A plain `dict` of column names to values (of a repeated name, its first column's:
        a `dict` keeps one value a name)."""
        return {k: self._values[i] for k, i in self._keys.items()}


class _RowValues(ValuesView[Any]):
    """`Row.values`: by position, so a repeated name's second column is there too (the
    `Mapping` view looks each name up, which gives the first column's value twice)."""

    __slots__ = ()
    _mapping: Row

    def __iter__(self) -> Iterator[Any]:
        row = self._mapping
        return map(row._values.__getitem__, row._positions())

    def __contains__(self, value: object) -> bool:
        return any(v is value or v == value for v in self)


class _RowItems(ItemsView[str, Any]):
    """`Row.items`: one (name, value) pair a column, by position (see `_RowValues`)."""

    __slots__ = ()
    _mapping: Row

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        row = self._mapping
        return zip(row, map(row._values.__getitem__, row._positions()), strict=True)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        name, value = item
        return any(k == name and (v is value or v == value) for k, v in self)


_model_fields_cache: dict[type[Any], tuple[str, tuple[tuple[str, Any], ...]]] = {}


def _describe_target(cls: type[Any]) -> tuple[str, tuple[tuple[str, Any], ...]]:
    cached = _model_fields_cache.get(cls)
    if cached is not None:
        return cached
    if dataclasses.is_dataclass(cls):
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # unresolvable forward references: build without conversion
            hints = {}
        fields = tuple((f.name, hints.get(f.name, Any)) for f in dataclasses.fields(cls) if f.init)
        result = ("dataclass", fields)
    elif hasattr(cls, "model_validate") and hasattr(cls, "model_fields"):
        result = ("pydantic", ())
    else:
        raise ProgrammingError(f"as_= takes a dataclass or a pydantic model class, not {cls!r}")
    _model_fields_cache[cls] = result
    return result


def convert_row(row: Row, cls: type[T]) -> T:
    """Build *cls* (a dataclass or a pydantic model) from *row*'s columns.

    Dataclass fields are filled by column name; values are converted to the field's declared
    type where the database cannot say it (a UUID or JSON read from MySQL as text, a MySQL
    boolean read as 0/1). Pydantic models are validated with ``model_validate``.
    """
    kind, fields = _describe_target(cls)
    if kind == "pydantic":
        model: Any = cls
        return model.model_validate(row.as_dict())  # type: ignore[no-any-return]
    values: dict[str, Any] = {}
    for name, hint in fields:
        if name in row:
            values[name] = _coerce(row[name], hint)
    try:
        return cls(**values)
    except TypeError as exc:
        raise ProgrammingError(
            f"cannot build {cls.__name__} from a row with columns {', '.join(row)}: {exc}"
        ) from exc


def _coerce(value: Any, hint: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) != 1:
            return value
        hint = options[0]
        origin = typing.get_origin(hint)
    target = origin or hint
    if not isinstance(target, type) or isinstance(value, target):
        if target is bool and isinstance(value, int) and not isinstance(value, bool):
            return bool(value)
        return value
    if target is bool and isinstance(value, int):
        return bool(value)
    if target is uuid.UUID and isinstance(value, (str, bytes)):
        return uuid.UUID(value) if isinstance(value, str) else uuid.UUID(bytes=value)
    if target in (dict, list) and isinstance(value, (str, bytes)):
        return json.loads(value)
    if target is Decimal and isinstance(value, (int, float, str)):
        return Decimal(str(value))
    if target is _dt.time and isinstance(value, _dt.timedelta):
        return (_dt.datetime.min + value).time()
    return value
