"""``mysql+asyncmy`` (the default for ``mysql`` and ``mariadb``): asyncmy, asyncio only.

Sessions run in UTC (``time_zone = '+00:00'``) with autocommit on; ``statement_timeout``
becomes MariaDB's ``max_statement_time`` (MySQL: ``max_execution_time``).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import asyncmy
import asyncmy.cursors
import asyncmy.errors

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

__all__ = ["AsyncmyBackend"]


async def _no_warnings() -> None:
    """What an asyncmy connection of ours answers its cursors' ``show_warnings()``: none.

    asyncmy asks the server for its warnings after every statement that has any (``SHOW
    WARNINGS``, one more round trip) and logs each at WARNING on the ``asyncmy`` logger
    (``DROP TABLE IF EXISTS`` of a missing table, ``select 1/0``). PyMySQL does neither, and
    aiomysql's warnings are turned off the same way (`_aiomysql._Cursor`). Set on the
    connection itself: a cursor subclass would leave asyncmy's fast path for exact
    ``Cursor`` objects (9% more time per ``select 1`` on loopback, measured), and a
    connection subclass the one for exact ``Connection`` objects.
    """
    return None


class AsyncmyConnection(MysqlAsyncConnection):
    """One asyncmy connection."""

    async def cursor(self, *, unbuffered: bool = False) -> Any:
        return self._conn.cursor(asyncmy.cursors.SSCursor if unbuffered else None)

    def buffered_cursor(self) -> Any:
        return self._conn.cursor()

    def _driver_closed(self) -> bool:
        return not self._conn.connected

    def _transport(self) -> Any:
        return self._conn._transport  # (its close waits for the transport's end itself)


class AsyncmyBackend(Backend):
    """MySQL/MariaDB through asyncmy."""

    dialect: ClassVar[str] = "mysql"
    style: ClassVar[ParamStyle] = "format"
    trio_alternatives: ClassVar[str] = TRIO_ALTERNATIVES

    def make_tls_context(self) -> ssl.SSLContext | None:
        return mysql_ssl(self.options)

    async def connect(self) -> Connection:
        kwargs = mysql_connect_kwargs(self, await self.tls_context())
        kwargs["database"] = kwargs.pop("db", None)
        # what `asyncmy.connect` does, with the connection at hand to close on a timeout
        raw = asyncmy.Connection(**kwargs)  # type: ignore[no-untyped-call]  # (its stub's)
        raw.show_warnings = _no_warnings  # type: ignore[method-assign]  # see `_no_warnings`
        return await mysql_open(
            raw, raw.connect, AsyncmyConnection(raw, self.connect), self.options
        )

    async def ends_transaction(
        self, exc: BaseException, ask: Callable[[str], Awaitable[Any]]
    ) -> bool:
        return await mysql_rolled_back(self, exc, ask)

    def translate(self, exc: BaseException) -> DatabaseError | None:
        return translate_mysql(exc, asyncmy.errors.MySQLError)
