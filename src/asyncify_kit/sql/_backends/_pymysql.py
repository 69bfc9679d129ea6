"""``mysql+pymysql``: the legacy blocking PyMySQL, one thread hop per operation.

Works on asyncio and trio. Same session settings and types as the async MySQL backends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pymysql
import pymysql.cursors

from ...exceptions import DatabaseError
from .._compiler import ParamStyle
from .._row import Row
from ._asyncmy import mysql_connect_kwargs
from ._dialects import (
    mysql_adapt,
    mysql_init_statements,
    mysql_rows,
    mysql_value,
    translate_mysql,
)
from .base import Backend, Connection, SyncSession, ThreadedConnection

__all__ = ["PymysqlBackend"]


class _PymysqlSession(SyncSession):
    def __init__(self, kwargs: dict[str, Any], options: dict[str, Any]) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.options = options

    def connect(self) -> None:
        conn = pymysql.connect(**self.kwargs)
        try:
            with conn.cursor() as cur:
                for statement, fallback in mysql_init_statements(self.options):
                    try:
                        cur.execute(statement)
                    except pymysql.err.MySQLError:
                        if fallback is None:
                            raise
                        cur.execute(fallback)
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def adapt(self, args: Sequence[Any]) -> Sequence[Any]:
        return mysql_adapt(args)

    def _rows(self, cur: Any, raw_rows: Sequence[Any]) -> list[Row]:
        return mysql_rows(cur, raw_rows)

    def _value(self, cur: Any, record: Sequence[Any] | None, column: int) -> Any:
        return mysql_value(cur, record, column)

    def server_cursor(self) -> Any:
        return self.conn.cursor(pymysql.cursors.SSCursor)

    def close_cursor(self, cursor_id: int, finished: bool) -> None:
        if finished:
            super().close_cursor(cursor_id, finished)
            return
        # closing an unbuffered cursor would read the rest of the result (maybe millions of
        # rows); closing the connection is cheaper, and the pool replaces it. The cursor and
        # its result are detached first: PyMySQL's finalizers would otherwise drain (or fail
        # to drain) the result when they are collected.
        cur = self._cursors.pop(cursor_id, None)
        if cur is not None:
            result = getattr(cur, "_result", None)
            if result is not None:
                result.unbuffered_active = False
            cur.connection = None
        self.close()

    def is_closed(self) -> bool:
        return self.conn is None or not self.conn.open


class PymysqlBackend(Backend):
    """MySQL/MariaDB through PyMySQL, run in worker threads."""

    dialect: ClassVar[str] = "mysql"
    style: ClassVar[ParamStyle] = "format"

    def _kwargs(self) -> dict[str, Any]:
        kwargs = mysql_connect_kwargs(self)
        kwargs["database"] = kwargs.pop("db", None)
        if self.options.get("read_timeout"):
            kwargs["read_timeout"] = self.options["read_timeout"]
        return kwargs

    def session_factory(self) -> Callable[[], SyncSession]:
        kwargs, options = self._kwargs(), self.options
        return lambda: _PymysqlSession(kwargs, options)

    async def connect(self) -> Connection:
        return await ThreadedConnection.open(_PymysqlSession(self._kwargs(), self.options))

    def translate(self, exc: BaseException) -> DatabaseError | None:
        return translate_mysql(exc, pymysql.err.MySQLError)
