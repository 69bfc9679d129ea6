"""asyncify_kit.fastapi: the dependencies and get_facades, beyond tests/test_fastapi.py.

Real uvicorn servers on 127.0.0.1, as there.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from fastapi import FastAPI
from starlette.requests import Request

from asyncify_kit.exceptions import ConfigError
from asyncify_kit.fastapi import DatabaseDep, get_facades
from tests.test_fastapi import facades_app, served

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {})


async def test_the_dependencies_run_on_the_loop_not_in_the_thread_pool(tmp_path: Path) -> None:
    """`DatabaseDep` and the others are resolved on the event loop: as sync functions FastAPI
    ran each in Starlette's thread pool, so a route that uses one waited for a free thread
    (one hop per request, and none at all while sync routes fill the pool)."""
    app = facades_app(database=f"sqlite:///{tmp_path / 'app.db'}", storage=f"file://{tmp_path}")
    async with served(app) as client:
        limiter = anyio.to_thread.current_default_thread_limiter()
        holders = [object() for _ in range(int(limiter.total_tokens))]
        for holder in holders:  # every thread of the pool busy, as under sync routes
            await limiter.acquire_on_behalf_of(holder)
        try:
            with anyio.fail_after(5):
                assert (await client.get("/db")).json()["rows"] == 1
                assert (await client.get("/storage")).json()["text"] == "hello"
        finally:
            for holder in holders:
                limiter.release_on_behalf_of(holder)


async def test_a_mounted_sub_application_gets_the_apps_facades(tmp_path: Path) -> None:
    """A route of a FastAPI sub-application mounted in the app receives the app's facades:
    Starlette runs only the outer app's lifespan, and the dependency failed with a
    `ConfigError` saying the app had no lifespan (a 500)."""
    app = facades_app(database=f"sqlite:///{tmp_path / 'app.db'}")
    sub = FastAPI()

    @sub.get("/where")
    async def where(db: DatabaseDep, request: Request) -> dict[str, object]:
        return {"one": await db.fetch_val("select 1"), "same": db is get_facades(request).database}

    app.mount("/v2", sub)
    async with served(app) as client:
        assert (await client.get("/v2/where")).json() == {"one": 1, "same": True}
        assert (await client.get("/db")).json()["rows"] == 1
    # once the app has shut down, the sub-application has no facades either
    scope = {"type": "http", "app": sub, "router": app.router, "headers": []}
    with pytest.raises(ConfigError, match="no asyncify facades open"):
        get_facades(Request(scope))
