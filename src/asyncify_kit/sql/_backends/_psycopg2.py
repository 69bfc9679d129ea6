"""``postgresql+psycopg2``: the legacy blocking psycopg2, one thread hop per operation.

Works on asyncio and trio. Each connection gets, on itself only (nothing global), a
``uuid`` -> `uuid.UUID`, a ``bytea`` -> `bytes` and an ``inet``/``cidr`` -> `ipaddress`
typecaster, one that refuses the time ``24:00`` (and one for their arrays); JSON
parameters are sent through `psycopg2.extras.Json`.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, ClassVar

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from psycopg2.extensions import AsIs

from ...exceptions import ConnectionLost, DatabaseError, ProgrammingError
from .._compiler import ParamStyle
from .._types import Json, encode_json
from ._dialects import PgSyncSession, libpq_connect_params, pg_check_tls, pg_error
from .base import Backend, Connection, SyncSession, ThreadedConnection

__all__ = ["Psycopg2Backend"]


def _uuid(value: str | bytes | None, cur: Any) -> uuid.UUID | None:
    if value is None:
        return None
    return uuid.UUID(_text(value))


def _bytea(value: str | bytes | None, cur: Any) -> bytes | None:
    if value is None:
        return None
    return bytes(psycopg2.BINARY(value, cur))


def _inet(value: str | bytes | None, cur: Any) -> object:
    """As asyncpg and psycopg read it: an address without a prefix (PostgreSQL's text
    leaves out a host's /32 or /128), else an interface (an address and its network)."""
    if value is None:
        return None
    text = _text(value)
    return ipaddress.ip_interface(text) if "/" in text else ipaddress.ip_address(text)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _cidr(value: str | bytes | None, cur: Any) -> object:
    return None if value is None else ipaddress.ip_network(_text(value))


def _time(value: str | bytes | None, cur: Any) -> object:
    """psycopg2's own, but PostgreSQL's end of day (``24:00:00``), which psycopg2 read as
    midnight, is refused as asyncpg and psycopg refuse it (`datetime.time` has no hour 24)."""
    if value is not None and _text(value).startswith("24"):
        raise ValueError(f"hour must be in 0..23 (PostgreSQL time {_text(value)!r})")
    return psycopg2.extensions.TIME(value, cur)


_UUID_TYPE = psycopg2.extensions.new_type((2950,), "ASYNCIFY_UUID", _uuid)
_BYTEA_TYPE = psycopg2.extensions.new_type((17,), "ASYNCIFY_BYTEA", _bytea)
# and their arrays, which psycopg2 would return as text ('{...}') and memoryviews
_UUID_ARRAY_TYPE = psycopg2.extensions.new_array_type((2951,), "ASYNCIFY_UUID[]", _UUID_TYPE)
_BYTEA_ARRAY_TYPE = psycopg2.extensions.new_array_type((1001,), "ASYNCIFY_BYTEA[]", _BYTEA_TYPE)
# psycopg2 returned network addresses as text, and its own `register_ipaddress` is global
_INET_TYPE = psycopg2.extensions.new_type((869,), "ASYNCIFY_INET", _inet)
_CIDR_TYPE = psycopg2.extensions.new_type((650,), "ASYNCIFY_CIDR", _cidr)
_INET_ARRAY_TYPE = psycopg2.extensions.new_array_type((1041,), "ASYNCIFY_INET[]", _INET_TYPE)
_CIDR_ARRAY_TYPE = psycopg2.extensions.new_array_type((651,), "ASYNCIFY_CIDR[]", _CIDR_TYPE)
# ``void`` (what ``pg_sleep``, ``pg_notify`` return): None, as asyncpg reads it, not ""
_VOID_TYPE = psycopg2.extensions.new_type((2278,), "ASYNCIFY_VOID", lambda value, cur: None)
_TIME_TYPE = psycopg2.extensions.new_type(psycopg2.extensions.TIME.values, "ASYNCIFY_TIME", _time)
_TIME_ARRAY_TYPE = psycopg2.extensions.new_array_type(
    psycopg2.extensions.TIMEARRAY.values, "ASYNCIFY_TIME[]", _TIME_TYPE
)
_TYPES = (
    _UUID_TYPE,
    _BYTEA_TYPE,
    _UUID_ARRAY_TYPE,
    _BYTEA_ARRAY_TYPE,
    _INET_TYPE,
    _CIDR_TYPE,
    _INET_ARRAY_TYPE,
    _CIDR_ARRAY_TYPE,
    _TIME_TYPE,
    _TIME_ARRAY_TYPE,
    _VOID_TYPE,
)
_ADDRESSES = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)
_NETWORKS = (ipaddress.IPv4Network, ipaddress.IPv6Network)
_PLAIN_ADDRESS = re.compile(r"[0-9A-Fa-f.:/]+")

_PLAIN = (int, str, float, bytes, type(None), bool)


def _value(value: Any) -> Any:
    if isinstance(value, Json):
        return psycopg2.extras.Json(value.value, dumps=encode_json)
    if isinstance(value, dict):
        return psycopg2.extras.Json(value, dumps=encode_json)
    if isinstance(value, (uuid.UUID, *_ADDRESSES, *_NETWORKS)):
        return str(value)  # an untyped literal: it goes into uuid (inet...) and text columns alike
    if isinstance(value, Decimal) and value.is_infinite():
        # psycopg2 sent every non-finite Decimal as 'NaN' (PostgreSQL 14 has infinities)
        return AsIs("'-Infinity'::numeric" if value.is_signed() else "'Infinity'::numeric")
    if isinstance(value, list):
        return [_item(v) for v in value]
    return value


def _item(value: Any) -> Any:
    """An item of a list sent as an array, as asyncpg and psycopg send it: psycopg2 could
    not adapt a UUID or a dict there (`= any(:ids)`); a UUID is typed, or the array would
    be ``text[]``."""
    if isinstance(value, uuid.UUID):
        return AsIs(f"'{value}'::uuid")  # (str of a UUID: hex digits and dashes only)
    if isinstance(value, (*_ADDRESSES, *_NETWORKS)) and _PLAIN_ADDRESS.fullmatch(str(value)):
        # (an IPv6 scope, `fe80::1%eth0`, may hold any character: it goes as quoted text)
        return AsIs(f"'{value}'::{'cidr' if isinstance(value, _NETWORKS) else 'inet'}")
    return _value(value)


class _Psycopg2Session(PgSyncSession):
    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__()
        self.params = params

    def connect(self) -> None:
        conn = psycopg2.connect(**self.params)
        try:
            conn.autocommit = True
            for caster in _TYPES:
                psycopg2.extensions.register_type(caster, conn)
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def adapt(self, args: Sequence[Any]) -> Sequence[Any]:
        for value in args:
            if type(value) not in _PLAIN:
                return tuple(_value(v) for v in args)
        return args


class Psycopg2Backend(Backend):
    """PostgreSQL through psycopg2, run in worker threads."""

    dialect: ClassVar[str] = "postgresql"
    style: ClassVar[ParamStyle] = "format"

    def make_tls_context(self) -> ssl.SSLContext | None:
        pg_check_tls(self.options)  # (libpq reads the files itself as it connects)
        return None

    def connect_params(self) -> dict[str, Any]:
        return libpq_connect_params(self.url, self.options)

    def session_factory(self) -> Callable[[], SyncSession]:
        params = self.connect_params()
        return lambda: _Psycopg2Session(params)

    async def connect(self) -> Connection:
        return await ThreadedConnection.open(_Psycopg2Session(self.connect_params()))

    def translate(self, exc: BaseException) -> DatabaseError | None:
        if not isinstance(exc, psycopg2.Error):
            return None
        message = str(exc).strip()
        if exc.pgcode:
            return pg_error(exc.pgcode, message, exc)
        if isinstance(exc, psycopg2.InterfaceError) or (
            isinstance(exc, psycopg2.OperationalError)
            and (exc.cursor is None or exc.cursor.connection.closed)
        ):
            return ConnectionLost(f"{type(exc).__name__}: {message}", orig=exc)
        if isinstance(exc, (psycopg2.ProgrammingError, psycopg2.DataError)):
            return ProgrammingError(f"{type(exc).__name__}: {message}", orig=exc)
        return pg_error(None, message, exc)
