"""Shared fixtures: the anyio backends every async test runs on, and the real services.

Services are started by ``scripts/services.py`` (``make test`` does it) and found through
environment variables. Without them a service test is skipped locally, but with ``CI=true``
it fails: CI must never pass by skipping.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import NoReturn
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import pytest
from hypothesis import settings

# The machine running the suite is shared and noisy: no per-example deadline. On CI the
# examples are derived from the test (derandomize), so a run is reproducible; locally they
# are random, to keep finding new cases.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
settings.load_profile("ci" if ON_CI else "default")

SERVICE_VARS = {
    "postgres": "ASYNCIFY_TEST_POSTGRES_URL",
    "mariadb": "ASYNCIFY_TEST_MYSQL_URL",
    "s3": "ASYNCIFY_TEST_S3_ENDPOINT",
}


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs the suite in several processes) every worker
    gets databases of its own on the test servers, so that what a test counts in "its"
    database (connections, running statements) is its own process's. They are made empty
    for each run and dropped when the worker ends. Their names carry the run's id too, so
    that two runs at once (two engineers' subsets, say) never share one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:8]
        _use_databases_of_worker(f"{worker}_{run}" if run else worker)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _WORKER_DATABASES:
        drop = _WORKER_DATABASES.pop()
        try:
            drop()
        except Exception as exc:  # a cleanup: say so, the run's outcome is the tests'
            print(f"could not drop a test database: {exc!r}", file=sys.stderr)


#: how to drop the databases this worker made, newest first
_WORKER_DATABASES: list[Callable[[], None]] = []


def _use_databases_of_worker(worker: str) -> None:
    makers = {"postgres": _postgres_database, "mariadb": _mysql_database}
    for name, statements in makers.items():
        var = SERVICE_VARS[name]
        url = os.environ.get(var)
        if not url:
            continue
        parts = urlsplit(url)
        database = f"{parts.path.lstrip('/')}_{worker}"
        create, drop = statements(database)
        run = _run_on_postgres if name == "postgres" else _run_on_mysql
        run(parts, [drop, create])
        _WORKER_DATABASES.append(functools.partial(run, parts, [drop]))
        # the subprocesses tests start (documentation examples, benchmarks) inherit it
        os.environ[var] = urlunsplit(parts._replace(path=f"/{database}"))


def _postgres_database(database: str) -> tuple[str, str]:
    """The statements creating and dropping *database* (connections to it are cut)."""
    return f'create database "{database}"', f'drop database if exists "{database}" with (force)'


def _mysql_database(database: str) -> tuple[str, str]:
    create = f"create database `{database}` character set utf8mb4"
    return create, f"drop database if exists `{database}`"


def _run_on_postgres(server: SplitResult, statements: list[str]) -> None:
    import psycopg2

    conn = psycopg2.connect(
        host=server.hostname,
        port=server.port,
        user=unquote(server.username or ""),
        password=unquote(server.password or ""),
        dbname=server.path.lstrip("/"),
        connect_timeout=10,
    )
    try:
        conn.autocommit = True  # CREATE/DROP DATABASE run outside a transaction
        with conn.cursor() as cur:
            cur.execute("set lock_timeout = '10s'")
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def _run_on_mysql(server: SplitResult, statements: list[str]) -> None:
    import pymysql

    conn = pymysql.connect(
        host=server.hostname,
        port=server.port or 3306,
        user=unquote(server.username or ""),
        password=unquote(server.password or ""),
        connect_timeout=10,
    )
    try:
        with conn.cursor() as cur:
            # a connection left open by a test holds a lock DROP DATABASE would wait for
            cur.execute("set session lock_wait_timeout = 10")
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def service_url(name: str) -> str:
    """The URL of the running test service *name*; fail under CI, skip otherwise, if absent."""
    var = SERVICE_VARS[name]
    return service_setting(
        var, f"service {name!r} is not running ({var} is unset); start it with `make services`"
    )


def service_setting(var: str, message: str) -> str:
    """The value of *var*, set by the test services; fail under CI, skip otherwise, if unset."""
    value = os.environ.get(var)
    if value:
        return value
    _skip_unless_ci(message)


def require_file_system(kind: str) -> None:
    """Skip where the fs_matrix *kind* ("tmpfs", "ext4" ...) cannot be made: the ext4 kinds
    need Linux, root and loop devices, and mkfs.ext4 (which `make test` installs). Under
    CI (Linux, root, loop devices) it fails instead: the test must run there."""
    from benchmarks import fs_matrix

    if kind != "tmpfs":
        loop_devices = os.path.exists("/dev/loop-control")
        if sys.platform != "linux" or os.geteuid() != 0 or not loop_devices:
            _skip_unless_ci("the ext4 kinds need Linux, root and loop devices")
    try:
        fs_matrix.check_can_make([fs_matrix.KINDS[kind]])
    except fs_matrix.MatrixError as exc:
        _skip_unless_ci(str(exc))


def _skip_unless_ci(message: str) -> NoReturn:
    """Skip with *message*; fail with it under CI, which must never pass by skipping."""
    if ON_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, object]]]:
    """Every async test runs on asyncio and on trio unless a module narrows this fixture."""
    yield request.param


@pytest.fixture
def postgres_url() -> str:
    return service_url("postgres")


@pytest.fixture
def mysql_url() -> str:
    return service_url("mariadb")


@pytest.fixture
def s3_endpoint() -> str:
    return service_url("s3")


def exit_code_in_a_forked_child(child: Callable[[], bool]) -> int:
    """Fork; the child exits 0 if *child()* returns true. The child's exit code."""
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a multi-threaded process may deadlock; the point of
        # the tests that fork is that ours does not.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = 0 if child() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
