"""A `connect()` cancelled while the pool opens its ``min_size`` connections closes those it
had opened already, on every backend.

The native pools (asyncpg, psycopg, asyncmy, aiomysql) closed their pool only when a connect
failed with an error: a `connect()` cancelled (or timed out) after its first connections were
open left them open, on the server and in this process, until the pool was collected. (The
threaded pools closed theirs: see ``test_threaded_connect_cancel.py``.)

The server is reached through a relay on 127.0.0.1 that holds each new connection a while, so
the cancellation lands while the second connection is being opened.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from asyncify_kit import BackendURL, run_sync
from asyncify_kit.sql import Database

from .conftest import SERVER_CASES
from .test_cancellation import other_connections
from .test_threaded_connect_cancel import Relay, _sockets_to

pytestmark = pytest.mark.anyio

#: how long the relay holds each connection before it reaches the server
HOLD = 0.6


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


@pytest.fixture
def relay(url: BackendURL) -> Iterator[Relay]:
    relay = Relay((url.hostname, int(url.port or 0)), hold=HOLD)
    try:
        yield relay
    finally:
        relay.close()


async def _until_none(watcher: Database, relay: Relay, within: float) -> bool:
    """Whether the server and this process hold no connection of the test's pool (the
    watcher's aside) within *within* seconds."""
    with anyio.move_on_after(within):
        while True:
            sockets: list[object] = await run_sync(_sockets_to, relay.port)
            if not sockets and not await other_connections(watcher):
                return True
            await anyio.sleep(0.05)
    return False


@pytest.mark.parametrize("case", SERVER_CASES, indirect=True)
@pytest.mark.parametrize("how", ["cancelled", "timed out"])
async def test_a_connect_cut_short_closes_what_it_opened(
    url: BackendURL, relay: Relay, how: str
) -> None:
    async with Database(url, max_size=1) as watcher:
        assert await _until_none(watcher, relay, within=5.0)  # (earlier tests' closes)
        db = Database(url.replace(host="127.0.0.1", port=relay.port), min_size=3, max_size=3)
        # the first connection is open after HOLD, the second not before 2 * HOLD
        if how == "cancelled":
            with anyio.move_on_after(1.5 * HOLD) as scope:
                await db.connect()
            assert scope.cancelled_caught
        else:
            with pytest.raises(TimeoutError):
                with anyio.fail_after(1.5 * HOLD):
                    await db.connect()
        assert relay.count() >= 2  # (the cancellation came while the second one opened)
        assert await _until_none(watcher, relay, within=3.0)
        stats = db.pool_stats()
        assert (stats.size, stats.idle, stats.in_use) == (0, 0, 0)
        # and the Database can connect again afterwards
        async with db:
            assert await db.fetch_val("select 1") == 1
