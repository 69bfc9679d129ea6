"""`Database`: one async API over every SQL backend, chosen by URL.

Connections come from one pool per `Database`. A transaction (or ``connection()``) pins a
connection to the *task* that opened it: the pin is kept in a context variable together with
that task's identity, so a task started inside a transaction (which inherits the context)
does not see the pin and takes its own connection from the pool. Concurrent tasks therefore
never share a transaction by accident, which is what went wrong in encode/databases.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import aclosing
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio

from .._cleanup import finish
from .._config import BackendURL, resolve_url, url_errors, validate_options
from .._errors import causes
from .._executor import asyncio_loop
from .._offload import checkpoint_if_cancelled, run_sync
from .._registry import BackendSpec, check_installed, load_backend, loaded_backend, lookup
from ..exceptions import (
    AsyncifyError,
    ConfigError,
    ConnectionLost,
    DatabaseError,
    OperationalError,
    ProgrammingError,
    Unsupported,
)
from ._backends.base import (
    TIMEOUT_ERRORS,
    Backend,
    Connection,
    ConnectionPool,
    ThreadedConnectionPool,
    begin_statements,
    current_task,
    stale_plan,
)
from ._compiler import CompiledQuery, compile_query
from ._row import Row, convert_row
from ._types import ISOLATION_LEVELS, IsolationLevel, PoolStats

if TYPE_CHECKING:
    from typing_extensions import ParamSpec, Self

    P = ParamSpec("P")

__all__ = ["DEFAULT_URL", "Database", "DatabaseConnection", "Transaction"]

logger = logging.getLogger("asyncify_kit.sql")

DEFAULT_URL = "sqlite:///./asyncify.db"
ENV_NAMES = ("ASYNCIFY_SQL_URL", "DATABASE_URL")

T = TypeVar("T")
R = TypeVar("R")

Params = Mapping[str, Any] | None


class _Pin:
    """A connection pinned to one task (by a transaction or ``connection()``)."""

    __slots__ = ("conn", "depth", "pool", "task", "untouched")

    def __init__(
        self, task: object, conn: Connection, pool: ConnectionPool | ThreadedConnectionPool
    ) -> None:
        self.task = task
        self.conn = conn
        self.pool = pool  # the pool the connection goes back to (even once it is closing)
        self.depth = 0  # open transactions (1 = the transaction, >1 = savepoints)
        # nothing has run on the connection yet, nor has the block handed it out (``raw``):
        # the block's first statement may still move it to another connection
        self.untouched = True


_NO_PINS: Mapping[Database, _Pin] = MappingProxyType({})
_PINS: contextvars.ContextVar[Mapping[Database, _Pin]] = contextvars.ContextVar(
    "asyncify_kit_sql_pins", default=_NO_PINS
)


#: the two names of a PostgreSQL backend's TLS mode: ours, and libpq's (see `_fold_sslmode`)
_SSL_NAMES = frozenset({"ssl", "sslmode"})


def _takes_sslmode(spec: BackendSpec) -> bool:
    return any(option.name == "sslmode" for option in spec.options)


def _fold_sslmode(url: BackendURL, values: dict[str, Any], backend: str) -> None:
    """Fold ``sslmode`` (libpq's name, which a PostgreSQL backend takes as an alias of
    ``ssl``, with the same values) into ``ssl``: a URL copied from libpq, or a platform's
    ``DATABASE_URL=...?sslmode=require``, works as it is. Given both, they must agree (a
    `ConfigError` naming both): a silent choice could weaken the TLS the user asked for."""
    if "sslmode" not in values:  # (not a PostgreSQL backend)
        return
    mode = values.pop("sslmode")
    if mode is None:
        return
    if "ssl" in url.options and values["ssl"] != mode:
        # (`Database` starts it with the environment variable the URL came from, if any)
        raise ConfigError(
            f"options 'ssl' ({values['ssl']}) and 'sslmode' ({mode}) disagree for the "
            f"{backend!r} backend in {url}; 'sslmode' is libpq's name of 'ssl': give one of them"
        )
    values["ssl"] = mode


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


class Database:
    """An async SQL database: PostgreSQL, MySQL/MariaDB or SQLite, chosen by URL.

    The URL comes from the argument, else ``ASYNCIFY_SQL_URL``, else ``DATABASE_URL``, else
    ``sqlite:///./asyncify.db``. Keyword *options* override the URL's query options
    (``max_size=20``); both are validated per backend.

    ```python
    async with Database("postgresql://app:secret@localhost/shop") as db:
        row = await db.fetch_one("select * from users where id = :id", {"id": 7})
        async with db.transaction():
            await db.execute("update users set seen = now() where id = :id", {"id": 7})
    ```
    """

    def __init__(self, url: str | BackendURL | None = None, **options: Any) -> None:
        parsed = resolve_url(url, ENV_NAMES, DEFAULT_URL)
        # every check of a URL read from the environment names the variable (so does
        # `connect`, for those made as the pool opens)
        with url_errors(parsed):
            spec = lookup("sql", parsed)
            if options:
                merged = dict(parsed.options)
                if _SSL_NAMES & options.keys() and _takes_sslmode(spec):
                    # a TLS mode given as a keyword overrides the URL's, under either name
                    for name in _SSL_NAMES:
                        merged.pop(name, None)
                merged.update({k: _option_text(v) for k, v in options.items()})
                parsed = parsed.replace(options=merged)
            check_installed(spec)
            values = validate_options(parsed, spec.options, backend=spec.scheme)
            _fold_sslmode(parsed, values, spec.scheme)
            if (
                "min_size" in values
                and "max_size" in values
                and values["min_size"] > values["max_size"]
            ):
                raise ConfigError(
                    f"option 'min_size' ({values['min_size']}) is larger than 'max_size' "
                    f"({values['max_size']}) for the {spec.scheme!r} backend in {parsed}"
                )
            # made at the first use (see `_backend`); at once if its class is imported already
            cls = loaded_backend(spec)
            made: Backend | None = None if cls is None else cls(parsed, values)
        self.url: BackendURL = parsed
        self._spec: BackendSpec = spec
        self._values = values
        self._made: Backend | None = made
        self._pool: ConnectionPool | ThreadedConnectionPool | None = None
        # the pool `disconnect` closes (or closed): `pool_stats` still reports it
        self._closed_pool: ConnectionPool | ThreadedConnectionPool | None = None
        self._connecting: anyio.Event | None = None  # set when a connect() in progress ends

    @property
    def _backend(self) -> Backend:
        """The backend, made at its first use. Its module (and the driver's) is imported then:
        blocking, which `connect` does first in a worker thread. Imported in the constructor,
        it held the event loop for 16-79 ms (once per process and backend) where a
        `Database` was made inside ``async def``."""
        backend = self._made
        if backend is None:
            with url_errors(self.url):  # (a backend checks its URL as it is made)
                _, cls = load_backend("sql", self.url)
                backend = self._made = cls(self.url, self._values)
        return backend

    @property
    def _dialect(self) -> str:
        return self._backend.dialect

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Database {self.url} ({self._spec.scheme}, {state})>"

    @property
    def is_open(self) -> bool:
        """Whether the pool is open: from the end of a successful `connect` (or entering
        ``async with``) to the start of `disconnect`."""
        return self._pool is not None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """The backend's scheme, e.g. ``postgresql+asyncpg``."""
        scheme: str = self._spec.scheme
        return scheme

    @property
    def dialect(self) -> str:
        """``postgresql``, ``mysql`` or ``sqlite``."""
        return self._dialect

    async def connect(self) -> None:
        """Open the pool (``async with`` does it for you). Concurrent calls open one pool:
        the others wait for it."""
        while self._connecting is not None:
            await self._connecting.wait()
        if self._pool is not None:
            return
        self._connecting = anyio.Event()
        try:
            # the checks made as the pool opens (its TLS files, say) name the environment
            # variable the URL came from, as the constructor's do
            with url_errors(self.url):
                if self._made is None:  # the driver's import, off the loop (see `_backend`)
                    await run_sync(load_backend, "sql", self.url)
                await self._open_pool()
        finally:
            connecting, self._connecting = self._connecting, None
            connecting.set()

    async def _open_pool(self) -> None:
        if not self._spec.trio and asyncio_loop() is None:
            raise Unsupported(
                f"the {self._spec.scheme!r} backend runs on asyncio only; under trio use "
                f"{self._backend.trio_alternatives}"
            )
        min_size, max_size = self._backend.pool_limits()
        acquire_timeout = self._backend.options.get("acquire_timeout")
        close_timeout = float(self._backend.options.get("close_timeout") or 10.0)
        await self._backend.tls_context()  # (made now, in a thread: sessions may need it)
        factory = self._backend.session_factory()
        pool: ConnectionPool | ThreadedConnectionPool
        if factory is not None:
            pool = ThreadedConnectionPool(
                factory,
                min_size=min_size,
                max_size=max_size,
                acquire_timeout=acquire_timeout,
                close_timeout=close_timeout,
                describe=str(self.url),
                is_lost=self._is_lost,
                connect_error=self._connect_error,
            )
        else:
            pool = ConnectionPool(
                self._connect_translated,
                min_size=min_size,
                max_size=max_size,
                acquire_timeout=acquire_timeout,
                close_timeout=close_timeout,
                describe=str(self.url),
            )
        try:
            await pool.open()
        except AsyncifyError:
            await pool.close()
            raise
        except Exception as exc:
            await pool.close()
            raise self._connect_error(exc) from exc
        except BaseException:
            # cancelled (or timed out) after some of its connections were open: close them
            # now (the close is shielded and bounded), not when the dropped pool is collected
            await pool.close()
            raise
        self._pool = pool
        self._closed_pool = None

    async def disconnect(self) -> None:
        """Close the pool; bounded by the ``close_timeout`` option and safe to cancel."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._closed_pool = pool
            await pool.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    def pool_stats(self) -> PoolStats:
        """Open, idle, lent-out connections and waiting tasks of the pool.

        It never raises: before `connect` the pool is empty (all zeros but *max_size*), and
        after `disconnect` it shows the closed pool, which holds no connection once the close
        has ended (during the close, the connections not yet closed).
        """
        pool = self._pool if self._pool is not None else self._closed_pool
        if pool is not None:
            return pool.stats()
        return PoolStats(
            size=0, idle=0, in_use=0, waiting=0, max_size=self._backend.pool_limits()[1]
        )

    def _is_lost(self, exc: BaseException) -> bool:
        return isinstance(self._backend.translate(exc), ConnectionLost)

    def _connect_error(self, exc: Exception) -> DatabaseError:
        """The error of a connect that failed: always an `OperationalError` naming the target
        (host, port, database and user; the file for SQLite), never the password. Also called
        on the worker threads of a threaded pool."""
        err = self._backend.translate(exc)
        # asyncpg's connect raises asyncio's TimeoutError: not the builtin one before 3.11
        if isinstance(exc, TIMEOUT_ERRORS) and "connect_timeout" in self._backend.options:
            detail = (
                f"no connection within connect_timeout="
                f"{self._backend.options['connect_timeout']:g}s ({type(exc).__name__})"
            )
        elif err is None:
            detail = type(exc).__name__  # not the driver's: its text may not be safe to show
        else:
            detail = str(err)
        tls = _tls_cause(exc)
        if tls is not None and str(tls) not in detail:
            # aiomysql says only "Can't connect to MySQL server" for a certificate that fails
            detail += f" ({type(tls).__name__}: {tls})"
        return OperationalError(
            f"could not connect to {self._backend.target()}: {detail}", orig=exc
        )

    async def _connect_translated(self) -> Connection:
        try:
            return await self._backend.connect()
        except AsyncifyError:
            raise
        except Exception as exc:
            raise self._connect_error(exc) from exc

    def _require_pool(self) -> ConnectionPool | ThreadedConnectionPool:
        pool = self._pool
        if pool is None:
            raise OperationalError(
                f"the database {self.url} is not connected; use `async with Database(...) as "
                "db:` or `await db.connect()` first"
            )
        return pool

    # -- pinning ----------------------------------------------------------------------------

    def _pin(self) -> _Pin | None:
        pin = _PINS.get().get(self)
        if pin is None or pin.task is not current_task():
            return None
        return pin

    def _translate(self, exc: Exception, conn: Connection | None) -> BaseException:
        if conn is not None:
            pin = self._pin()
            if pin is not None and pin.conn is conn and pin.depth > 0:
                conn.failed_in_transaction = True
        err = exc if isinstance(exc, AsyncifyError) else self._backend.translate(exc)
        if err is None:
            # not an error the driver reports: it failed in the middle of its own work (a
            # parameter or a result value it could not encode, decode or convert). A native
            # async connection may then be halfway through a result: never reuse it.
            if conn is not None and not conn.cancel_safe:
                conn.broken = True
                if conn.driver_closed():  # closed under it (by disconnect(), say)
                    return ConnectionLost(
                        f"the connection was closed during the operation "
                        f"({type(exc).__name__}: {exc})",
                        orig=exc,
                    )
            if not isinstance(exc, (ValueError, ArithmeticError)):
                return exc
            err = ProgrammingError(
                f"a value could not be sent to or read from the database: "
                f"{type(exc).__name__}: {exc}",
                orig=exc,
            )
        if conn is not None and (isinstance(err, ConnectionLost) or stale_plan(exc)):
            conn.broken = True
        return err

    async def _run(
        self, op: Callable[..., Awaitable[R]], query: CompiledQuery | None, *args: Any
    ) -> R:
        pin = self._pin()
        if pin is not None:
            return await self._on_pin(pin, op, *args)
        await checkpoint_if_cancelled()  # called cancelled: no statement is sent
        pool = self._require_pool()
        if pool.threaded and query is not None:
            try:
                method = _SESSION_METHODS[op]
                if method == "execute_many":
                    sent: tuple[Any, ...] = (query.text, args[1])
                else:
                    sent = (*query.driver_args(args[1]), *args[2:])
                result: R = await pool.run_unpinned(method, *sent)  # type: ignore[union-attr]
            except Exception as exc:
                err = self._translate(exc, None)
                if err is exc:
                    raise
                raise err from exc
            return result
        conn = pool.acquire_idle()  # the usual case, without an await
        if conn is None:
            conn = await pool.acquire()
        try:
            try:
                return await op(conn, *args)
            except Exception as exc:
                err = self._translate(exc, conn)
                if err is exc:
                    raise
                # (a pool closed meanwhile: disconnect() closed it under the statement)
                if not (
                    (isinstance(err, ConnectionLost) and _found_dead(conn, pool)) or stale_plan(exc)
                ):
                    raise err from exc
            except BaseException:
                _cut_short(conn)
                raise
        finally:
            if not pool.release_now(conn):
                await pool.release(conn)
        # The pooled connection was found dead before this statement could run on it (the
        # server killed it while it was idle), or its prepared statement was stale (see
        # `_stale_plan`: refused before it ran): retry once on a fresh connection.
        await pool.drop_idle()
        conn = await pool.acquire(fresh=True)
        try:
            return await self._on(conn, op, *args)
        finally:
            await pool.release(conn)

    async def _on_pin(self, pin: _Pin, op: Callable[..., Awaitable[R]], *args: Any) -> R:
        """`_on` the connection *pin* holds. The first statement of a block (a transaction's
        ``BEGIN``, or whatever a `db.connection()` block runs first) that finds its pooled
        connection dead moves the block to a fresh one: nothing has run on it, so nothing is
        lost (the server killed it while it was idle in the pool)."""
        if not pin.untouched:
            return await self._on(pin.conn, op, *args)
        pin.untouched = False
        try:
            return await self._on(pin.conn, op, *args)
        except ConnectionLost:
            if not _found_dead(pin.conn, pin.pool):
                raise
        await self._repin(pin)
        return await self._on(pin.conn, op, *args)

    async def _repin(self, pin: _Pin) -> None:
        """Move *pin* to a fresh connection, its own having been found dead before anything
        ran on it (the idle ones likely are too: they are closed)."""
        pool, dead = pin.pool, pin.conn
        await pool.drop_idle()
        pin.conn = await pool.acquire(fresh=True)
        await pool.release(dead)

    async def _on(self, conn: Connection, op: Callable[..., Awaitable[R]], *args: Any) -> R:
        await checkpoint_if_cancelled()  # called cancelled: no statement is sent
        if conn.interrupted:
            raise _discarded()
        if conn.rolled_back:
            raise OperationalError(
                "the server rolled back this transaction (after a deadlock, say); no statement "
                "runs in it any more: leave the `db.transaction()` block, and run it again"
            )
        try:
            return await op(conn, *args)
        except Exception as exc:
            err = self._translate(exc, conn)
            await self._note_rollback(conn, exc, err)
            if err is exc:
                raise
            raise err from exc
        except BaseException:
            _cut_short(conn)
            raise

    async def _note_rollback(self, conn: Connection, exc: Exception, err: BaseException) -> None:
        """Mark *conn* `rolled_back` when the driver error *exc* (translated: *err*) of a
        statement in this task's transaction on it came with the server's rollback of that
        whole transaction (a MySQL deadlock): the rest of the block must not run (and commit)
        outside a transaction, and its end must not pass for a commit."""
        pin = self._pin()
        if (
            pin is None
            or pin.conn is not conn
            or pin.depth == 0
            or not isinstance(err, OperationalError)
            or isinstance(err, ConnectionLost)
        ):
            return

        async def ask(sql: str) -> Any:
            query = compile_query(sql, self._backend.dialect, self._backend.style)
            return await self._on(conn, _fetch_val, query, (), 0)

        if await self._backend.ends_transaction(exc, ask):
            conn.rolled_back = True

    # -- queries ----------------------------------------------------------------------------

    def _compile(self, sql: str, params: Params) -> tuple[CompiledQuery, tuple[Any, ...]]:
        backend = self._backend
        query = compile_query(sql, backend.dialect, backend.style)
        if params is None and not query.names:  # nothing to bind (or to check)
            return query, ()
        return query, query.bind(params)

    @overload
    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]: ...
    @overload
    async def fetch_all(self, sql: str, params: Params = None, *, as_: type[T]) -> list[T]: ...
    async def fetch_all(
        self, sql: str, params: Params = None, *, as_: type[Any] | None = None
    ) -> list[Any]:
        """Every row of the result, as `Row` objects (or *as_* instances).

        >>> rows = await db.fetch_all("select id, name from users where age > :age", {"age": 18})
        """
        query, args = self._compile(sql, params)
        rows = await self._run(_fetch_all, query, query, args)
        if as_ is not None:
            return [convert_row(r, as_) for r in rows]
        return rows

    @overload
    async def fetch_one(self, sql: str, params: Params = None) -> Row | None: ...
    @overload
    async def fetch_one(self, sql: str, params: Params = None, *, as_: type[T]) -> T | None: ...
    async def fetch_one(
        self, sql: str, params: Params = None, *, as_: type[Any] | None = None
    ) -> Any:
        """The first row of the result, or None when there is none."""
        query, args = self._compile(sql, params)
        row = await self._run(_fetch_one, query, query, args)
        if row is not None and as_ is not None:
            return convert_row(row, as_)
        return row

    async def fetch_val(self, sql: str, params: Params = None, *, column: int = 0) -> Any:
        """One value: *column* of the first row, or None when there is no row."""
        _check_column(column)
        query, args = self._compile(sql, params)
        try:
            return await self._run(_fetch_val, query, query, args, column)
        except IndexError as exc:  # the drivers' records raise a bare IndexError
            raise _no_column(column, exc) from exc

    async def execute(self, sql: str, params: Params = None) -> int:
        """Run one statement; return how many rows it changed (-1 when the driver cannot say)."""
        query, args = self._compile(sql, params)
        return await self._run(_execute, query, query, args)

    async def execute_many(self, sql: str, params: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement once per parameter mapping, all or nothing.

        Outside a transaction the batch runs in one of its own, so a failure applies none of
        it (and SQLite writes it with one commit instead of one per row); inside one it runs
        in a savepoint, so a failure undoes the whole batch and the transaction goes on.
        """
        if isinstance(params, Mapping) or not isinstance(params, Sequence):
            raise ProgrammingError(
                "execute_many() takes a sequence of parameter mappings, one per execution"
            )
        backend = self._backend
        query = compile_query(sql, backend.dialect, backend.style)
        args = [query.bind(p) for p in params]
        if not args:
            return
        # a transaction of its own, or a savepoint in the caller's: a row that fails undoes
        # the rows before it (the drivers run one statement per row, or MySQL's one
        # multi-row INSERT), and on PostgreSQL the caller's transaction is not aborted
        async with self.transaction():
            await self._run(_execute_many, query, query, args)

    @overload
    def iterate(
        self, sql: str, params: Params = None, *, batch_size: int = 500
    ) -> AsyncGenerator[Row, None]: ...
    @overload
    def iterate(
        self, sql: str, params: Params = None, *, batch_size: int = 500, as_: type[T]
    ) -> AsyncGenerator[T, None]: ...
    def iterate(
        self,
        sql: str,
        params: Params = None,
        *,
        batch_size: int = 500,
        as_: type[Any] | None = None,
    ) -> AsyncGenerator[Any, None]:
        """Stream the rows of a large result, *batch_size* at a time (bounded memory).

        PostgreSQL and MySQL use server-side cursors; the connection is held until the loop
        ends. Close an iteration you leave early with ``contextlib.aclosing``::

            async with aclosing(db.iterate("select * from events")) as rows:
                async for row in rows:
                    ...

        Inside ``db.transaction()`` the loop body's statements belong to the transaction; in a
        ``db.connection()`` block without one, each commits on its own, as it would without
        the iteration, however the loop ends.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ProgrammingError(f"batch_size must be a whole number >= 1, not {batch_size!r}")
        # PostgreSQL's FETCH, asyncpg and sqlite3 take a 32-bit count: a larger batch is the
        # largest one they take (the MySQL drivers take any), so every backend streams alike
        batch_size = min(batch_size, _MAX_BATCH)
        query, args = self._compile(sql, params)
        return self._iterate(query, args, batch_size, as_)

    async def _iterate(
        self,
        query: CompiledQuery,
        args: tuple[Any, ...],
        batch_size: int,
        as_: type[Any] | None,
    ) -> AsyncGenerator[Any, None]:
        await checkpoint_if_cancelled()  # called cancelled: no statement is sent
        pin = self._pin()
        pool: ConnectionPool | ThreadedConnectionPool | None = None
        movable = False  # a pinned connection that nothing has used yet (see `_on_pin`)
        if pin is not None:
            if pin.conn.interrupted:
                raise _discarded()
            conn = pin.conn
            home = pin.pool
            in_tx = pin.depth > 0
            movable, pin.untouched = pin.untouched, False
        else:
            home = pool = self._require_pool()
            in_tx = False
        for attempt in range(2):
            if pool is not None:
                conn = await pool.acquire(fresh=attempt > 0)
            retry = False
            try:
                batches = conn.iterate(query, args, batch_size, in_tx, pin is not None)
                async with aclosing(batches):
                    started = False
                    try:
                        async for batch in batches:
                            started = True
                            for row in batch:
                                yield row if as_ is None else convert_row(row, as_)
                    except Exception as exc:
                        err = self._translate(exc, conn)
                        # found dead before its first rows (the server killed it while it
                        # was idle in the pool): once more on a fresh one, as a plain query
                        retry = (
                            attempt == 0
                            and not started
                            and isinstance(err, ConnectionLost)
                            and (pool is not None or movable)
                            and _found_dead(conn, home)
                        )
                        if not retry:
                            await self._note_rollback(conn, exc, err)  # (a locking read's)
                            if err is exc:
                                raise
                            raise err from exc
            except BaseException as exc:
                # cancelled in the middle of an operation: the connection's state is unknown.
                # (A loop left early closes the iteration with GeneratorExit, between
                # operations.)
                if not isinstance(exc, (Exception, GeneratorExit)):
                    _cut_short(conn)
                raise
            finally:
                if pool is not None:
                    await pool.release(conn)
            if not retry:
                return
            if pool is not None:
                await pool.drop_idle()
            elif pin is not None:
                await self._repin(pin)
                conn = pin.conn

    # -- transactions and pinned connections ----------------------------------------------

    def transaction(
        self, *, isolation: IsolationLevel | None = None, read_only: bool = False
    ) -> Transaction:
        """A transaction: ``async with db.transaction():`` or ``@db.transaction()``.

        Commits when the block ends normally; rolls back on an exception *and* on
        cancellation. Nested transactions become savepoints. *isolation* is one of
        ``read_uncommitted``, ``read_committed``, ``repeatable_read``, ``serializable``.
        """
        return Transaction(self, isolation=isolation, read_only=read_only)

    def connection(self) -> DatabaseConnection:
        """Pin one connection to this task: ``async with db.connection() as conn:``.

        Inside the block every query of this task on this database (``db.fetch_all`` as well
        as ``conn.fetch_all``) uses that connection; ``conn.raw`` is the driver's connection.
        """
        return DatabaseConnection(self)

    async def _acquire_pin(
        self, *, fresh: bool = False
    ) -> tuple[_Pin, contextvars.Token[Mapping[Database, _Pin]]]:
        pool = self._require_pool()
        conn = await pool.acquire(fresh=fresh)
        pin = _Pin(current_task(), conn, pool)
        pins = dict(_PINS.get())
        pins[self] = pin
        return pin, _PINS.set(pins)

    async def _release_pin(
        self, pin: _Pin, token: contextvars.Token[Mapping[Database, _Pin]]
    ) -> None:
        try:
            _PINS.reset(token)
        except ValueError:  # reset from another context: drop our entry instead
            pins = dict(_PINS.get())
            pins.pop(self, None)
            _PINS.set(pins)
        # back to its own pool, closed or not: a closing pool closes it, and `disconnect`
        # stops waiting for it (never into the pool of a later `connect`)
        await pin.pool.release(pin.conn)


async def _fetch_all(conn: Connection, query: CompiledQuery, args: tuple[Any, ...]) -> list[Row]:
    return await conn.fetch_all(query, args)


async def _fetch_one(conn: Connection, query: CompiledQuery, args: tuple[Any, ...]) -> Row | None:
    return await conn.fetch_one(query, args)


_MAX_BATCH = 2**31 - 1


def _cut_short(conn: Connection) -> None:
    """*conn*'s operation was cancelled midway: unless the connection is cancel-safe (its
    thread finishes the call), its state is unknown, so it is discarded, and nothing more
    runs on it, not even the rest of the transaction it is in (see `_discarded`)."""
    if not conn.cancel_safe:
        conn.broken = conn.interrupted = True


def _found_dead(conn: Connection, pool: ConnectionPool | ThreadedConnectionPool) -> bool:
    """Whether *conn*, lost, was lost while idle in *pool* (the server killed it there), so
    that the statement which found it dead can run on a fresh one: it came from the pool (a
    fresh connection lost at once is no idle kill), and the pool is not closing (disconnect()
    closing it under the statement is no idle kill either)."""
    return conn.reused and not pool.closed


def _discarded() -> ConnectionLost:
    """The error of a statement on a pinned connection whose earlier operation was cancelled
    midway: neither the rest of its transaction nor the commit may run on it (the server
    rolls the transaction back when the connection is closed)."""
    return ConnectionLost(
        "an earlier operation on this connection was cancelled midway and left it in an "
        "unknown state: the connection is discarded, and with it the transaction or session "
        "of this block; leave the block and run it again"
    )


def _check_column(column: object) -> None:
    """Refuse a *column* that is not an index: asyncpg's records took a name, the other
    drivers' rows raised a bare ``TypeError``."""
    if isinstance(column, bool) or not isinstance(column, int):
        raise ProgrammingError(
            f"fetch_val(column={column!r}): column is the index of a column of the result (an "
            "int); for a column by name, use (await fetch_one(...))[name]"
        )


def _no_column(column: int, exc: IndexError) -> ProgrammingError:
    return ProgrammingError(
        f"fetch_val(column={column}): the result has no column {column} "
        f"({type(exc).__name__}: {exc})",
        orig=exc,
    )


async def _fetch_val(
    conn: Connection, query: CompiledQuery, args: tuple[Any, ...], column: int
) -> Any:
    return await conn.fetch_val(query, args, column)


async def _execute(conn: Connection, query: CompiledQuery, args: tuple[Any, ...]) -> int:
    return await conn.execute(query, args)


async def _execute_many(
    conn: Connection, query: CompiledQuery, args: list[tuple[Any, ...]]
) -> None:
    await conn.execute_many(query, args)


async def _run_statement(conn: Connection, statement: str) -> None:
    await conn.run(statement)


_SESSION_METHODS: dict[Callable[..., Awaitable[Any]], str] = {
    _fetch_all: "fetch_all",
    _fetch_one: "fetch_one",
    _fetch_val: "fetch_val",
    _execute: "execute",
    _execute_many: "execute_many",
}


class Transaction:
    """A transaction (or savepoint, when nested) on the current task's connection.

    Use it as ``async with db.transaction():`` or as a decorator ``@db.transaction()``
    (each call then runs in a transaction of its own).
    """

    def __init__(
        self, db: Database, *, isolation: IsolationLevel | None = None, read_only: bool = False
    ) -> None:
        if isolation is not None and isolation not in ISOLATION_LEVELS:
            raise ConfigError(
                f"invalid isolation level {isolation!r}; accepted: {', '.join(ISOLATION_LEVELS)}"
            )
        self._db = db
        self._isolation: IsolationLevel | None = isolation
        self._read_only = bool(read_only)
        self._pin: _Pin | None = None
        self._token: contextvars.Token[Mapping[Database, _Pin]] | None = None
        self._savepoint: str | None = None
        self._after: list[str] = []
        self._active = False

    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        db, isolation, read_only = self._db, self._isolation, self._read_only

        @functools.wraps(fn)
        async def in_transaction(*args: P.args, **kwargs: P.kwargs) -> R:
            async with Transaction(db, isolation=isolation, read_only=read_only):
                return await fn(*args, **kwargs)

        return in_transaction

    @property
    def connection(self) -> Connection:
        """The backend connection this transaction runs on (while it is open)."""
        if self._pin is None:
            raise ProgrammingError("the transaction is not open")
        self._pin.untouched = False  # handed out: the block keeps this one
        return self._pin.conn

    async def __aenter__(self) -> Self:
        if self._active:
            raise ProgrammingError("this transaction object is already open; create a new one")
        db = self._db
        pin = db._pin()
        if pin is None:
            pin, self._token = await db._acquire_pin()
        self._pin = pin
        if pin.depth == 0:
            pin.conn.rolled_back = pin.conn.failed_in_transaction = False
        # this object may have been used before, at another depth: nothing of that use counts
        self._savepoint = None
        self._after = []
        try:
            if pin.depth == 0:
                before, self._after = begin_statements(
                    db._dialect, self._isolation, self._read_only
                )
                # (the first, found dead, moves the block to a fresh connection: `_on_pin`)
                for statement in before:
                    await db._on_pin(pin, _run_statement, statement)
            else:
                if self._isolation is not None or self._read_only:
                    raise ProgrammingError(
                        "isolation and read_only apply to the outermost transaction only; "
                        "this one is nested (a savepoint)"
                    )
                self._savepoint = f"asyncify_sp_{pin.depth}"
                await db._on(pin.conn, _run_statement, f"SAVEPOINT {self._savepoint}")
        except BaseException as exc:
            try:
                if self._pin is pin and pin.depth == 0 and not isinstance(exc, Exception):
                    # cancelled while the transaction was being opened: on a threaded
                    # connection the statements still ran to their end (SQLite's BEGIN
                    # IMMEDIATE waits for the write lock), so the transaction may be open:
                    # never hand it on
                    await self._rollback(pin, unsure=True)
            finally:
                # (also when the rollback, which runs to its end, re-raises a cancellation
                # that came meanwhile: the connection stayed lent out for good)
                await self._unpin()
            raise
        pin.depth += 1
        self._active = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pin = self._pin
        if pin is None or not self._active:
            return
        self._active = False
        pin.depth -= 1
        try:
            if exc_type is None:
                await self._commit(pin)
            else:
                await self._rollback(pin)
        finally:
            await self._unpin()

    async def _commit(self, pin: _Pin) -> None:
        db = self._db
        if pin.conn.rolled_back:
            # the server rolled the whole transaction back (a MySQL deadlock whose error the
            # block caught): nothing of it is committed, which its end must say, as on
            # PostgreSQL; the outermost block ends it on our side too
            if self._savepoint is not None:
                raise OperationalError(
                    "the server rolled back the whole transaction this nested block is in "
                    "(after a deadlock, say): nothing of it will be committed; leave the "
                    "outer `db.transaction()` block, and run it again (see 'Errors inside a "
                    "transaction' in docs/sql.md)"
                )
            await self._rollback(pin)
            raise OperationalError(
                "the server rolled back this transaction (after a deadlock, say), and nothing "
                "of it is committed; run the block again (see 'Errors inside a transaction' "
                "in docs/sql.md)"
            )
        if self._savepoint is not None:
            try:
                aborted = await self._aborted(pin)
                if not aborted:
                    await db._on(pin.conn, _run_statement, f"RELEASE SAVEPOINT {self._savepoint}")
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    # cancelled as the block ended: its work is undone, as for a block that
                    # a cancellation ends (else the outer commit would commit it)
                    await self._rollback(pin, unsure=True)
                raise
            if aborted:
                await self._rollback(pin)  # to the savepoint: the transaction goes on
                raise OperationalError(
                    "a statement failed in this nested transaction block, and PostgreSQL "
                    "aborts a transaction on any error: the block was rolled back to its "
                    "savepoint instead of being kept (see 'Errors inside a transaction' in "
                    "docs/sql.md)"
                )
            return
        try:
            if await self._aborted(pin):
                raise OperationalError(
                    "a statement failed in this transaction, and PostgreSQL aborts a "
                    "transaction on any error: it was rolled back, nothing of it is committed "
                    "(run a statement that may fail in a nested db.transaction(), a "
                    "savepoint, to go on after its error: see 'Errors inside a transaction' "
                    "in docs/sql.md)"
                )
            await db._on(pin.conn, _run_statement, "COMMIT")
        except DatabaseError:
            await self._rollback(pin)
            raise
        except BaseException:
            # cancelled: a threaded connection's COMMIT may not have started at all (its call
            # was withdrawn before a worker thread took it), and the connection would go back
            # to the pool inside the transaction; end it (a native one is discarded anyway)
            await self._rollback(pin, unsure=True)
            raise
        await self._run_after(pin)

    async def _aborted(self, pin: _Pin) -> bool:
        """Whether PostgreSQL aborted the transaction, whose COMMIT would then roll back
        without an error. Asked only after an operation failed in it: every statement fails
        in an aborted transaction, so one tells (a failure that never reached the server, in
        a parameter's conversion say, leaves it going)."""
        conn = pin.conn
        if not conn.failed_in_transaction or self._db._dialect != "postgresql":
            return False
        try:
            await self._db._on(conn, _run_statement, "SELECT 1")
        except ConnectionLost:
            raise
        except DatabaseError:
            return True
        conn.failed_in_transaction = False
        return False

    async def _rollback(self, pin: _Pin, *, unsure: bool = False) -> None:
        """Roll back, to its end whatever cancels the caller (asyncio's own cancellation
        included: a threaded connection's ROLLBACK withdrawn before it started handed the
        connection on inside the transaction), but bounded; a failure discards the conn
        (*unsure*: the transaction may not be open, so a failure is no news)."""
        await finish(self._rollback_now(pin, unsure))

    async def _rollback_now(self, pin: _Pin, unsure: bool) -> None:
        conn = pin.conn
        if conn.broken:
            return
        if conn.rolled_back:
            if self._savepoint is not None:
                return  # the savepoint went with the transaction
            conn.rolled_back = False
        if self._savepoint is not None:
            statements = [
                f"ROLLBACK TO SAVEPOINT {self._savepoint}",
                f"RELEASE SAVEPOINT {self._savepoint}",
            ]
        else:
            statements = ["ROLLBACK", *self._after]
        pool = self._db._pool
        bound = pool.close_timeout if pool is not None else 10.0
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(bound) as scope:
                try:
                    for statement in statements:
                        await conn.run(statement)
                    # undone: on PostgreSQL, the transaction is no longer aborted (a failure
                    # before a savepoint would have refused the SAVEPOINT itself)
                    conn.failed_in_transaction = False
                except Exception:
                    conn.broken = True
                    if unsure:
                        return
                    logger.warning(
                        "rollback failed on %s; the connection is discarded (the server rolls "
                        "back when it closes)",
                        self._db.url,
                        exc_info=True,
                    )
            if scope.cancelled_caught:
                conn.broken = True

    async def _run_after(self, pin: _Pin) -> None:
        try:
            for statement in self._after:
                await self._db._on(pin.conn, _run_statement, statement)
        except BaseException:
            # the session may keep the transaction's settings (SQLite's query_only): the
            # connection's next user must not inherit them
            pin.conn.broken = True
            raise

    async def _unpin(self) -> None:
        pin, token = self._pin, self._token
        self._pin = self._token = None
        if pin is not None and token is not None:
            await self._db._release_pin(pin, token)


class DatabaseConnection:
    """One pooled connection pinned to the current task; see `Database.connection`.

    ``raw`` is the driver's connection object (for the threaded backends a blocking
    DB-API connection: offload your own calls on it with `asyncify_kit.run_sync`).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pin: _Pin | None = None
        self._token: contextvars.Token[Mapping[Database, _Pin]] | None = None

    async def __aenter__(self) -> Self:
        pin = self._db._pin()
        if pin is None:
            pin, self._token = await self._db._acquire_pin()
        self._pin = pin
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pin, token = self._pin, self._token
        self._pin = self._token = None
        if pin is not None and token is not None:
            if pin.depth:
                pin.conn.broken = True  # a transaction left open on it by hand
            await self._db._release_pin(pin, token)

    def _pinned(self) -> _Pin:
        if self._pin is None:
            raise ProgrammingError("use the connection inside `async with db.connection()`")
        return self._pin

    @property
    def raw(self) -> Any:
        """The driver's own connection object."""
        pin = self._pinned()
        pin.untouched = False  # handed out: the block keeps this connection
        return pin.conn.raw

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        """Like `Database.fetch_all`, on this connection."""
        query, args = self._db._compile(sql, params)
        return await self._db._on_pin(self._pinned(), _fetch_all, query, args)

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        """Like `Database.fetch_one`, on this connection."""
        query, args = self._db._compile(sql, params)
        return await self._db._on_pin(self._pinned(), _fetch_one, query, args)

    async def fetch_val(self, sql: str, params: Params = None, *, column: int = 0) -> Any:
        """Like `Database.fetch_val`, on this connection."""
        _check_column(column)
        query, args = self._db._compile(sql, params)
        try:
            return await self._db._on_pin(self._pinned(), _fetch_val, query, args, column)
        except IndexError as exc:
            raise _no_column(column, exc) from exc

    async def execute(self, sql: str, params: Params = None) -> int:
        """Like `Database.execute`, on this connection."""
        query, args = self._db._compile(sql, params)
        return await self._db._on_pin(self._pinned(), _execute, query, args)

    def transaction(
        self, *, isolation: IsolationLevel | None = None, read_only: bool = False
    ) -> Transaction:
        """A transaction on this connection (use it in the task that pinned it)."""
        return Transaction(self._db, isolation=isolation, read_only=read_only)


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error (a certificate that fails...) among *exc* and its causes, if any."""
    return next((c for c in causes(exc) if isinstance(c, ssl.SSLError)), None)
