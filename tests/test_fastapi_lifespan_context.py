"""install_detection with the lifespan run by ``app.router.lifespan_context`` (no ASGI lifespan
messages: the way docs/fastapi.md tests an app with ``httpx.ASGITransport``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from asyncify_kit.detect._detector import is_active
from asyncify_kit.exceptions import BlockingCallError
from asyncify_kit.fastapi import DatabaseDep, asyncify_lifespan, install_detection


def detected_app(**lifespan: object) -> FastAPI:
    app = FastAPI(lifespan=asyncify_lifespan(database="sqlite:///:memory:", **lifespan))  # type: ignore[call-overload]

    @app.get("/")
    async def index(db: DatabaseDep) -> int:
        value: int = await db.fetch_val("select 42")
        return value

    @app.get("/blocks")
    async def blocks() -> int:
        time.sleep(0.001)  # the bug the app's "raise" detector is there for
        return 1

    return app


async def ask(app: FastAPI, path: str) -> httpx.Response:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get(path)


# checks the global patch state: the plugin's own detector would keep the patches in
@pytest.mark.allow_blocking
def test_the_detection_stops_with_a_lifespan_run_by_lifespan_context() -> None:
    # the middleware started on the first request and never stopped (it saw no lifespan
    # messages): a later, unrelated asyncio.run calling time.sleep raised BlockingCallError,
    # and the monitor's thread stayed alive
    app = detected_app()
    monitor = install_detection(app, detect="raise")
    assert monitor is not None
    for _ in range(2):  # a second lifespan (another test of the same app) starts it again
        assert asyncio.run(ask(app, "/")).json() == 42
        assert not monitor.running
        assert not is_active()

    async def unrelated() -> None:
        time.sleep(0.001)  # no app runs: nothing watches this loop

    asyncio.run(unrelated())

    async def blocking_request() -> None:
        with pytest.raises(BlockingCallError):
            await ask(app, "/blocks")  # still raised while the app's lifespan runs

    asyncio.run(blocking_request())
    assert not is_active()


@pytest.mark.allow_blocking
def test_a_startup_failing_in_lifespan_context_stops_the_detection() -> None:
    failing = True

    @asynccontextmanager
    async def broken(app: FastAPI) -> AsyncIterator[None]:
        if failing:
            raise RuntimeError("startup failed")
        yield

    app = detected_app(lifespan=broken)
    monitor = install_detection(app, detect="raise")
    assert monitor is not None
    with pytest.raises(RuntimeError, match="startup failed"):
        asyncio.run(ask(app, "/"))
    assert not monitor.running
    assert not is_active()
