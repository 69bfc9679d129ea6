"""``postgresql+asyncpg`` (the default for ``postgresql``): asyncpg, asyncio only.

Every connection runs in UTC with the ``statement_timeout`` option applied server-side;
``json``/``jsonb`` are decoded to Python values and ``uuid`` to `uuid.UUID` (asyncpg's own
UUID subclass would otherwise leak out). A `str` sent to a ``json``/``jsonb`` parameter is
JSON text, as with the other drivers; ``Json(...)`` and other values are encoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import ssl
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, ClassVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from ...exceptions import ConnectionLost, DatabaseError, ProgrammingError, QueryTimeout
from .._compiler import CompiledQuery, ParamStyle
from .._row import Row, make_keys, rows_of
from .._types import Json, decode_json, encode_json
from ._dialects import (
    CLOSE_WAIT,
    PgAsyncConnection,
    pg_declarable,
    pg_error,
    pg_session_options,
    pg_tls_context,
)
from .base import TIMEOUT_ERRORS, Backend, Connection

__all__ = ["AsyncpgBackend"]

_TRIO_ALTERNATIVES = (
    "postgresql+psycopg or postgresql+psycopg2 for PostgreSQL, mysql+pymysql for MySQL, or sqlite"
)


#: a statement of nothing but blanks, semicolons and comments
_EMPTY_STATEMENT = re.compile(r"(?:\s+|;|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)


def _status_count(status: str) -> int:
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else -1


def _adapt(args: Sequence[Any]) -> Sequence[Any]:
    for value in args:
        if type(value) is Json:
            return [encode_json(v) if type(v) is Json else v for v in args]
    return args


def _encode_json(value: Any) -> str:
    """A ``json``/``jsonb`` parameter: a `str` is JSON text already (as on every other
    backend), anything else (a dict, a list, a number...) is encoded; `Json` arrives encoded."""
    if isinstance(value, str):
        return value
    return encode_json(value)


def _rows(records: list[Any]) -> list[Row]:
    if not records:
        return []
    keys = make_keys(list(records[0].keys()))
    return rows_of(keys, records)


#: connects whose callers were cancelled, finishing in the background (the loop itself holds
#: its tasks by weak references only)
_unclaimed: set[asyncio.Task[Connection]] = set()


def _discard_unclaimed(task: asyncio.Task[Connection]) -> None:
    """Close the connection a cancelled caller never took, or read its connect's error."""
    _unclaimed.discard(task)
    if task.cancelled() or task.exception() is not None:
        return
    task.result().terminate()


class AsyncpgConnection(PgAsyncConnection):
    """One asyncpg connection."""

    def __init__(self, conn: Any) -> None:
        super().__init__()
        self._conn = conn

    @property
    def raw(self) -> Any:
        return self._conn

    async def fetch_all(self, query: CompiledQuery, args: Sequence[Any]) -> list[Row]:
        if self._own is not None or self._deferred:
            await self._settle()
        return _rows(await self._conn.fetch(query.text, *_adapt(args)))

    async def fetch_one(self, query: CompiledQuery, args: Sequence[Any]) -> Row | None:
        if self._own is not None or self._deferred:
            await self._settle()
        record = await self._conn.fetchrow(query.text, *_adapt(args))
        if record is None:
            return None
        return Row(make_keys(list(record.keys())), record)

    async def fetch_val(self, query: CompiledQuery, args: Sequence[Any], column: int) -> Any:
        if self._own is not None or self._deferred:
            await self._settle()
        return await self._conn.fetchval(query.text, *_adapt(args), column=column)

    async def execute(self, query: CompiledQuery, args: Sequence[Any]) -> int:
        if self._own is not None or self._deferred:
            await self._settle()
        if not args and _EMPTY_STATEMENT.fullmatch(query.text):
            # asyncpg fails (AttributeError) on the server's answer to an empty statement;
            # psycopg gets it, and no row count: -1
            return -1
        return _status_count(await self._conn.execute(query.text, *_adapt(args)))

    async def execute_many(self, query: CompiledQuery, args: Sequence[Sequence[Any]]) -> None:
        if self._own is not None or self._deferred:
            await self._settle()
        await self._conn.executemany(query.text, [_adapt(a) for a in args])

    async def iterate(
        self,
        query: CompiledQuery,
        args: Sequence[Any],
        batch_size: int,
        in_transaction: bool,
        shared: bool,
    ) -> AsyncGenerator[list[Row], None]:
        conn = self._conn
        # a statement DECLARE does not take (INSERT ... RETURNING) streams through a portal,
        # in the iteration's own transaction, as before WITH HOLD cursors: see PgCursor
        cursor = await self._start(
            in_transaction, shared and pg_declarable(query.text), pinned=shared
        )
        finished = False
        try:
            next_batch: Callable[[], Awaitable[list[Any]]]
            if cursor.hold:
                # a cursor of SQL's: asyncpg's own (a portal) ends with its transaction. Its
                # statements name this one cursor: prepared, not kept in the statement cache
                declare = await conn.prepare(cursor.declare(query.text))
                await declare.fetch(*_adapt(args))
                next_batch = (await conn.prepare(cursor.fetch(batch_size))).fetch
            else:
                portal = await conn.cursor(query.text, *_adapt(args))
                next_batch = functools.partial(portal.fetch, batch_size)
            while True:
                cursor.check()
                batch = await next_batch()
                if batch:
                    yield _rows(batch)
                if len(batch) < batch_size:
                    break
            finished = True
        finally:
            await self._end(cursor, finished)

    async def _send(self, statement: str) -> None:
        await self._conn.execute(statement)

    def _driver_closed(self) -> bool:
        return bool(self._conn.is_closed())

    def _in_transaction(self) -> bool:
        return bool(self._conn.is_in_transaction())

    async def close(self) -> None:
        # over TLS asyncpg's close waits for the server's answer to the shutdown (without a
        # timeout, until the pool's 5 s bound on closing); after CLOSE_WAIT asyncpg cuts the
        # socket itself and raises, as the MySQL drivers' close cuts theirs
        with contextlib.suppress(*TIMEOUT_ERRORS):
            await self._conn.close(timeout=CLOSE_WAIT)

    def terminate(self) -> None:
        self._conn.terminate()

    async def abandon(self) -> None:
        # asyncpg sent the server a cancel request for the statement whose caller left; its
        # close waits for the server's answer to it, then ends the session (and with it the
        # transaction and its locks). Terminated at once, the request was cut off, and the
        # statement ran to its end.
        with contextlib.suppress(*TIMEOUT_ERRORS):
            await self._conn.close(timeout=CLOSE_WAIT)


class AsyncpgBackend(Backend):
    """PostgreSQL through asyncpg."""

    dialect: ClassVar[str] = "postgresql"
    style: ClassVar[ParamStyle] = "numeric"
    trio_alternatives: ClassVar[str] = _TRIO_ALTERNATIVES

    async def connect(self) -> Connection:
        # asyncpg's connect, cancelled just as its socket connects, leaves a future holding
        # an exception that nothing retrieves: asyncio then reports "Future exception was
        # never retrieved ... unexpected connection_lost() call" to the loop's exception
        # handler (a cancellation storm logs one error for every few connects it cuts short).
        # So the connect runs in a task of its own that is never cancelled: a caller cancelled
        # meanwhile still leaves at once, and the connection made for it is then closed.
        task = asyncio.get_running_loop().create_task(self._open())
        try:
            return await asyncio.shield(task)
        except BaseException:
            if task.done():
                _discard_unclaimed(task)
            else:
                _unclaimed.add(task)
                task.add_done_callback(_discard_unclaimed)
            raise

    def make_tls_context(self) -> ssl.SSLContext | None:
        return pg_tls_context(self.options)

    async def _open(self) -> Connection:
        url, opts = self.url, self.options
        # require and the verify modes: a context made once, in a thread (`pg_tls_context`)
        context = await self.tls_context()
        conn = await asyncpg.connect(
            host=url.hostname or None,  # [::1] -> ::1
            port=url.port,
            user=url.username,
            password=url.password,
            database=url.database or None,
            ssl=context if context is not None else opts["ssl"],
            timeout=opts["connect_timeout"] or 60,
            statement_cache_size=opts["statement_cache_size"],
            command_timeout=opts["command_timeout"],
            server_settings=pg_session_options(opts),
        )
        try:
            for name in ("json", "jsonb"):
                await conn.set_type_codec(
                    name, encoder=_encode_json, decoder=decode_json, schema="pg_catalog"
                )
            await conn.set_type_codec(
                "uuid", encoder=str, decoder=uuid.UUID, schema="pg_catalog", format="text"
            )
        except BaseException:
            conn.terminate()
            raise
        return AsyncpgConnection(conn)

    def translate(self, exc: BaseException) -> DatabaseError | None:
        if isinstance(exc, asyncpg.PostgresError):
            return pg_error(getattr(exc, "sqlstate", None), str(exc), exc)
        if isinstance(exc, asyncpg.InterfaceError):
            text = f"{type(exc).__name__}: {exc}"
            if "closed" in str(exc):
                return ConnectionLost(text, orig=exc)
            return ProgrammingError(text, orig=exc)
        # asyncpg raises asyncio's TimeoutError: not the builtin one before Python 3.11
        if isinstance(exc, TIMEOUT_ERRORS) and self.options.get("command_timeout"):
            return QueryTimeout(
                f"the statement ran longer than command_timeout={self.options['command_timeout']}s",
                orig=exc,
            )
        if isinstance(exc, (OSError, ConnectionError)):
            return ConnectionLost(f"{type(exc).__name__}: {exc}", orig=exc)
        if isinstance(exc, asyncpg.exceptions.InternalClientError):
            return DatabaseError(f"{type(exc).__name__}: {exc}", orig=exc)
        return None
