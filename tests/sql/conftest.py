"""Fixtures of the SQL suite: one case per (backend, event loop) that the backend supports.

Server backends take their URL from the services of ``tests/conftest.py`` (``postgres_url``,
``mysql_url``), with the driver swapped in; SQLite uses a file in the test's temporary
directory. asyncpg, asyncmy and aiomysql run on asyncio only (their trio behaviour, a clear
`Unsupported`, is tested separately).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from asyncify_kit import BackendURL

BACKENDS = (
    "sqlite",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "mysql+asyncmy",
    "mysql+aiomysql",
    "mysql+pymysql",
)
ASYNCIO_ONLY = frozenset({"postgresql+asyncpg", "mysql+asyncmy", "mysql+aiomysql"})
CASES = [
    pytest.param((backend, loop), id=f"{backend}-{loop}")
    for backend in BACKENDS
    for loop in ("asyncio", "trio")
    if loop == "asyncio" or backend not in ASYNCIO_ONLY
]

SERVER_CASES = [p for p in CASES if p.values[0][0] != "sqlite"]  # type: ignore[index]


def backend_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> BackendURL:
    """The URL of *backend* for this test (skips/fails like the service fixtures)."""
    if backend == "sqlite":
        return BackendURL.parse(f"sqlite:///{tmp_path / 'test.db'}")
    dialect, _, driver = backend.partition("+")
    service = "postgres_url" if dialect == "postgresql" else "mysql_url"
    base = BackendURL.parse(request.getfixturevalue(service))
    return base.replace(dialect=dialect, driver=driver)


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    value: tuple[str, str] = request.param
    return value


@pytest.fixture
def url(case: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path) -> BackendURL:
    return backend_url(case[0], request, tmp_path)


@pytest.fixture
def table() -> str:
    """A fresh table name, so that backends sharing a server never collide."""
    return f"t_{uuid.uuid4().hex[:12]}"
