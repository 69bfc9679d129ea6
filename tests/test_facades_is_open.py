"""`is_open` on the facades: False before the open, True inside ``async with``, False once
closed (also after a failed open), on the storage and SQL backends that need no server (the
HTTP client's, on every backend: tests/http/test_is_open.py). The FastAPI lifespan reads it
to leave a facade you opened to you."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncify_kit.exceptions import ConfigError, OperationalError
from asyncify_kit.http import HttpClient
from asyncify_kit.sql import Database
from asyncify_kit.storage import Storage

pytestmark = pytest.mark.anyio


def state(facade: Database | Storage | HttpClient) -> str:
    """(A function, so that mypy does not narrow ``is_open`` after the first assert.)"""
    return "open" if facade.is_open else "closed"


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("url", ["memory://", "file://{tmp}"])
async def test_storage(url: str, tmp_path: Path) -> None:
    st = Storage(url.format(tmp=tmp_path))
    assert state(st) == "closed" and repr(st).endswith("closed>")
    for _ in range(2):  # a Storage can be opened again
        async with st:
            assert state(st) == "open" and repr(st).endswith("open>")
            await st.write("k", b"v")
        assert state(st) == "closed"


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_database(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'app.db'}")
    assert state(db) == "closed"
    async with db:
        assert state(db) == "open" and "open)" in repr(db)
        assert await db.fetch_val("select 1") == 1
    assert state(db) == "closed" and "closed)" in repr(db)


async def test_a_failed_open_leaves_it_closed(tmp_path: Path) -> None:
    # nothing listens on port 1 of loopback: connect() fails, and the pool stays closed
    db = Database("postgresql+asyncpg://u:p@127.0.0.1:1/db?connect_timeout=2")
    with pytest.raises(OperationalError):
        await db.connect()
    assert state(db) == "closed"
    client = HttpClient("http://127.0.0.1:1", backend="httpx", verify=str(tmp_path / "none.pem"))
    with pytest.raises(ConfigError):  # (the CA file is missing)
        await client.__aenter__()
    assert state(client) == "closed"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
