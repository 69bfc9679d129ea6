"""The built-in backends: one row per URL scheme, with the options each accepts.

Only strings and option declarations live here, so reading the table imports no driver.
The configuration reference in the docs is generated from this table.
"""

from __future__ import annotations

from typing import Any, Final

from ._config import Option
from ._registry import BackendSpec

__all__ = ["BUILTIN_BACKENDS"]

_Row = tuple[BackendSpec, tuple[str, ...]]

# -- sql (issue: SQL facade) -------------------------------------------------------------
from ._config import (  # noqa: E402 - kept inside the SQL section, which the SQL issue owns
    bool_option,
    choice_option,
    float_option,
    int_option,
    str_option,
)

_SQL_POOL: tuple[Option[Any], ...] = (
    int_option("min_size", 1, minimum=0, doc="connections opened up front and kept"),
    int_option("max_size", 10, minimum=1, doc="most connections open at once"),
    float_option(
        "acquire_timeout", 30.0, no_limit=True, doc="seconds to wait for a free connection"
    ),
    float_option("connect_timeout", 10.0, positive=True, doc="seconds to open one connection"),
    float_option(
        "statement_timeout",
        None,
        no_limit=True,
        doc="seconds a statement may run (server-side); 0 also means no limit",
    ),
    float_option("close_timeout", 10.0, positive=True, doc="seconds closing the pool may take"),
)
_PG_SSL = choice_option(
    "ssl",
    "prefer",
    ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    doc="TLS mode (libpq sslmode)",
)
#: libpq's name of ``ssl``, which takes libpq's values: URLs copied from libpq (a platform's
#: ``DATABASE_URL=...?sslmode=require``) work as they are. `Database` folds it into ``ssl``
#: (both given: they must agree); backends never see it.
_PG_SSL_MODE: Option[str | None] = Option(
    "sslmode",
    _PG_SSL.parse,
    None,
    _PG_SSL.accepted,
    "libpq's name of ssl (either may be given; both must agree)",
)
_PG_APP = str_option("application_name", None, doc="shown in pg_stat_activity")
_PG_ROOT_CERT = str_option(
    "sslrootcert",
    None,
    doc="PEM file of the CA certificates the server's must come from (libpq sslrootcert; "
    "else PGSSLROOTCERT or ~/.postgresql/root.crt): checked with ssl=verify-ca or "
    "verify-full, and with require when given",
)
_ASYNCPG_OPTIONS: tuple[Option[Any], ...] = (
    *_SQL_POOL,
    _PG_SSL,
    _PG_SSL_MODE,
    _PG_ROOT_CERT,
    _PG_APP,
    int_option("statement_cache_size", 100, doc="prepared statements cached per connection"),
    float_option(
        "command_timeout",
        None,
        positive=True,
        no_limit=True,
        doc="client-side seconds per call (asyncpg)",
    ),
)
_PSYCOPG_OPTIONS: tuple[Option[Any], ...] = (
    *_SQL_POOL,
    _PG_SSL,
    _PG_SSL_MODE,
    _PG_ROOT_CERT,
    _PG_APP,
    int_option("prepare_threshold", 5, doc="executions before a query is prepared"),
)
_PSYCOPG2_OPTIONS: tuple[Option[Any], ...] = (
    *_SQL_POOL,
    _PG_SSL,
    _PG_SSL_MODE,
    _PG_ROOT_CERT,
    _PG_APP,
)
_MYSQL_COMMON: tuple[Option[Any], ...] = (
    *_SQL_POOL,
    bool_option("ssl", False, doc="use TLS (server certificate not verified; see ssl_ca)"),
    str_option(
        "ssl_ca",
        None,
        doc="PEM file of the CA certificates the server's must come from: TLS, with the "
        "certificate and the host name verified",
    ),
)
#: the client character sets PyMySQL (so aiomysql) knows; asyncmy all but utf8mb3. Any other
#: name failed at connect with a bare AttributeError ("could not connect ...: AttributeError")
_MYSQL_CHARSETS: Final = (
    *("utf8mb4", "utf8", "utf8mb3", "latin1", "ascii", "binary", "armscii8", "big5"),
    *("cp1250", "cp1251", "cp1256", "cp1257", "cp850", "cp852", "cp866", "cp932", "dec8"),
    *("eucjpms", "euckr", "gb18030", "gb2312", "gbk", "geostd8", "greek", "hebrew", "hp8"),
    *("keybcs2", "koi8r", "koi8u", "latin2", "latin5", "latin7", "macce", "macroman", "sjis"),
    *("swe7", "tis620", "ujis"),
)


def _charset_option(charsets: tuple[str, ...]) -> Option[str]:
    """The ``charset`` option: one of *charsets*, in any case."""

    def parse(raw: str) -> str:
        if raw.lower() not in charsets:
            raise ValueError(raw)
        return raw.lower()

    return Option(
        "charset", parse, "utf8mb4", "one of " + ", ".join(charsets), "connection character set"
    )


_ASYNCMY_OPTIONS: tuple[Option[Any], ...] = (
    *_MYSQL_COMMON,
    _charset_option(tuple(c for c in _MYSQL_CHARSETS if c != "utf8mb3")),
)
_AIOMYSQL_OPTIONS: tuple[Option[Any], ...] = (*_MYSQL_COMMON, _charset_option(_MYSQL_CHARSETS))
_PYMYSQL_OPTIONS: tuple[Option[Any], ...] = (
    *_MYSQL_COMMON,
    _charset_option(_MYSQL_CHARSETS),
    float_option(
        "read_timeout",
        None,
        positive=True,
        no_limit=True,
        doc="seconds to wait for the server (PyMySQL)",
    ),
)
_SQLITE_OPTIONS: tuple[Option[Any], ...] = (
    int_option("min_size", 1, minimum=0, doc="connections opened up front"),
    int_option("max_size", 5, minimum=1, doc="connections (one thread each); 1 for :memory:"),
    float_option(
        "acquire_timeout", 30.0, no_limit=True, doc="seconds to wait for a free connection"
    ),
    float_option(
        "statement_timeout",
        None,
        no_limit=True,
        doc="seconds before a statement is interrupted; 0 also means no limit",
    ),
    float_option("close_timeout", 10.0, positive=True, doc="seconds closing the pool may take"),
    float_option(
        "busy_timeout", 5.0, doc="seconds to wait for another writer's lock (SQLite: no 'inf')"
    ),
    choice_option(
        "journal_mode",
        "wal",
        ("wal", "delete", "truncate", "persist", "memory", "off"),
        doc="PRAGMA journal_mode for file databases",
    ),
    bool_option("foreign_keys", True, doc="enforce foreign keys (PRAGMA foreign_keys)"),
    choice_option(
        "mode",
        "rwc",
        ("ro", "rw", "rwc", "memory"),
        doc="open mode (SQLite URI mode): ro read-only, rw existing file, rwc create it, "
        "memory a named in-memory database",
    ),
    choice_option(
        "cache",
        "private",
        ("private", "shared"),
        doc="SQLite URI cache: shared lets this process's connections to one database share "
        "a cache (and table locks)",
    ),
)

SQL_BACKENDS: list[_Row] = [
    (
        BackendSpec(
            "sql",
            "postgresql+asyncpg",
            "asyncify_kit.sql._backends._asyncpg:AsyncpgBackend",
            ("asyncpg",),
            "postgres",
            "asyncpg connection pool",
            _ASYNCPG_OPTIONS,
            trio=False,
        ),
        ("postgresql", "postgres"),
    ),
    (
        BackendSpec(
            "sql",
            "postgresql+psycopg",
            "asyncify_kit.sql._backends._psycopg:PsycopgBackend",
            ("psycopg",),
            "postgres",
            "psycopg 3 async (threaded psycopg 3 under trio)",
            _PSYCOPG_OPTIONS,
        ),
        (),
    ),
    (
        BackendSpec(
            "sql",
            "postgresql+psycopg2",
            "asyncify_kit.sql._backends._psycopg2:Psycopg2Backend",
            ("psycopg2",),
            "postgres",
            "legacy psycopg2 run through asyncify",
            _PSYCOPG2_OPTIONS,
        ),
        (),
    ),
    (
        BackendSpec(
            "sql",
            "mysql+asyncmy",
            "asyncify_kit.sql._backends._asyncmy:AsyncmyBackend",
            ("asyncmy",),
            "mysql",
            "asyncmy connection pool",
            _ASYNCMY_OPTIONS,
            trio=False,
        ),
        ("mysql", "mariadb"),
    ),
    (
        BackendSpec(
            "sql",
            "mysql+aiomysql",
            "asyncify_kit.sql._backends._aiomysql:AiomysqlBackend",
            ("aiomysql",),
            "mysql",
            "aiomysql connection pool",
            _AIOMYSQL_OPTIONS,
            trio=False,
        ),
        (),
    ),
    (
        BackendSpec(
            "sql",
            "mysql+pymysql",
            "asyncify_kit.sql._backends._pymysql:PymysqlBackend",
            ("pymysql",),
            "mysql",
            "legacy PyMySQL run through asyncify",
            _PYMYSQL_OPTIONS,
        ),
        (),
    ),
    (
        BackendSpec(
            "sql",
            "sqlite",
            "asyncify_kit.sql._backends._sqlite:SqliteBackend",
            (),
            "",
            "stdlib sqlite3 on one pinned thread",
            _SQLITE_OPTIONS,
        ),
        (),
    ),
]

# -- storage (issue: Storage facade) -----------------------------------------------------
from . import _config as _storage_cfg  # noqa: E402 - inside the storage section it belongs to

_MiB = 1024 * 1024
_FILE_OPTIONS: tuple[Option[Any], ...] = (
    _storage_cfg.bool_option(
        "fsync", True, doc="fsync each written file and its directory before the rename"
    ),
    _storage_cfg.bool_option("create", True, doc="create ROOT when it does not exist"),
    _storage_cfg.str_option(
        "pool", None, doc="thread pool of the engine to run in (see configure); default pool"
    ),
)
_FILE_ONE_HOP_OPTIONS: tuple[Option[Any], ...] = (
    *_FILE_OPTIONS,
    _storage_cfg.bool_option(
        "atomic", True, doc="false: write files in place (no temp file; readers may see a part)"
    ),
)
_S3_OPTIONS: tuple[Option[Any], ...] = (
    _storage_cfg.str_option(
        "endpoint_url", None, doc="S3-compatible endpoint (else AWS_ENDPOINT_URL or AWS)"
    ),
    _storage_cfg.str_option("region", None, doc="region (else AWS_DEFAULT_REGION or profile)"),
    _storage_cfg.str_option("profile", None, doc="named profile of ~/.aws/config"),
    _storage_cfg.str_option(
        "ca_bundle",
        None,
        doc="PEM file of the CA certificates an https endpoint's certificate must come from "
        "(else AWS_CA_BUNDLE, the profile's ca_bundle, or certifi's bundle)",
    ),
    _storage_cfg.int_option(
        "multipart_threshold", 8 * _MiB, minimum=5 * _MiB, doc="larger writes go multipart"
    ),
    _storage_cfg.int_option(
        "multipart_chunksize", 8 * _MiB, minimum=5 * _MiB, doc="bytes per multipart part"
    ),
    _storage_cfg.int_option("max_pool_connections", 10, minimum=1, doc="HTTP connections"),
    _storage_cfg.choice_option(
        "addressing_style", "auto", ("auto", "path", "virtual"), doc="bucket in path or host"
    ),
    _storage_cfg.int_option("max_attempts", 3, minimum=1, doc="tries per call (standard mode)"),
    _storage_cfg.float_option("connect_timeout", 60.0, positive=True, doc="seconds to connect"),
    _storage_cfg.float_option("read_timeout", 60.0, positive=True, doc="seconds to wait for data"),
    _storage_cfg.choice_option(
        "checksums",
        "when_supported",
        ("when_supported", "when_required"),
        doc="CRC checksums on uploads and checked on downloads (botocore's setting)",
    ),
)

STORAGE_BACKENDS: list[_Row] = [
    (
        BackendSpec(
            "storage",
            "file",
            "asyncify_kit.storage._backends._file:FileBackend",
            (),
            "",
            "local files, one thread hop per operation",
            _FILE_ONE_HOP_OPTIONS,
        ),
        (),
    ),
    (
        BackendSpec(
            "storage",
            "file+aiofiles",
            "asyncify_kit.storage._backends._aiofiles:AiofilesBackend",
            ("aiofiles",),
            "files",
            "local files through aiofiles",
            _FILE_OPTIONS,
            trio=False,
        ),
        (),
    ),
    (
        BackendSpec(
            "storage",
            "s3",
            "asyncify_kit.storage._backends._s3:S3Backend",
            ("aioboto3",),
            "s3",
            "S3 through aioboto3",
            _S3_OPTIONS,
            trio=False,
        ),
        (),
    ),
    (
        BackendSpec(
            "storage",
            "s3+boto3",
            "asyncify_kit.storage._backends._boto3:Boto3Backend",
            ("boto3",),
            "s3",
            "S3 through boto3 run in threads",
            _S3_OPTIONS,
        ),
        (),
    ),
    (
        BackendSpec(
            "storage",
            "memory",
            "asyncify_kit.storage._backends._memory:MemoryBackend",
            (),
            "",
            "in-process memory, for tests",
        ),
        (),
    ),
]

# -- http (issue: HTTP facade) -----------------------------------------------------------
HTTP_BACKENDS: list[_Row] = [
    (
        BackendSpec(
            "http",
            "httpx",
            "asyncify_kit.http._backends._httpx:HttpxBackend",
            ("httpx",),
            "http",
            "httpx.AsyncClient",
        ),
        (),
    ),
    (
        BackendSpec(
            "http",
            "aiohttp",
            "asyncify_kit.http._backends._aiohttp:AiohttpBackend",
            ("aiohttp",),
            "aiohttp",
            "aiohttp.ClientSession",
            trio=False,
        ),
        (),
    ),
    (
        BackendSpec(
            "http",
            "requests",
            "asyncify_kit.http._backends._requests:RequestsBackend",
            ("requests",),
            "requests",
            "requests.Session run through asyncify",
        ),
        (),
    ),
]

BUILTIN_BACKENDS: list[_Row] = [*SQL_BACKENDS, *STORAGE_BACKENDS, *HTTP_BACKENDS]
