"""The built-in backends: one row per URL scheme, with the options each accepts.

Only strings and option declarations live here, so reading the table imports no driver.
The configuration reference in the docs is generated from this table.
"""

from __future__ import annotations

from ._config import Option
from ._registry import BackendSpec

__all__ = ["BUILTIN_BACKENDS"]

_Row = tuple[BackendSpec, tuple[str, ...]]

# -- sql (issue: SQL facade) -------------------------------------------------------------
_SQL_OPTIONS: tuple[Option[object], ...] = ()

SQL_BACKENDS: list[_Row] = [
    (BackendSpec("sql", "postgresql+asyncpg", "asyncify_kit.sql._backends._asyncpg:AsyncpgBackend",
                 ("asyncpg",), "postgres", "asyncpg connection pool", _SQL_OPTIONS, trio=False),
     ("postgresql", "postgres")),
    (BackendSpec("sql", "postgresql+psycopg", "asyncify_kit.sql._backends._psycopg:PsycopgBackend",
                 ("psycopg", "psycopg_pool"), "postgres", "psycopg 3 async with psycopg_pool",
                 _SQL_OPTIONS), ()),
    (BackendSpec("sql", "postgresql+psycopg2",
                 "asyncify_kit.sql._backends._psycopg2:Psycopg2Backend",
                 ("psycopg2",), "postgres", "legacy psycopg2 run through asyncify", _SQL_OPTIONS),
     ()),
    (BackendSpec("sql", "mysql+asyncmy", "asyncify_kit.sql._backends._asyncmy:AsyncmyBackend",
                 ("asyncmy",), "mysql", "asyncmy connection pool", _SQL_OPTIONS, trio=False),
     ("mysql", "mariadb")),
    (BackendSpec("sql", "mysql+aiomysql", "asyncify_kit.sql._backends._aiomysql:AiomysqlBackend",
                 ("aiomysql",), "mysql", "aiomysql connection pool", _SQL_OPTIONS, trio=False), ()),
    (BackendSpec("sql", "mysql+pymysql", "asyncify_kit.sql._backends._pymysql:PymysqlBackend",
                 ("pymysql",), "mysql", "legacy PyMySQL run through asyncify", _SQL_OPTIONS), ()),
    (BackendSpec("sql", "sqlite", "asyncify_kit.sql._backends._sqlite:SqliteBackend",
                 (), "", "stdlib sqlite3 on one pinned thread", _SQL_OPTIONS), ()),
]

# -- storage (issue: Storage facade) -----------------------------------------------------
STORAGE_BACKENDS: list[_Row] = [
    (BackendSpec("storage", "file", "asyncify_kit.storage._backends._file:FileBackend",
                 (), "", "local files, one thread hop per operation"), ()),
    (BackendSpec("storage", "file+aiofiles",
                 "asyncify_kit.storage._backends._aiofiles:AiofilesBackend",
                 ("aiofiles",), "files", "local files through aiofiles"), ()),
    (BackendSpec("storage", "s3", "asyncify_kit.storage._backends._s3:S3Backend",
                 ("aioboto3",), "s3", "S3 through aioboto3", trio=False), ()),
    (BackendSpec("storage", "s3+boto3", "asyncify_kit.storage._backends._boto3:Boto3Backend",
                 ("boto3",), "s3", "S3 through boto3 run in threads"), ()),
    (BackendSpec("storage", "memory", "asyncify_kit.storage._backends._memory:MemoryBackend",
                 (), "", "in-process memory, for tests"), ()),
]

# -- http (issue: HTTP facade) -----------------------------------------------------------
HTTP_BACKENDS: list[_Row] = [
    (BackendSpec("http", "httpx", "asyncify_kit.http._backends._httpx:HttpxBackend",
                 ("httpx",), "http", "httpx.AsyncClient"), ()),
    (BackendSpec("http", "aiohttp", "asyncify_kit.http._backends._aiohttp:AiohttpBackend",
                 ("aiohttp",), "aiohttp", "aiohttp.ClientSession", trio=False), ()),
    (BackendSpec("http", "requests", "asyncify_kit.http._backends._requests:RequestsBackend",
                 ("requests",), "requests", "requests.Session run through asyncify"), ()),
]

BUILTIN_BACKENDS: list[_Row] = [*SQL_BACKENDS, *STORAGE_BACKENDS, *HTTP_BACKENDS]
