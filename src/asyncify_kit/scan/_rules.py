"""The blocking calls the scanner knows, each with a rule id and the fix it suggests.

The table mirrors DESIGN.md's list of legacy sync libraries: for every job (HTTP, AWS,
files, PostgreSQL, MySQL, sqlite, sleeping, subprocesses, sockets, waiting for threads,
SQLAlchemy, redis, password hashing, mail, MongoDB, AI SDKs, cloud SDKs) a rule says which
calls block the event loop and which async facade or native driver replaces them.

Calls are matched by their fully qualified name after import resolution, so
``from requests import get as fetch; fetch(url)`` is ``requests.get``. Calls on objects are
matched through the type the scanner infers for the object: ``requests.Session().get`` is
``requests.Session.get``; ``sqlite3.connect(p).cursor().execute`` is
``sqlite3.Cursor.execute``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ANY_METHOD_TYPES",
    "ATTRIBUTE_TYPES",
    "BLOCKING_CALLS",
    "CUSTOM_RULE",
    "FACTORIES",
    "NAMESPACE_TYPES",
    "OFFLOAD_DECORATORS",
    "RULES",
    "SYNTAX_ERROR_RULE",
    "TYPE_ALIASES",
    "Rule",
    "rule_for",
]


@dataclass(frozen=True)
class Rule:
    """One kind of blocking call: an id such as ``ASY101``, a short name and the fix.

    Example:
        >>> RULES["ASY111"].name
        'time-sleep'
    """

    id: str
    name: str
    summary: str
    fix: str


_RULE_LIST = (
    Rule(
        "ASY001",
        "syntax-error",
        "The file could not be parsed; it was not scanned.",
        "fix the syntax error, or exclude the file in [tool.asyncify-kit.scan]",
    ),
    Rule(
        "ASY100",
        "custom-rule",
        "A call listed under extra-rules in [tool.asyncify-kit.scan] blocks the event loop.",
        "see the fix configured for this call",
    ),
    Rule(
        "ASY101",
        "http-requests",
        "requests performs blocking network I/O.",
        "use asyncify_kit.http.HttpClient (httpx.AsyncClient or aiohttp), or `await run_sync(...)`",
    ),
    Rule(
        "ASY102",
        "http-httpx-sync",
        "httpx's sync API (httpx.get, httpx.Client) performs blocking network I/O.",
        "use httpx.AsyncClient or asyncify_kit.http.HttpClient",
    ),
    Rule(
        "ASY103",
        "http-urllib",
        "urllib, urllib3 and http.client perform blocking network I/O.",
        "use asyncify_kit.http.HttpClient (httpx.AsyncClient), or `await run_sync(...)`",
    ),
    Rule(
        "ASY104",
        "aws-boto3",
        "boto3/botocore clients and resources perform blocking network I/O.",
        "use asyncify_kit.storage (S3) or asyncify_kit.aws (aioboto3), "
        "or `wrap(client)` to offload every method",
    ),
    Rule(
        "ASY105",
        "file-open",
        "open() reads and writes files on the event loop.",
        "use asyncify_kit.storage (file://) or aiofiles, or `await run_sync(...)`",
    ),
    Rule(
        "ASY106",
        "file-pathlib",
        "pathlib.Path file-system methods block on disk I/O.",
        "use asyncify_kit.storage (file://), anyio.Path, or `await run_sync(...)`",
    ),
    Rule(
        "ASY107",
        "file-os",
        "os, os.path and shutil file-system calls block on disk I/O.",
        "use asyncify_kit.storage (file://), anyio.Path, or `await run_sync(...)`",
    ),
    Rule(
        "ASY108",
        "db-postgres-sync",
        "psycopg2 and sync psycopg block on the database round trip.",
        "use asyncify_kit.sql.Database with postgresql+asyncpg:// or postgresql+psycopg://",
    ),
    Rule(
        "ASY109",
        "db-mysql-sync",
        "PyMySQL and mysqlclient (MySQLdb) block on the database round trip.",
        "use asyncify_kit.sql.Database with mysql+asyncmy:// or mysql+aiomysql://",
    ),
    Rule(
        "ASY110",
        "db-sqlite",
        "sqlite3 blocks on disk I/O and locks.",
        "use asyncify_kit.sql.Database with sqlite:// (a pinned thread), "
        "or an @asyncify function per unit of work (connect, query, fetch, close)",
    ),
    Rule(
        "ASY111",
        "time-sleep",
        "time.sleep stops the whole event loop.",
        "use `await asyncio.sleep(...)`, `await anyio.sleep(...)` or `await trio.sleep(...)`",
    ),
    Rule(
        "ASY112",
        "subprocess",
        "subprocess and os.system wait for a child process on the event loop.",
        "use asyncio.create_subprocess_exec, anyio.run_process or trio.run_process",
    ),
    Rule(
        "ASY113",
        "blocking-socket",
        "Blocking sockets and DNS lookups wait on the network.",
        "use asyncio.open_connection, anyio.connect_tcp or loop.getaddrinfo",
    ),
    Rule(
        "ASY114",
        "sync-wait",
        "Waiting for a thread, a lock, a queue, a future or a line of input stops the event "
        "loop (and a future of this loop, such as run_coroutine_threadsafe's, never ends).",
        "use asyncio or anyio primitives (asyncio.Event, asyncio.Queue, "
        "`await asyncio.wrap_future(future)`), or `await run_sync(...)`",
    ),
    Rule(
        "ASY115",
        "db-sqlalchemy-sync",
        "SQLAlchemy's sync engines, connections and sessions block on the database round trip.",
        "use sqlalchemy.ext.asyncio (create_async_engine, AsyncSession) or "
        "asyncify_kit.sql.Database, or make the endpoint a plain `def`",
    ),
    Rule(
        "ASY116",
        "redis-sync",
        "The sync redis client (redis.Redis) blocks on every command.",
        "use redis.asyncio.Redis, or `await run_sync(...)`",
    ),
    Rule(
        "ASY117",
        "password-hash",
        "Password hashing (bcrypt, passlib, argon2, hashlib.pbkdf2_hmac, hashlib.scrypt) takes "
        "tens to hundreds of milliseconds of CPU by design.",
        "`await run_sync(...)`: bcrypt, argon2 and hashlib release the GIL while they hash",
    ),
    Rule(
        "ASY118",
        "mail-smtp",
        "smtplib connects and sends mail over a blocking socket.",
        "use aiosmtplib, or `await run_sync(...)`",
    ),
    Rule(
        "ASY119",
        "mongodb-sync",
        "pymongo's MongoClient blocks on every database round trip (and a find() cursor on "
        "each batch it reads).",
        "use pymongo.AsyncMongoClient (pymongo 4.10+) or motor, or `await run_sync(...)`",
    ),
    Rule(
        "ASY120",
        "ai-sdk-sync",
        "The sync OpenAI and Anthropic clients block on every API request, often for seconds.",
        "use openai.AsyncOpenAI or anthropic.AsyncAnthropic, or `await run_sync(...)`",
    ),
    Rule(
        "ASY121",
        "cloud-sdk-sync",
        "The sync clients of Google Cloud Storage, Azure Blob Storage and Elasticsearch block "
        "on every request.",
        "use azure.storage.blob.aio, elasticsearch.AsyncElasticsearch or gcloud-aio-storage, "
        "or `await run_sync(...)`",
    ),
)

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULE_LIST}
SYNTAX_ERROR_RULE = RULES["ASY001"]
CUSTOM_RULE = RULES["ASY100"]


def rule_for(key: str) -> Rule | None:
    """The rule whose id (``ASY101``) or name (``http-requests``) is `key`."""
    rule = RULES.get(key.upper())
    if rule is not None:
        return rule
    for candidate in _RULE_LIST:
        if candidate.name == key.lower():
            return candidate
    return None


_HTTP_VERBS = ("get", "post", "put", "patch", "delete", "head", "options", "request")


def _names(prefix: str, names: tuple[str, ...] | str, rule: str) -> dict[str, str]:
    if isinstance(names, str):
        names = tuple(names.split())
    return {f"{prefix}.{name}": rule for name in names}


# passlib's ready-made hashers (``passlib.hash.bcrypt.hash(...)``): each is an object
_PASSLIB_HASHERS = (
    "bcrypt",
    "bcrypt_sha256",
    "argon2",
    "pbkdf2_sha256",
    "pbkdf2_sha512",
    "sha256_crypt",
    "sha512_crypt",
    "scrypt",
)

# psycopg2's pools, one type for the scanner: ``getconn()`` gives a psycopg2 connection
_PSYCOPG2_POOLS = (
    "SimpleConnectionPool",
    "ThreadedConnectionPool",
    "PersistentConnectionPool",
    "AbstractConnectionPool",
)

# Fully qualified call name -> rule id.
BLOCKING_CALLS: dict[str, str] = {
    # requests
    **_names("requests", _HTTP_VERBS, "ASY101"),
    **_names("requests.api", _HTTP_VERBS, "ASY101"),
    **_names("requests.Session", (*_HTTP_VERBS, "send"), "ASY101"),
    # httpx, sync API
    **_names("httpx", (*_HTTP_VERBS, "stream"), "ASY102"),
    **_names("httpx.Client", (*_HTTP_VERBS, "send", "stream"), "ASY102"),
    # urllib, urllib3, http.client
    **_names("urllib.request", "urlopen urlretrieve", "ASY103"),
    **_names("urllib.request.OpenerDirector", "open", "ASY103"),
    **_names("urllib3", "request", "ASY103"),
    **_names("urllib3.PoolManager", "request urlopen request_encode_body", "ASY103"),
    **_names("http.client.HTTPConnection", "request getresponse connect send", "ASY103"),
    # boto3: client/resource methods are matched through ANY_METHOD_TYPES
    **_names("boto3.Paginator", "paginate", "ASY104"),
    **_names("boto3.Waiter", "wait", "ASY104"),
    # files
    "builtins.open": "ASY105",
    "io.open": "ASY105",
    "io.open_code": "ASY105",
    "codecs.open": "ASY105",
    # (SpooledTemporaryFile stays in memory until it rolls over: not listed)
    **_names("tempfile", "NamedTemporaryFile TemporaryFile", "ASY105"),
    # compressed files and archives: opening one opens the file (and reads an archive's index)
    **{f"{module}.open": "ASY105" for module in ("gzip", "bz2", "lzma", "tarfile")},
    "zipfile.ZipFile": "ASY105",
    # pandas readers open a file (or fetch a URL) and parse it whole
    **_names(
        "pandas",
        "read_csv read_table read_fwf read_json read_parquet read_feather read_orc read_excel "
        "read_pickle read_hdf read_html read_xml read_sas read_spss read_stata read_sql "
        "read_sql_query read_sql_table",
        "ASY105",
    ),
    **_names(
        "pathlib.Path",
        "open read_text read_bytes write_text write_bytes exists is_file is_dir is_symlink "
        "is_mount stat lstat mkdir rmdir unlink touch rename replace iterdir glob rglob walk "
        "chmod samefile owner group readlink symlink_to hardlink_to copy move resolve",
        "ASY106",
    ),
    **_names(
        "os",
        "listdir scandir walk fwalk stat lstat remove unlink rename renames replace makedirs "
        "mkdir rmdir removedirs open read write fsync fdatasync truncate chmod chown link "
        "symlink readlink utime access fdopen sendfile",
        "ASY107",
    ),
    **_names(
        "os.path",
        "exists lexists isfile isdir islink ismount getsize getmtime getatime getctime "
        "samefile realpath",
        "ASY107",
    ),
    **_names(
        "shutil",
        "copy copy2 copyfile copyfileobj copytree copymode copystat move rmtree "
        "make_archive unpack_archive disk_usage chown which",
        "ASY107",
    ),
    **_names("glob", "glob iglob", "ASY107"),
    **_names("tempfile", "mkstemp mkdtemp TemporaryDirectory", "ASY107"),
    # PostgreSQL
    "psycopg2.connect": "ASY108",
    **_names("psycopg2.connection", "commit rollback", "ASY108"),
    **_names(
        "psycopg2.cursor",
        "execute executemany fetchone fetchmany fetchall callproc copy_expert copy_from "
        "copy_to scroll",
        "ASY108",
    ),
    "psycopg.connect": "ASY108",
    "psycopg.Connection.connect": "ASY108",
    **_names("psycopg.Connection", "execute commit rollback transaction", "ASY108"),
    **_names(
        "psycopg.Cursor", "execute executemany fetchone fetchmany fetchall copy scroll", "ASY108"
    ),
    **_names("psycopg_pool.ConnectionPool", "connection getconn wait open", "ASY108"),
    **_names("psycopg2.pool.AbstractConnectionPool", "getconn putconn closeall", "ASY108"),
    # MySQL / MariaDB
    **_names("pymysql", "connect Connect", "ASY109"),
    "pymysql.connections.Connection": "ASY109",
    **_names("MySQLdb", "connect Connect", "ASY109"),
    "MySQLdb.connections.Connection": "ASY109",
    **_names("pymysql.Connection", "commit rollback ping select_db query begin", "ASY109"),
    **_names(
        "pymysql.Cursor",
        "execute executemany fetchone fetchmany fetchall callproc nextset",
        "ASY109",
    ),
    **_names("MySQLdb.Connection", "commit rollback ping select_db query begin", "ASY109"),
    **_names(
        "MySQLdb.Cursor",
        "execute executemany fetchone fetchmany fetchall callproc nextset",
        "ASY109",
    ),
    # sqlite3
    "sqlite3.connect": "ASY110",
    **_names(
        "sqlite3.Connection",
        "execute executemany executescript commit rollback backup iterdump",
        "ASY110",
    ),
    **_names(
        "sqlite3.Cursor", "execute executemany executescript fetchone fetchmany fetchall", "ASY110"
    ),
    # sleeping
    "time.sleep": "ASY111",
    # subprocesses
    **_names(
        "subprocess",
        "run call check_call check_output getoutput getstatusoutput Popen",
        "ASY112",
    ),
    **_names("subprocess.Popen", "wait communicate", "ASY112"),
    **_names(
        "os",
        "system popen wait waitpid wait3 wait4 spawnl spawnle spawnlp spawnlpe spawnv spawnve "
        "spawnvp spawnvpe posix_spawn posix_spawnp",
        "ASY112",
    ),
    # sockets and DNS
    **_names(
        "socket",
        "create_connection create_server getaddrinfo gethostbyname gethostbyname_ex "
        "gethostbyaddr getnameinfo getfqdn",
        "ASY113",
    ),
    **_names(
        "socket.socket",
        "connect connect_ex accept recv recv_into recvfrom recvfrom_into recvmsg send sendall "
        "sendto sendmsg sendfile",
        "ASY113",
    ),
    **_names("ssl.SSLSocket", "connect accept recv send sendall do_handshake read write", "ASY113"),
    # waiting for threads, locks, queues, futures and standard input
    "builtins.input": "ASY114",
    # (``__enter__``: ``with lock:`` acquires it, see `_with_sites`)
    **_names("threading.Lock", "acquire __enter__", "ASY114"),
    **_names("threading.RLock", "acquire __enter__", "ASY114"),
    **_names("threading.Semaphore", "acquire __enter__", "ASY114"),
    **_names("threading.Condition", "acquire wait wait_for __enter__", "ASY114"),
    **_names("threading.Event", "wait", "ASY114"),
    **_names("threading.Barrier", "wait", "ASY114"),
    **_names("threading.Thread", "join", "ASY114"),
    # (not put: an unbounded queue, the usual one, never waits to put)
    **_names("queue.Queue", "get join", "ASY114"),
    **_names("concurrent.futures.Future", "result exception", "ASY114"),
    # (``as_completed`` and ``Executor.map`` wait as their iterators are consumed; an
    # executor's ``with`` block waits for all its work at the end, see `_with_sites`)
    **_names("concurrent.futures", "wait as_completed", "ASY114"),
    **_names("concurrent.futures.Executor", "shutdown map __exit__", "ASY114"),
    **_names("multiprocessing.pool.AsyncResult", "get wait", "ASY114"),
    # SQLAlchemy, sync API (sqlalchemy.ext.asyncio's names differ, and are not listed)
    **_names("sqlalchemy.Engine", "connect begin raw_connection dispose", "ASY115"),
    **_names(
        "sqlalchemy.Connection",
        "execute exec_driver_sql scalar scalars commit rollback begin begin_nested",
        "ASY115",
    ),
    **_names(
        "sqlalchemy.orm.Session",
        "execute exec scalar scalars get get_one commit rollback flush refresh merge delete "
        "connection begin begin_nested",
        "ASY115",
    ),
    **_names(
        "sqlalchemy.orm.Query",
        "all first one one_or_none scalar count get delete update exists __iter__",
        "ASY115",
    ),
    # redis: redis.Redis methods through ANY_METHOD_TYPES
    **_names("redis.Pipeline", "execute", "ASY116"),
    **_names(
        "redis.PubSub",
        "subscribe psubscribe unsubscribe punsubscribe get_message listen ping",
        "ASY116",
    ),
    **_names("redis.Lock", "acquire release extend reacquire locked owned", "ASY116"),
    # password hashing
    **_names("bcrypt", "hashpw checkpw kdf", "ASY117"),
    **_names("hashlib", "pbkdf2_hmac scrypt", "ASY117"),
    **_names("passlib.CryptContext", "hash verify verify_and_update encrypt", "ASY117"),
    **_names("passlib.Hasher", "hash verify encrypt", "ASY117"),
    **{
        f"passlib.hash.{name}.{method}": "ASY117"
        for name in _PASSLIB_HASHERS
        for method in ("hash", "verify", "encrypt")
    },
    **_names("argon2.PasswordHasher", "hash verify", "ASY117"),
    # smtplib (given a host, SMTP(...) connects in its constructor)
    **_names("smtplib", "SMTP SMTP_SSL LMTP", "ASY118"),
    **_names(
        "smtplib.SMTP",
        "connect login starttls ehlo helo ehlo_or_helo_if_needed sendmail send_message "
        "noop rset verify quit auth",
        "ASY118",
    ),
    # pymongo: the client, its databases and collections are one namespace (NAMESPACE_TYPES),
    # whose methods match through ANY_METHOD_TYPES; a find() cursor reads as it is used
    **_names(
        "pymongo.Cursor",
        "next to_list try_next explain distinct close __iter__ __next__",
        "ASY119",
    ),
}

# Calls that create an object of a known type: call name -> type name.
FACTORIES: dict[str, str] = {
    "requests.Session": "requests.Session",
    "requests.session": "requests.Session",
    "requests.sessions.Session": "requests.Session",
    "httpx.Client": "httpx.Client",
    "urllib.request.build_opener": "urllib.request.OpenerDirector",
    "urllib.request.OpenerDirector": "urllib.request.OpenerDirector",
    "urllib3.PoolManager": "urllib3.PoolManager",
    "urllib3.HTTPConnectionPool": "urllib3.PoolManager",
    "urllib3.HTTPSConnectionPool": "urllib3.PoolManager",
    "http.client.HTTPConnection": "http.client.HTTPConnection",
    "http.client.HTTPSConnection": "http.client.HTTPConnection",
    "boto3.client": "boto3.client",
    "boto3.resource": "boto3.resource",
    "boto3.Session": "boto3.Session",
    "boto3.session.Session": "boto3.Session",
    "boto3.Session.client": "boto3.client",
    "boto3.Session.resource": "boto3.resource",
    "botocore.session.get_session": "botocore.Session",
    "botocore.session.Session": "botocore.Session",
    "botocore.Session.create_client": "boto3.client",
    "boto3.client.get_paginator": "boto3.Paginator",
    "boto3.client.get_waiter": "boto3.Waiter",
    "pathlib.Path": "pathlib.Path",
    "pathlib.PosixPath": "pathlib.Path",
    "pathlib.WindowsPath": "pathlib.Path",
    "pathlib.Path.cwd": "pathlib.Path",
    "pathlib.Path.home": "pathlib.Path",
    **{
        f"pathlib.Path.{name}": "pathlib.Path"
        for name in [
            "joinpath",
            "with_name",
            "with_suffix",
            "with_stem",
            "relative_to",
            "absolute",
            "resolve",
            "expanduser",
        ]
    },
    "psycopg2.connect": "psycopg2.connection",
    "psycopg2.connection.cursor": "psycopg2.cursor",
    "psycopg.connect": "psycopg.Connection",
    "psycopg.Connection.connect": "psycopg.Connection",
    "psycopg.Connection.cursor": "psycopg.Cursor",
    "psycopg.Connection.execute": "psycopg.Cursor",
    "psycopg_pool.ConnectionPool": "psycopg_pool.ConnectionPool",
    "psycopg_pool.ConnectionPool.getconn": "psycopg.Connection",
    # (a context manager: ``with pool.connection() as conn`` gives the connection)
    "psycopg_pool.ConnectionPool.connection": "psycopg.Connection",
    **{f"psycopg2.pool.{name}": "psycopg2.pool.AbstractConnectionPool" for name in _PSYCOPG2_POOLS},
    "psycopg2.pool.AbstractConnectionPool.getconn": "psycopg2.connection",
    "pymysql.connect": "pymysql.Connection",
    "pymysql.Connect": "pymysql.Connection",
    "pymysql.connections.Connection": "pymysql.Connection",
    "pymysql.Connection.cursor": "pymysql.Cursor",
    "MySQLdb.connect": "MySQLdb.Connection",
    "MySQLdb.Connect": "MySQLdb.Connection",
    "MySQLdb.connections.Connection": "MySQLdb.Connection",
    "MySQLdb.Connection.cursor": "MySQLdb.Cursor",
    "sqlite3.connect": "sqlite3.Connection",
    "sqlite3.Connection.cursor": "sqlite3.Cursor",
    "sqlite3.Connection.execute": "sqlite3.Cursor",
    "subprocess.Popen": "subprocess.Popen",
    "socket.socket": "socket.socket",
    "socket.create_connection": "socket.socket",
    "socket.socket.accept": "socket.socket",
    "ssl.SSLContext.wrap_socket": "ssl.SSLSocket",
    "ssl.create_default_context": "ssl.SSLContext",
    "ssl.SSLContext": "ssl.SSLContext",
    "threading.Lock": "threading.Lock",
    "threading.RLock": "threading.RLock",
    "threading.Semaphore": "threading.Semaphore",
    "threading.BoundedSemaphore": "threading.Semaphore",
    "threading.Condition": "threading.Condition",
    "threading.Event": "threading.Event",
    "threading.Barrier": "threading.Barrier",
    "threading.Thread": "threading.Thread",
    "threading.Timer": "threading.Thread",
    "queue.Queue": "queue.Queue",
    "queue.LifoQueue": "queue.Queue",
    "queue.PriorityQueue": "queue.Queue",
    "queue.SimpleQueue": "queue.Queue",
    "concurrent.futures.ThreadPoolExecutor": "concurrent.futures.Executor",
    "concurrent.futures.ProcessPoolExecutor": "concurrent.futures.Executor",
    "concurrent.futures.Executor.submit": "concurrent.futures.Future",
    "concurrent.futures.Future": "concurrent.futures.Future",
    "asyncio.run_coroutine_threadsafe": "concurrent.futures.Future",
    "multiprocessing.Pool": "multiprocessing.pool.Pool",
    "multiprocessing.pool.Pool": "multiprocessing.pool.Pool",
    "multiprocessing.pool.ThreadPool": "multiprocessing.pool.Pool",
    "multiprocessing.pool.Pool.apply_async": "multiprocessing.pool.AsyncResult",
    "multiprocessing.pool.Pool.map_async": "multiprocessing.pool.AsyncResult",
    "multiprocessing.pool.Pool.starmap_async": "multiprocessing.pool.AsyncResult",
    "sqlalchemy.create_engine": "sqlalchemy.Engine",
    "sqlmodel.create_engine": "sqlalchemy.Engine",
    "sqlalchemy.engine_from_config": "sqlalchemy.Engine",
    "sqlalchemy.Engine.connect": "sqlalchemy.Connection",
    "sqlalchemy.Engine.begin": "sqlalchemy.Connection",
    "sqlalchemy.orm.Session": "sqlalchemy.orm.Session",
    "sqlmodel.Session": "sqlalchemy.orm.Session",
    "sqlalchemy.orm.sessionmaker": "sqlalchemy.orm.sessionmaker",
    "sqlalchemy.orm.sessionmaker.__call__": "sqlalchemy.orm.Session",
    "sqlalchemy.orm.sessionmaker.begin": "sqlalchemy.orm.Session",
    "sqlalchemy.orm.scoped_session": "sqlalchemy.orm.Session",
    "sqlalchemy.orm.Session.query": "sqlalchemy.orm.Query",
    **_names(
        "sqlalchemy.orm.Query",
        "filter filter_by where order_by group_by having limit offset join outerjoin options "
        "distinct select_from with_entities execution_options",
        "sqlalchemy.orm.Query",
    ),
    "redis.Redis": "redis.Redis",
    "redis.StrictRedis": "redis.Redis",
    "redis.from_url": "redis.Redis",
    "redis.Redis.from_url": "redis.Redis",
    "redis.Redis.from_pool": "redis.Redis",
    "redis.Redis.pipeline": "redis.Pipeline",
    "redis.Redis.pubsub": "redis.PubSub",
    "redis.Redis.lock": "redis.Lock",
    "passlib.context.CryptContext": "passlib.CryptContext",
    **{f"passlib.hash.{name}.using": "passlib.Hasher" for name in _PASSLIB_HASHERS},
    "argon2.PasswordHasher": "argon2.PasswordHasher",
    "smtplib.SMTP": "smtplib.SMTP",
    "smtplib.SMTP_SSL": "smtplib.SMTP",
    "smtplib.LMTP": "smtplib.SMTP",
    "pymongo.MongoClient": "pymongo.MongoClient",
    "pymongo.mongo_client.MongoClient": "pymongo.MongoClient",
    **_names(
        "pymongo.MongoClient",
        "get_database get_default_database get_collection with_options",
        "pymongo.MongoClient",
    ),
    **_names("pymongo.MongoClient", "find find_raw_batches", "pymongo.Cursor"),
    **_names(
        "pymongo.Cursor",
        "sort limit skip batch_size hint max_time_ms where collation comment allow_disk_use",
        "pymongo.Cursor",
    ),
    **{name: "openai.OpenAI" for name in ("openai.OpenAI", "openai.Client", "openai.AzureOpenAI")},
    **_names("openai.OpenAI", "with_options copy", "openai.OpenAI"),
    **{
        name: "anthropic.Anthropic"
        for name in (
            "anthropic.Anthropic",
            "anthropic.Client",
            "anthropic.AnthropicBedrock",
            "anthropic.AnthropicVertex",
        )
    },
    **_names("anthropic.Anthropic", "with_options copy", "anthropic.Anthropic"),
    # Google Cloud Storage, Azure Blob Storage, Elasticsearch: namespaces (NAMESPACE_TYPES)
    **{
        name: "google.cloud.storage.Client"
        for name in ("google.cloud.storage.Client", "google.cloud.storage.client.Client")
    },
    **_names("google.cloud.storage.Client", "bucket blob batch", "google.cloud.storage.Client"),
    **{
        f"azure.storage.blob.{name}": "azure.storage.blob.BlobServiceClient"
        for name in ("BlobServiceClient", "ContainerClient", "BlobClient")
    },
    **{
        f"azure.storage.blob.{cls}.{factory}": "azure.storage.blob.BlobServiceClient"
        for cls in ("BlobServiceClient", "ContainerClient", "BlobClient")
        for factory in ("from_connection_string", "from_container_url", "from_blob_url")
    },
    **_names(
        "azure.storage.blob.BlobServiceClient",
        "get_container_client get_blob_client",
        "azure.storage.blob.BlobServiceClient",
    ),
    "elasticsearch.Elasticsearch": "elasticsearch.Elasticsearch",
    **_names("elasticsearch.Elasticsearch", "options", "elasticsearch.Elasticsearch"),
}

# Types whose attributes, at any depth, are the same kind of object: an attribute of a
# boto3 resource (``resource.Bucket``), of a MongoClient (``client.shop.users``: a database,
# then a collection) or of an AI SDK client (``client.chat.completions``). ``value.a.b.m`` is
# matched as ``type.m``. Names of a module that stand for such an object (the module-level
# client of ``openai``: ``openai.chat.completions.create``) are listed with it.
NAMESPACE_TYPES: dict[str, tuple[str, ...]] = {
    "boto3.resource": (),
    "pymongo.MongoClient": (),
    "openai.OpenAI": tuple(
        _names(
            "openai",
            "audio batches beta chat completions containers conversations embeddings evals "
            "files fine_tuning images models moderations realtime responses uploads "
            "vector_stores webhooks",
            "",
        )
    ),
    "anthropic.Anthropic": (),
    "google.cloud.storage.Client": (),
    "azure.storage.blob.BlobServiceClient": (),
    "elasticsearch.Elasticsearch": (),
}

# Types on which every public method call blocks (boto3 clients are generated at runtime,
# so their methods cannot be listed): type -> (rule id, methods that do not block).
ANY_METHOD_TYPES: dict[str, tuple[str, frozenset[str]]] = {
    "boto3.client": (
        "ASY104",
        frozenset(
            [
                "get_paginator",
                "get_waiter",
                "can_paginate",
                "generate_presigned_url",
                "generate_presigned_post",
                "close",
            ]
        ),
    ),
    # a resource collection (``bucket.objects.filter(...)``, ``all()``, ``limit()``,
    # ``page_size()``) requests page after page as it is iterated: reported where it is made,
    # as pymongo's find()
    "boto3.resource": ("ASY104", frozenset()),
    "pymongo.MongoClient": (
        "ASY119",
        frozenset(
            [
                "get_database",
                "get_default_database",
                "get_collection",
                "with_options",
                "close",
                "start_session",
                "codec_options",
                "read_preference",
                "write_concern",
                "read_concern",
            ]
        ),
    ),
    "openai.OpenAI": ("ASY120", frozenset(["with_options", "copy", "close"])),
    "anthropic.Anthropic": ("ASY120", frozenset(["with_options", "copy", "close"])),
    "google.cloud.storage.Client": (
        "ASY121",
        frozenset(["bucket", "blob", "batch", "close", "generate_signed_url", "from_string"]),
    ),
    "azure.storage.blob.BlobServiceClient": (
        "ASY121",
        frozenset(
            [
                "get_container_client",
                "get_blob_client",
                "from_connection_string",
                "from_container_url",
                "from_blob_url",
                "close",
            ]
        ),
    ),
    "elasticsearch.Elasticsearch": ("ASY121", frozenset(["options", "close"])),
    "redis.Redis": (
        "ASY116",
        frozenset(
            [
                "pipeline",
                "pubsub",
                "lock",
                "from_url",
                "from_pool",
                "register_script",
                "get_encoder",
                "get_connection_kwargs",
                "set_response_callback",
                "close",
            ]
        ),
    ),
}

# Decorators that make a sync function run in a worker thread when it is called.
OFFLOAD_DECORATORS: frozenset[str] = frozenset(
    {
        "asyncify_kit.asyncify",
        "asyncify_kit._offload.asyncify",
        "asyncer.asyncify",
        "asgiref.sync.sync_to_async",
    }
)

# Attributes of known types that are themselves of a known type: name -> type.
ATTRIBUTE_TYPES: dict[str, str] = {
    "pathlib.Path.parent": "pathlib.Path",
    "boto3.client.meta": "boto3.meta",
}

# Other spellings of the known types, as found in annotations: name -> type.
TYPE_ALIASES: dict[str, str] = {
    "requests.sessions.Session": "requests.Session",
    "httpx._client.Client": "httpx.Client",
    "urllib3.poolmanager.PoolManager": "urllib3.PoolManager",
    "http.client.HTTPSConnection": "http.client.HTTPConnection",
    "boto3.session.Session": "boto3.Session",
    "botocore.client.BaseClient": "boto3.client",
    "pathlib.PosixPath": "pathlib.Path",
    "pathlib.WindowsPath": "pathlib.Path",
    "psycopg2.extensions.connection": "psycopg2.connection",
    "psycopg2.extensions.cursor": "psycopg2.cursor",
    "psycopg.connection.Connection": "psycopg.Connection",
    "psycopg.cursor.Cursor": "psycopg.Cursor",
    **{f"psycopg2.pool.{name}": "psycopg2.pool.AbstractConnectionPool" for name in _PSYCOPG2_POOLS},
    "psycopg_pool.pool.ConnectionPool": "psycopg_pool.ConnectionPool",
    "pymysql.connections.Connection": "pymysql.Connection",
    "pymysql.cursors.Cursor": "pymysql.Cursor",
    "pymysql.cursors.DictCursor": "pymysql.Cursor",
    "MySQLdb.connections.Connection": "MySQLdb.Connection",
    "MySQLdb.cursors.Cursor": "MySQLdb.Cursor",
    "sqlite3.dbapi2.Connection": "sqlite3.Connection",
    "sqlite3.dbapi2.Cursor": "sqlite3.Cursor",
    "socket.SocketType": "socket.socket",
    "threading.BoundedSemaphore": "threading.Semaphore",
    "threading.Timer": "threading.Thread",
    "queue.LifoQueue": "queue.Queue",
    "queue.PriorityQueue": "queue.Queue",
    "queue.SimpleQueue": "queue.Queue",
    "concurrent.futures._base.Future": "concurrent.futures.Future",
    "concurrent.futures.ThreadPoolExecutor": "concurrent.futures.Executor",
    "concurrent.futures.ProcessPoolExecutor": "concurrent.futures.Executor",
    "concurrent.futures.thread.ThreadPoolExecutor": "concurrent.futures.Executor",
    "concurrent.futures.process.ProcessPoolExecutor": "concurrent.futures.Executor",
    "concurrent.futures._base.Executor": "concurrent.futures.Executor",
    "multiprocessing.pool.ApplyResult": "multiprocessing.pool.AsyncResult",
    "sqlalchemy.engine.Engine": "sqlalchemy.Engine",
    "sqlalchemy.engine.base.Engine": "sqlalchemy.Engine",
    "sqlalchemy.engine.Connection": "sqlalchemy.Connection",
    "sqlalchemy.engine.base.Connection": "sqlalchemy.Connection",
    "sqlalchemy.orm.session.Session": "sqlalchemy.orm.Session",
    "sqlmodel.Session": "sqlalchemy.orm.Session",
    "sqlmodel.orm.session.Session": "sqlalchemy.orm.Session",
    "sqlalchemy.orm.scoping.scoped_session": "sqlalchemy.orm.Session",
    "sqlalchemy.orm.scoped_session": "sqlalchemy.orm.Session",
    "sqlalchemy.orm.query.Query": "sqlalchemy.orm.Query",
    "redis.client.Redis": "redis.Redis",
    "redis.StrictRedis": "redis.Redis",
    "redis.client.StrictRedis": "redis.Redis",
    "redis.client.Pipeline": "redis.Pipeline",
    "redis.client.PubSub": "redis.PubSub",
    "redis.lock.Lock": "redis.Lock",
    "passlib.context.CryptContext": "passlib.CryptContext",
    "argon2._password_hasher.PasswordHasher": "argon2.PasswordHasher",
    "smtplib.SMTP_SSL": "smtplib.SMTP",
    "smtplib.LMTP": "smtplib.SMTP",
    "pymongo.mongo_client.MongoClient": "pymongo.MongoClient",
    "pymongo.database.Database": "pymongo.MongoClient",
    "pymongo.collection.Collection": "pymongo.MongoClient",
    "pymongo.cursor.Cursor": "pymongo.Cursor",
    "openai.Client": "openai.OpenAI",
    "openai.AzureOpenAI": "openai.OpenAI",
    "openai._client.OpenAI": "openai.OpenAI",
    "anthropic.Client": "anthropic.Anthropic",
    "anthropic._client.Anthropic": "anthropic.Anthropic",
    "anthropic.AnthropicBedrock": "anthropic.Anthropic",
    "anthropic.AnthropicVertex": "anthropic.Anthropic",
    "google.cloud.storage.client.Client": "google.cloud.storage.Client",
    "google.cloud.storage.Bucket": "google.cloud.storage.Client",
    "google.cloud.storage.bucket.Bucket": "google.cloud.storage.Client",
    "google.cloud.storage.Blob": "google.cloud.storage.Client",
    "google.cloud.storage.blob.Blob": "google.cloud.storage.Client",
    "azure.storage.blob.ContainerClient": "azure.storage.blob.BlobServiceClient",
    "azure.storage.blob.BlobClient": "azure.storage.blob.BlobServiceClient",
    "elasticsearch.client.Elasticsearch": "elasticsearch.Elasticsearch",
}
