"""A transaction cancelled while it opens, then again while its half-open transaction is
rolled back, gives its connection back (a soak found the pool drained: asyncio.timeout and a
task.cancel() on the same task)."""

from __future__ import annotations

import asyncio

import pytest

from asyncify_kit import BackendURL
from asyncify_kit.sql import Database

from .conftest import CASES

pytestmark = pytest.mark.anyio

ASYNCIO_CASES = [p for p in CASES if p.values[0][1] == "asyncio"]  # type: ignore[index]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _rolling_back() -> asyncio.Task[object] | None:
    """The task of the library's clean-up that rolls a half-open transaction back."""
    for task in asyncio.all_tasks():
        if getattr(task.get_coro(), "__qualname__", "").endswith("_rollback_now"):
            return task
    return None


async def _body(db: Database) -> None:
    async with db.transaction():
        await db.fetch_val("select 1")


@pytest.mark.parametrize("case", ASYNCIO_CASES)
async def test_a_transaction_cancelled_twice_as_it_opens_gives_its_connection_back(
    url: BackendURL,
) -> None:
    async with Database(url, max_size=2, acquire_timeout=2) as db:
        await db.fetch_val("select 1")
        twice = 0
        for round_ in range(40):
            task = asyncio.create_task(_body(db))
            for _ in range(1 + round_ % 8):  # up to its BEGIN (a connect takes more steps)
                await asyncio.sleep(0)
            task.cancel()  # interrupts the BEGIN
            for _ in range(200):
                await asyncio.sleep(0)
                if _rolling_back() is not None or task.done():
                    break
            if not task.done() and _rolling_back() is not None:
                twice += 1
                task.cancel()  # and again while the half-open transaction is rolled back
            await asyncio.gather(task, return_exceptions=True)
            for _ in range(100):  # (a connection given up is closed in the background)
                if db.pool_stats().in_use == 0:
                    break
                await asyncio.sleep(0.01)
            assert db.pool_stats().in_use == 0, (round_, twice, db.pool_stats())
        async with db.transaction():
            assert await db.fetch_val("select 1 + 1") == 2
