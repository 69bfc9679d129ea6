"""What the backends of one server share: error codes, type conversions, session settings.

PostgreSQL errors are classified by SQLSTATE, MySQL/MariaDB errors by error number; each
driver module only finds the code in its own exception type and calls these.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import itertools
import json
import math
import os
import re
import ssl as _ssl
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, ClassVar

import anyio

from ..._config import BackendURL
from ..._executor import check_cancelled
from ...exceptions import (
    ConfigError,
    ConnectionLost,
    DatabaseError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    QueryTimeout,
)
from .._compiler import CompiledQuery
from .._row import Row, converted_rows, make_keys, rows_of
from .._types import Json, as_utc, encode_json, timedelta_to_time, to_utc_naive
from .base import (
    STREAM_METHODS,
    Backend,
    Connection,
    SyncSession,
    current_task,
    ending_iteration,
)

__all__ = [
    "MysqlAsyncConnection",
    "MysqlStream",
    "PgAsyncConnection",
    "PgCursor",
    "PgSyncSession",
    "libpq_options",
    "mysql_adapt",
    "mysql_connect_limit",
    "mysql_connect_timed_out",
    "mysql_converter",
    "mysql_converters",
    "mysql_error",
    "mysql_init_statements",
    "mysql_open",
    "mysql_rows",
    "mysql_session_setup",
    "mysql_shape",
    "mysql_value",
    "pg_declarable",
    "pg_error",
    "pg_session_options",
]

# -- PostgreSQL -------------------------------------------------------------------------------

_PG_PROGRAMMING = ("42", "22", "0A", "21", "26", "2B", "34", "3D", "3F", "44", "2F", "39")
_PG_LOST = ("08", "57P01", "57P02", "57P03")


def pg_error(sqlstate: str | None, message: str, exc: BaseException) -> DatabaseError:
    """The error for a PostgreSQL SQLSTATE (None: the connection failed on the client)."""
    text = f"{type(exc).__name__}: {message}"
    code = sqlstate or ""
    if code.startswith("23"):
        return IntegrityError(text, orig=exc)
    if code == "57014":
        return QueryTimeout(text, orig=exc)
    if code.startswith(_PG_LOST):
        return ConnectionLost(text, orig=exc)
    if code.startswith(_PG_PROGRAMMING):
        return ProgrammingError(text, orig=exc)
    if code:
        return OperationalError(text, orig=exc)
    return DatabaseError(text, orig=exc)


def pg_session_options(options: dict[str, Any]) -> dict[str, str]:
    """Server settings every PostgreSQL connection gets: UTC, and the statement timeout."""
    settings = {"TimeZone": "UTC"}
    if options.get("statement_timeout"):
        settings["statement_timeout"] = str(max(1, round(options["statement_timeout"] * 1000)))
    if options.get("application_name"):
        settings["application_name"] = str(options["application_name"])
    return settings


def _libpq_escape(value: str) -> str:
    """*value* for the libpq ``options`` string, which splits at unescaped white space."""
    return "".join(f"\\{c}" if c == "\\" or c.isspace() else c for c in value)


def libpq_options(settings: dict[str, str]) -> str:
    """The libpq ``options`` string (``-c name=value``) for *settings*, each value escaped
    (an ``application_name`` of two words reaches the server whole, as with asyncpg)."""
    return " ".join(f"-c {name}={_libpq_escape(value)}" for name, value in settings.items())


def libpq_connect_params(url: BackendURL, opts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The keyword arguments of a libpq connect (psycopg 3 and psycopg2), Nones dropped."""
    params: dict[str, Any] = {
        "host": url.hostname or None,  # [::1] -> ::1
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database or None,
        "sslmode": opts["ssl"],
        "sslrootcert": opts.get("sslrootcert"),
        "options": libpq_options(pg_session_options(opts)),
        **extra,
    }
    if opts.get("connect_timeout"):
        params["connect_timeout"] = max(2, math.ceil(opts["connect_timeout"]))
    return {k: v for k, v in params.items() if v is not None}


# -- MySQL / MariaDB --------------------------------------------------------------------------

_MY_INTEGRITY = {1022, 1048, 1062, 1169, 1216, 1217, 1451, 1452, 1557, 1586, 1761, 1762, 3819, 4025}
_MY_PROGRAMMING = {
    1007,
    1008,
    1050,
    1051,
    1052,  # ambiguous column
    1054,
    1060,
    1061,
    1064,
    1066,  # a table or alias named twice
    1091,
    1110,
    1136,
    1146,
    1149,
    1166,
    1193,
    1222,  # SELECTs of a UNION with different numbers of columns
    1241,  # a subquery or row of several columns where one value goes
    1242,  # a subquery of several rows where one value goes (PostgreSQL's 21000)
    1247,
    1264,
    1265,
    1292,
    1305,
    1327,
    1366,
    1367,
    1406,
    1582,
    1630,
}
_MY_TIMEOUT = {1969, 3024}
_MY_LOST = {1053, 1927, 2006, 2013, 2055, 4031, 2014}


def translate_mysql(
    exc: BaseException, driver_error: type[BaseException] | tuple[type[BaseException], ...]
) -> DatabaseError | None:
    """Translate an error of a MySQL driver (asyncmy, aiomysql, PyMySQL), or return None.

    *driver_error* is the driver's base exception class: its ``args`` are ``(errno, message)``.
    A socket or end-of-stream error, and a "closed" RuntimeError, mean the connection is lost.
    """
    if isinstance(exc, driver_error):
        args = exc.args
        code = args[0] if args and isinstance(args[0], int) else None
        message = str(args[1]) if len(args) > 1 else str(exc)
        return mysql_error(code, message, exc, type(exc).__name__)
    if isinstance(exc, (OSError, ConnectionError, EOFError)) or (
        isinstance(exc, RuntimeError) and "closed" in str(exc).lower()
    ):
        return ConnectionLost(f"{type(exc).__name__}: {exc}", orig=exc)
    return None


#: errors after which MySQL/MariaDB (InnoDB) has rolled back the whole transaction: a
#: deadlock, and a transaction holding more locks than the lock table takes
_MY_ROLLED_BACK = {1206, 1213}
#: a lock wait timeout: InnoDB rolls back the statement alone, or the whole transaction when
#: the server runs with ``innodb_rollback_on_timeout`` (read-only while it runs)
_MY_LOCK_WAIT_TIMEOUT = 1205


async def mysql_rolled_back(
    backend: Backend, exc: BaseException, ask: Callable[[str], Awaitable[Any]]
) -> bool:
    """Whether the MySQL driver exception *exc* means the server rolled back the transaction
    (it then goes on in autocommit: the rest of the block would commit statement by statement).

    For a lock wait timeout the server's ``innodb_rollback_on_timeout`` decides: read with
    *ask* at the first one, and kept on *backend*. When it cannot be read, the transaction
    counts as rolled back: a block that then ends says nothing was committed (its rollback
    makes that true), rather than committing what may have run in autocommit.
    """
    args = exc.args
    code = args[0] if args and isinstance(args[0], int) else None
    if code in _MY_ROLLED_BACK:
        return True
    if code != _MY_LOCK_WAIT_TIMEOUT:
        return False
    setting = backend.server_settings.get("innodb_rollback_on_timeout")
    if setting is None:
        try:
            value = await ask("SELECT @@innodb_rollback_on_timeout")
        except Exception:  # (not kept: the next lock wait timeout asks again)
            return True
        setting = backend.server_settings["innodb_rollback_on_timeout"] = bool(int(value))
    return bool(setting)


def mysql_error(code: int | None, message: str, exc: BaseException, kind: str) -> DatabaseError:
    """The error for a MySQL error number; *kind* is the driver's exception class name."""
    text = (
        f"{type(exc).__name__}: ({code}) {message}" if code else f"{type(exc).__name__}: {message}"
    )
    if code in _MY_INTEGRITY or kind == "IntegrityError":
        return IntegrityError(text, orig=exc)
    if code in _MY_TIMEOUT:
        return QueryTimeout(text, orig=exc)
    if code in _MY_LOST or kind == "InterfaceError":
        return ConnectionLost(text, orig=exc)
    if code in _MY_PROGRAMMING or kind in ("ProgrammingError", "DataError", "NotSupportedError"):
        return ProgrammingError(text, orig=exc)
    if kind in ("OperationalError", "InternalError"):
        return OperationalError(text, orig=exc)
    return DatabaseError(text, orig=exc)


def mysql_init_statements(options: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Session statements (and a fallback for MySQL) run on every new connection."""
    statements: list[tuple[str, str | None]] = [("SET time_zone = '+00:00'", None)]
    limit = options.get("statement_timeout")
    if limit:
        statements.append(
            (
                f"SET SESSION max_statement_time = {float(limit):.3f}",
                f"SET SESSION max_execution_time = {max(1, round(float(limit) * 1000))}",
            )
        )
    return statements


_PG_VERIFYING = ("require", "verify-ca", "verify-full")


def _pg_file(option: str | None, env: str, name: str) -> str | None:
    """A libpq certificate file: the option, else the environment variable *env*, else
    ``~/.postgresql/NAME`` when it exists."""
    if option:
        return option
    if os.environ.get(env):
        return os.environ[env]
    try:
        path = os.path.join(os.path.expanduser("~"), ".postgresql", name)
    except (RuntimeError, KeyError):  # no home directory
        return None
    return path if os.path.isfile(path) else None


def pg_check_tls(options: dict[str, Any]) -> str | None:
    """The root certificate file the PostgreSQL TLS options point to, if any, checked the
    same way for every driver (a `ConfigError`): ``sslrootcert`` names a file that exists
    (or is ``system``), and the verify modes have one. Reads the file system: call it in a
    worker thread (`Backend.make_tls_context`)."""
    root = options.get("sslrootcert")
    if root and root != "system" and not os.path.isfile(root):
        raise ConfigError(
            f"invalid sslrootcert {root!r}: no such file (a PEM file of CA certificates)"
        )
    mode = options.get("ssl")
    root = _pg_file(root, "PGSSLROOTCERT", "root.crt") if mode in _PG_VERIFYING else root
    if mode in ("verify-ca", "verify-full") and not root:
        raise ConfigError(
            f"ssl={mode} needs the CA certificates to verify the server with: "
            "sslrootcert=PATH, PGSSLROOTCERT or ~/.postgresql/root.crt"
        )
    return root


def pg_tls_context(options: dict[str, Any]) -> _ssl.SSLContext | None:
    """For ``ssl=require``, ``verify-ca`` and ``verify-full``: the context asyncpg would make
    as it connects (libpq's files and environment: ``sslrootcert`` or ``PGSSLROOTCERT`` or
    ``~/.postgresql/root.crt``, the CRL ``root.crl``, the client certificate
    ``postgresql.crt`` and key), made here once, in a worker thread: asyncpg reads those files
    on the event loop for every connection. None for the other modes (no file is read).
    ``sslrootcert=system`` is the system's CA store, as in libpq 16."""
    root = pg_check_tls(options)
    mode = options.get("ssl")
    if mode not in _PG_VERIFYING:
        return None
    context = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = mode == "verify-full"
    try:
        if root == "system":
            context.load_default_certs()
        elif root:
            context.load_verify_locations(cafile=root)
        else:  # require, without a root certificate: encrypted, not verified
            context.verify_mode = _ssl.CERT_NONE
        crl = _pg_file(None, "PGSSLCRL", "root.crl")
        if crl and context.verify_mode != _ssl.CERT_NONE:
            context.load_verify_locations(cafile=crl)
            context.verify_flags |= _ssl.VERIFY_CRL_CHECK_CHAIN
        cert = _pg_file(None, "PGSSLCERT", "postgresql.crt")
        if cert:
            key = _pg_file(None, "PGSSLKEY", "postgresql.key")
            context.load_cert_chain(cert, keyfile=key)
    except (_ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"ssl={mode}: a certificate file could not be read ({exc})") from None
    context.minimum_version = _ssl.TLSVersion.TLSv1_2
    if _ssl.HAS_ALPN:
        context.set_alpn_protocols(["postgresql"])
    return context


#: what an asyncio-only MySQL backend names for trio (asyncmy, aiomysql)
TRIO_ALTERNATIVES = (
    "mysql+pymysql for MySQL/MariaDB, postgresql+psycopg or postgresql+psycopg2 for "
    "PostgreSQL, or sqlite"
)

#: the protocol's CLIENT_FOUND_ROWS capability (the same number in every driver)
CLIENT_FOUND_ROWS = 2
#: how long closing an async driver's connection (asyncpg, aiomysql, asyncmy) waits for its
#: socket's end (over TLS, for the server's answer to the shutdown) before cutting it
CLOSE_WAIT = 2.0


def mysql_connect_kwargs(backend: Backend, context: _ssl.SSLContext | None) -> dict[str, Any]:
    """Connection keywords shared by the MySQL drivers.

    ``CLIENT_FOUND_ROWS``: an UPDATE reports the rows it matched, as on PostgreSQL and
    SQLite, not only those whose values it changed (so ``execute`` counts the same rows on
    every backend, and ``update ... where version = :v`` finds its row even when nothing
    changes in it).
    """
    url, opts = backend.url, backend.options
    kwargs: dict[str, Any] = {
        "host": url.hostname or "localhost",  # [::1] -> ::1
        "port": url.port or 3306,
        "user": url.username,
        "password": url.password or "",
        "charset": opts["charset"],
        "autocommit": True,
        "connect_timeout": opts["connect_timeout"] or 10,
        "client_flag": CLIENT_FOUND_ROWS,
    }
    if url.database:
        kwargs["db"] = url.database
    if context is not None:  # (`backend.tls_context()`: `mysql_ssl`)
        kwargs["ssl"] = context
    return kwargs


def mysql_ssl(options: dict[str, Any]) -> _ssl.SSLContext | None:
    """The TLS context of ``ssl_ca=PATH`` (that file's CAs, host name checked) or of
    ``ssl=true`` (encryption without certificate checks); None without either.

    Reads *ssl_ca*: call it in a worker thread (`Backend.tls_context`).
    """
    path = options.get("ssl_ca")
    if path:
        if not os.path.isfile(path):
            raise ConfigError(
                f"invalid ssl_ca {path!r}: no such file (a PEM file of CA certificates)"
            )
        try:
            return _ssl.create_default_context(cafile=path)
        except (_ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(
                f"invalid ssl_ca {path!r}: no CA certificate could be read from it ({exc})"
            ) from None
    if not options.get("ssl"):
        return None
    # (not create_default_context(): it would read the system's CA store, for nothing)
    context = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = _ssl.CERT_NONE
    return context


_MY_PLAIN = (int, str, float, bytes, type(None), bool, _dt.date, _dt.time)
#: what the drivers send as it is, besides `_MY_PLAIN`
_MY_SENT = (Decimal, _dt.timedelta, _dt.date, _dt.time)


def _mysql_value(value: Any) -> Any:
    if isinstance(value, (dict, list, Json)):
        return encode_json(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, _dt.datetime):
        return to_utc_naive(value)
    if type(value) in _MY_PLAIN or isinstance(value, _MY_SENT):
        return value
    # subclasses (enums, mostly): the drivers pick an encoder by exact type and would send
    # str(value), so send the plain value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    # the drivers would send str(value) (or fail with a TypeError): refuse, as the
    # PostgreSQL and SQLite backends do
    raise ProgrammingError(
        f"a query parameter of type {type(value).__name__} cannot be sent to MySQL/MariaDB; "
        "use str, int, float, Decimal, bool, bytes, date, time, datetime, timedelta, UUID, "
        "a dict or list (sent as JSON), Json(...) or None"
    )


def mysql_adapt(args: Sequence[Any]) -> Sequence[Any]:
    """Parameters as the MySQL drivers take them (JSON text, UUID text, naive UTC datetimes);
    `ProgrammingError` for a value of a type they cannot send."""
    for value in args:
        if type(value) not in _MY_PLAIN:
            return tuple(_mysql_value(v) for v in args)
    for value in args:
        if type(value) is _dt.datetime and value.tzinfo is not None:
            return tuple(_mysql_value(v) for v in args)
    return args


_TINY, _TIMESTAMP, _TIME, _DATETIME, _JSON, _BLOB, _STRING = 1, 7, 11, 12, 245, 252, 254
_BINARY_FLAG, _UNSIGNED_FLAG = 128, 32
_BINARY_CHARSET = 63
_LONG = 4294967295


def _json_value(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _datetime_value(value: Any) -> Any:
    return as_utc(value) if isinstance(value, _dt.datetime) else value


def _time_value(value: Any) -> Any:
    return timedelta_to_time(value) if isinstance(value, _dt.timedelta) else value


def _uuid_value(value: Any) -> Any:
    try:
        return uuid.UUID(value.decode() if isinstance(value, bytes) else value)
    except (ValueError, AttributeError, TypeError):
        return value


def mysql_converters(fields: Sequence[Any]) -> list[Callable[[Any], Any] | None] | None:
    """Per-column conversions to the common Python types, from the result's field packets.

    ``BOOLEAN`` (``TINYINT(1)``) -> bool, ``TIME`` -> time of day, ``DATETIME``/``TIMESTAMP``
    -> aware UTC datetime (the session runs in UTC), JSON -> parsed. MariaDB reports ``JSON``
    as a ``LONGTEXT`` with a binary collation and ``UUID`` as a binary unsigned ``CHAR(36)``;
    both are recognised from those flags.
    """
    out = [mysql_converter(field) for field in fields]
    return out if any(out) else None


def mysql_converter(field: Any) -> Callable[[Any], Any] | None:
    """The conversion of one result column (see `mysql_converters`), or None."""
    code, length, flags = field.type_code, field.length, field.flags
    if code == _TINY and length == 1:
        return bool
    if code == _TIME:
        return _time_value
    if code in (_DATETIME, _TIMESTAMP):
        return _datetime_value
    if code == _JSON or (
        code == _BLOB
        and length == _LONG
        and flags & _BINARY_FLAG
        and field.charsetnr != _BINARY_CHARSET
    ):
        return _json_value
    if (
        code == _STRING
        and flags & _BINARY_FLAG
        and flags & _UNSIGNED_FLAG
        and field.charsetnr != _BINARY_CHARSET
    ):
        return _uuid_value
    return None


Converter = Callable[[Any], Any]
MysqlShape = tuple[dict[str, int], list[Converter | None] | None]

#: (name-to-position table, converters) per result description, so a query run again
#: builds neither (see `mysql_shape`); cleared when it reaches _SHAPES_MAX entries
_SHAPES: dict[tuple[Any, ...], MysqlShape] = {}
_SHAPES_MAX = 512


def _described_fully(description: Sequence[Sequence[Any]]) -> bool:
    """Whether the DB-API *description* alone decides every column's conversion.

    The description has each column's name, type code and length, but not its flags or
    character set, which tell a MariaDB ``JSON`` (a ``LONGTEXT``) from a ``LONGBLOB`` and a
    ``UUID`` from a ``CHAR(36)``: results with such columns are not cached.
    """
    for column in description:
        code = column[1]
        if code == _STRING or (code == _BLOB and column[3] == _LONG):
            return False
    return True


def mysql_shape(cur: Any) -> MysqlShape:
    """The name-to-position table and the converters (`mysql_converters`) of *cur*'s result.

    Cached per description: the name-to-position table is shared by the rows of every
    result of that shape, and a query run again pays one dictionary lookup.
    """
    description = cur.description
    shape = _SHAPES.get(description)
    if shape is not None:
        return shape
    shape = (make_keys([d[0] for d in description]), mysql_converters(cur._result.fields))
    if _described_fully(description):
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.clear()
        _SHAPES[description] = shape
    return shape


def mysql_value(cur: Any, record: Sequence[Any] | None, column: int) -> Any:
    """One value of a MySQL *record*, converted like `mysql_rows` converts whole rows."""
    if record is None:
        return None
    value = record[column]
    if value is None:
        return None
    fn = mysql_converter(cur._result.fields[column])
    return value if fn is None else fn(value)


# -- PostgreSQL streaming: a server-side cursor (DECLARE / FETCH) -----------------------------

_pg_cursor_names = itertools.count(1)


_DECLARABLE = frozenset({"select", "values", "table", "with"})
_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.DOTALL)


def pg_declarable(text: str) -> bool:
    """Whether ``DECLARE ... CURSOR FOR`` takes *text*: a SELECT, VALUES or TABLE command
    (a WITH query too, unless a CTE modifies data, which the server refuses). ``INSERT ...
    RETURNING`` or ``EXPLAIN`` return rows, but only a protocol-level portal streams them."""
    start = _LEADING_NOISE.match(text)
    word = text[start.end() if start else 0 :].split(None, 1)
    return bool(word) and word[0].lower() in _DECLARABLE


class PgCursor:
    """The server-side cursor of one `iterate` on PostgreSQL, and the transaction it needs.

    A cursor lives in a transaction: in the caller's when one is open, else in one of its
    own (`began`). On a connection that other statements may use while the iteration is
    open (``db.connection()``, `shared`), that transaction must not take them in: leaving the
    loop early would roll them back, and one failing statement would abort it. There the
    cursor is declared ``WITH HOLD`` (`hold`), and the connection "settles" the iteration
    before it runs any other statement: it commits the iteration's transaction, so the
    statement runs in autocommit as it would without the iteration, and the cursor goes on
    outside any transaction (the server keeps the rest of its result). Until then nothing
    is copied, and an iteration left early is rolled back (it changed nothing).
    """

    __slots__ = ("began", "declared", "error", "hold", "name", "task")

    def __init__(self, in_transaction: bool, shared: bool) -> None:
        #: the task an async connection's iteration runs in, when others may use the
        #: connection meanwhile (see `PgAsyncConnection._end`)
        self.task: object = None
        self.name = f"asyncify_cursor_{next(_pg_cursor_names)}"
        self.began = not in_transaction
        self.hold = shared and not in_transaction
        self.declared = False  # a cursor of SQL's (asyncpg streams with a portal of its own)
        #: why the cursor is gone: its transaction could not commit when it was settled
        self.error: BaseException | None = None

    def declare(self, text: str) -> str:
        self.declared = True
        hold = " WITH HOLD" if self.hold else ""
        return f"DECLARE {self.name} NO SCROLL CURSOR{hold} FOR {text}"

    def fetch(self, size: int) -> str:
        return f"FETCH FORWARD {int(size)} FROM {self.name}"

    def settled(self, error: BaseException | None) -> None:
        """Its transaction was committed early (*error*: the commit failed, which ended the
        transaction and the cursor; computing the rest of the result can fail there)."""
        self.began = False
        self.error = error

    def check(self) -> None:
        """Raise the error that ended the cursor when it was settled, if any."""
        if self.error is not None:
            raise self.error

    def end(self, finished: bool) -> list[str]:
        """The statements that end the iteration (*finished*: it read the whole result)."""
        if self.error is not None:
            return []
        if self.began:
            if not finished:
                return ["ROLLBACK"]
            return [f"CLOSE {self.name}", "COMMIT"] if self.hold else ["COMMIT"]
        if self.declared and (finished or self.hold):
            return [f"CLOSE {self.name}"]
        return []  # left early inside the caller's transaction: it ends with it


class PgAsyncConnection(Connection):
    """What the async PostgreSQL connections (asyncpg, psycopg 3) share: their iterations'
    transactions and cursors (see `PgCursor`). Subclasses settle (`_settle`) before each
    statement while `_own` is set."""

    def __init__(self) -> None:
        super().__init__()
        self._own: PgCursor | None = None  # an iteration whose own transaction is open
        self._iterations = 0  # iterations open on this connection
        # the iterations closed from another task, still to end (see `_end`)
        self._deferred: list[tuple[PgCursor, bool]] = []

    async def _send(self, statement: str) -> None:
        """Run *statement* on the driver's connection."""
        raise NotImplementedError

    def _driver_closed(self) -> bool:
        raise NotImplementedError

    def _in_transaction(self) -> bool:
        """Whether the driver knows of an open transaction (one begun through ``raw``)."""
        return False

    def is_closed(self) -> bool:
        # an iteration never closed (a loop left without `aclosing`) keeps its cursor, maybe
        # its transaction, on the connection: the pool closes it instead of handing it on
        return self._iterations > 0 or bool(self._deferred) or self._driver_closed()

    def driver_closed(self) -> bool:
        return self._driver_closed()

    async def run(self, statement: str) -> None:
        if self._own is not None or self._deferred:
            await self._settle()
        await self._send(statement)

    async def _settle(self) -> None:
        """End the iterations closed from another task (`_end`), and commit the transaction
        an open iteration began, so that the next statement runs outside it (see
        `PgCursor`)."""
        deferred, self._deferred = self._deferred, []
        for ended, finished in deferred:
            await self._end_now(ended, finished)
        cursor, self._own = self._own, None
        if cursor is None:
            return
        error: BaseException | None = None
        try:
            await self._send("COMMIT")
        except Exception as exc:
            error = exc
        cursor.settled(error)

    async def _start(self, in_transaction: bool, shared: bool, pinned: bool) -> PgCursor:
        """The cursor of a new iteration, with its transaction begun when it needs one
        (*pinned*: other statements use the connection while it is open)."""
        if self._own is not None or self._deferred:  # an iteration inside another one
            await self._settle()
        cursor = PgCursor(in_transaction or self._in_transaction(), shared)
        if pinned or in_transaction:  # (an iteration's own connection: no one else's)
            cursor.task = current_task()
        if cursor.began:
            await self._send("BEGIN")
        self._iterations += 1
        if cursor.hold:
            self._own = cursor
        return cursor

    async def _end(self, cursor: PgCursor, finished: bool) -> None:
        """Close *cursor* and end its transaction (see `ending_iteration`)."""
        self._iterations -= 1
        if self._own is cursor:
            self._own = None
        if cursor.task is not None and cursor.task is not current_task():
            # closed from another task: asyncio's finalizer closes an iteration left with
            # `break` (no `aclosing`) later, in a task of its own, maybe while the
            # connection's own task runs a statement on it, or settles this very cursor
            # (asyncpg refused the close: "another operation is in progress", and the cursor
            # stayed open). The connection's next statement ends it first (`_settle`, which
            # knows by then whether it was settled), or the pool closes the connection.
            self._deferred.append((cursor, finished))
            return
        await self._end_now(cursor, finished)

    async def _end_now(self, cursor: PgCursor, finished: bool) -> None:
        statements = cursor.end(finished)
        if not statements:
            return
        if self._driver_closed():
            self.broken = True
            return
        with ending_iteration(self):
            for statement in statements:
                await self._send(statement)


class PgSyncSession(SyncSession):
    """A blocking PostgreSQL session (psycopg2, psycopg 3 sync) that streams with a cursor.

    `iterate` declares a server-side cursor (see `PgCursor`) and fetches it *batch_size*
    rows at a time; any other operation first settles an iteration whose transaction is open.
    """

    cancellable: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self._own: PgCursor | None = None  # an iteration whose own transaction is open

    def call(self, method: str, *args: Any) -> Any:
        with self.lock:  # (the check and the call as one turn: see `SyncSession.call`)
            if self._own is not None and method not in STREAM_METHODS:
                # in the same thread hop, and as part of the operation: a caller that leaves
                # while the commit computes the rest of the result cancels it too
                return super().call("settle_then", method, *args)
            return super().call(method, *args)

    def settle_then(self, method: str, *args: Any) -> Any:
        """Commit the transaction an open iteration began (see `PgCursor`), then run the
        operation *method* (unless its caller left meanwhile)."""
        cursor, self._own = self._own, None
        if cursor is not None:
            error: BaseException | None = None
            try:
                self.run("COMMIT")
            except Exception as exc:
                error = exc
            cursor.settled(error)
        check_cancelled()
        return getattr(self, method)(*args)

    def cancel_query(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.cancel()

    def is_closed(self) -> bool:
        # an iteration never closed keeps its cursor, maybe its transaction, on the
        # connection: the pool closes it instead of handing it on
        return bool(self._cursors) or self.conn is None or bool(self.conn.closed)

    def open_cursor(
        self,
        cursor_id: int,
        text: str,
        args: Sequence[Any] | None,
        in_transaction: bool,
        shared: bool,
    ) -> None:
        cursor = PgCursor(in_transaction, shared)
        if cursor.began:
            self.run("BEGIN")
        cur = self.conn.cursor()
        try:
            self._execute(cur, cursor.declare(text), args)
        except BaseException:
            cur.close()
            if cursor.began:
                self.run("ROLLBACK")
            raise
        if cursor.hold:
            self._own = cursor
        self._cursors[cursor_id] = (cur, cursor)

    def fetch_batch(self, cursor_id: int, size: int) -> list[Row]:
        cur, cursor = self._cursors[cursor_id]
        cursor.check()
        cur.execute(cursor.fetch(size))
        return self._rows(cur, cur.fetchall())

    def close_cursor(self, cursor_id: int, finished: bool) -> None:
        entry = self._cursors.pop(cursor_id, None)
        if entry is None:
            return
        cur, cursor = entry
        if self._own is cursor:
            self._own = None
        try:
            for statement in cursor.end(finished):
                cur.execute(statement)
        finally:
            cur.close()


# -- native async MySQL drivers (asyncmy, aiomysql): the same cursor API ---------------------


def _mysql_args(query: CompiledQuery, args: Sequence[Any]) -> tuple[str, Sequence[Any] | None]:
    if query.names:
        return query.text, mysql_adapt(args)
    return query.source, None


def mysql_rows(cur: Any, records: Sequence[Any]) -> list[Row]:
    """`Row` objects for a MySQL cursor's *records*, converted to the common types."""
    if cur.description is None:
        raise ProgrammingError("the statement returns no rows; use execute() for it")
    keys, convert = mysql_shape(cur)
    if convert is None:
        return rows_of(keys, records)
    return converted_rows(keys, convert, records)


#: the statements that end the outermost transaction (`Connection.run`)
TRANSACTION_END = frozenset({"COMMIT", "ROLLBACK"})


class MysqlStream:
    """The unbuffered result an `iterate` reads, on MySQL/MariaDB.

    The protocol carries one result at a time: before any other statement runs on the
    connection, the rest of the result must be read (the driver would read and drop it,
    and the iteration would end early, silently). So each statement first has the
    connection "settle" the stream: read the rest into `rest`, from where the iteration goes
    on; or read and drop it when the iteration was left early (`abandoned`), or when the
    statement ends the transaction the iteration runs in (`ended`: the iteration cannot go
    on past it, as on PostgreSQL, and an iteration merely not closed yet keeps no copy).
    """

    __slots__ = ("abandoned", "cursor", "ended", "error", "rest", "settled")

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.rest: deque[Row] | None = None
        self.abandoned = False
        self.ended = False
        self.error: BaseException | None = None
        # a statement took the result over (`_settle`): it reads the rest, and the
        # iteration's own close must not touch the cursor (see `closes_cursor`)
        self.settled = False

    def closes_cursor(self) -> bool:
        """Whether the iteration's end may close the cursor (a read of what is left).

        Not once a statement settled the result: that statement reads the rest, and the
        iteration's end may come in a task of its own while it does. An iteration left with
        ``break`` (no ``aclosing``) is closed by asyncio's finalizer, later, in its own
        task: a close reading the rest at the same time as the statement broke the
        connection (asyncmy: "Packet sequence number wrong", aiomysql: a hang, PyMySQL:
        garbage read)."""
        if self.settled:
            self.abandoned = True  # (a rest being read for it is dropped: `dropped_rest`)
            return False
        return self.error is None

    def dropped_rest(self) -> None:
        """Forget a rest read for an iteration that ended meanwhile."""
        if self.abandoned:
            self.rest = None

    def keeps_rest(self, statement: str | None) -> bool:
        """Whether the rest must be kept for the iteration when *statement* (a control
        statement of `Connection.run`, or None for any other) is to run; else it is dropped
        (marking the stream `ended` when the iteration was still open)."""
        if self.abandoned:
            return False
        if statement in TRANSACTION_END:
            self.ended = True
            return False
        return True

    def take(self, size: int) -> list[Row]:
        """The next *size* rows of `rest` (fewer at its end)."""
        rest = self.rest
        if rest is None:  # pragma: no cover - only called once the rest was read
            return []
        return [rest.popleft() for _ in range(min(size, len(rest)))]

    def check(self) -> None:
        """Raise if the rest was dropped, or reading it failed (the statement that needed it
        got that error)."""
        if self.ended:
            raise OperationalError(
                "the transaction that iterate() ran in ended before the iteration did, and the "
                "rest of its result was dropped; finish (or close) an iteration inside its "
                "transaction"
            )
        if self.error is not None:
            raise OperationalError(
                "the rest of the result that iterate() was reading could not be read when "
                f"another statement ran on its connection ({type(self.error).__name__})",
                orig=self.error,
            ) from self.error


def mysql_stream_rest(cur: Any, records: Sequence[Any]) -> deque[Row]:
    """The `MysqlStream.rest` of *records*, the rest of *cur*'s result."""
    return deque(mysql_rows(cur, records) if records else ())


def mysql_check_whole(cur: Any, raw: Any) -> None:
    """After a short batch of an unbuffered *cur*: raise unless the result really ended.

    A statement sent through the driver's connection *raw* directly (not through us, so
    nothing read the rest first) makes the driver drop the rest of the result; the cursor
    then reads as if the result had ended.
    """
    if cur._result is not raw._result:
        raise OperationalError(
            "another statement ran on the connection while iterate() was reading a result "
            "from it, and the driver dropped the rest of the result; run statements through "
            "the Database (or DatabaseConnection), which reads the rest first"
        )


class MysqlAsyncConnection(Connection):
    """One asyncmy or aiomysql connection; subclasses say how to open cursors.

    *connect_other* opens another connection to the same server (`abandon` kills the
    statement of this one from it).
    """

    def __init__(
        self, conn: Any, connect_other: Callable[[], Awaitable[Connection]] | None = None
    ) -> None:
        super().__init__()
        self._conn = conn
        self._connect_other = connect_other
        self._stream: MysqlStream | None = None  # an iterate() result still being sent

    async def _settle(self, statement: str | None = None) -> None:
        """Read the rest of an open `iterate` result, so *statement* can run (see
        `MysqlStream`)."""
        stream = self._stream
        if stream is None:
            return
        stream.settled = True  # (before the stream is let go: see `MysqlStream.closes_cursor`)
        self._stream = None
        cur = stream.cursor
        try:
            if stream.keeps_rest(statement):
                stream.rest = mysql_stream_rest(cur, await cur.fetchall())
                stream.dropped_rest()
            else:
                await cur.close()  # reads the rest and drops it
        except BaseException as exc:
            stream.error = exc
            raise

    def is_closed(self) -> bool:
        # a result left unread (an iteration left early) is not worth reading to reuse the
        # connection: the pool closes it instead
        return self._stream is not None or self._driver_closed()

    def driver_closed(self) -> bool:
        return self._driver_closed()

    def _driver_closed(self) -> bool:
        raise NotImplementedError

    @property
    def raw(self) -> Any:
        return self._conn

    async def cursor(self, *, unbuffered: bool = False) -> Any:
        raise NotImplementedError

    def buffered_cursor(self) -> Any:
        """A plain buffered cursor, made without awaiting (one coroutine less per query)."""
        raise NotImplementedError

    async def fetch_all(self, query: CompiledQuery, args: Sequence[Any]) -> list[Row]:
        if self._stream is not None:
            await self._settle()
        cur = self.buffered_cursor()
        try:
            if query.names:
                await cur.execute(query.text, mysql_adapt(args))
            else:
                await cur.execute(query.source)
            if cur.description is None:  # a statement without a result: no rows
                return []
            return mysql_rows(cur, await cur.fetchall())
        finally:
            await cur.close()

    async def fetch_one(self, query: CompiledQuery, args: Sequence[Any]) -> Row | None:
        if self._stream is not None:
            await self._settle()
        cur = self.buffered_cursor()
        try:
            await cur.execute(*_mysql_args(query, args))
            if cur.description is None:
                return None
            record = await cur.fetchone()
            rows = mysql_rows(cur, [] if record is None else [record])
            return rows[0] if rows else None
        finally:
            await cur.close()

    async def fetch_val(self, query: CompiledQuery, args: Sequence[Any], column: int) -> Any:
        if self._stream is not None:
            await self._settle()
        cur = self.buffered_cursor()
        try:
            await cur.execute(*_mysql_args(query, args))
            if cur.description is None:
                return None
            return mysql_value(cur, await cur.fetchone(), column)
        finally:
            await cur.close()

    async def execute(self, query: CompiledQuery, args: Sequence[Any]) -> int:
        if self._stream is not None:
            await self._settle()
        cur = self.buffered_cursor()
        try:
            await cur.execute(*_mysql_args(query, args))
            return int(cur.rowcount)
        finally:
            await cur.close()

    async def execute_many(self, query: CompiledQuery, args: Sequence[Sequence[Any]]) -> None:
        if self._stream is not None:
            await self._settle()
        cur = await self.cursor()
        try:
            await cur.executemany(query.text, [mysql_adapt(a) for a in args])
        finally:
            await cur.close()

    async def iterate(
        self,
        query: CompiledQuery,
        args: Sequence[Any],
        batch_size: int,
        in_transaction: bool,
        shared: bool,
    ) -> AsyncGenerator[list[Row], None]:
        if self._stream is not None:  # an iteration inside another one
            await self._settle()
        cur = await self.cursor(unbuffered=True)
        stream = MysqlStream(cur)
        try:
            await cur.execute(query.text, mysql_adapt(args))
            self._stream = stream
            first = True
            while True:
                if not first:
                    # a batch of rows already in memory (the driver's buffer, or the rest)
                    # is parsed without waiting: let the loop run other tasks in between
                    await asyncio.sleep(0)  # (aiomysql and asyncmy: asyncio only)
                first = False
                stream.check()
                if stream.rest is not None:  # another statement ran: the rest is in memory
                    batch = stream.take(batch_size)
                    if batch:
                        yield batch
                else:
                    batch = await cur.fetchmany(batch_size)
                    if len(batch) < batch_size:  # the end of the result
                        self._stream = None
                        mysql_check_whole(cur, self._conn)
                    if batch:
                        yield mysql_rows(cur, batch)
                if len(batch) < batch_size:
                    break
        finally:
            if self._stream is stream:
                # left early with rows unread: closing the cursor would read the rest (maybe
                # millions of rows), so leave it: the next statement on this connection reads
                # it (`_settle`), or the pool closes the connection (`is_closed`). Nothing is
                # awaited here, so this is the same on cancellation.
                stream.abandoned = True
            elif stream.closes_cursor():
                try:
                    await cur.close()  # nothing left to read
                except BaseException:
                    self.broken = True
                    raise

    async def run(self, statement: str) -> None:
        if self._stream is not None:
            await self._settle(statement)
        cur = self.buffered_cursor()
        try:
            await cur.execute(statement)
        finally:
            await cur.close()

    def _transport(self) -> Any:
        """The driver's asyncio transport, None once closed."""
        raise NotImplementedError

    def _wait_closed(self) -> Callable[[], Awaitable[None]] | None:
        """What waits for the transport's end after the driver's close, if that does not."""
        return None

    async def close(self) -> None:
        # QUIT, then wait until the socket is closed: over TLS, asyncio's shutdown waits for
        # the server's answer, and a loop that ended before it came (a test's, an app's
        # last) left the socket open. A server that does not answer within CLOSE_WAIT
        # has the socket cut (asyncmy waited the transport's 30 s, aiomysql not at all).
        transport, wait_closed = self._transport(), self._wait_closed()
        closed = False
        try:
            with anyio.move_on_after(CLOSE_WAIT) as waited:
                await self._conn.ensure_closed()
                if wait_closed is not None:
                    with contextlib.suppress(OSError):  # what broke the connection, if anything
                        await wait_closed()
            closed = not waited.cancelled_caught
        finally:
            if transport is not None and not closed:
                transport.abort()

    def terminate(self) -> None:
        transport = self._transport()
        self._conn.close()
        if transport is not None:
            transport.abort()  # now, not after a TLS shutdown that waits for the server

    async def abandon(self) -> None:
        # The server runs the statement whose caller left to its end (a closed socket does
        # not stop it), and its transaction keeps its locks until then: kill the statement
        # from a connection of its own; the server then finds the socket closed, ends the
        # session and rolls the transaction back.
        thread_id = int(self._conn.thread_id())
        self.terminate()
        if self._connect_other is None:
            return
        other = await self._connect_other()
        try:
            await other.run(f"KILL QUERY {thread_id}")
        finally:
            await other.close()


async def mysql_session_setup(conn: MysqlAsyncConnection, options: dict[str, Any]) -> None:
    """Run the session statements of `mysql_init_statements` on a new async connection."""
    for statement, fallback in mysql_init_statements(options):
        try:
            await conn.run(statement)
        except Exception:
            if fallback is None:
                raise
            await conn.run(fallback)


def mysql_connect_limit(options: dict[str, Any]) -> float:
    """The seconds one whole MySQL connect may take: the TCP connect, the server's greeting,
    the authentication and the session statements. (The drivers' own ``connect_timeout``
    covers the TCP connect only: a server that accepts the connection and never sends its
    greeting would hold them for ever.)"""
    return float(options.get("connect_timeout") or 10)


def mysql_connect_timed_out(limit: float) -> TimeoutError:
    """The error of a MySQL connect that ran out of *limit* seconds: a `TimeoutError`, which
    `Database` reports as "no connection within connect_timeout=...", as on PostgreSQL."""
    return TimeoutError(
        f"the server did not complete the connect within connect_timeout={limit:g}s"
    )


async def mysql_open(
    raw: Any,
    handshake: Callable[[], Awaitable[object]],
    conn: MysqlAsyncConnection,
    options: dict[str, Any],
) -> MysqlAsyncConnection:
    """Connect *raw* (the driver's connection, by awaiting *handshake*) and set up the session
    of *conn* (which wraps it), all within `mysql_connect_limit`.

    A connect that fails, is cancelled or runs out of time closes *raw*, however far it got
    (aiomysql leaves the socket of a cancelled handshake open). Running out of time is a
    `TimeoutError`, also when the driver's own TCP-connect timeout wrapped it in its error.
    """
    limit = mysql_connect_limit(options)
    deadline = anyio.current_time() + limit
    try:
        with anyio.fail_after(limit):
            await handshake()
            await mysql_session_setup(conn, options)
    except BaseException as exc:
        raw.close()
        if (
            isinstance(exc, Exception)
            and not isinstance(exc, TimeoutError)
            and anyio.current_time() >= deadline
        ):
            raise mysql_connect_timed_out(limit) from exc
        raise
    return conn
