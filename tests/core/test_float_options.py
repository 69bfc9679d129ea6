"""Every seconds option of the backends table: what is valid, and what it does end to end.

The decisions, per option: ``nan``, negative numbers, spellings ``float()`` would take but
the integer options refuse (``1_0``, `` 5``, other scripts' digits) and anything past
`MAX_SECONDS` (``1e309`` is infinite) are a `ConfigError` naming the option. ``none`` and
``inf`` mean "no limit" where a backend can run without one, and are errors elsewhere: SQLite
cannot wait forever for a lock (a busy timeout past INT_MAX milliseconds overflowed and it did
not wait at all), and closing a pool or connecting is always bounded.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncify_kit import BackendURL, ConfigError
from asyncify_kit._config import MAX_SECONDS, validate_options
from asyncify_kit._registry import BackendSpec, backends
from asyncify_kit.sql import Database, OperationalError
from asyncify_kit.sql._backends._dialects import (
    libpq_connect_params,
    mysql_init_statements,
    pg_session_options,
)

# (zero accepted, 'none'/'inf' accepted as no limit)
_SQL_POOL = {
    "acquire_timeout": (True, True),
    "connect_timeout": (False, False),
    "statement_timeout": (True, True),
    "close_timeout": (False, False),
}
_SQLITE = {
    "acquire_timeout": (True, True),
    "statement_timeout": (True, True),
    "close_timeout": (False, False),
    "busy_timeout": (True, False),
}
_S3 = {"connect_timeout": (False, False), "read_timeout": (False, False)}
DECISIONS: dict[str, dict[str, tuple[bool, bool]]] = {
    "postgresql+asyncpg": {**_SQL_POOL, "command_timeout": (False, True)},
    "postgresql+psycopg": _SQL_POOL,
    "postgresql+psycopg2": _SQL_POOL,
    "mysql+asyncmy": _SQL_POOL,
    "mysql+aiomysql": _SQL_POOL,
    "mysql+pymysql": {**_SQL_POOL, "read_timeout": (False, True)},
    "sqlite": _SQLITE,
    "s3": _S3,
    "s3+boto3": _S3,
}


def _seconds_options(spec: BackendSpec) -> dict[str, Any]:
    return {opt.name: opt for opt in spec.options if opt.accepted.startswith("a number of seconds")}


def _convert(spec: BackendSpec, name: str, raw: str) -> Any:
    url = BackendURL.parse(f"{spec.scheme}://h/db").replace(options={name: raw})
    return validate_options(url, spec.options, backend=spec.scheme)[name]


def test_every_seconds_option_is_decided() -> None:
    found = {spec.scheme: set(_seconds_options(spec)) for spec in backends()}
    assert {scheme: names for scheme, names in found.items() if names} == {
        scheme: set(options) for scheme, options in DECISIONS.items()
    }


@pytest.mark.parametrize(
    ("scheme", "name"), [(s, n) for s, options in DECISIONS.items() for n in options]
)
def test_seconds_option_values(scheme: str, name: str) -> None:
    spec = next(spec for spec in backends() if spec.scheme == scheme)
    zero_ok, no_limit = DECISIONS[scheme][name]
    for raw, value in [("2", 2.0), ("0.5", 0.5), ("1e3", 1000.0), (str(MAX_SECONDS), MAX_SECONDS)]:
        assert _convert(spec, name, raw) == value
    always_bad = [
        "nan",
        "NaN",
        "-1",
        "-0.5",
        "-inf",
        "1e309",  # float() reads it as inf
        "1e300",
        str(MAX_SECONDS + 1),
        "1_0",
        " 5",
        "5 ",
        "\u0663",  # ARABIC-INDIC DIGIT THREE, which float() takes
        "0x10",
        "",
        "soon",
    ]
    bad = always_bad + ([] if zero_ok else ["0", "0.0"]) + ([] if no_limit else ["inf", "none"])
    for raw in bad:
        with pytest.raises(ConfigError) as info:
            _convert(spec, name, raw)
        message = str(info.value)
        assert f"option {name!r}" in message, raw
        assert "accepted: a number of seconds" in message
    if zero_ok:
        assert _convert(spec, name, "0") == 0.0
    if no_limit:
        for raw in ("inf", "INF", "none", "infinity"):
            assert _convert(spec, name, raw) is None
        assert "'none' or 'inf' for no limit" in _seconds_options(spec)[name].accepted


def test_no_limit_reaches_the_server_backends_as_no_limit() -> None:
    """``inf`` used to reach the drivers as a float: OverflowError (PostgreSQL's
    ``round(inf * 1000)``, libpq's ``ceil(inf)``) or ``SET max_statement_time = inf``."""
    specs = {spec.scheme: spec for spec in backends("sql")}

    def options(scheme: str, query: str) -> dict[str, Any]:
        url = BackendURL.parse(f"{scheme}://u:pw@h/db?{query}")
        return validate_options(url, specs[scheme].options, backend=scheme)

    pg = options("postgresql+psycopg", "statement_timeout=inf")
    assert pg_session_options(pg) == {"TimeZone": "UTC"}  # as with none
    assert (
        "statement_timeout"
        not in libpq_connect_params(BackendURL.parse("postgresql://u:pw@h/db"), pg)["options"]
    )
    my = options("mysql+pymysql", "statement_timeout=inf&read_timeout=inf")
    assert mysql_init_statements(my) == [("SET time_zone = '+00:00'", None)]
    assert my["read_timeout"] is None
    with pytest.raises(ConfigError, match="'connect_timeout'"):
        options("postgresql+psycopg", "connect_timeout=inf")


# -- end to end with SQLite ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "query",
    [
        "busy_timeout=inf",  # SQLite read it as INT_MIN ms: a writer failed at once, "locked"
        "busy_timeout=3000000",
        "busy_timeout=none",  # crashed opening a connection (float(None))
        "close_timeout=0",  # silently became 10 s
        "close_timeout=none",
        "acquire_timeout=nan",
        "statement_timeout=-1",
    ],
)
async def test_sqlite_rejects_before_opening(tmp_path: Path, query: str) -> None:
    name = query.partition("=")[0]
    with pytest.raises(ConfigError, match=f"option {name!r}"):
        async with Database(f"sqlite:///{tmp_path}/x.db?{query}") as db:
            await db.fetch_val("select 1")


@pytest.mark.anyio
async def test_sqlite_longest_busy_timeout_still_waits_for_the_lock(tmp_path: Path) -> None:
    """The largest value accepted is one SQLite really waits with (a busy timeout one
    millisecond past INT_MAX overflowed: the second writer failed at once, "locked")."""
    url = f"sqlite:///{tmp_path}/x.db"
    async with Database(url, max_size=1) as first:
        await first.execute("create table t (x integer)")
        async with Database(url, max_size=1, busy_timeout=MAX_SECONDS) as second:
            inserted = anyio.Event()

            async def write() -> None:
                await second.execute("insert into t values (2)")
                inserted.set()

            async with anyio.create_task_group() as tg, first.transaction():
                await first.execute("insert into t values (1)")
                tg.start_soon(write)
                await anyio.sleep(0.2)
                assert not inserted.is_set()  # waiting for the lock, not failed
                # the commit frees the lock; the task group then waits for the writer
            assert inserted.is_set()
            assert await second.fetch_val("select count(*) from t") == 2


@pytest.mark.anyio
@pytest.mark.parametrize("spelling", ["inf", "none", math.inf, None])
async def test_sqlite_acquire_timeout_inf_waits_as_long_as_it_takes(
    tmp_path: Path, spelling: object
) -> None:
    async with Database(f"sqlite:///{tmp_path}/x.db", max_size=1, acquire_timeout=spelling) as db:
        done = anyio.Event()

        async def other() -> None:
            assert await db.fetch_val("select 'free'") == "free"
            done.set()

        async with anyio.create_task_group() as tg, db.connection():
            tg.start_soon(other)
            await anyio.sleep(0.2)
            assert not done.is_set()  # still waiting: no error, no timeout
        assert done.is_set()


@pytest.mark.anyio
@pytest.mark.parametrize("spelling", ["inf", "0", "none"])
async def test_sqlite_statement_timeout_no_limit(tmp_path: Path, spelling: str) -> None:
    async with Database(f"sqlite:///{tmp_path}/x.db?statement_timeout={spelling}") as db:
        count = await db.fetch_val(
            "with recursive c(n) as (select 1 union all select n + 1 from c where n < 200000) "
            "select count(*) from c"
        )
        assert count == 200_000


@pytest.mark.anyio
async def test_sqlite_accepts_keyword_floats(tmp_path: Path) -> None:
    async with Database(
        f"sqlite:///{tmp_path}/x.db", busy_timeout=2.5, acquire_timeout=1e-3, close_timeout=1
    ) as db:
        assert await db.fetch_val("select 1") == 1
    with pytest.raises(ConfigError, match="'busy_timeout'"):
        Database(f"sqlite:///{tmp_path}/x.db", busy_timeout=math.inf)
    with pytest.raises(ConfigError, match="'acquire_timeout'"):
        Database(f"sqlite:///{tmp_path}/x.db", acquire_timeout=math.nan)


def test_operational_error_is_not_what_a_bad_value_gives(tmp_path: Path) -> None:
    # a ConfigError is raised at construction, before any connection: not OperationalError
    with pytest.raises(ConfigError) as info:
        Database(f"sqlite:///{tmp_path}/x.db?busy_timeout=none")
    assert not isinstance(info.value, OperationalError)
