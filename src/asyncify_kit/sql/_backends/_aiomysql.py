"""``mysql+aiomysql``: aiomysql (built on PyMySQL), asyncio only.

Same session settings as asyncmy: UTC, autocommit, ``statement_timeout`` server-side.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import aiomysql
import pymysql

from ...exceptions import DatabaseError
from .._compiler import ParamStyle
from ._dialects import (
    TRIO_ALTERNATIVES,
    MysqlAsyncConnection,
    mysql_connect_kwargs,
    mysql_open,
    mysql_rolled_back,
    mysql_ssl,
    translate_mysql,
)
from .base import Backend, Connection

__all__ = ["AiomysqlBackend"]


class _Cursor(aiomysql.Cursor):  # type: ignore[misc]  # aiomysql ships no type information
    """aiomysql's cursor without its ``warnings.warn`` for server notes.

    aiomysql asks the server for its warnings after every statement that has any (one more
    round trip) and re-raises them as Python warnings, which ``-W error`` turns into
    failures of statements that succeeded (``DROP TABLE IF EXISTS``). PyMySQL does not;
    asyncmy's warnings are turned off too (`_asyncmy._no_warnings`).
    """

    async def _show_warnings(self, conn: Any) -> None:
        return None


class _SSCursor(aiomysql.SSCursor):  # type: ignore[misc]  # aiomysql ships no type information
    async def _show_warnings(self, conn: Any) -> None:
        return None


def _escape_with_bytes(raw: Any) -> Callable[[Any], str]:
    """*raw*'s ``escape`` with bytes written as a hex literal.

    aiomysql 0.3 escapes bytes with a PyMySQL helper that PyMySQL 1.2 no longer has (a
    ``TypeError`` for every bytes parameter); this fixes it on our connections only.
    """
    original = raw.escape

    def escape(value: Any) -> str:
        if isinstance(value, (bytes, bytearray)):
            return f"_binary X'{bytes(value).hex()}'"
        text: str = original(value)
        return text

    return escape


class AiomysqlConnection(MysqlAsyncConnection):
    """One aiomysql connection."""

    async def cursor(self, *, unbuffered: bool = False) -> Any:
        return await self._conn.cursor(_SSCursor if unbuffered else _Cursor)

    def buffered_cursor(self) -> Any:
        # what aiomysql's ``Connection.cursor(_Cursor)`` does, without its future and
        # context-manager wrapper (a cursor is a local object; nothing to await)
        conn = self._conn
        conn._ensure_alive()
        conn._last_usage = conn._loop.time()
        return _Cursor(conn, conn._echo)

    def _driver_closed(self) -> bool:
        return bool(self._conn.closed)

    def _transport(self) -> Any:
        writer = self._conn._writer
        return None if writer is None else writer.transport

    def _wait_closed(self) -> Callable[[], Awaitable[None]] | None:
        # aiomysql's close only starts closing its transport: wait for its end through the
        # stream writer (gone from the connection once closed)
        writer = self._conn._writer
        return None if writer is None else writer.wait_closed


class AiomysqlBackend(Backend):
    """MySQL/MariaDB through aiomysql."""

    dialect: ClassVar[str] = "mysql"
    style: ClassVar[ParamStyle] = "format"
    trio_alternatives: ClassVar[str] = TRIO_ALTERNATIVES

    def make_tls_context(self) -> ssl.SSLContext | None:
        return mysql_ssl(self.options)

    async def connect(self) -> Connection:
        # what `aiomysql.connect` does (it has no public way to connect a `Connection`), with
        # the connection at hand to close: aiomysql closes its socket on an error, not on a
        # cancellation (the connect_timeout deadline)
        raw: Any = aiomysql.Connection(**mysql_connect_kwargs(self, await self.tls_context()))
        raw.escape = _escape_with_bytes(raw)
        return await mysql_open(
            raw, raw._connect, AiomysqlConnection(raw, self.connect), self.options
        )

    async def ends_transaction(
        self, exc: BaseException, ask: Callable[[str], Awaitable[Any]]
    ) -> bool:
        return await mysql_rolled_back(self, exc, ask)

    def translate(self, exc: BaseException) -> DatabaseError | None:
        return translate_mysql(exc, pymysql.err.MySQLError)
