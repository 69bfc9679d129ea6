"""What SQLite writers taking turns for the write lock cost, against SQLite's own wait.

    python -m benchmarks.sqlite_turns [--dir /tmp] [--transactions 500] [--writers 20]
                                      [--pool 4] [--rounds 3]

Each way writes ``--transactions`` one-row transactions (``BEGIN IMMEDIATE``, an
``INSERT``, ``COMMIT``) into a fresh database file under ``--dir``: first one at a time, then
from ``--writers`` tasks at once through a pool of ``--pool`` connections, on asyncio. The ways
take turns within each round. "turns" is the backend as it is: the writers of the process
wait for the write lock in line (see "Writers wait for the write lock in turn" in
``docs/sql.md``). "busy handler" runs the same statements with the lock left to SQLite's own
wait (the backend's line switched off for the run). Per round and way it prints the µs per
transaction, one at a time and concurrently, and, for the concurrent part, the longest time
one transaction took from its start to its commit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from asyncify_kit.sql import Database
from asyncify_kit.sql._backends import _sqlite

WAYS = ("turns", "busy handler")
COLUMNS = ("µs/tx, 1 at a time", "µs/tx, concurrent", "longest tx ms")


@contextlib.contextmanager
def _way(way: str) -> Iterator[None]:
    """The backend as it is ("turns"), or with its line switched off ("busy handler"): each
    attempt then runs once, waiting in SQLite's busy handler up to ``busy_timeout``."""
    if way == "turns":
        yield
        return

    def in_sqlite_wait(self: Any, attempt: Callable[[], object]) -> None:
        attempt()

    own = _sqlite._SqliteSession._in_turn
    _sqlite._SqliteSession._in_turn = in_sqlite_wait  # type: ignore[method-assign]
    try:
        yield
    finally:
        _sqlite._SqliteSession._in_turn = own  # type: ignore[method-assign]


async def _measure(path: str, transactions: int, writers: int, pool: int) -> dict[str, float]:
    async with Database(f"sqlite:///{path}", min_size=pool, max_size=pool) as db:
        await db.execute("create table t (n integer)")

        async def write(n: int) -> float:
            start = time.perf_counter()
            async with db.transaction():
                await db.execute("insert into t (n) values (:n)", {"n": n})
            return time.perf_counter() - start

        start = time.perf_counter()
        for n in range(transactions):
            await write(n)
        alone = (time.perf_counter() - start) / transactions
        limit = asyncio.Semaphore(writers)

        async def limited(n: int) -> float:
            async with limit:
                return await write(n)

        start = time.perf_counter()
        took = await asyncio.gather(*(limited(n) for n in range(transactions)))
        together = (time.perf_counter() - start) / transactions
    return {
        COLUMNS[0]: alone * 1e6,
        COLUMNS[1]: together * 1e6,
        COLUMNS[2]: max(took) * 1e3,
    }


def run(
    directory: str, transactions: int, writers: int, pool: int, rounds: int
) -> list[dict[str, Any]]:
    """Per round and way, a row of figures (also printed)."""
    print(
        f"{transactions} one-row transactions, one at a time, then {writers} writers at once "
        f"through a pool of {pool}"
    )
    print(f"round  {'way':<14}" + "".join(f"{column:>20}" for column in COLUMNS))
    table: list[dict[str, Any]] = []
    for number in range(1, rounds + 1):
        for way in WAYS:
            where = tempfile.mkdtemp(prefix="sqlite-turns-", dir=directory)
            try:
                with _way(way):
                    figures = asyncio.run(
                        _measure(os.path.join(where, "bench.db"), transactions, writers, pool)
                    )
            finally:
                shutil.rmtree(where, ignore_errors=True)
            row: dict[str, Any] = {"round": number, "way": way, **figures}
            table.append(row)
            shown = "".join(f"{row[column]:>20.1f}" for column in COLUMNS)
            print(f"{number:>5}  {way:<14}{shown}", flush=True)
    return table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--transactions", type=int, default=500)
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    run(args.dir, args.transactions, args.writers, args.pool, args.rounds)


if __name__ == "__main__":
    main()
