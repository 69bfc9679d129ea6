"""Transactions waiting for a connection of a threaded pool (psycopg2, PyMySQL, psycopg on
trio) wait on the event loop, not in worker threads.

They used to wait in a thread of asyncify's shared default pool (40 threads), while the
transactions holding the connections need a thread of that same pool for their statements
and their COMMIT: beyond about 40 waiters nothing could finish, until ``acquire_timeout``
failed most of them.
"""

from __future__ import annotations

import anyio
import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import Database, OperationalError

from .conftest import CASES

pytestmark = pytest.mark.anyio

THREADED = {"postgresql+psycopg2", "mysql+pymysql"}
THREADED_CASES = [
    p
    for p in CASES
    if p.values[0][0] in THREADED  # type: ignore[index]
    or p.values[0] == ("postgresql+psycopg", "trio")
]


@pytest.fixture(params=THREADED_CASES)
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    value: tuple[str, str] = request.param
    return value


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


async def test_many_more_transactions_than_threads_all_finish(url: BackendURL) -> None:
    """100 concurrent transactions on 5 connections: more waiters than the default pool's 40
    threads."""
    async with Database(url, min_size=0, max_size=5, acquire_timeout=10) as db:
        assert db.pool_stats().max_size == 5
        done: list[int] = []

        async def one(n: int) -> None:
            async with db.transaction():
                assert await db.fetch_val("select :n", {"n": str(n)}) == str(n)
                await db.execute("select 1")
            done.append(n)

        with anyio.fail_after(8):  # (before the fix: stuck until acquire_timeout, then failed)
            async with anyio.create_task_group() as tg:
                for n in range(100):
                    tg.start_soon(one, n)
        assert sorted(done) == list(range(100))
        stats = db.pool_stats()
        assert (stats.in_use, stats.waiting) == (0, 0)
        assert stats.size <= 5


async def test_cancelled_waiters_free_their_places_and_the_others_go_in_order(
    url: BackendURL,
) -> None:
    """60 transactions wait for the only connection, held by a transaction that still runs
    statements meanwhile; half of them are cancelled: they leave the queue at once, and the
    others get the connection first come, first served."""
    async with Database(url, min_size=0, max_size=1, acquire_timeout=20) as db:
        entered: list[int] = []
        scopes: list[anyio.CancelScope] = []

        async def waiter(n: int, scope: anyio.CancelScope) -> None:
            with scope:
                async with db.transaction():
                    entered.append(n)
                    await db.fetch_val("select 1")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg, db.transaction():
                await db.fetch_val("select 1")
                for n in range(60):
                    scopes.append(anyio.CancelScope())
                    tg.start_soon(waiter, n, scopes[n])
                    while db.pool_stats().waiting < n + 1:  # queued in this order
                        await anyio.sleep(0.001)
                # the holder's statements still get a thread with 60 callers waiting
                assert await db.fetch_val("select 'still'") == "still"
                for n in range(0, 60, 2):
                    scopes[n].cancel()
                while db.pool_stats().waiting > 30:
                    await anyio.sleep(0.001)
                assert db.pool_stats().waiting == 30
                assert (db.pool_stats().in_use, db.pool_stats().size) == (1, 1)
        assert entered == list(range(1, 60, 2))
        stats = db.pool_stats()
        assert (stats.size, stats.in_use, stats.waiting) == (1, 0, 0)
        assert await db.fetch_val("select 'free'") == "free"


async def test_acquire_timeout_while_queued(url: BackendURL) -> None:
    """Waiting in the queue counts towards ``acquire_timeout``: the same error as before."""
    async with Database(url, min_size=0, max_size=1, acquire_timeout=0.3) as db:
        async with db.transaction():
            await db.fetch_val("select 1")
            started = anyio.current_time()
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(_times_out, db)
            assert anyio.current_time() - started < 2
            assert db.pool_stats().waiting == 0
        assert await db.fetch_val("select 'free'") == "free"


async def _times_out(db: Database) -> None:
    with pytest.raises(OperationalError, match=r"became free within acquire_timeout=0\.3s"):
        async with db.transaction():
            pass
