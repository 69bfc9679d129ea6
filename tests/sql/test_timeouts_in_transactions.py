"""A timeout around one statement inside a transaction: which timeouts keep it in there.

A transaction belongs to the task that opened it. On Python 3.10 and 3.11
``asyncio.wait_for`` runs its awaitable in a task of its own, so a statement under it runs
outside the transaction, on another pooled connection (from 3.12 it runs in the caller's
task). ``asyncio.timeout`` (3.11+) and anyio's ``fail_after`` never start a task.
docs/sql.md says so where it discusses a timeout inside a transaction; this pins it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import anyio
import pytest

from asyncify_kit.sql import Database

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_which_timeouts_keep_a_statement_in_its_transaction(tmp_path: Path) -> None:
    async with Database(f"sqlite:///{tmp_path / 'timeouts.db'}") as db:
        await db.execute("create table t (id integer)")
        count = "select count(*) from t"
        async with db.transaction():
            await db.execute("insert into t values (1)")  # seen inside the transaction only
            with anyio.fail_after(5):
                assert await db.fetch_val(count) == 1
            if sys.version_info >= (3, 11):
                async with asyncio.timeout(5):
                    assert await db.fetch_val(count) == 1
            in_a_task_of_its_own = sys.version_info < (3, 12)
            seen = await asyncio.wait_for(db.fetch_val(count), 5)
            assert seen == (0 if in_a_task_of_its_own else 1)
        assert await db.fetch_val(count) == 1
