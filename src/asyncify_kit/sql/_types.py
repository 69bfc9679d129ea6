"""Value types shared by every SQL backend: parameters in, Python values out.

Every backend returns the same Python types for the same SQL types: `int`, `float`,
`decimal.Decimal`, `str`, `bytes`, `bool`, `datetime.date`, `datetime.time`, timezone-aware
`datetime.datetime` (UTC), `uuid.UUID`, JSON as `dict`/`list`/scalars, and `None` for NULL.
The conversions a driver does not do itself live here.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from ..exceptions import ProgrammingError

__all__ = [
    "IsolationLevel",
    "Json",
    "PoolStats",
    "as_utc",
    "decode_json",
    "encode_json",
    "timedelta_to_time",
    "to_utc_naive",
]

IsolationLevel = Literal["read_uncommitted", "read_committed", "repeatable_read", "serializable"]
ISOLATION_LEVELS: tuple[str, ...] = (
    "read_uncommitted",
    "read_committed",
    "repeatable_read",
    "serializable",
)


@dataclass(frozen=True)
class Json:
    """Mark a parameter as JSON, whatever its Python type.

    A `dict` parameter is always sent as JSON; a `list` means an array on PostgreSQL, so wrap
    it to send JSON instead:

    >>> params = {"tags": Json(["a", "b"])}
    """

    value: Any


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a `Database` connection pool.

    *size* connections are open: *idle* wait in the pool, *in_use* are lent out (to a query,
    a transaction, a pinned connection or an iteration); *waiting* tasks wait for one.
    """

    size: int
    idle: int
    in_use: int
    waiting: int
    max_size: int


def encode_json(value: Any) -> str:
    """JSON text of *value* (compact, UTF-8 characters kept); `ProgrammingError` for a value
    JSON cannot hold, on every backend (a driver's own encoder raised a bare ``TypeError``)."""
    if isinstance(value, Json):
        value = value.value
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError) as exc:  # (ValueError: a circular reference)
        raise ProgrammingError(f"cannot send the parameter as JSON: {exc}") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def decode_json(text: str | bytes) -> Any:
    """Parse JSON text returned by the server."""
    return json.loads(text)


def as_utc(value: _dt.datetime) -> _dt.datetime:
    """*value* as an aware UTC datetime (naive values are taken to be UTC already)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=_dt.timezone.utc)
    return value.astimezone(_dt.timezone.utc)


def to_utc_naive(value: _dt.datetime) -> _dt.datetime:
    """*value* as a naive UTC datetime, for servers without a timezone-aware type."""
    if value.tzinfo is None:
        return value
    return value.astimezone(_dt.timezone.utc).replace(tzinfo=None)


def timedelta_to_time(value: _dt.timedelta) -> _dt.time | _dt.timedelta:
    """A MySQL TIME value as a `datetime.time` when it is a time of day (0 <= t < 24 h).

    MySQL TIME also stores durations (negative, or beyond 24 hours); those stay `timedelta`.
    """
    if _dt.timedelta(0) <= value < _dt.timedelta(days=1):
        return (_dt.datetime.min + value).time()
    return value
