"""The interface every SQL backend implements, and the parts they share.

* `Backend`: one per URL scheme; opens `Connection` objects, translates driver errors.
* `Connection`: one driver connection, used by one task at a time.
* `ConnectionPool`: the pool every backend uses (one implementation, so pool sizing,
  ``acquire_timeout``, statistics, recovery and the bounded close behave the same on all
  seven backends). It runs on asyncio and on trio.
* `SyncSession` / `ThreadedConnection`: a blocking DB-API connection driven from async code,
  one thread hop per operation (through `asyncify_kit.wrap`); the legacy drivers and SQLite
  build on them.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import contextvars
import itertools
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Iterator,
    MutableSequence,
    Sequence,
)
from typing import Any, ClassVar, TypeVar, cast

import anyio

from ..._cleanup import finish
from ..._config import BackendURL
from ..._executor import (
    DEFAULT_POOL,
    Work,
    asyncio_loop,
    check_cancelled,
    configure,
    current_job,
    forget_pool,
    start_thread,
)
from ..._offload import AsyncProxy, asyncify, run_owned, run_sync, wrap
from ...exceptions import (
    CallCancelled,
    ConnectionLost,
    DatabaseError,
    OperationalError,
    ProgrammingError,
)
from .._compiler import CompiledQuery, ParamStyle
from .._row import Row, converted_rows, make_keys, rows_of
from .._types import PoolStats

__all__ = [
    "STREAM_METHODS",
    "TIMEOUT_ERRORS",
    "Backend",
    "Connection",
    "ConnectionPool",
    "SyncSession",
    "ThreadedConnection",
    "ThreadedConnectionPool",
    "begin_statements",
    "current_task",
    "ending_iteration",
]

Converter = Callable[[Any], Any]

# what a driver's timeout raises: asyncio's TimeoutError (asyncpg's, asyncio.wait_for's) is the
# builtin TimeoutError from Python 3.11 only
TIMEOUT_ERRORS: tuple[type[Exception], ...] = (TimeoutError, asyncio.TimeoutError)

logger = logging.getLogger("asyncify_kit.sql")


def stale_plan(exc: BaseException) -> bool:
    """Whether PostgreSQL refused a prepared statement of the connection because a table it
    reads changed since it was prepared ("cached plan must not change result type": a
    migration, or a table dropped and made again, on another connection). psycopg kept the
    statement, so the same query failed on that connection for good; asyncpg retries it by
    itself outside a transaction. The server checks this before the statement runs, so it
    did nothing: `Database` discards the connection (with its prepared statements) and runs
    a statement outside a transaction again on a fresh one, as for a connection found dead
    (the pool's idle ones go too: theirs are likely stale as well); a threaded psycopg
    session deallocates them and runs it again."""
    return getattr(exc, "sqlstate", None) == "0A000" and "cached plan must not change" in str(exc)


class Connection(abc.ABC):
    """One open driver connection.

    Queries arrive compiled (`CompiledQuery`) with their arguments already bound, in the
    backend's placeholder style. Driver exceptions are left to propagate: the `Database`
    translates them with `Backend.translate`.
    """

    #: whether the connection stays usable after its task was cancelled mid-operation
    #: (true for threaded connections, whose thread always finishes the call)
    cancel_safe: ClassVar[bool] = False

    def __init__(self) -> None:
        self.broken = False
        #: an operation on it was cancelled midway: what the server did, and what is left to
        #: read, are unknown, so nothing more runs on it (it is `broken` too)
        self.interrupted = False
        self.reused = False
        #: the server rolled back the open transaction on its own (a MySQL deadlock): no
        #: statement may run in it any more, until it ends
        self.rolled_back = False
        #: an operation failed in the open transaction (since its start or its last rollback
        #: to a savepoint): on PostgreSQL, which aborts a transaction on any failed statement,
        #: it may then commit nothing, which its end checks
        self.failed_in_transaction = False

    @property
    @abc.abstractmethod
    def raw(self) -> Any:
        """The driver's own connection object."""

    @abc.abstractmethod
    async def fetch_all(self, query: CompiledQuery, args: Sequence[Any]) -> list[Row]: ...

    @abc.abstractmethod
    async def fetch_one(self, query: CompiledQuery, args: Sequence[Any]) -> Row | None: ...

    @abc.abstractmethod
    async def fetch_val(self, query: CompiledQuery, args: Sequence[Any], column: int) -> Any: ...

    @abc.abstractmethod
    async def execute(self, query: CompiledQuery, args: Sequence[Any]) -> int:
        """Run one statement; return the number of rows it changed (or -1 if unknown)."""

    @abc.abstractmethod
    async def execute_many(self, query: CompiledQuery, args: Sequence[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    def iterate(
        self,
        query: CompiledQuery,
        args: Sequence[Any],
        batch_size: int,
        in_transaction: bool,
        shared: bool,
    ) -> AsyncGenerator[list[Row], None]:
        """Yield the result in batches of at most *batch_size* rows (bounded memory).

        *in_transaction*: the caller's transaction is open. *shared*: other statements may
        run on this connection while the iteration is open (it is pinned, by a transaction
        or ``connection()``); outside a transaction each of them must commit on its own.
        """

    @abc.abstractmethod
    async def run(self, statement: str) -> None:
        """Run a parameterless control statement (BEGIN, COMMIT, SAVEPOINT ...)."""

    @abc.abstractmethod
    def is_closed(self) -> bool:
        """Whether the driver already knows this connection is gone."""

    def driver_closed(self) -> bool:
        """Whether the driver's connection itself is closed (`is_closed` may also count a
        connection not worth reusing, such as one with an unfinished iteration)."""
        return self.is_closed()

    @abc.abstractmethod
    async def close(self) -> None:
        """Close politely (the pool bounds how long it may take)."""

    @abc.abstractmethod
    def terminate(self) -> None:
        """Close at once without waiting for the server (never blocks the loop)."""

    async def abandon(self) -> None:
        """Close the connection after an operation on it was cancelled midway (`interrupted`),
        first stopping what the server may still run for it: a server whose client is gone
        runs the statement to its end, and keeps the locks of its transaction until then.
        The pool runs it in a task of its own (the cancelled caller never waits for it),
        bounded, and terminates the connection after it. Here: `terminate` at once."""
        self.terminate()


_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
_DIALECT_NAMES = {"postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB"}

#: how long ending an iteration (closing its cursor, ending its transaction) may take
ITERATION_END_TIMEOUT = 10.0

#: how long giving up a connection after a cancelled operation (`Connection.abandon`: stopping
#: its statement on the server) may take, in the background
ABANDON_WAIT = 5.0
#: at most this many connections of a pool are given up that way at once (some drivers open
#: a connection to stop the statement): in a storm of cancellations the others are closed at
#: once, and the server runs their statements to their ends, as it did before
MAX_ABANDONING = 4


@contextlib.contextmanager
def ending_iteration(conn: Connection) -> Iterator[None]:
    """Around the statements that end an iteration on *conn*: shielded from cancellation, so
    they are never skipped, but bounded (`ITERATION_END_TIMEOUT`); *conn* is discarded when
    they fail or time out."""
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(ITERATION_END_TIMEOUT) as scope:
            try:
                yield
            except BaseException:
                conn.broken = True
                raise
        if scope.cancelled_caught:
            conn.broken = True


class Backend(abc.ABC):
    """One backend (URL scheme): how to open connections and how to read the driver's errors."""

    dialect: ClassVar[str]
    style: ClassVar[ParamStyle]
    #: the sentence `Unsupported` shows under trio for asyncio-only backends
    trio_alternatives: ClassVar[str] = ""

    def __init__(self, url: BackendURL, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options
        self._tls: tuple[ssl.SSLContext | None] | None = None
        #: settings of the server that it cannot change while it runs, read once when first
        #: needed (see `ends_transaction`)
        self.server_settings: dict[str, Any] = {}

    async def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of this backend's connections (`make_tls_context`), made once, in
        a worker thread: it may read certificate files."""
        if self._tls is None:
            self._tls = (await run_sync(self.make_tls_context),)
        return self._tls[0]

    def make_tls_context(self) -> ssl.SSLContext | None:
        """A TLS context for `tls_context` (None: the driver's own TLS settings, or none).
        Also where a backend checks its TLS files (a `ConfigError`), off the event loop."""
        return None

    def made_tls_context(self) -> ssl.SSLContext | None:
        """The context `tls_context` made (the pool awaits it before `session_factory`)."""
        return None if self._tls is None else self._tls[0]

    @abc.abstractmethod
    async def connect(self) -> Connection:
        """Open one new connection, configured (autocommit, UTC, statement timeout)."""

    @abc.abstractmethod
    def translate(self, exc: BaseException) -> DatabaseError | None:
        """The `DatabaseError` for a driver exception, or None if *exc* is not the driver's."""

    async def ends_transaction(
        self, exc: BaseException, ask: Callable[[str], Awaitable[Any]]
    ) -> bool:
        """Whether the server rolled back the whole open transaction with the statement that
        raised the driver exception *exc* (PostgreSQL never does: it aborts it, and refuses
        every statement until it ends). Where a setting of the server's decides it, *ask*
        runs a query on the transaction's connection and returns its first value."""
        return False

    def session_factory(self) -> Callable[[], SyncSession] | None:
        """For blocking drivers: a factory of unconnected sessions (then the pool is a
        `ThreadedConnectionPool`); None for native async drivers."""
        return None

    def pool_limits(self) -> tuple[int, int]:
        """(min_size, max_size) for the pool: 1 and 10 when the options lack them (a
        third-party backend's may: a KeyError here failed its connect)."""
        max_size = int(self.options.get("max_size", 10))
        return min(int(self.options.get("min_size", 1)), max_size), max_size

    def target(self) -> str:
        """Where connections go, for the error of a failed connect: host, port, database and
        user (never the password, nor the URL's options)."""
        url = self.url
        port = url.port or _DEFAULT_PORTS.get(self.dialect)
        database = repr(url.database) if url.database else "(the server's default)"
        host = url.host or "(the driver's default)"
        text = (
            f"{_DIALECT_NAMES.get(self.dialect, self.dialect)} at host {host}, port {port}, "
            f"database {database}"
        )
        if url.username:
            text += f", user {url.username!r}"
        return text

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def current_task() -> object:
    """The task running now: asyncio's, or trio's."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    if task is not None:
        return task
    import trio

    return trio.lowlevel.current_task()


def begin_statements(
    dialect: str, isolation: str | None, read_only: bool
) -> tuple[list[str], list[str]]:
    """The statements that open a transaction, and those to run after it ends."""
    level = isolation.replace("_", " ").upper() if isolation else None
    if dialect == "postgresql":
        text = "BEGIN"
        if level:
            text += f" ISOLATION LEVEL {level}"
        if read_only:
            text += " READ ONLY"
        return [text], []
    if dialect == "mysql":
        before = [f"SET TRANSACTION ISOLATION LEVEL {level}"] if level else []
        return [*before, "START TRANSACTION READ ONLY" if read_only else "START TRANSACTION"], []
    if isolation not in (None, "serializable"):
        from ...exceptions import Unsupported

        raise Unsupported(
            f"SQLite transactions are always serializable; isolation={isolation!r} needs "
            "the PostgreSQL or MySQL backends"
        )
    if read_only:
        return ["BEGIN DEFERRED", "PRAGMA query_only = ON"], ["PRAGMA query_only = OFF"]
    return ["BEGIN IMMEDIATE"], []


# -- the pool ---------------------------------------------------------------------------------


class _Waiter:
    """A task waiting for a connection: an asyncio future (cheap), or an anyio event on trio."""

    __slots__ = ("conn", "error", "event", "future", "queued", "retry", "timed_out")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.future: asyncio.Future[None] | None = loop.create_future() if loop else None
        self.event: anyio.Event | None = None if loop else anyio.Event()
        self.conn: Connection | None = None
        self.retry = False
        self.timed_out = False
        self.queued = True
        self.error: BaseException | None = None

    def woken(self) -> bool:
        if self.future is not None:
            return self.future.done()
        return self.event is not None and self.event.is_set()

    def wake(self) -> None:
        # (``queued`` stays as it is: an expired waiter is still in the queue, and leaves it
        # in `ConnectionPool._wait`)
        if self.future is not None:
            if not self.future.done():
                self.future.set_result(None)
        elif self.event is not None:
            self.event.set()

    def expire(self) -> None:
        if not self.woken():
            self.timed_out = True
            self.wake()

    async def wait(self, limit: float | None) -> None:
        if self.future is not None:
            handle = None
            if limit is not None:
                handle = self.future.get_loop().call_later(limit, self.expire)
            try:
                await self.future
            finally:
                if handle is not None:
                    handle.cancel()
        elif self.event is not None:
            with anyio.move_on_after(limit):
                await self.event.wait()
            if not self.event.is_set():
                self.expire()


C = TypeVar("C", bound=Connection)


def _take_live(idle: MutableSequence[C], in_use: set[C], dead: Callable[[C], object]) -> C | None:
    """Pop the most recently used idle connection that is still open, mark it in use and
    return it; hand each closed one met on the way to *dead*. None when none is left."""
    while idle:
        conn = idle.pop()
        if conn.is_closed():
            dead(conn)
            continue
        conn.reused = True
        in_use.add(conn)
        return conn
    return None


def _terminate(conn: Connection) -> None:
    conn.terminate()


class ConnectionPool:
    """A bounded pool of `Connection` objects, fair (first come, first served).

    ``acquire`` takes an idle connection, or opens one while fewer than *max_size* exist, or
    waits up to *acquire_timeout* seconds. ``release`` returns it; a connection marked
    ``broken`` is closed instead. ``close`` waits up to *close_timeout* for lent connections,
    then closes everything, shielded from cancellation but never longer than its bound.
    """

    threaded: ClassVar[bool] = False

    def __init__(
        self,
        connect: Callable[[], Awaitable[Connection]],
        *,
        min_size: int,
        max_size: int,
        acquire_timeout: float | None,
        close_timeout: float,
        describe: str,
    ) -> None:
        self._connect = connect
        self.min_size = min_size
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.close_timeout = close_timeout
        self._describe = describe
        self._idle: deque[Connection] = deque()
        self._in_use: set[Connection] = set()
        self._opening = 0
        self._waiters: deque[_Waiter] = deque()
        self._closed = False
        self._drained: anyio.Event | None = None
        #: connections given up after a cancelled operation, being closed by `_abandon`
        self._abandoning: dict[asyncio.Task[None], Connection] = {}
        self._shut = False  # the close is over: nothing more starts (see `_drop`)

    @property
    def size(self) -> int:
        return len(self._idle) + len(self._in_use) + self._opening

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> PoolStats:
        return PoolStats(
            size=self.size,
            idle=len(self._idle),
            in_use=len(self._in_use),
            waiting=len(self._waiters),
            max_size=self.max_size,
        )

    async def open(self) -> None:
        """Open *min_size* connections now, so a bad URL fails at startup."""
        while self.size < self.min_size:
            conn = await self._open_one()
            self._in_use.discard(conn)
            self._idle.append(conn)

    async def _open_one(self) -> Connection:
        self._opening += 1
        try:
            conn = await self._connect()
        except BaseException:
            self._opening -= 1
            self._wake_one_for_retry()
            raise
        self._opening -= 1
        self._in_use.add(conn)
        return conn

    def acquire_idle(self) -> Connection | None:
        """An idle connection at once, without awaiting; None when `acquire` must be awaited
        (no idle connection, or the pool is closed)."""
        if self._closed:
            return None
        return _take_live(self._idle, self._in_use, _terminate)

    def release_now(self, conn: Connection) -> bool:
        """Give a healthy *conn* back without awaiting; False (nothing done) when `release`
        must be awaited (a broken connection, or a closing pool)."""
        if self._closed or conn.broken or conn.is_closed():
            return False
        self._in_use.discard(conn)
        self._put_back(conn)
        return True

    async def acquire(self, *, fresh: bool = False) -> Connection:
        """A connection for the caller's exclusive use; give it back with `release`."""
        while True:
            if self._closed:
                raise OperationalError(f"the database {self._describe} is closed")
            if not fresh:
                idle_conn = _take_live(self._idle, self._in_use, _terminate)
                if idle_conn is not None:
                    return idle_conn
            if self.size < self.max_size:
                return await self._open_one()
            if fresh and self._idle:
                conn = self._idle.popleft()
                await self._close_quietly(conn)
                continue
            conn_or_retry = await self._wait()
            if conn_or_retry is not None:
                return conn_or_retry

    async def _wait(self) -> Connection | None:
        loop = asyncio_loop()
        waiter = _Waiter(loop)
        self._waiters.append(waiter)
        try:
            await waiter.wait(self.acquire_timeout)
        except BaseException:
            if waiter.conn is not None:
                conn, waiter.conn = waiter.conn, None
                self._in_use.discard(conn)
                self._put_back(conn)
            elif waiter.retry:
                self._wake_one_for_retry()
            raise
        finally:
            if waiter.queued:
                waiter.queued = False
                self._waiters.remove(waiter)
        if waiter.error is not None:
            raise waiter.error
        if waiter.conn is not None:
            return self._take(waiter)
        if waiter.timed_out:
            raise OperationalError(
                f"no connection of {self._describe} became free within "
                f"acquire_timeout={self.acquire_timeout:g}s (max_size={self.max_size}; "
                "every connection is in use)"
            )
        return None

    @staticmethod
    def _take(waiter: _Waiter) -> Connection:
        conn = waiter.conn
        if conn is None:  # pragma: no cover - only called after a hand-over
            raise RuntimeError("no connection was handed over")
        waiter.conn = None
        conn.reused = True
        return conn

    def _put_back(self, conn: Connection) -> None:
        """Hand *conn* (not in use any more) to the first waiter, or to the idle deque."""
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.queued = False
            if waiter.woken():
                continue
            waiter.conn = conn
            self._in_use.add(conn)
            waiter.wake()
            return
        self._idle.append(conn)

    def _wake_one_for_retry(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.queued = False
            if not waiter.woken():
                waiter.retry = True
                waiter.wake()
                return

    async def release(self, conn: Connection) -> None:
        """Give *conn* back; a broken or closed connection is closed and replaced on demand."""
        self._in_use.discard(conn)
        if conn.broken or conn.is_closed():
            self._drop(conn)
            self._wake_one_for_retry()
        elif self._closed:
            await self._close_quietly(conn)
        else:
            self._put_back(conn)
        if self._closed and not self._in_use and self._drained is not None:
            self._drained.set()

    def _drop(self, conn: Connection) -> None:
        """Close the broken *conn* without waiting on it (its state is unknown). One whose
        operation was cancelled midway is given up in a task of its own (`_abandon`): the
        statement the server may still run for it is stopped first, so that it releases its
        transaction's locks now rather than when it ends by itself."""
        loop = asyncio_loop()
        # (not `driver_closed()`: a driver may close the connection as it is cancelled)
        if (
            not conn.interrupted
            or loop is None
            or self._shut
            or len(self._abandoning) >= MAX_ABANDONING
        ):
            conn.terminate()
            return
        task = loop.create_task(self._abandon(conn))
        self._abandoning[task] = conn
        task.add_done_callback(self._abandoned)

    async def _abandon(self, conn: Connection) -> None:
        try:
            with anyio.move_on_after(min(self.close_timeout, ABANDON_WAIT)):
                await conn.abandon()
        except Exception:  # the connection is thrown away anyway: nothing to report
            logger.debug("stopping the statement of a connection given up failed", exc_info=True)
        finally:
            conn.terminate()

    def _abandoned(self, task: asyncio.Task[None]) -> None:
        self._abandoning.pop(task, None)

    async def drop_idle(self) -> None:
        """Close every idle connection (after one was found dead, the others likely are)."""
        while self._idle:
            await self._close_quietly(self._idle.popleft())

    async def _close_quietly(self, conn: Connection) -> None:
        await finish(self._close_now(conn))

    async def _close_now(self, conn: Connection) -> None:
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(min(self.close_timeout, 5.0)) as scope:
                try:
                    await conn.close()
                except Exception:
                    conn.terminate()
            if scope.cancelled_caught:
                conn.terminate()

    async def close(self) -> None:
        """Close the pool: bounded by *close_timeout*, and safe to cancel."""
        if self._closed:
            return
        self._closed = True
        for waiter in self._waiters:
            waiter.error = OperationalError(f"the database {self._describe} was closed")
            waiter.queued = False
            waiter.wake()
        self._waiters.clear()
        await finish(self._close_all())

    async def _close_all(self) -> None:
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.close_timeout):
                if self._in_use:
                    self._drained = anyio.Event()
                    await self._drained.wait()
            idle = list(self._idle)
            self._idle.clear()
            with anyio.move_on_after(min(self.close_timeout, 5.0)):
                async with anyio.create_task_group() as tg:
                    for conn in idle:
                        tg.start_soon(self._close_quietly, conn)
            if self._abandoning:  # (asyncio only: see `_drop`)
                with anyio.move_on_after(min(self.close_timeout, ABANDON_WAIT)):
                    await asyncio.wait(list(self._abandoning))
                for task, conn in list(self._abandoning.items()):
                    conn.terminate()
                    task.cancel()
            for conn in list(self._in_use):
                conn.terminate()
            self._in_use.clear()
            self._shut = True


# -- blocking drivers, one thread hop per operation --------------------------------------------

#: the `SyncSession` operations of an open iteration itself; a session whose iteration must
#: be dealt with before any other statement runs (MySQL's unread result, PostgreSQL's
#: transaction) does so in `SyncSession.call` for every other operation
STREAM_METHODS = frozenset({"fetch_batch", "close_cursor"})


class SyncSession:
    """A blocking DB-API connection plus the conversions of its backend; runs in a thread.

    Every public method does one whole operation (execute and fetch, including building the
    `Row` objects) so that each costs exactly one thread hop. Subclasses open the connection
    in `connect` and may override `adapt` (parameters) and `converters` (result columns).
    """

    #: whether `cancel_query` can stop a running statement from another thread
    cancellable: ClassVar[bool] = False

    def __init__(self) -> None:
        self.conn: Any = None
        self._cursors: dict[int, Any] = {}
        self.cancel_fired = False
        #: set (from any thread) when the connection is thrown away: no operation runs on it
        #: any more, even before the close itself is done
        self.closing = False
        #: one operation at a time (see `call`)
        self.lock = threading.RLock()

    def call(self, method: str, *args: Any) -> Any:
        """Run one operation; if its caller leaves meanwhile, cancel it on the server.

        A cancelled caller waits for its thread (asyncify's ``cancel="wait"``); for drivers
        that can cancel a running statement from another thread, `_CANCELLER` does so, and
        the statement's error becomes `CallCancelled` (nobody is left to read it). On a
        closed connection every operation is `ConnectionLost`.

        Operations take turns (`lock`): those of the connection's own task come one after
        the other anyway, but an iteration left with ``break`` (no ``aclosing``) is closed
        by asyncio's finalizer, in a task of its own, whose call may reach another worker
        thread while one of the connection's task runs (two statements at once on one
        connection: PyMySQL read garbage, and a PostgreSQL cursor stayed open).
        """
        with self.lock:
            return self._call(method, args)

    def _call(self, method: str, args: tuple[Any, ...]) -> Any:
        self.require_open()
        fn = getattr(self, method)
        job = current_job() if self.cancellable else None
        if job is None:
            return fn(*args)
        self.cancel_fired = False
        _CANCELLER.add(job, self)
        try:
            return fn(*args)
        except Exception as exc:
            if self.cancel_fired:
                raise CallCancelled("the caller left; its statement was cancelled") from exc
            raise
        finally:
            _CANCELLER.remove(job)

    def require_open(self) -> None:
        """Raise `ConnectionLost` if the connection was closed (or is being closed)."""
        if self.closing or self.conn is None:
            raise ConnectionLost(
                "the connection is closed (the database was disconnected, or the connection "
                "was discarded)"
            )

    # subclasses -------------------------------------------------------------------------
    def connect(self) -> None:
        raise NotImplementedError

    def cancel_query(self) -> None:
        """Ask the server to stop the running statement (called from another thread)."""

    def adapt(self, args: Sequence[Any]) -> Sequence[Any]:
        return args

    def converters(self, description: Sequence[Any]) -> list[Converter | None] | None:
        return None

    def server_cursor(self) -> Any:
        """A cursor that streams rows from the server (defaults to a plain cursor)."""
        return self.conn.cursor()

    def is_closed(self) -> bool:
        return self.conn is None

    # operations -------------------------------------------------------------------------
    def _execute(self, cur: Any, text: str, args: Sequence[Any] | None) -> None:
        """Run *text*; ``args=None`` means a query without parameters, sent as written."""
        if args is None:
            cur.execute(text)
        else:
            cur.execute(text, self.adapt(args))

    def _rows(self, cur: Any, raw_rows: Sequence[Any]) -> list[Row]:
        description = cur.description
        if description is None:
            raise ProgrammingError("the statement returns no rows; use execute() for it")
        keys = make_keys([d[0] for d in description])
        convert = self.converters(description)
        if convert is None:
            return rows_of(keys, raw_rows)
        return converted_rows(keys, convert, raw_rows)

    def fetch_all(self, text: str, args: Sequence[Any] | None) -> list[Row]:
        cur = self.conn.cursor()
        try:
            self._execute(cur, text, args)
            if cur.description is None:  # a statement without a result: no rows
                return []
            return self._rows(cur, cur.fetchall())
        finally:
            cur.close()

    def fetch_one(self, text: str, args: Sequence[Any] | None) -> Row | None:
        cur = self.conn.cursor()
        try:
            self._execute(cur, text, args)
            if cur.description is None:
                return None
            row = cur.fetchone()
            rows = self._rows(cur, [] if row is None else [row])
            return rows[0] if rows else None
        finally:
            cur.close()

    def fetch_val(self, text: str, args: Sequence[Any] | None, column: int) -> Any:
        cur = self.conn.cursor()
        try:
            self._execute(cur, text, args)
            if cur.description is None:
                return None
            return self._value(cur, cur.fetchone(), column)
        finally:
            cur.close()

    def _value(self, cur: Any, record: Sequence[Any] | None, column: int) -> Any:
        """One value of *record*, converted like `_rows` converts whole rows."""
        if record is None:
            return None
        value = record[column]
        if value is None:
            return None
        convert = self.converters(cur.description)
        fn = None if convert is None else convert[column]
        return value if fn is None else fn(value)

    def execute(self, text: str, args: Sequence[Any] | None) -> int:
        cur = self.conn.cursor()
        try:
            self._execute(cur, text, args)
            return int(cur.rowcount)
        finally:
            cur.close()

    def execute_many(self, text: str, args: Sequence[Sequence[Any]]) -> None:
        cur = self.conn.cursor()
        try:
            cur.executemany(text, [self.adapt(a) for a in args])
        finally:
            cur.close()

    def run(self, statement: str) -> None:
        cur = self.conn.cursor()
        try:
            cur.execute(statement)
        finally:
            cur.close()

    def open_cursor(
        self,
        cursor_id: int,
        text: str,
        args: Sequence[Any] | None,
        in_transaction: bool,
        shared: bool,
    ) -> None:
        """Open the cursor of an iteration as *cursor_id* (chosen by the caller, so that it
        can close the cursor even when it left before this call returned)."""
        cur = self.server_cursor()
        try:
            self._execute(cur, text, args)
        except BaseException:
            cur.close()
            raise
        self._cursors[cursor_id] = self.opened(cur)

    def opened(self, cur: Any) -> Any:
        """What `_cursors` keeps for the server cursor *cur* just opened: *cur* itself here."""
        return cur

    def fetch_batch(self, cursor_id: int, size: int) -> list[Row]:
        cur = self._cursors[cursor_id]
        if cur.description is None:  # a statement without a result: no rows, as fetch_all
            return []
        return self._rows(cur, cur.fetchmany(size))

    def close_cursor(self, cursor_id: int, finished: bool) -> None:
        cur = self._cursors.pop(cursor_id, None)
        if cur is not None:
            cur.close()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        self._cursors.clear()
        if conn is not None:
            conn.close()


class _Canceller:
    """One daemon thread that cancels the statements of callers that were cancelled.

    It runs while statements of cancellable sessions run (and 5 s more), and looks at them
    every 50 ms. A statement is unregistered under the same lock that guards the cancel
    request, so a late request never hits the connection's next statement.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[int, tuple[Work, SyncSession]] = {}
        self._running = False

    def add(self, job: Work, session: SyncSession) -> None:
        with self._lock:
            self._active[id(job)] = (job, session)
            start = not self._running
            self._running = True
        if start:  # (not under the lock: a failure to start takes it, maybe in this thread)
            watcher = threading.Thread(target=self._watch, name="asyncify-sql-cancel", daemon=True)
            start_thread(watcher, self._not_started)

    def _not_started(self, error: BaseException) -> None:
        with self._lock:
            self._running = False  # the next statement tries again
        logger.error("the watcher of cancelled statements could not start: %r", error)

    def remove(self, job: Work) -> None:
        with self._lock:
            self._active.pop(id(job), None)

    def _watch(self) -> None:
        idle = 0
        while True:
            time.sleep(0.05)
            with self._lock:
                if not self._active:
                    idle += 1
                    if idle >= 100:  # nothing to watch for 5 s: stop until needed again
                        self._running = False
                        return
                    continue
                idle = 0
                for job, session in list(self._active.values()):
                    if job.cancel_requested and not session.cancel_fired:
                        session.cancel_fired = True
                        try:
                            session.cancel_query()
                        except Exception:  # the statement ends anyway; nothing to report
                            logger.debug("cancelling a statement failed", exc_info=True)


_CANCELLER = _Canceller()


#: the ids of the cursors of `ThreadedConnection.iterate`
_cursor_ids = itertools.count(1)


class ThreadedConnection(Connection):
    """A `Connection` over a `SyncSession`, one thread hop per operation.

    *sticky* puts the session on one dedicated thread for its whole life (SQLite); otherwise
    each call runs on any worker of the default pool (psycopg2, PyMySQL, psycopg on trio).
    """

    cancel_safe: ClassVar[bool] = True

    def __init__(self, session: SyncSession, proxy: AsyncProxy[SyncSession]) -> None:
        super().__init__()
        self._session = session
        self._proxy = proxy

    @classmethod
    async def open(cls, session: SyncSession, *, sticky: bool = False) -> ThreadedConnection:
        proxy = wrap(session, sticky=sticky)
        try:
            await proxy.connect()
        except BaseException:
            if session.conn is not None:
                # the caller left (cancelled, timed out) while its thread connected: under
                # the "wait" policy the connect ended first, and what it opened was only
                # closed when collected (on any thread; Python 3.13's sqlite3 then warns)
                cls(session, proxy).terminate()
            await proxy.aclose()
            raise
        return cls(session, proxy)

    @property
    def raw(self) -> Any:
        return self._session.conn

    async def fetch_all(self, query: CompiledQuery, args: Sequence[Any]) -> list[Row]:
        rows: list[Row] = await self._proxy.call("fetch_all", *query.driver_args(tuple(args)))
        return rows

    async def fetch_one(self, query: CompiledQuery, args: Sequence[Any]) -> Row | None:
        row: Row | None = await self._proxy.call("fetch_one", *query.driver_args(tuple(args)))
        return row

    async def fetch_val(self, query: CompiledQuery, args: Sequence[Any], column: int) -> Any:
        return await self._proxy.call("fetch_val", *query.driver_args(tuple(args)), column)

    async def execute(self, query: CompiledQuery, args: Sequence[Any]) -> int:
        count: int = await self._proxy.call("execute", *query.driver_args(tuple(args)))
        return count

    async def execute_many(self, query: CompiledQuery, args: Sequence[Sequence[Any]]) -> None:
        await self._proxy.call("execute_many", query.text, args)

    async def iterate(
        self,
        query: CompiledQuery,
        args: Sequence[Any],
        batch_size: int,
        in_transaction: bool,
        shared: bool,
    ) -> AsyncGenerator[list[Row], None]:
        # the id is ours before the cursor is opened: a caller cancelled while the thread
        # opens it (which it finishes) still closes it below, instead of leaving its
        # statement open on the connection (on SQLite, a read snapshot that the connection's
        # next users would see, and that makes their writes fail with "database is locked")
        cursor_id = next(_cursor_ids)
        finished = False
        try:
            await self._proxy.call(
                "open_cursor", cursor_id, *query.driver_args(tuple(args)), in_transaction, shared
            )
            while True:
                batch: list[Row] = await self._proxy.call("fetch_batch", cursor_id, batch_size)
                if batch:
                    yield batch
                if len(batch) < batch_size:
                    break
            finished = True
        finally:
            with contextlib.suppress(Exception), ending_iteration(self):
                await self._proxy.call("close_cursor", cursor_id, finished)

    async def run(self, statement: str) -> None:
        await self._proxy.call("run", statement)

    def is_closed(self) -> bool:
        return self._session.closing or self._session.is_closed()

    async def close(self) -> None:
        try:
            await self._proxy.close()
        finally:
            await self._proxy.aclose()

    def terminate(self) -> None:
        session = self._session
        session.closing = True  # from now on its operations fail, before the close is done

        def close_in_background() -> None:
            try:
                session.close()
            except Exception:  # the connection is being thrown away; nothing to report
                session.conn = None

        closer = threading.Thread(
            target=close_in_background, name="asyncify-sql-close", daemon=True
        )
        start_thread(closer, lambda error: _close_not_started(session, error))


def _close_not_started(session: SyncSession, error: BaseException) -> None:
    session.conn = None  # (dropped: its socket closes when it is collected)
    logger.error("a connection given up could not be closed (no thread started): %r", error)


def lost(message: str, exc: BaseException) -> ConnectionLost:
    """A `ConnectionLost` chained to *exc*."""
    err = ConnectionLost(message, orig=exc)
    err.__cause__ = exc
    return err


# -- the pool of the blocking drivers: connections change hands inside the worker threads -------

_pool_serial = itertools.count(1)

#: how long a thread waiting for a connection sleeps before it looks whether its caller left
_WAIT_SLICE = 0.05


class _Opening:
    """One connect under way in a thread of its own (`ThreadedConnectionPool._open_reserved`),
    and its outcome; all of it is read and written under the pool's condition."""

    __slots__ = ("conn", "done", "error", "left")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.conn: ThreadedConnection | None = None
        self.error: BaseException | None = None
        #: the worker waiting for it left (its caller was cancelled or timed out): what it
        #: opens is the pool's
        self.left = False


class _PlaceWaiter:
    __slots__ = ("event", "placed")

    def __init__(self) -> None:
        self.event = anyio.Event()
        #: a place was handed to it (by `_Places.give`)
        self.placed = False


class _Places:
    """The places of the callers of `ThreadedConnectionPool.acquire`: as many as connections,
    taken before the caller's thread hop and held until its connection is given back, so
    that a caller waits for a connection here, on the event loop (asyncio or trio), first
    come first served, not in a worker thread. Used on the event loop's thread only."""

    __slots__ = ("_free", "_queue")

    def __init__(self, count: int) -> None:
        self._free = count
        self._queue: deque[_PlaceWaiter] = deque()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def take_now(self) -> bool:
        """Take a free place at once, unless there is none or others wait for one."""
        if self._free > 0 and not self._queue:
            self._free -= 1
            return True
        return False

    async def take(self, within: float | None) -> bool:
        """Wait for a place, for *within* seconds at most; False if none was handed over in
        time (or `wake_all` woke the caller without one). A caller cancelled just as it was
        handed one passes it on."""
        if self.take_now():
            return True
        waiter = _PlaceWaiter()
        self._queue.append(waiter)
        try:
            with anyio.move_on_after(within):
                await waiter.event.wait()
        except BaseException:
            self._leave(waiter)
            raise
        if not waiter.placed:
            self._leave(waiter)
        return waiter.placed

    def _leave(self, waiter: _PlaceWaiter) -> None:
        if waiter.placed:
            waiter.placed = False
            self.give()
        else:
            with contextlib.suppress(ValueError):  # (not queued: `wake_all` took it out)
                self._queue.remove(waiter)

    def give(self) -> None:
        """Give a place back: to the first waiter, or to the free ones."""
        if self._queue:
            waiter = self._queue.popleft()
            waiter.placed = True
            waiter.event.set()
        else:
            self._free += 1

    def wake_all(self) -> None:
        """Wake every waiter without a place (the pool was closed)."""
        queue, self._queue = self._queue, deque()
        for waiter in queue:
            waiter.event.set()


class ThreadedConnectionPool:
    """A thread-safe pool of blocking connections (psycopg2, PyMySQL, psycopg on trio).

    A query outside a transaction is one thread hop: the worker thread takes an idle
    connection, runs the query and puts the connection back, so under load a connection goes
    from one query to the next without a round trip through the event loop (which is what
    makes hand-written ``asyncio.to_thread`` fast). The queries run on a pool of worker threads
    of their own, as many as connections. Transactions and ``connection()`` check a connection
    out of the same pool with `acquire`; their queries then go to that connection.

    `acquire` waits for a connection on the event loop (`_Places`), not in a worker thread:
    the checkout runs on asyncify's default pool, whose threads a transaction holding a
    connection also needs for its statements and COMMIT, so callers waiting there in more
    numbers than it has threads (40) left the holders none, until ``acquire_timeout``.

    Same interface and behaviour as `ConnectionPool` (statistics, ``acquire_timeout``, bounded
    close, replacing connections the server killed), plus `run_unpinned`. A caller cancelled
    while a connection is opened for it leaves without it, as there: the connect goes on in a
    thread of its own, for the pool (`_open_reserved`).
    """

    threaded: ClassVar[bool] = True

    def __init__(
        self,
        make_session: Callable[[], SyncSession],
        *,
        min_size: int,
        max_size: int,
        acquire_timeout: float | None,
        close_timeout: float,
        describe: str,
        is_lost: Callable[[BaseException], bool],
        connect_error: Callable[[Exception], BaseException] | None = None,
    ) -> None:
        self._make_session = make_session
        self._connect_error = connect_error
        self.min_size = min_size
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.close_timeout = close_timeout
        self._describe = describe
        self._is_lost = is_lost
        self._cond = threading.Condition()
        self._idle: list[ThreadedConnection] = []
        self._in_use: set[ThreadedConnection] = set()
        self._opening = 0
        #: connects of `_opening` whose caller left (see `_open_reserved`)
        self._orphans = 0
        self._waiting = 0
        #: the places of `acquire`'s callers (see `_Places`)
        self._places = _Places(max_size)
        self._closed = False
        self._threads = f"asyncify-sql-{next(_pool_serial)}"
        configure(pools={self._threads: max_size})
        self._call = cast(
            "Callable[[str, tuple[Any, ...]], Awaitable[Any]]",
            asyncify(pool=self._threads)(self._run_sync),
        )

    @property
    def size(self) -> int:
        # a connect whose caller left counts until it ends, except in a closed pool: it
        # closes what it opens then (see `_opened`), so the closed pool shows no connection
        orphans = self._orphans if self._closed else 0
        return len(self._idle) + len(self._in_use) + self._opening - orphans

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> PoolStats:
        with self._cond:
            return PoolStats(
                size=self.size,
                idle=len(self._idle),
                in_use=len(self._in_use),
                waiting=self._waiting + self._places.waiting,
                max_size=self.max_size,
            )

    # -- the thread side ----------------------------------------------------------------------

    def _checkout(self, fresh: bool = False, deadline: float | None = None) -> ThreadedConnection:
        """A connection in use, idle or newly opened, waiting for one up to *deadline* (a
        `time.monotonic` value; by default ``acquire_timeout`` from now)."""
        limit = self.acquire_timeout
        if deadline is None and limit is not None:
            deadline = time.monotonic() + limit
        stale: list[ThreadedConnection] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise OperationalError(f"the database {self._describe} is closed")
                    if not fresh:
                        # dead ones are terminated below, outside the lock
                        live = _take_live(self._idle, self._in_use, stale.append)
                        if live is not None:
                            return live
                    if self.size < self.max_size:
                        self._opening += 1
                        break
                    if fresh and self._idle:
                        stale.append(self._idle.pop(0))
                        continue
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise OperationalError(
                            f"no connection of {self._describe} became free within "
                            f"acquire_timeout={limit:g}s (max_size={self.max_size}; every "
                            "connection is in use)"
                        )
                    # stop at once if the caller was cancelled or timed out (nothing wakes
                    # this thread when it leaves, so it looks again after every slice)
                    check_cancelled()
                    self._waiting += 1
                    try:
                        self._cond.wait(
                            _WAIT_SLICE if remaining is None else min(remaining, _WAIT_SLICE)
                        )
                    finally:
                        self._waiting -= 1
        finally:
            for conn in stale:
                _close_session(conn._session)
        return self._open_reserved()

    def _open_reserved(self) -> ThreadedConnection:
        """Open a connection in the place `_checkout` reserved (counted in ``_opening``), in
        use by this worker's caller.

        The driver's connect runs in a thread of its own, which this worker waits for, looking
        every slice whether its caller left: a caller cancelled (or timed out) meanwhile then
        stops it at once (`CallCancelled`), instead of waiting for the connect, which takes up
        to ``connect_timeout`` with a server that never answers (its caller waits for this
        worker: `acquire`, `run_unpinned` and `open` run it under the "wait" policy). The
        connect goes on without it, and keeps its place in the pool until it ends
        (`_opened`): so cancelled callers never open more than ``max_size`` at once.
        """
        opening = _Opening()
        thread = threading.Thread(
            # (a copy of the caller's context: a context cannot be entered by two threads)
            target=contextvars.copy_context().run,
            args=(self._connect_for, opening),
            name=f"{self._threads}-connect",
            daemon=True,
        )
        try:
            thread.start()
        except BaseException as exc:  # ("can't start new thread")
            self._opened(opening, None, exc)
        job = current_job()
        while not opening.done.wait(None if job is None else _WAIT_SLICE):
            if job is not None and job.cancel_requested:
                with self._cond:
                    if not opening.done.is_set():
                        opening.left = True
                        self._orphans += 1
                        raise CallCancelled(
                            "the caller left while a connection was opened for it; the "
                            "connect goes on for the pool"
                        )
        error = opening.error
        if error is not None:
            if self._connect_error is not None and isinstance(error, Exception):
                # the same error as a native pool's failed connect (naming the target),
                # whether the pool opens or grows, for a query or a transaction
                raise self._connect_error(error) from error
            raise error
        return cast("ThreadedConnection", opening.conn)

    def _connect_for(self, opening: _Opening) -> None:
        """The thread of one connect of `_open_reserved`."""
        try:
            session = self._make_session()
            session.connect()
        except BaseException as exc:  # (all of it goes to the worker, or to the log)
            self._opened(opening, None, exc)
            return
        self._opened(opening, ThreadedConnection(session, wrap(session)), None)

    def _opened(
        self, opening: _Opening, conn: ThreadedConnection | None, error: BaseException | None
    ) -> None:
        """Settle *opening* with its connection or its error. Its worker takes either; if
        that worker left, the connection goes to the pool idle (closed if the pool was closed
        meanwhile), and a failure is logged at debug level only: nobody waits for it, and
        the next connect says it again."""
        discard = False
        with self._cond:
            self._opening -= 1
            if opening.left:
                self._orphans -= 1
                if conn is not None:
                    discard = self._closed
                    if not discard:
                        self._idle.append(conn)
            else:
                opening.conn, opening.error = conn, error
                if conn is not None:
                    self._in_use.add(conn)
            if conn is None or opening.left:  # a place or a connection for a waiting thread
                self._cond.notify()
            opening.done.set()
        if not opening.left:
            return
        if conn is not None and discard:
            _close_session(conn._session)
        elif error is not None:
            logger.debug(
                "a connect of %s failed after its caller left", self._describe, exc_info=error
            )

    def _checkin(self, conn: ThreadedConnection) -> None:
        """Give *conn* back (on a worker thread: closing a dead one may block)."""
        with self._cond:
            self._in_use.discard(conn)
            keep = not (conn.broken or self._closed or conn.is_closed())
            if keep:
                self._idle.append(conn)
            self._cond.notify()
        if not keep:
            _close_session(conn._session)

    def _run_sync(self, method: str, args: tuple[Any, ...]) -> Any:
        """Run *method* on an idle connection, give it back, and replay once on a fresh
        connection if that one was found dead before the statement reached the server."""
        conn = self._checkout()
        try:
            return conn._session.call(method, *args)
        except Exception as exc:
            if not self._is_lost(exc):
                raise
            conn.broken = True
            if not conn.reused or self._closed:  # (closed: disconnect() closed it under us)
                raise
        finally:
            self._checkin(conn)
        # The idle connection was found dead (the server killed it while it waited in the
        # pool): the statement never ran. Drop the other idle ones and run it once more.
        self._drop_idle_sync()
        conn = self._checkout(fresh=True)
        try:
            return conn._session.call(method, *args)
        except Exception as exc:
            if self._is_lost(exc):
                conn.broken = True
            raise
        finally:
            self._checkin(conn)

    def _drop_idle_sync(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_session(conn._session)

    def _open_min(self) -> None:
        opened: list[ThreadedConnection] = []
        try:
            while self.size < self.min_size:  # (the connections opened so far count as in use)
                opened.append(self._checkout(fresh=True))
        finally:  # (also when a connect fails, or the caller left: `open` closes them then)
            for conn in opened:
                self._checkin(conn)

    # -- the async side -----------------------------------------------------------------------

    async def run_unpinned(self, method: str, *args: Any) -> Any:
        """Run the session's *method* on any idle connection, in one thread hop.

        Beyond `max_size` calls at once, the call waits for a worker thread (there is one per
        connection), not in `acquire`: neither counted in `pool_stats().waiting` nor bounded
        by ``acquire_timeout``. Routing it through `acquire` made 50 concurrent queries on 10
        connections 1.24x-1.36x the raw driver's time instead of 0.70x-0.86x (`make bench`).
        """
        return await self._call(method, args)

    async def open(self) -> None:
        try:
            await self._call_default(self._open_min)
        except BaseException:
            # a connect failed, or the caller was cancelled: the pool is dropped, so what it
            # opened is closed now, not when collected (a connect still under way closes its
            # connection when it ends)
            await self.close()
            raise

    @staticmethod
    async def _call_default(fn: Callable[..., Any], *args: Any) -> Any:
        return await run_sync(fn, *args)

    def acquire_idle(self) -> Connection | None:
        """An idle connection at once, or None (then await `acquire`)."""
        if not self._places.take_now():
            return None
        with self._cond:
            conn = None if self._closed else _take_live(self._idle, self._in_use, _terminate)
        if conn is None:
            self._places.give()
        return conn

    async def acquire(self, *, fresh: bool = False) -> Connection:
        if not fresh:
            idle = self.acquire_idle()
            if idle is not None:
                return idle
        limit = self.acquire_timeout
        deadline = None if limit is None else time.monotonic() + limit
        if not await self._places.take(None if deadline is None else limit):
            if self._closed:
                raise OperationalError(f"the database {self._describe} is closed")
            raise OperationalError(
                f"no connection of {self._describe} became free within "
                f"acquire_timeout={limit:g}s (max_size={self.max_size}; every "
                "connection is in use)"
            )
        # With a place, the thread waits only for connections of `run_unpinned`, which end
        # on threads of their own. A caller cancelled while it waits stops it within a slice
        # (`_checkout`); one cancelled just as the thread got a connection (or opened one)
        # never receives it, so it goes back to the pool instead of staying "in use".
        try:
            result: ThreadedConnection = await run_owned(
                DEFAULT_POOL, self._checkin, self._checkout, fresh, deadline
            )
        except BaseException:
            self._places.give()
            raise
        return result

    def release_now(self, conn: Connection) -> bool:
        """Give *conn* back (here always without awaiting: a dead one closes in a thread)."""
        if not isinstance(conn, ThreadedConnection):  # pragma: no cover - internal misuse
            raise TypeError("not a connection of this pool")
        with self._cond:
            self._in_use.discard(conn)
            keep = not (conn.broken or self._closed or conn.is_closed())
            if keep:
                self._idle.append(conn)
            self._cond.notify()
        self._places.give()
        if not keep:
            conn.terminate()
        return True

    async def release(self, conn: Connection) -> None:
        self.release_now(conn)

    async def drop_idle(self) -> None:
        # (the pool's threads hold this condition over list moves only, never over I/O)
        with self._cond:  # asyncify: ignore[sync-wait]
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.terminate()

    async def close(self) -> None:
        """Close the pool: bounded by *close_timeout*, and safe to cancel."""
        with self._cond:  # asyncify: ignore[sync-wait]  (list moves only: see drop_idle)
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._places.wake_all()
        await finish(self._close_all())

    async def _close_all(self) -> None:
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.close_timeout):
                # connections come back from worker threads, which cannot set an anyio
                # Event; poll, for close_timeout at most
                # (not for a connect whose caller left: it closes what it opens itself)
                while self._in_use or self._opening > self._orphans:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            with self._cond:  # asyncify: ignore[sync-wait]  (list moves only)
                idle, self._idle = self._idle, []
                busy, self._in_use = list(self._in_use), set()
            with anyio.move_on_after(min(self.close_timeout, 5.0)):
                await self._call_default(_close_sessions, [c._session for c in idle])
            for conn in busy:
                conn.terminate()
        # its worker threads' pool, made for it alone: one per connect() was kept for good
        forget_pool(self._threads)


def _close_session(session: SyncSession) -> None:
    try:
        session.close()
    except Exception:  # the connection is being thrown away; nothing to report
        session.conn = None


def _close_sessions(sessions: list[SyncSession]) -> None:
    for session in sessions:
        _close_session(session)
