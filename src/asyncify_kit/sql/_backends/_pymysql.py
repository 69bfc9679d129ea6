"""``mysql+pymysql``: the legacy blocking PyMySQL, one thread hop per operation.

Works on asyncio and trio. Same session settings and types as the async MySQL backends. A
statement whose caller was cancelled is stopped with ``KILL QUERY`` from a connection of its
own (`_PymysqlSession.cancel_query`), as on asyncmy and aiomysql.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, ClassVar

import pymysql
import pymysql.connections
import pymysql.cursors

from ..._executor import start_thread
from ...exceptions import ConnectionLost, DatabaseError, QueryTimeout
from .._compiler import ParamStyle
from .._row import Row
from ._dialects import (
    MysqlStream,
    mysql_adapt,
    mysql_check_whole,
    mysql_connect_kwargs,
    mysql_connect_limit,
    mysql_connect_timed_out,
    mysql_init_statements,
    mysql_rolled_back,
    mysql_rows,
    mysql_ssl,
    mysql_stream_rest,
    mysql_value,
    translate_mysql,
)
from .base import (
    ABANDON_WAIT,
    MAX_ABANDONING,
    STREAM_METHODS,
    Backend,
    Connection,
    SyncSession,
    ThreadedConnection,
)

__all__ = ["PymysqlBackend"]

logger = logging.getLogger("asyncify_kit.sql")


@contextlib.contextmanager
def _within(conn: Any, deadline: float) -> Iterator[None]:
    """Bound every socket operation of the PyMySQL connection *conn* by the time left until
    *deadline* (`time.monotonic`); afterwards its own timeouts are back, on it and its socket.

    PyMySQL's ``connect_timeout`` covers the TCP connect only: before each packet it reads
    (the server's greeting, the authentication, every result) it gives the socket its
    ``read_timeout``, and before each write its ``write_timeout``, both None (no limit) by
    default. Here each packet read and each write gets what is left instead (a `TimeoutError`
    once nothing is), however many packets the connect takes (a TLS handshake runs under
    what was left at the write before it).
    """
    read_timeout, write_timeout = conn._read_timeout, conn._write_timeout
    cls = type(conn)

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("connect_timeout expired")
        return remaining

    def read_packet(*args: Any, **kwargs: Any) -> Any:
        conn._read_timeout = left()  # PyMySQL sets it on the socket, as it differs
        return cls._read_packet(conn, *args, **kwargs)

    def write_bytes(data: bytes) -> None:
        conn._write_timeout = left()
        cls._write_bytes(conn, data)

    conn._read_packet, conn._write_bytes = read_packet, write_bytes
    try:
        yield
    finally:
        del conn._read_packet, conn._write_bytes  # the class's own again: no cost per query
        conn._read_timeout, conn._write_timeout = read_timeout, write_timeout
        sock = conn._sock
        if sock is not None:
            sock.settimeout(read_timeout)
        conn._current_timeout = read_timeout


class _PymysqlSession(SyncSession):
    #: the statement of a cancelled caller is killed from another connection (`cancel_query`)
    cancellable: ClassVar[bool] = True

    def __init__(
        self,
        kwargs: dict[str, Any],
        options: dict[str, Any],
        killing: threading.BoundedSemaphore,
    ) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.options = options
        self._stream: MysqlStream | None = None  # an iterate() result still being sent
        #: the places for kills under way, shared by the sessions of one backend (a pool)
        self._killing = killing
        #: set when the kill of `cancel_query` is over (or never started)
        self._killed: threading.Event | None = None

    def call(self, method: str, *args: Any) -> Any:
        with self.lock:  # (the settling and the call as one turn: see `SyncSession.call`)
            try:
                if self._stream is not None and method not in STREAM_METHODS:
                    self.require_open()
                    self._settle(args[0] if method == "run" else None)
                return super().call(method, *args)
            finally:
                killed = self._killed
                if killed is not None:
                    # the connection goes back only once its kill is over: a ``KILL QUERY``
                    # still on its way would stop the connection's next statement instead
                    killed.wait(mysql_connect_limit(self.options) + ABANDON_WAIT)

    def cancel_query(self) -> None:
        """Stop the running statement, whose caller was cancelled: ``KILL QUERY`` from a
        connection of its own, in a thread of its own (this runs on the one thread that
        watches every cancelled statement, under its lock). PyMySQL has no cancel request,
        and the server runs a statement to its end, holding the locks of its transaction;
        this worker's thread then finds the statement interrupted (or, at its very end, its
        result), and waits for the kill to be over before the connection goes back.

        Like the native pools' `abandon`, at most `MAX_ABANDONING` kills of one pool run at
        once: the statements of the others run to their ends, as they did before.
        """
        conn = self.conn
        if conn is None:
            return
        thread_id = int(conn.thread_id())
        if not self._killing.acquire(blocking=False):
            return
        killed = self._killed = threading.Event()
        killer = threading.Thread(
            target=self._kill, args=(thread_id, killed), name="asyncify-sql-kill", daemon=True
        )
        start_thread(killer, lambda error: self._kill_not_started(killed, error))

    def _kill(self, thread_id: int, killed: threading.Event) -> None:
        try:
            other = _PymysqlSession(self.kwargs, self.options, self._killing)
            other.connect()  # (within connect_timeout)
            try:
                other.run(f"KILL QUERY {thread_id}")
            finally:
                other.close()
        except Exception:  # the statement runs to its end then, as it did before
            logger.debug("killing the statement of a cancelled caller failed", exc_info=True)
        finally:
            self._killing.release()
            killed.set()

    def _kill_not_started(self, killed: threading.Event, error: BaseException) -> None:
        self._killing.release()
        killed.set()
        logger.debug("the kill of a cancelled statement could not start: %r", error)

    def _settle(self, statement: str | None) -> None:
        """Read the rest of an open `iterate` result, so *statement* (a control statement of
        `run`, or None for any other) can run; see `MysqlStream`."""
        stream = self._stream
        if stream is None:
            return
        stream.settled = True  # (before the stream is let go: see `MysqlStream.closes_cursor`)
        self._stream = None
        cur = stream.cursor
        try:
            if stream.keeps_rest(statement):
                stream.rest = mysql_stream_rest(cur, cur.fetchall())
                stream.dropped_rest()
            else:
                cur.close()  # reads the rest and drops it
        except BaseException as exc:
            stream.error = exc
            raise

    def connect(self) -> None:
        """Connect and set the session up, all within ``connect_timeout`` (`_within`): a
        connect that runs out of time is a `TimeoutError`, and leaves nothing open."""
        limit = mysql_connect_limit(self.options)
        deadline = time.monotonic() + limit
        conn: Any = pymysql.connections.Connection(**self.kwargs, defer_connect=True)
        try:
            with _within(conn, deadline):
                conn.connect()  # (closes its socket itself when it fails)
                with conn.cursor() as cur:
                    for statement, fallback in mysql_init_statements(self.options):
                        try:
                            cur.execute(statement)
                        except pymysql.err.MySQLError:
                            if fallback is None:
                                raise
                            cur.execute(fallback)
        except BaseException as exc:
            if conn.open:
                with contextlib.suppress(Exception):
                    conn.close()
            if isinstance(exc, Exception) and time.monotonic() >= deadline:
                # PyMySQL wraps a socket timeout in its OperationalError ("Lost connection")
                raise mysql_connect_timed_out(limit) from exc
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

    def opened(self, cur: Any) -> MysqlStream:
        self._stream = stream = MysqlStream(cur)
        return stream

    def fetch_batch(self, cursor_id: int, size: int) -> list[Row]:
        stream: MysqlStream = self._cursors[cursor_id]
        stream.check()
        if stream.rest is not None:  # another statement ran: the rest is in memory
            return stream.take(size)
        cur = stream.cursor
        records = cur.fetchmany(size)
        if len(records) < size:  # the end of the result
            self._stream = None
            mysql_check_whole(cur, self.conn)
        if cur.description is None:  # a statement without a result: no rows, as fetch_all
            return []
        return mysql_rows(cur, records)

    def close_cursor(self, cursor_id: int, finished: bool) -> None:
        stream: MysqlStream | None = self._cursors.pop(cursor_id, None)
        if stream is None:
            return
        if stream is self._stream:
            # left early with rows unread: closing the cursor would read the rest (maybe
            # millions of rows), so leave it: the next statement on this connection reads it
            # (`_settle`), or the pool closes the connection (`is_closed`)
            stream.abandoned = True
        elif stream.closes_cursor():
            stream.cursor.close()  # nothing left to read

    def is_closed(self) -> bool:
        # a result left unread is not worth reading to reuse the connection: closing is cheaper;
        # so is a connection whose statement was killed (what the kill cut off is unknown)
        return (
            self.conn is None
            or not self.conn.open
            or self._stream is not None
            or self._killed is not None
        )

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            # detach the unread result first: PyMySQL's finalizer would otherwise read the
            # rest (or fail to, on the closed connection) when it is collected
            cur = stream.cursor
            result = getattr(cur, "_result", None)
            if result is not None:
                result.unbuffered_active = False
            cur.connection = None
        super().close()


class PymysqlBackend(Backend):
    """MySQL/MariaDB through PyMySQL, run in worker threads."""

    dialect: ClassVar[str] = "mysql"
    style: ClassVar[ParamStyle] = "format"

    def make_tls_context(self) -> ssl.SSLContext | None:
        return mysql_ssl(self.options)

    def _kwargs(self, context: ssl.SSLContext | None) -> dict[str, Any]:
        kwargs = mysql_connect_kwargs(self, context)
        kwargs["database"] = kwargs.pop("db", None)
        if context is None:
            # PyMySQL (1.2) tries TLS when the server offers it even so: ssl=false means none,
            # as on asyncmy and aiomysql
            kwargs["ssl_disabled"] = True
        if self.options.get("read_timeout"):
            kwargs["read_timeout"] = self.options["read_timeout"]
        return kwargs

    def session_factory(self) -> Callable[[], SyncSession]:
        kwargs, options = self._kwargs(self.made_tls_context()), self.options
        killing = threading.BoundedSemaphore(MAX_ABANDONING)  # (one pool's: see `cancel_query`)
        return lambda: _PymysqlSession(kwargs, options, killing)

    async def connect(self) -> Connection:
        kwargs = self._kwargs(await self.tls_context())
        return await ThreadedConnection.open(
            _PymysqlSession(kwargs, self.options, threading.BoundedSemaphore(MAX_ABANDONING))
        )

    async def ends_transaction(
        self, exc: BaseException, ask: Callable[[str], Awaitable[Any]]
    ) -> bool:
        return await mysql_rolled_back(self, exc, ask)

    def translate(self, exc: BaseException) -> DatabaseError | None:
        err = translate_mysql(exc, pymysql.err.MySQLError)
        if isinstance(err, ConnectionLost) and isinstance(exc.__context__, TimeoutError):
            # ``read_timeout`` expired: PyMySQL closed the connection while the server was
            # still at the statement. Not a connection found dead before the statement was
            # sent, so never replayed (it may well have run, or still be running).
            return QueryTimeout(
                f"no answer from the server within read_timeout={self.options['read_timeout']}s;"
                " the connection was closed, and the statement may have run on the server",
                orig=exc,
            )
        return err
