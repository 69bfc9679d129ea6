"""SQL: `Database` versus the raw drivers, encode/databases and hand-written threading.

Scenarios (PostgreSQL and MariaDB started by ``make bench``; one query at a time unless said):

* ``fetch_val`` of ``SELECT 1`` and ``fetch_all`` of a 100-row table, through asyncify-kit
  on asyncpg / asyncmy, against the raw driver's own pool (the baseline) and encode/databases
  on the same driver;
* 50 concurrent ``SELECT 1`` through the legacy blocking drivers (psycopg2, PyMySQL): asyncify-kit
  against the hand-written way, ``asyncio.to_thread`` around a thread-safe pool of the same
  driver (the baseline there).
"""

from __future__ import annotations

import asyncio
import os
import queue
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from asyncify_kit.sql import SPEEDUPS
from benchmarks._harness import Case, Runner, Scenario, Section, Target, timed

PG_ENV = "ASYNCIFY_TEST_POSTGRES_URL"
MY_ENV = "ASYNCIFY_TEST_MYSQL_URL"
POOL = 4  # connections per pool for the one-at-a-time scenarios
THREADED_POOL = 10  # connections (and threads) for the 50-concurrent scenarios
CONCURRENCY = 50
TABLE = "bench_sql_rows"

RAW = "raw driver"
RAW_BY_NAME = "raw driver, DictCursor"
RAW_RESET = "raw driver, reset on release"
KIT = "asyncify-kit"
ENCODE = "encode/databases"
VAL = "SELECT 1"
# the C base builds a 100-row result in ~4 µs, the pure-Python one in ~20 µs (docs/sql.md)
_ROW_BASE = "C" if SPEEDUPS else "pure-Python (ASYNCIFY_KIT_NO_EXTENSIONS)"
ROWS = f"SELECT id, name, value FROM {TABLE} ORDER BY id"


def _url(env: str) -> Any:
    from asyncify_kit import BackendURL

    return BackendURL.parse(os.environ[env])


def _prepare_tables() -> None:
    """Create and fill the 100-row table on both servers (blocking; before any timing)."""
    import psycopg2
    import pymysql

    pg = _url(PG_ENV)
    conn = psycopg2.connect(
        host=pg.host, port=pg.port, user=pg.username, password=pg.password, dbname=pg.database
    )
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cur.execute(f"CREATE TABLE {TABLE} (id int primary key, name varchar(32), value float8)")
        cur.executemany(
            f"INSERT INTO {TABLE} VALUES (%s, %s, %s)",
            [(i, f"name {i}", i * 1.5) for i in range(100)],
        )
    conn.close()
    my = _url(MY_ENV)
    mconn = pymysql.connect(
        host=my.host,
        port=my.port,
        user=my.username,
        password=my.password or "",
        database=my.database,
        autocommit=True,
    )
    with mconn.cursor() as mcur:
        mcur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        mcur.execute(f"CREATE TABLE {TABLE} (id int primary key, name varchar(32), value double)")
        mcur.executemany(
            f"INSERT INTO {TABLE} VALUES (%s, %s, %s)",
            [(i, f"name {i}", i * 1.5) for i in range(100)],
        )
    mconn.close()


def _sequential(work: Callable[[], Awaitable[object]]) -> Runner:
    async def run(ops: int) -> float:
        return await timed(ops, work)

    return run


def _concurrent(work: Callable[[], Awaitable[object]]) -> Runner:
    async def run(ops: int) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        per_task, extra = divmod(ops, CONCURRENCY)
        await asyncio.gather(*(timed(per_task + (i < extra), work) for i in range(CONCURRENCY)))
        return loop.time() - start

    return run


# -- asyncify-kit -------------------------------------------------------------------------------


def _kit(env: str, driver: str, sql: str, kind: str, size: int, concurrent: bool = False) -> Any:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        from asyncify_kit.sql import Database

        url = _url(env).replace(driver=driver)
        async with Database(url, min_size=size, max_size=size) as db:
            work: Callable[[], Awaitable[object]]
            if kind == "val":

                async def work() -> object:
                    return await db.fetch_val(sql)
            else:

                async def work() -> object:
                    return await db.fetch_all(sql)

            yield _concurrent(work) if concurrent else _sequential(work)

    return setup


# -- raw native drivers --------------------------------------------------------------------------


async def _keep_session(conn: Any) -> None:
    """asyncpg's pool ``reset=`` hook: leave the session as it is on release (no query)."""


def _raw_asyncpg(kind: str, reset_on_release: bool = False) -> Any:
    """asyncpg's own pool. By default without its reset on release: asyncpg's pool runs
    ``Connection.reset()`` (one more round trip: ``SELECT pg_advisory_unlock_all(); CLOSE
    ALL; UNLISTEN *; RESET ALL``) whenever a connection goes back, which asyncify-kit's pool
    does not do, so the baseline skips it too; *reset_on_release* keeps asyncpg's default."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

        pg = _url(PG_ENV)
        pool = await asyncpg.create_pool(
            host=pg.host,
            port=pg.port,
            user=pg.username,
            password=pg.password,
            database=pg.database,
            min_size=POOL,
            max_size=POOL,
            reset=None if reset_on_release else _keep_session,
        )
        try:
            if kind == "val":

                async def work() -> object:
                    return await pool.fetchval(VAL)
            else:

                async def work() -> object:
                    return await pool.fetch(ROWS)

            yield _sequential(work)
        finally:
            await pool.close()

    return setup


def _raw_asyncmy(kind: str, by_name: bool = False) -> Any:
    """asyncmy's own pool; *by_name*: its ``DictCursor`` (rows readable by column name, as
    `Row` is) instead of the plain tuple cursor."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        import asyncmy
        import asyncmy.cursors

        my = _url(MY_ENV)
        pool = await asyncmy.create_pool(
            host=my.host,
            port=my.port,
            user=my.username,
            password=my.password or "",
            db=my.database,
            minsize=POOL,
            maxsize=POOL,
            autocommit=True,
        )
        sql = VAL if kind == "val" else ROWS
        cursor_class = asyncmy.cursors.DictCursor if by_name else None
        try:

            async def work() -> object:
                async with pool.acquire() as conn, conn.cursor(cursor_class) as cur:
                    await cur.execute(sql)
                    if kind == "val":
                        row = await cur.fetchone()
                        return row[0]
                    return await cur.fetchall()

            yield _sequential(work)
        finally:
            pool.close()
            await pool.wait_closed()

    return setup


def _encode(env: str, driver: str, kind: str) -> Any:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        from databases import Database as EncodeDatabase

        url = _url(env).replace(driver=driver, options={"min_size": POOL, "max_size": POOL})
        db = EncodeDatabase(url.render(hide_password=False))
        await db.connect()
        try:
            if kind == "val":

                async def work() -> object:
                    return await db.fetch_val(VAL)
            else:

                async def work() -> object:
                    return await db.fetch_all(ROWS)

            yield _sequential(work)
        finally:
            await db.disconnect()

    return setup


# -- hand-written threading around the blocking drivers -----------------------------------------


def _to_thread(env: str) -> Any:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(THREADED_POOL)
        loop.set_default_executor(executor)  # asyncio's default is min(32, CPUs + 4) threads
        u = _url(env)
        connections: queue.Queue[Any] = queue.Queue()
        if env == PG_ENV:
            import psycopg2

            for _ in range(THREADED_POOL):
                conn = psycopg2.connect(
                    host=u.host,
                    port=u.port,
                    user=u.username,
                    password=u.password,
                    dbname=u.database,
                )
                conn.autocommit = True
                connections.put(conn)
        else:
            import pymysql

            for _ in range(THREADED_POOL):
                connections.put(
                    pymysql.connect(
                        host=u.host,
                        port=u.port,
                        user=u.username,
                        password=u.password or "",
                        database=u.database,
                        autocommit=True,
                    )
                )

        def query() -> object:
            conn = connections.get()
            try:
                cur = conn.cursor()
                cur.execute(VAL)
                value = cur.fetchone()[0]
                cur.close()
                return value
            finally:
                connections.put(conn)

        async def work() -> object:
            return await asyncio.to_thread(query)

        try:
            yield _concurrent(work)
        finally:
            while not connections.empty():
                connections.get().close()
            executor.shutdown(wait=False)

    return setup


def _cases() -> list[Case]:
    _prepare_tables()
    cases: list[Case] = []
    for kind in ("val", "rows"):
        cases += [
            Case(f"pg_{kind}", RAW, setup=_raw_asyncpg(kind), reference=True),
            Case(
                f"pg_{kind}",
                KIT,
                setup=_kit(PG_ENV, "asyncpg", VAL if kind == "val" else ROWS, kind, POOL),
                peer=False,
            ),
            Case(f"pg_{kind}", ENCODE, setup=_encode(PG_ENV, "asyncpg", kind)),
            Case(f"my_{kind}", RAW, setup=_raw_asyncmy(kind), reference=True),
            Case(
                f"my_{kind}",
                KIT,
                setup=_kit(MY_ENV, "asyncmy", VAL if kind == "val" else ROWS, kind, POOL),
                peer=False,
            ),
            Case(f"my_{kind}", ENCODE, setup=_encode(MY_ENV, "asyncmy", kind)),
        ]
    # asyncpg's pool as it comes, resetting the session on every release (a reference line
    # only: the baseline above skips that reset, as asyncify-kit's pool does)
    cases += [
        Case(f"pg_{kind}", RAW_RESET, setup=_raw_asyncpg(kind, True), reference=True)
        for kind in ("val", "rows")
    ]
    # what the raw driver costs when its rows are readable by column name, like Row (a
    # reference line only: the target stays against the plain tuple cursor)
    cases.append(Case("my_rows", RAW_BY_NAME, setup=_raw_asyncmy("rows", True), reference=True))
    cases += [
        Case("psycopg2_50", RAW, setup=_to_thread(PG_ENV), reference=True),
        Case(
            "psycopg2_50",
            KIT,
            setup=_kit(PG_ENV, "psycopg2", VAL, "val", THREADED_POOL, True),
            peer=False,
        ),
        Case("pymysql_50", RAW, setup=_to_thread(MY_ENV), reference=True),
        Case(
            "pymysql_50",
            KIT,
            setup=_kit(MY_ENV, "pymysql", VAL, "val", THREADED_POOL, True),
            peer=False,
        ),
    ]
    return cases


_NATIVE_TARGETS = (Target(KIT, max_ratio=1.10), Target(KIT, faster_than_peers=True))

SECTION = Section(
    name="sql",
    title="SQL: Database versus the raw drivers",
    baseline=RAW,
    description=(
        "One query at a time through a pool of 4 connections (PostgreSQL: asyncpg, MariaDB: "
        "asyncmy), and 50 concurrent queries through the blocking drivers with 10 connections."
    ),
    scenarios=(
        Scenario(
            "pg_val", "PostgreSQL fetch_val(SELECT 1), asyncpg", ops=700, targets=_NATIVE_TARGETS
        ),
        Scenario(
            "pg_rows", "PostgreSQL fetch_all, 100 rows, asyncpg", ops=200, targets=_NATIVE_TARGETS
        ),
        Scenario(
            "my_val", "MariaDB fetch_val(SELECT 1), asyncmy", ops=700, targets=_NATIVE_TARGETS
        ),
        Scenario(
            "my_rows", "MariaDB fetch_all, 100 rows, asyncmy", ops=200, targets=_NATIVE_TARGETS
        ),
        Scenario(
            "psycopg2_50",
            "PostgreSQL SELECT 1, 50 concurrent, psycopg2 in threads",
            ops=1_000,
            targets=(Target(KIT, max_ratio=1.0),),
        ),
        Scenario(
            "pymysql_50",
            "MariaDB SELECT 1, 50 concurrent, PyMySQL in threads",
            ops=1_000,
            targets=(Target(KIT, max_ratio=1.0),),
        ),
    ),
    cases=_cases,
    # 3x the rounds of a third of the ops: the servers share the machine's two cores, and a
    # round's ratio swings with their load (0.75x-1.36x seen between rounds of 600 fetch_alls)
    repeat_factor=3,
    requires=(PG_ENV, MY_ENV),
    packages=("asyncpg", "asyncmy", "databases", "psycopg2-binary", "PyMySQL", "SQLAlchemy"),
    notes=(
        "raw driver: asyncpg.create_pool / asyncmy.create_pool (4 connections) for the "
        "one-at-a-time scenarios, asyncpg's with reset=<a no-op>: by default its pool resets "
        "the session on every release (one more round trip: pg_advisory_unlock_all, CLOSE ALL, "
        "UNLISTEN *, RESET ALL), which asyncify-kit's pool does not do; 'raw driver, reset on "
        "release' is asyncpg's pool as it comes (encode/databases uses that), for reference. "
        "For the threaded ones, asyncio.to_thread around a queue of "
        "10 connections of the same driver, with the loop's default executor set to 10 threads.",
        "asyncify-kit and encode/databases use pools of the same size. The 100-row table is "
        "(int, varchar, double): raw asyncmy already returns the facade's Python types for "
        "those, so the facade converts nothing there; its extra work per row is one Row object "
        "(readable by name, attribute and position) around the driver's tuple, here built by "
        f"Row's {_ROW_BASE} base. "
        "'raw driver, DictCursor' is asyncmy's own rows-by-name cursor, for reference.",
    ),
)
