"""How long a new PostgreSQL connection holds the event loop, per native async driver.

    python -m benchmarks.connect_hold [--url URL] [--connections 15] [--rounds 3]

``URL`` defaults to ``$ASYNCIFY_TEST_POSTGRES_URL`` (the test services' server, which
authenticates TCP clients with SCRAM-SHA-256 and offers TLS). For each driver (``asyncpg``,
``psycopg``) and ``ssl`` mode (``disable``, ``require``), ``--connections`` times in a row: a
`Database` of one connection is opened (its one connection made) while a task on the same
loop notes every gap between two of its turns; the longest gap is the longest time the loop
was held by one piece of work. The pool's open in a worker thread (the driver's import, the
TLS context) is done before the timing, by a first connection that is not counted. Per round,
driver and mode it prints the median of the longest gaps, and the median of the whole time to
connect.

The reference row is what SCRAM asks of a client once: PBKDF2-HMAC-SHA-256 with the server's
4,096 rounds (PostgreSQL's default), timed with ``hashlib.pbkdf2_hmac`` on this machine. Both
drivers compute it on the event loop's thread as they connect (asyncpg in its own code,
psycopg inside libpq's ``PQconnectPoll``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

from asyncify_kit.sql import Database

DRIVERS = ("asyncpg", "psycopg")
SSL_MODES = ("disable", "require")
COLUMNS = ("longest hold ms", "connect ms")
REFERENCE = "PBKDF2-HMAC-SHA-256, 4,096 rounds"


def _driver_url(url: str, driver: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}+{driver}://{rest}"


async def _one(url: str, ssl: str) -> tuple[float, float]:
    """The longest gap between the turns of a watching task while one connection is made,
    and the time the connection took (both in seconds)."""
    db = Database(url, min_size=1, max_size=1, ssl=ssl)
    longest = 0.0
    watching = True

    async def watch() -> None:
        nonlocal longest
        last = time.perf_counter()
        while watching:
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)  # the watcher has taken its first turn
    start = time.perf_counter()
    try:
        await db.connect()
        took = time.perf_counter() - start
    finally:
        watching = False
        await watcher
        await db.disconnect()
    return longest, took


async def _measure(url: str, ssl: str, connections: int) -> dict[str, float]:
    await _one(url, ssl)  # imports the driver and warms up; not counted
    holds: list[float] = []
    takes: list[float] = []
    for _ in range(connections):
        hold, took = await _one(url, ssl)
        holds.append(hold)
        takes.append(took)
    return {COLUMNS[0]: statistics.median(holds) * 1e3, COLUMNS[1]: statistics.median(takes) * 1e3}


def pbkdf2_ms(times: int = 15) -> float:
    """The median time, in ms, of SCRAM's key derivation with PostgreSQL's default rounds."""
    salt = os.urandom(16)
    took: list[float] = []
    for _ in range(times):
        start = time.perf_counter()
        hashlib.pbkdf2_hmac("sha256", b"a password of 24 chars..", salt, 4096)
        took.append(time.perf_counter() - start)
    return statistics.median(took) * 1e3


def run(url: str, connections: int, rounds: int) -> list[dict[str, Any]]:
    """Per round, driver and ``ssl`` mode, a row of figures (also printed)."""
    print(f"{connections} connections one at a time per driver and ssl mode, medians")
    print(f"round  {'driver':<9}{'ssl':<9}" + "".join(f"{column:>17}" for column in COLUMNS))
    table: list[dict[str, Any]] = []
    for number in range(1, rounds + 1):
        for driver in DRIVERS:
            for ssl in SSL_MODES:
                figures = asyncio.run(_measure(_driver_url(url, driver), ssl, connections))
                row: dict[str, Any] = {"round": number, "driver": driver, "ssl": ssl, **figures}
                table.append(row)
                shown = "".join(f"{row[column]:>17.2f}" for column in COLUMNS)
                print(f"{number:>5}  {driver:<9}{ssl:<9}{shown}", flush=True)
    print(f"{REFERENCE}: {pbkdf2_ms():.2f} ms")
    return table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default=os.environ.get("ASYNCIFY_TEST_POSTGRES_URL"))
    parser.add_argument("--connections", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("no --url, and ASYNCIFY_TEST_POSTGRES_URL is unset (run `make services`)")
    run(args.url, args.connections, args.rounds)


if __name__ == "__main__":
    main()
