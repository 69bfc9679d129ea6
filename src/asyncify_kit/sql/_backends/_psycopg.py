"""``postgresql+psycopg``: psycopg 3.

On asyncio it uses `psycopg.AsyncConnection`. psycopg's async mode is built on asyncio, so
under trio the same backend drives psycopg's blocking `psycopg.Connection` through worker
threads (one hop per operation): same URL, same behaviour, on both event loops. The pool is
asyncify-kit's own (as for every backend), not ``psycopg_pool``, so pool options, statistics,
recovery and the bounded close are the same everywhere.
"""

from __future__ import annotations

import ssl
import traceback
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from enum import Enum
from typing import Any, ClassVar

import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format, TransactionStatus
from psycopg.types.json import JsonbDumper

from ..._executor import asyncio_loop
from ...exceptions import ConnectionLost, DatabaseError, ProgrammingError
from .._compiler import CompiledQuery, ParamStyle
from .._row import Row, make_keys, rows_of
from .._types import Json, encode_json
from ._dialects import (
    PgAsyncConnection,
    PgSyncSession,
    libpq_connect_params,
    pg_check_tls,
    pg_error,
)
from .base import Backend, Connection, SyncSession, ThreadedConnection, stale_plan

__all__ = ["PsycopgBackend"]


class _JsonDumper(JsonbDumper):
    """Dump a ``dict`` as ``jsonb`` with the facade's encoder (`encode_json`: decimals, UUIDs
    and dates as text, as every backend sends them; psycopg's ``json.dumps`` refused them
    with a bare ``TypeError``)."""

    _dumps = staticmethod(encode_json)


class _JsonMarkerDumper(_JsonDumper):
    """Dump asyncify-kit's `Json` marker as ``jsonb``."""

    def dump(self, obj: Any) -> Any:
        return super().dump(obj.value)


class _RefusedEnumDumper(Dumper):
    """Refuse a plain `enum.Enum` member, as every other backend does (psycopg's own dumper
    would send its name). Members of ``str``/``int`` enums never get here: psycopg finds the
    dumper of ``str``/``int`` first in their MRO, and sends their values."""

    def dump(self, obj: Any) -> Buffer | None:
        raise psycopg.ProgrammingError(
            f"cannot adapt type {type(obj).__name__!r}: a plain Enum member is not sent "
            "(psycopg would send its name); pass its .value, or use a str or int enum"
        )


class _RefusedEnumBinaryDumper(_RefusedEnumDumper):
    format = Format.BINARY


class _VoidLoader(Loader):
    """``void`` (what ``pg_sleep``, ``pg_notify`` return) as None, as asyncpg reads it;
    psycopg read the empty string."""

    def load(self, data: Buffer) -> None:
        return None


class _VoidBinaryLoader(_VoidLoader):
    format = Format.BINARY


_VOID_OID = 2278


def _configure(conn: Any) -> None:
    conn.adapters.register_loader(_VOID_OID, _VoidLoader)
    conn.adapters.register_loader(_VOID_OID, _VoidBinaryLoader)
    conn.adapters.register_dumper(dict, _JsonDumper)
    conn.adapters.register_dumper(Json, _JsonMarkerDumper)
    # binary first: the text one, registered last, is the one `%s` uses
    conn.adapters.register_dumper(Enum, _RefusedEnumBinaryDumper)
    conn.adapters.register_dumper(Enum, _RefusedEnumDumper)


def _drop_half_made(exc: BaseException) -> None:
    """Let the half-made connection of psycopg's failed connect *exc* go now.

    When a connect runs out of ``connect_timeout``, psycopg raises without closing the
    connection it was making: the frames of *exc*'s traceback keep it (its socket open,
    the server still waiting) for as long as the error lives. Clearing their local variables
    (the traceback's lines stay) frees it at once, and libpq closes its socket.
    """
    traceback.clear_frames(exc.__traceback__)


def _rows(cur: Any, records: list[Any]) -> list[Row]:
    description = cur.description
    if description is None:
        raise ProgrammingError("the statement returns no rows; use execute() for it")
    keys = make_keys([c.name for c in description])
    return rows_of(keys, records)


class PsycopgAsyncConnection(PgAsyncConnection):
    """One `psycopg.AsyncConnection` (asyncio). *connect_other* opens another connection to
    the same server (`abandon` cancels the statement of this one from it)."""

    def __init__(
        self, conn: Any, connect_other: Callable[[], Awaitable[Connection]] | None = None
    ) -> None:
        super().__init__()
        self._conn = conn
        self._connect_other = connect_other
        self._pid: int = conn.info.backend_pid  # (for `abandon`: gone once closed)

    @property
    def raw(self) -> Any:
        return self._conn

    async def fetch_all(self, query: CompiledQuery, args: Sequence[Any]) -> list[Row]:
        if self._own is not None or self._deferred:
            await self._settle()
        cur = await self._conn.execute(*query.driver_args(tuple(args)))
        if cur.description is None:  # a statement without a result: no rows
            return []
        return _rows(cur, await cur.fetchall())

    async def fetch_one(self, query: CompiledQuery, args: Sequence[Any]) -> Row | None:
        if self._own is not None or self._deferred:
            await self._settle()
        cur = await self._conn.execute(*query.driver_args(tuple(args)))
        if cur.description is None:
            return None
        record = await cur.fetchone()
        if record is None:
            return None
        return _rows(cur, [record])[0]

    async def fetch_val(self, query: CompiledQuery, args: Sequence[Any], column: int) -> Any:
        if self._own is not None or self._deferred:
            await self._settle()
        cur = await self._conn.execute(*query.driver_args(tuple(args)))
        if cur.description is None:
            return None
        record = await cur.fetchone()
        return None if record is None else record[column]

    async def execute(self, query: CompiledQuery, args: Sequence[Any]) -> int:
        if self._own is not None or self._deferred:
            await self._settle()
        cur = await self._conn.execute(*query.driver_args(tuple(args)))
        return int(cur.rowcount)

    async def execute_many(self, query: CompiledQuery, args: Sequence[Sequence[Any]]) -> None:
        if self._own is not None or self._deferred:
            await self._settle()
        async with self._conn.cursor() as cur:
            await cur.executemany(query.text, args)

    async def iterate(
        self,
        query: CompiledQuery,
        args: Sequence[Any],
        batch_size: int,
        in_transaction: bool,
        shared: bool,
    ) -> AsyncGenerator[list[Row], None]:
        conn = self._conn
        cursor = await self._start(in_transaction, shared, pinned=shared)
        finished = False
        try:
            await conn.execute(cursor.declare(query.text), args)
            while True:
                cursor.check()
                cur = await conn.execute(cursor.fetch(batch_size))
                batch = await cur.fetchall()
                if batch:
                    yield _rows(cur, batch)
                if len(batch) < batch_size:
                    break
            finished = True
        finally:
            await self._end(cursor, finished)

    async def _send(self, statement: str) -> None:
        await self._conn.execute(statement)

    def _driver_closed(self) -> bool:
        return bool(self._conn.closed)

    async def close(self) -> None:
        await self._conn.close()

    def terminate(self) -> None:
        pgconn = self._conn.pgconn
        if not self._conn.closed:
            pgconn.finish()

    async def abandon(self) -> None:
        # psycopg cancels the statement of a caller that leaves, unless the caller is
        # cancelled again meanwhile (anyio cancels it until it leaves the cancelled scope):
        # then it closes the connection, and the server runs the statement to its end,
        # holding its transaction's locks. Cancel it from a connection of its own; the server
        # then finds the socket closed, and ends the session.
        conn = self._conn
        running = bool(conn.closed) or conn.pgconn.transaction_status == TransactionStatus.ACTIVE
        self.terminate()
        if not running or self._connect_other is None:
            return
        other = await self._connect_other()
        try:
            await other.run(f"SELECT pg_cancel_backend({int(self._pid)})")
        finally:
            await other.close()


class _PsycopgSession(PgSyncSession):
    """psycopg 3's blocking connection, for trio."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__()
        self.params = params

    def connect(self) -> None:
        try:
            conn = psycopg.Connection.connect(**self.params)
        except BaseException as exc:
            _drop_half_made(exc)
            raise
        _configure(conn)
        self.conn = conn

    def cancel_query(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.cancel_safe(timeout=5.0)

    def _call(self, method: str, args: tuple[Any, ...]) -> Any:
        try:
            return super()._call(method, args)
        except psycopg.errors.FeatureNotSupported as exc:
            # a prepared statement gone stale (see `stale_plan`); in a transaction, the
            # rollback makes psycopg forget them
            conn = self.conn
            if not stale_plan(exc) or conn.info.transaction_status != TransactionStatus.IDLE:
                raise
            conn.execute("DEALLOCATE ALL")  # the server's, and psycopg forgets its own
            return super()._call(method, args)


class PsycopgBackend(Backend):
    """PostgreSQL through psycopg 3 (async on asyncio, threaded on trio)."""

    dialect: ClassVar[str] = "postgresql"
    style: ClassVar[ParamStyle] = "format"

    def make_tls_context(self) -> ssl.SSLContext | None:
        pg_check_tls(self.options)  # (libpq reads the files itself as it connects)
        return None

    def connect_params(self) -> dict[str, Any]:
        opts = self.options
        return libpq_connect_params(
            self.url, opts, autocommit=True, prepare_threshold=opts["prepare_threshold"]
        )

    def session_factory(self) -> Callable[[], SyncSession] | None:
        if asyncio_loop() is not None:  # (on asyncio, psycopg's own async connections)
            return None
        params = self.connect_params()
        return lambda: _PsycopgSession(params)

    async def connect(self) -> Connection:
        params = self.connect_params()
        if asyncio_loop() is None:
            return await ThreadedConnection.open(_PsycopgSession(params))
        try:
            conn = await psycopg.AsyncConnection.connect(**params)
        except BaseException as exc:
            _drop_half_made(exc)
            raise
        _configure(conn)
        return PsycopgAsyncConnection(conn, self.connect)

    def translate(self, exc: BaseException) -> DatabaseError | None:
        if not isinstance(exc, psycopg.Error):
            return None
        message = str(exc).strip()
        if exc.sqlstate:
            return pg_error(exc.sqlstate, message, exc)
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            return ConnectionLost(f"{type(exc).__name__}: {message}", orig=exc)
        if isinstance(exc, (psycopg.ProgrammingError, psycopg.DataError)):
            return ProgrammingError(f"{type(exc).__name__}: {message}", orig=exc)
        return pg_error(None, message, exc)
