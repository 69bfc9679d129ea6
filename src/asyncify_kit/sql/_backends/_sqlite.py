"""``sqlite``: the stdlib `sqlite3`, each connection on one dedicated thread.

``sqlite:///./app.db`` (relative), ``sqlite:////abs/app.db`` (absolute) and
``sqlite:///:memory:`` (one in-memory database shared by the whole `Database`: the pool
holds a single connection). Every operation is one hop to the connection's own thread.

The ``mode`` (``ro``, ``rw``, ``rwc``, ``memory``) and ``cache`` (``private``, ``shared``)
options are SQLite's URI parameters: when either differs from SQLite's default (``rwc``,
``private``) the file is opened as a URI filename, ``file:PATH?mode=ro&cache=shared``.

SQLite has no column types of its own, so values are typed by the column's *declared* type,
like the server backends: ``BOOLEAN``, ``DATE``, ``TIME``, ``TIMESTAMP``/``DATETIME``/
``TIMESTAMPTZ`` (timezone-aware, UTC), ``UUID``, ``JSON``/``JSONB``, ``DECIMAL``/``NUMERIC``.
These converters are registered with `sqlite3.register_converter` when this backend is first
used; they replace the standard library's deprecated ``date``/``timestamp`` converters.

A `datetime` parameter is sent in UTC as SQLite's own text, ``YYYY-MM-DD HH:MM:SS[.ffffff]``
(that of ``CURRENT_TIMESTAMP`` and ``datetime('now')``): SQLite compares timestamps as text.
Earlier versions sent the ISO text ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00``: rows stored so are
still read, but compare wrongly with the others (docs/sql.md gives the update).

A ``DECIMAL``/``NUMERIC`` column has SQLite's NUMERIC affinity: the text of a `Decimal` is
stored exactly only when it is an integer within 64 bits (``42``); any other is rounded to a
64-bit float, which reads back with at most 15 significant digits, its scale lost. A
column declared ``DECIMAL TEXT`` (TEXT affinity, read by the ``DECIMAL`` converter) keeps
the exact text.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import sqlite3
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any, ClassVar, cast
from urllib.parse import quote

from ..._executor import current_job
from ..._offload import post_to_sticky
from ...exceptions import (
    CallCancelled,
    ConfigError,
    ConnectionLost,
    DatabaseError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    QueryTimeout,
)
from .._compiler import ParamStyle
from .._row import Row
from .._types import Json, as_utc, encode_json, to_utc_naive
from .base import Backend, Connection, SyncSession, ThreadedConnection

__all__ = ["SqliteBackend"]


def _to_datetime(raw: bytes) -> _dt.datetime:
    """A timestamp column's value: SQLite's own text (what the facade writes), or ISO text with
    a ``T``, an offset or a ``Z`` (earlier versions', other writers'), as aware UTC."""
    text = raw.decode()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return as_utc(_dt.datetime.fromisoformat(text))


def _to_date(raw: bytes) -> _dt.date:
    """A ``DATE`` column's value; a timestamp stored there (the facade writes a `datetime`
    as one, whatever the column) is read as its UTC date, as PostgreSQL and MySQL store a
    timestamp given for a date (it made the row unreadable: "cannot be read as DATE")."""
    if len(raw) > 10 and raw[10:11] in (b"T", b" "):
        return _to_datetime(raw).date()
    return _dt.date.fromisoformat(raw.decode())


def _to_bool(raw: bytes) -> bool:
    return raw not in (b"0", b"", b"false", b"FALSE", b"f")


_CONVERTERS: dict[str, Any] = {
    "BOOLEAN": _to_bool,
    "BOOL": _to_bool,
    "DATE": _to_date,
    "TIME": lambda raw: _dt.time.fromisoformat(raw.decode()),
    "TIMESTAMP": _to_datetime,
    "TIMESTAMPTZ": _to_datetime,
    "DATETIME": _to_datetime,
    "UUID": lambda raw: uuid.UUID(raw.decode()) if len(raw) != 16 else uuid.UUID(bytes=raw),
    "JSON": lambda raw: json.loads(raw),
    "JSONB": lambda raw: json.loads(raw),
    "DECIMAL": lambda raw: Decimal(raw.decode()),
    "NUMERIC": lambda raw: Decimal(raw.decode()),
}
_registered = False


def _checked(name: str, fn: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """*fn*, failing with a `ValueError` that says which declared type did not match the
    stored value (SQLite stores anything in any column; the `Database` reports it as a
    `ProgrammingError`)."""

    def convert(raw: bytes) -> Any:
        try:
            return fn(raw)
        except (ValueError, ArithmeticError) as exc:
            raise ValueError(
                f"a value stored in a column declared {name} cannot be read as {name}: "
                f"{raw[:40]!r}; cast the column in the query (cast(... as text)) to read "
                "it as it is stored"
            ) from exc

    return convert


def _register_converters() -> None:
    global _registered
    if not _registered:
        for name, fn in _CONVERTERS.items():
            sqlite3.register_converter(name, _checked(name, fn))
        _registered = True


def _adapt_value(value: Any) -> Any:
    if isinstance(value, (dict, Json)):
        return encode_json(value)
    if isinstance(value, _dt.datetime):
        # SQLite compares timestamps as text: sent as SQLite's own format (that of
        # CURRENT_TIMESTAMP and datetime('now'), and of sqlite3's adapter), in UTC, naive
        # values being UTC as on the servers. The ISO form with "T" and "+00:00" sent before
        # sorted after every same-day value in that format (' ' < 'T')
        return to_utc_naive(value).isoformat(sep=" ")
    if isinstance(value, (_dt.date, _dt.time, uuid.UUID, Decimal)):
        return value.isoformat() if isinstance(value, (_dt.date, _dt.time)) else str(value)
    if isinstance(value, list):
        return encode_json(value)
    if isinstance(value, float) and value != value:
        # sqlite3 would bind it, and SQLite store NULL in its place
        raise ProgrammingError(
            "a query parameter is NaN, which SQLite cannot store (it would store NULL "
            "instead); send None for NULL"
        )
    return value


#: sent as they are; a `float` too, unless it is NaN (see `_SqliteSession.adapt`)
_PLAIN = frozenset((int, str, bytes, type(None), bool))

#: SQLite's own defaults for the URI parameters: with these, the path is opened as it is
_DEFAULT_MODE = "rwc"
_DEFAULT_CACHE = "private"


def _uri_params(options: dict[str, Any]) -> list[str]:
    """``mode=...``/``cache=...`` for the options that differ from SQLite's defaults."""
    return [
        f"{name}={options[name]}"
        for name, default in (("mode", _DEFAULT_MODE), ("cache", _DEFAULT_CACHE))
        if options.get(name, default) != default
    ]


def sqlite_target(path: str, options: dict[str, Any]) -> tuple[str, bool]:
    """What `sqlite3.connect` opens for *path* and the ``mode``/``cache`` options, and whether
    it is a URI filename: *path* itself unless an option differs from SQLite's default, else
    ``file:PATH?mode=...&cache=...`` (the path percent-encoded, so a ``?``, ``#`` or ``%`` in
    a file name stays part of it)."""
    params = _uri_params(options)
    if path.startswith("file:"):  # a URI filename already (sqlite:///file:app.db)
        if not params:
            return path, True
        return path + ("&" if "?" in path else "?") + "&".join(params), True
    if not params:
        return path, False
    name = ":memory:" if path == ":memory:" else quote(path, safe="/")
    return f"file:{name}?" + "&".join(params), True


_WRITE_WORD = re.compile(r"\b(?:insert|update|delete|replace)\b", re.IGNORECASE)


def _reads(text: str) -> bool:
    """Whether *text* only reads (``SELECT``, ``VALUES``, ``EXPLAIN``, a ``WITH`` naming no
    ``INSERT``, ``UPDATE``, ``DELETE`` or ``REPLACE``): it needs no write lock, so it does not
    wait in turn. Anything else may write (a read taken for a write only waits its turn)."""
    head = text.lstrip()[:7].upper()
    if head.startswith(("SELECT", "VALUES", "EXPLAIN")):
        return True
    return head.startswith("WITH") and _WRITE_WORD.search(text) is None


#: how often the first writer in line tries the write lock again when no connection of this
#: process let it go meanwhile (the holder is another process's): after 1 ms, then twice as
#: long each time, up to every 5 ms (see `_SqliteSession._in_turn`)
_LOCK_POLL_FIRST = 0.001
_LOCK_POLL_MAX = 0.005
#: how often a writer waiting behind others looks whether its caller left
_TURN_SLICE = 0.02


class _Turns:
    """The connections of this process waiting for the write lock of one database file,
    first come first served (see `_SqliteSession._in_turn`). Each waits on an event of its
    own: only the first in line is woken when the lock may be free."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: deque[threading.Event] = deque()

    def join(self) -> threading.Event:
        me = threading.Event()
        with self.lock:
            self.queue.append(me)
            if self.queue[0] is me:
                me.set()
        return me

    def leave(self, me: threading.Event) -> None:
        with self.lock:
            first = self.queue[0] is me
            self.queue.remove(me)
            if first and self.queue:
                self.queue[0].set()

    def release(self) -> None:
        """A connection of this process let the write lock go: the first in line tries it
        now, rather than after its pause."""
        if self.queue:
            with self.lock:
                if self.queue:
                    self.queue[0].set()


#: per database file (its target, as opened); kept while a session of it lives
_turns: weakref.WeakValueDictionary[str, _Turns] = weakref.WeakValueDictionary()
_turns_lock = threading.Lock()


def _turns_of(target: str) -> _Turns:
    with _turns_lock:
        turns = _turns.get(target)
        if turns is None:
            turns = _turns[target] = _Turns()
        return turns


class _SqliteSession(SyncSession):
    def __init__(self, path: str, options: dict[str, Any], *, memory: bool = False) -> None:
        super().__init__()
        self.path = path
        self.options = options
        self.target, self.uri = sqlite_target(path, options)
        self.turns = _Turns()  # this file's: set by `connect` (on the thread: realpath)
        # the journal mode is stored in the file: a read-only connection cannot change it,
        # and an in-memory database has its own
        self.set_journal = not memory and options.get("mode") != "ro" and path != ":memory:"
        self.deadline = 0.0
        self.timed_out = False
        # held while the connection closes: `terminate` (on another thread) interrupts it
        # only outside a close, as sqlite3 does not guard a connection closed under a call
        self.close_lock = threading.Lock()
        self.close_queued = False  # a close is queued on its thread (`terminate`)

    def close(self) -> None:
        with self.close_lock:
            conn = self.conn
            if conn is not None:
                # end the transaction and the iterations first: sqlite3 closes with
                # sqlite3_close_v2, which leaves a connection with a statement still
                # referenced (a cursor kept alive by a traceback, say) open as a "zombie",
                # its transaction and write lock held until that statement is collected
                for cursor in self._cursors.values():
                    with contextlib.suppress(sqlite3.Error):
                        cursor.close()
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
                    self.turns.release()
            super().close()

    def connect(self) -> None:
        opts = self.options
        self.turns = _turns_of(self.target if self.uri else os.path.realpath(self.target))
        conn = sqlite3.connect(
            self.target,
            timeout=float(opts["busy_timeout"]),
            detect_types=sqlite3.PARSE_DECLTYPES,
            isolation_level=None,
            check_same_thread=False,
            uri=self.uri,
        )
        try:
            if opts["foreign_keys"]:
                conn.execute("PRAGMA foreign_keys = ON")
            if self.set_journal and opts["journal_mode"]:
                self._set_journal_mode(conn, opts["journal_mode"], float(opts["busy_timeout"]))
            conn.set_progress_handler(self._progress, 1000)
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    @staticmethod
    def _set_journal_mode(conn: sqlite3.Connection, mode: str, patience: float) -> None:
        """Switch the file to *mode* unless it is in it already (the mode is stored in the
        file); a connection opened at the same moment may hold the lock, so retry a while."""
        deadline = time.monotonic() + patience
        while True:
            current = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(current).lower() == mode:
                return
            try:
                conn.execute(f"PRAGMA journal_mode = {mode}")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _progress(self) -> int:
        """Interrupt the statement when it runs past its deadline or its caller left."""
        if self.deadline and time.monotonic() > self.deadline:
            self.timed_out = True
            return 1
        job = current_job()
        return 1 if job is not None and job.cancel_requested else 0

    def _arm(self) -> None:
        limit = self.options["statement_timeout"]
        self.timed_out = False
        self.deadline = time.monotonic() + limit if limit else 0.0

    def _execute(self, cur: Any, text: str, args: Sequence[Any] | None) -> None:
        self._arm()
        if self.conn.in_transaction or _reads(text):
            super()._execute(cur, text, args)
        else:
            # a statement that may write, on its own: it waits for the write lock in turn
            # with the transactions (else, in SQLite's own wait, they would starve it)
            run = super()._execute
            try:
                self._in_turn(lambda: run(cur, text, args))
            finally:
                self.turns.release()

    def adapt(self, args: Sequence[Any]) -> Sequence[Any]:
        for value in args:
            kind = type(value)
            if kind not in _PLAIN and (kind is not float or value != value):
                return tuple(_adapt_value(v) for v in args)
        return args

    def call(self, method: str, *args: Any) -> Any:
        if self.closing and self.conn is not None:
            # thrown away (`_SqliteConnection.terminate`) while still open: close it here, on
            # its own thread, which rolls back an open transaction; the call then fails
            with contextlib.suppress(sqlite3.Error):
                self.close()
        return super().call(method, *args)

    @contextlib.contextmanager
    def _cancellable(self) -> Iterator[None]:
        """Report an interrupted statement by why it was interrupted: `ConnectionLost` for a
        connection thrown away meanwhile, `QueryTimeout` past ``statement_timeout``,
        `CallCancelled` for a cancelled caller (an interrupt is never a timeout unless the
        deadline passed)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if str(exc) != "interrupted":
                raise
            if self.closing:
                raise ConnectionLost(
                    "the connection was closed during the statement", orig=exc
                ) from exc
            if self.timed_out:
                raise QueryTimeout(
                    f"the statement ran longer than statement_timeout="
                    f"{self.options['statement_timeout']}s and was interrupted",
                    orig=exc,
                ) from exc
            job = current_job()
            if job is not None and job.cancel_requested:
                raise CallCancelled(
                    "the caller was cancelled; the statement was interrupted"
                ) from exc
            raise

    def fetch_all(self, text: str, args: Sequence[Any] | None) -> list[Row]:
        with self._cancellable():
            return super().fetch_all(text, args)

    def fetch_val(self, text: str, args: Sequence[Any] | None, column: int) -> Any:
        with self._cancellable():
            return super().fetch_val(text, args, column)

    def fetch_one(self, text: str, args: Sequence[Any] | None) -> Row | None:
        with self._cancellable():
            return super().fetch_one(text, args)

    def execute(self, text: str, args: Sequence[Any] | None) -> int:
        with self._cancellable():
            cur = self.conn.cursor()
            try:
                self._execute(cur, text, args)
                if cur.description is not None:
                    # sqlite3 counts no rows for a query: count them, as the servers do
                    return len(cur.fetchall())
                return int(cur.rowcount)
            finally:
                cur.close()

    def execute_many(self, text: str, args: Sequence[Sequence[Any]]) -> None:
        with self._cancellable():
            super().execute_many(text, args)

    def open_cursor(
        self,
        cursor_id: int,
        text: str,
        args: Sequence[Any] | None,
        in_transaction: bool,
        shared: bool,
    ) -> None:
        with self._cancellable():
            super().open_cursor(cursor_id, text, args, in_transaction, shared)

    def fetch_batch(self, cursor_id: int, size: int) -> list[Row]:
        self._arm()  # statement_timeout bounds each batch, not the whole iteration
        with self._cancellable():
            return super().fetch_batch(cursor_id, size)

    def run(self, statement: str) -> None:
        self._arm()
        with self._cancellable():
            if statement.startswith("BEGIN"):
                self._begin(statement)
            elif statement == "ROLLBACK" and not self.conn.in_transaction:
                # over already: SQLite rolled it back itself (an interrupted write, a full
                # disk), or a cancelled BEGIN never began it; the connection is fine
                return
            else:
                conn = self.conn
                began = conn.in_transaction
                try:
                    conn.execute(statement)
                finally:
                    if began and not conn.in_transaction:  # COMMIT, ROLLBACK
                        self.turns.release()

    def _begin(self, statement: str) -> None:
        conn = self.conn
        self._in_turn(lambda: conn.execute(statement))

    def _in_turn(self, attempt: Callable[[], object]) -> None:
        """Run *attempt* (a ``BEGIN``, or a statement that may write outside a transaction),
        waiting for the write lock here rather than in SQLite's busy handler. That one cannot
        be stopped by its caller's cancellation (no progress handler runs while it sleeps),
        and after its first quarter second it looks at the lock only every 100 ms, so writers
        that came later take the lock first. Here the connections of this process that wait
        for one file's write lock take turns in the order they came: the first of them tries
        the lock again as soon as another of them lets it go (`_Turns.release`), else every
        few milliseconds, up to ``busy_timeout``; a caller that left or a connection thrown
        away stops its wait at once (within 20 ms while it is not yet first). *attempt* must
        do nothing when it fails with "database is locked"."""
        conn = self.conn
        patience = float(self.options["busy_timeout"])
        if patience <= 0:
            attempt()
            return
        deadline = time.monotonic() + patience
        turns = self.turns
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            # try at once, even with others in line: a lock that is free now is taken
            # rather than left idle until the first in line wakes up; one that is not, in
            # turn
            try:
                attempt()
                return
            except sqlite3.OperationalError as exc:
                self._keep_waiting(exc, deadline)
            me = turns.join()
            try:
                while turns.queue[0] is not me:
                    me.wait(min(self._keep_waiting(None, deadline), _TURN_SLICE))
                pause = _LOCK_POLL_FIRST
                while True:
                    me.clear()
                    try:
                        attempt()
                        return
                    except sqlite3.OperationalError as exc:
                        left = self._keep_waiting(exc, deadline)
                    # until a connection of ours lets the lock go, or the pause ends (for
                    # another process's)
                    me.wait(min(pause, left))
                    pause = min(pause * 2, _LOCK_POLL_MAX)
            finally:
                turns.leave(me)
        finally:
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(patience * 1000)}")  # as connect()
            except sqlite3.Error:
                # (interrupted by a `terminate` just then, say) the connection would keep
                # waiting for no lock: throw it away, as its next call does with `closing`
                self.closing = True

    def _keep_waiting(self, exc: sqlite3.OperationalError | None, deadline: float) -> float:
        """The seconds left to wait for the write lock, or raise: *exc* itself when it is not
        "database is locked" or ``busy_timeout`` has passed, `CallCancelled` for a caller that
        left, `ConnectionLost` for a connection thrown away meanwhile."""
        left = deadline - time.monotonic()
        if exc is not None and str(exc) != "database is locked":
            raise exc
        if left <= 0:
            if exc is None:  # still behind others of this process: as SQLite would say
                raise sqlite3.OperationalError("database is locked")
            raise exc
        job = current_job()
        if job is not None and job.cancel_requested:
            raise CallCancelled(
                "the caller was cancelled while its statement waited for the write lock; "
                "the statement did not run"
            ) from exc
        if self.closing:
            raise ConnectionLost(
                "the connection was closed while its statement waited for the write lock",
                orig=exc,
            ) from exc
        return left

    def is_closed(self) -> bool:
        return self.conn is None


class _SqliteConnection(ThreadedConnection):
    def terminate(self) -> None:
        # sqlite3 connections must not be closed from another thread while in use:
        # interrupt() is the thread-safe way to stop a statement, and `closing` makes the
        # next operation close the connection on its own thread and fail (so a transaction
        # open on it can never commit). The close is also queued on that thread now, behind
        # the statement it interrupts: else it came when the connection was collected, on
        # whatever thread dropped it last (the event loop's, say, where a close that
        # checkpoints the WAL blocks)
        session = cast("_SqliteSession", self._session)
        if session.close_queued:
            return  # thrown away already: its close is queued
        session.closing = session.close_queued = True
        if not session.close_lock.acquire(blocking=False):
            return  # closing on its thread right now: nothing left to interrupt
        try:
            conn = session.conn
            if conn is not None:
                conn.interrupt()
        finally:
            session.close_lock.release()
        if conn is not None:
            post_to_sticky(self._proxy, _close_discarded, session)

    async def close(self) -> None:
        try:
            await self._proxy.close()
        finally:
            if self._session.conn is not None:
                # the close did not run: withdrawn before its turn when its caller left
                # (`ConnectionPool` bounds a close by time) behind a call still under way.
                # Its thread stops after this, so queue the close for it first: else the
                # connection stayed open, a transaction that call began with it, and its
                # write lock with it, until the connection was collected
                post_to_sticky(self._proxy, _close_discarded, self._session)
                cast("_SqliteSession", self._session).close_queued = True
            await self._proxy.aclose()


def _close_discarded(session: _SqliteSession) -> None:
    with contextlib.suppress(sqlite3.Error):
        session.close()


#: SQLite's result code of an error in the statement itself (a syntax error, an unknown or
#: ambiguous name, a table that exists already, a wrong number of values or columns...);
#: each failure of the database or the system has a code of its own (busy, locked,
#: readonly, I/O error, interrupted, full, cannot open...)
_SQLITE_ERROR = 1

#: the messages of `_SQLITE_ERROR` that a wrong statement gets, for Python 3.10, whose
#: sqlite3 does not give the code (an error whose message is not here stays operational)
_WRONG_QUERY = re.compile(
    r"no such |near |syntax error|incomplete input|unrecognized token|ambiguous column name"
    r"|duplicate column name|wrong number of arguments to function|misuse of "
    r"|(?:table|index|view|trigger) .+ already exists$|SELECTs to the left and right of"
    r"|sub-select returns|row value misused|\d+\w* (?:ORDER|GROUP) BY term out of range"
    r"|HAVING clause on a non-aggregate query|\d+ values for \d+ columns$"
    r"|.* has \d+ columns but \d+ values were supplied$|.* has no column"
)


def _wrong_query(exc: sqlite3.OperationalError, text: str) -> bool:
    """Whether SQLite's *exc* (its message: *text*) says the statement is wrong, rather than
    that the database could not run it: `ProgrammingError`, as on the servers."""
    code = getattr(exc, "sqlite_errorcode", None)  # (Python 3.11+)
    if code is not None:
        return bool(code & 0xFF == _SQLITE_ERROR)
    return _WRONG_QUERY.match(text) is not None


class SqliteBackend(Backend):
    """The stdlib `sqlite3` on dedicated threads (one per connection)."""

    dialect: ClassVar[str] = "sqlite"
    style: ClassVar[ParamStyle] = "qmark"

    def __init__(self, url: Any, options: dict[str, Any]) -> None:
        super().__init__(url, options)
        if url.host and url.host not in ("localhost",):
            raise ConfigError(
                f"a sqlite URL names a file, not a host: {url}; write sqlite:///relative.db or "
                "sqlite:////absolute/path.db"
            )
        path = url.database or ":memory:"
        self.memory = path == ":memory:" or options.get("mode") == "memory" or "mode=memory" in path
        self.path = path
        _register_converters()

    def target(self) -> str:
        where = f"the SQLite database {self.path!r}"
        extra = _uri_params(self.options)
        return f"{where} ({', '.join(extra)})" if extra else where

    def pool_limits(self) -> tuple[int, int]:
        if self.memory:
            return 1, 1
        return super().pool_limits()

    async def connect(self) -> Connection:
        session = _SqliteSession(self.path, self.options, memory=self.memory)
        return await _SqliteConnection.open(session, sticky=True)

    def translate(self, exc: BaseException) -> DatabaseError | None:
        if not isinstance(exc, sqlite3.Error):
            if isinstance(exc, sqlite3.Warning):
                # up to Python 3.10, sqlite3 raised its Warning (no sqlite3.Error) for several
                # statements in one execute(); 3.11 raises ProgrammingError there
                return ProgrammingError(f"{type(exc).__name__}: {exc}", orig=exc)
            return None
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, sqlite3.IntegrityError):
            return IntegrityError(message, orig=exc)
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc)
            if _wrong_query(exc, text):
                return ProgrammingError(message, orig=exc)
            if "readonly database" in text and self.options.get("mode") == "ro":
                message += " (the URL opens it read-only: mode=ro)"
            return OperationalError(message, orig=exc)
        if isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError)):
            return ProgrammingError(message, orig=exc)
        return DatabaseError(message, orig=exc)
