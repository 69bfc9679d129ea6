"""asyncify_lifespan given a facade its caller opened already: used as it is, left open."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from asyncify_kit.fastapi import asyncify_lifespan, get_facades
from asyncify_kit.http import HttpClient
from asyncify_kit.sql import Database
from asyncify_kit.storage import Storage

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {})


async def test_an_open_facade_is_used_as_it_is_and_left_open_at_shutdown() -> None:
    # a Storage or an HttpClient opened already failed the startup ("already open"), while
    # a Database was taken over and closed at the app's shutdown, under the code that opened it
    async with (
        Database("sqlite:///:memory:") as db,
        Storage("memory://") as storage,
        HttpClient("http://127.0.0.1:1") as http,
    ):
        await db.execute("create table notes (text text)")
        await storage.write_text("kept.txt", "kept")
        app = FastAPI(lifespan=asyncify_lifespan(database=db, storage=storage, http=http))
        for _ in range(2):  # and again at the next startup
            async with app.router.lifespan_context(app):
                facades = get_facades(app)
                assert (facades.database, facades.storage, facades.http) == (db, storage, http)
                await db.execute("insert into notes values ('x')")
            # still open, with what they held
            assert await db.fetch_val("select count(*) from notes") in (1, 2)
            assert await storage.read_text("kept.txt") == "kept"
            assert repr(http).endswith(" open>")
        assert await db.fetch_val("select count(*) from notes") == 2


async def test_a_facade_not_open_yet_is_opened_and_closed_by_the_lifespan() -> None:
    db = Database("sqlite:///:memory:")
    storage = Storage("memory://")
    http = HttpClient("http://127.0.0.1:1")
    app = FastAPI(lifespan=asyncify_lifespan(database=db, storage=storage, http=http))
    async with app.router.lifespan_context(app):
        assert await db.fetch_val("select 1") == 1
        await storage.write_text("a.txt", "a")
        assert repr(http).endswith(" open>")
    for facade in (db, storage, http):
        assert repr(facade).endswith("closed)>") or repr(facade).endswith(" closed>")
